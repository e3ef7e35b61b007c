//go:build !windows

package main

import (
	"context"
	"errors"
	"io"
	"time"
)

// isWindowsService is false off Windows.
func isWindowsService() bool { return false }

// openServiceLog is never called off Windows.
func openServiceLog(string) (io.Writer, func(), error) {
	return nil, nil, errors.New("no event log on this platform")
}

// runAsService is never called off Windows.
func runAsService(string, time.Duration, func(context.Context) error) error {
	return errors.New("not a Windows service")
}
