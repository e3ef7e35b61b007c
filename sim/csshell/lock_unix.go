//go:build unix

package csshell

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an flock on path (created if missing), exclusive or
// shared, and returns the function that releases it. flock locks belong to
// the open file, so two goroutines of one process exclude each other as
// two processes do. The blocking flock runs in a goroutine so that ctx can
// abandon the wait; a lock obtained after that is released at once.
func lockFile(ctx context.Context, path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock central management store: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err == nil {
		return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
	}
	// Unbuffered: a lock obtained after the caller gave up is never handed
	// over, so the goroutine releases it.
	done := make(chan error)
	abandoned := make(chan struct{})
	go func() {
		err := flockRetry(int(f.Fd()), how)
		select {
		case done <- err:
		case <-abandoned:
			if err == nil {
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
			}
			f.Close()
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock central management store: %w", err)
		}
		return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
	case <-ctx.Done():
		close(abandoned)
		return nil, fmt.Errorf("lock central management store: %w", ctx.Err())
	}
}

func flockRetry(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
