// Package testutil holds helpers shared by tests of several packages: building
// the chatdr binaries once, starting processes, polling with a deadline.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// BuildBinaries builds chatdr, chatdr-agent, chatdr-controller and chatdr-sim into dir
// (for TestMain of real-process tests) and returns dir.
func BuildBinaries(dir string) (string, error) {
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/chatdr/chatdr/cmd/chatdr",
		"github.com/chatdr/chatdr/cmd/chatdr-agent",
		"github.com/chatdr/chatdr/cmd/chatdr-controller",
		"github.com/chatdr/chatdr/cmd/chatdr-sim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build binaries: %v\n%s", err, out)
	}
	return dir, nil
}

// Exe returns the path of binary name in dir, with .exe on Windows.
func Exe(dir, name string) string {
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(dir, name)
}

// Eventually calls cond every interval until it returns nil or timeout
// passes, and returns the last error (nil on success).
func Eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true within %s: %w", timeout, err)
		}
		time.Sleep(interval) // poll interval, not a wait for an event
	}
}
