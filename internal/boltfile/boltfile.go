// Package boltfile opens the bbolt files of chatdr's daemons the same way
// everywhere: the state directory created if missing, the file readable by
// the owner only, and a clear error when another process holds it.
package boltfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrLocked means another process holds the file open.
var ErrLocked = errors.New("in use by another process")

// Open opens (creating if needed) the bbolt file name in stateDir and
// creates the given buckets. When another process holds the file it fails
// within lockWait with an error wrapping ErrLocked that names the file and
// owner, the daemon that usually holds it (e.g. "chatdr-agent").
func Open(stateDir, name, owner string, lockWait time.Duration, buckets ...[]byte) (*bolt.DB, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := filepath.Join(stateDir, name)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%s is %w (is another %s running with this state directory?)", path, ErrLocked, owner)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise %s: %w", path, err)
	}
	return db, nil
}
