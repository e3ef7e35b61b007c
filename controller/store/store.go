// Package store is the controller's durable state, kept in one bbolt file in
// the controller's state directory. It is safe for concurrent use.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the store's file inside the state directory.
const FileName = "controller.db"

var bucketAgents = []byte("agents")

// ErrLocked means another process holds the store open.
var ErrLocked = errors.New("the store is in use by another process")

// Store is the controller's bbolt database.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the store in stateDir. It fails with
// ErrLocked within lockWait when another controller holds it.
func Open(stateDir string, lockWait time.Duration) (*Store, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := filepath.Join(stateDir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s (is another chatdr-controller running with this state directory?)", ErrLocked, path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketAgents)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// AgentRecord is what the controller last saw of an agent.
type AgentRecord struct {
	// LastSeen is when the agent last answered.
	LastSeen time.Time `json:"last_seen"`
	// Info is the agent's GetInfo answer, protobuf-encoded.
	Info []byte `json:"info"`
}

// SaveAgents records the given agents' last-seen facts in one transaction.
func (s *Store) SaveAgents(recs map[string]AgentRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAgents)
		for host, r := range recs {
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(host), v); err != nil {
				return fmt.Errorf("save agent %s: %w", host, err)
			}
		}
		return nil
	})
}

// Agents returns every agent record, by host.
func (s *Store) Agents() (map[string]AgentRecord, error) {
	out := map[string]AgentRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAgents).ForEach(func(k, v []byte) error {
			var r AgentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("agent record %s is corrupt: %w", k, err)
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}
