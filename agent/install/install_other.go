//go:build !linux && !windows

package install

import (
	"fmt"
	"runtime"
)

// Install returns ErrUnsupported: only Linux (systemd) and Windows have an
// installer.
func Install(o Options) error {
	return fmt.Errorf("%w (%s); run chatdr-agent --config under the system's own service manager", ErrUnsupported, runtime.GOOS)
}

// Uninstall returns ErrUnsupported.
func Uninstall(o Options) error { return fmt.Errorf("%w (%s)", ErrUnsupported, runtime.GOOS) }

// Status returns ErrUnsupported.
func Status(o Options) error { return fmt.Errorf("%w (%s)", ErrUnsupported, runtime.GOOS) }
