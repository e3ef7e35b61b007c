//go:build windows

package csshell

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// lockFile takes a LockFileEx lock on the first byte of path (created if
// missing), exclusive or shared, and returns the function that releases it.
// The blocking call runs in a goroutine so that ctx can abandon the wait; a
// lock obtained after that is released at once.
func lockFile(ctx context.Context, path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock central management store: %w", err)
	}
	h := windows.Handle(f.Fd())
	var flags uint32
	if exclusive {
		flags = windows.LOCKFILE_EXCLUSIVE_LOCK
	}
	unlock := func() {
		ol := new(windows.Overlapped)
		windows.UnlockFileEx(h, 0, 1, 0, ol)
		f.Close()
	}
	// Unbuffered: a lock obtained after the caller gave up is never handed
	// over, so the goroutine releases it.
	done := make(chan error)
	abandoned := make(chan struct{})
	go func() {
		err := windows.LockFileEx(h, flags, 0, 1, 0, new(windows.Overlapped))
		select {
		case done <- err:
		case <-abandoned:
			if err == nil {
				unlock()
			} else {
				f.Close()
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock central management store: %w", err)
		}
		return unlock, nil
	case <-ctx.Done():
		close(abandoned)
		return nil, fmt.Errorf("lock central management store: %w", ctx.Err())
	}
}

// syncDir is a no-op on Windows: directories cannot be fsynced there, and
// MoveFileEx (os.Rename) is durable enough for a simulator.
func syncDir(string) error { return nil }
