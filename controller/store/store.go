// Package store is the controller's durable state, kept in one bbolt file in
// the controller's state directory. It is safe for concurrent use.
package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/chatdr/chatdr/internal/boltfile"
)

// FileName is the store's file inside the state directory.
const FileName = "controller.db"

var bucketAgents = []byte("agents")

// ErrLocked means another process holds the store open.
var ErrLocked = boltfile.ErrLocked

// Store is the controller's bbolt database.
type Store struct {
	db *bolt.DB
	// hooks are called after commits; set before the store is shared.
	hooks Hooks
}

// Hooks are called after a change is durable, from the goroutine that made
// it. The controller uses them for fault injection (a crash right after a
// commit, see controller/faults.go); they must be quick.
type Hooks struct {
	// AfterFire is called after Fire committed the changes to run.
	AfterFire func(run *Run, changes []Change)
	// AfterBeginAttempt is called after BeginAttempt journaled key, before
	// the caller may send the request.
	AfterBeginAttempt func(runID, stepID, key string)
	// BeforeCommit, when set, is called inside the write transaction of
	// CreateRun ("create"), Fire ("fire"), BeginAttempt ("attempt") and
	// Approve ("approve") before it commits; an error aborts the
	// transaction and is returned, as a failed write (disk full, I/O
	// error) would be. Tests use it to prove that nothing is acted on that
	// the store did not record.
	BeforeCommit func(op, runID string) error
}

// beforeCommit runs Hooks.BeforeCommit when set.
func (s *Store) beforeCommit(op, runID string) error {
	if s.hooks.BeforeCommit == nil {
		return nil
	}
	return s.hooks.BeforeCommit(op, runID)
}

// SetHooks installs hooks; call it before the store is used concurrently.
func (s *Store) SetHooks(h Hooks) { s.hooks = h }

// Open opens (creating if needed) the store in stateDir. It fails with
// ErrLocked within lockWait when another controller holds it.
func Open(stateDir string, lockWait time.Duration) (*Store, error) {
	db, err := boltfile.Open(stateDir, FileName, "chatdr-controller", lockWait, append([][]byte{bucketAgents}, runBuckets...)...)
	if err != nil {
		return nil, err
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
