// Package journal is the agent's durable record of executions, one per
// idempotency key, kept in a bbolt file in the agent's state directory.
//
// The executor records an execution as running before the action starts
// (the write is synced to disk) and records its result when it ends. A key
// found running when the journal is opened belonged to an agent that
// stopped mid-action: it is marked interrupted and is never run again, so a
// controller that resends the key learns that the effect is unknown instead
// of having the action applied twice.
package journal

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/internal/boltfile"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// FileName is the journal's file inside the agent's state directory.
const FileName = "journal.db"

var bucketExec = []byte("executions")

// ErrLocked means another agent holds the journal open.
var ErrLocked = boltfile.ErrLocked

// Journal is the durable execution record. Safe for concurrent use.
type Journal struct {
	db *bolt.DB
}

// Open opens (creating if needed) the journal in stateDir, marks every
// execution left running by a previous agent process as interrupted, and
// returns how many it marked.
func Open(stateDir string) (*Journal, int, error) {
	db, err := boltfile.Open(stateDir, FileName, "chatdr-agent", 2*time.Second, bucketExec)
	if err != nil {
		return nil, 0, err
	}
	j := &Journal{db: db}
	n, err := j.interruptRunning()
	if err != nil {
		db.Close()
		return nil, 0, err
	}
	return j, n, nil
}

// Close closes the journal.
func (j *Journal) Close() error { return j.db.Close() }

// Record is one execution.
type Record struct {
	Key    string
	Action string
	// Digest identifies the parameters, to refuse a key reused for another request.
	Digest    string
	State     agentv1.ExecutionState
	StartedAt time.Time
	// Result is set once the execution has ended.
	Result *agentv1.ExecutionResult
}

// Begin records rec as running unless its key is known. It returns the
// existing record and false when the key was already journaled, or rec and
// true when it was created (and synced to disk).
func (j *Journal) Begin(rec Record) (Record, bool, error) {
	var existing *Record
	err := j.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketExec)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(rec.Key)); v != nil {
			r, err := decode(rec.Key, v)
			if err != nil {
				return err
			}
			existing = &r
			return nil
		}
		rec.State = agentv1.ExecutionState_EXECUTION_STATE_RUNNING
		v, err := encode(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(rec.Key), v)
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("journal %s: %w", rec.Key, err)
	}
	if existing != nil {
		return *existing, false, nil
	}
	return rec, true, nil
}

// Finish records the result of the execution under key.
func (j *Journal) Finish(key string, res *agentv1.ExecutionResult) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketExec)
		if err != nil {
			return err
		}
		v := b.Get([]byte(key))
		if v == nil {
			return fmt.Errorf("journal has no execution %q to finish", key)
		}
		r, err := decode(key, v)
		if err != nil {
			return err
		}
		r.State, r.Result = res.GetState(), res
		nv, err := encode(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), nv)
	})
}

// Get returns the record of key, if any.
func (j *Journal) Get(key string) (Record, bool, error) {
	var rec Record
	found := false
	err := j.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExec)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(key))
		if v == nil {
			return nil
		}
		r, err := decode(key, v)
		rec, found = r, err == nil
		return err
	})
	return rec, found, err
}

// All returns every record (for tests and inspection), in key order.
func (j *Journal) All() ([]Record, error) {
	var out []Record
	err := j.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExec)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			r, err := decode(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Prune deletes ended executions that ended before cutoff and returns how
// many it deleted. Running ones are never pruned.
func (j *Journal) Prune(cutoff time.Time) (int, error) {
	n := 0
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExec)
		if b == nil {
			return nil
		}
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			r, err := decode(string(k), v)
			if err != nil {
				return err
			}
			if r.Result != nil && r.Result.GetEndedAt().AsTime().Before(cutoff) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

// interruptRunning marks running executions interrupted.
func (j *Journal) interruptRunning() (int, error) {
	n := 0
	err := j.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketExec)
		if err != nil {
			return err
		}
		type kv struct{ k, v []byte }
		var updates []kv
		err = b.ForEach(func(k, v []byte) error {
			r, err := decode(string(k), v)
			if err != nil {
				return err
			}
			if r.State != agentv1.ExecutionState_EXECUTION_STATE_RUNNING {
				return nil
			}
			r.State = agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED
			r.Result = &agentv1.ExecutionResult{
				State:     agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED,
				StartedAt: timestamppb.New(r.StartedAt),
				EndedAt:   timestamppb.Now(),
				Error: &agentv1.ActionError{
					Code:    "interrupted",
					Message: fmt.Sprintf("the agent stopped while %s was running; its effect on the host is unknown", r.Action),
					Hint:    "check the host's state (the step's check-then-act will), then retry the step with a new attempt",
				},
			}
			nv, err := encode(r)
			if err != nil {
				return err
			}
			updates = append(updates, kv{append([]byte(nil), k...), nv})
			return nil
		})
		if err != nil {
			return err
		}
		for _, u := range updates {
			if err := b.Put(u.k, u.v); err != nil {
				return err
			}
		}
		n = len(updates)
		return nil
	})
	return n, err
}

// stored is the on-disk form of a Record: the record's fields and the
// result, protobuf-encoded.
type stored struct {
	Action, Digest string
	State          int32
	StartedAt      time.Time
	Result         []byte
}

func encode(r Record) ([]byte, error) {
	s := stored{Action: r.Action, Digest: r.Digest, State: int32(r.State), StartedAt: r.StartedAt}
	if r.Result != nil {
		b, err := proto.Marshal(r.Result)
		if err != nil {
			return nil, err
		}
		s.Result = b
	}
	return json.Marshal(s)
}

func decode(key string, v []byte) (Record, error) {
	var s stored
	if err := json.Unmarshal(v, &s); err != nil {
		return Record{}, fmt.Errorf("journal record %q is corrupt: %w", key, err)
	}
	r := Record{Key: key, Action: s.Action, Digest: s.Digest, State: agentv1.ExecutionState(s.State), StartedAt: s.StartedAt}
	if len(s.Result) > 0 {
		r.Result = &agentv1.ExecutionResult{}
		if err := proto.Unmarshal(s.Result, r.Result); err != nil {
			return Record{}, fmt.Errorf("journal record %q: result is corrupt: %w", key, err)
		}
	}
	return r, nil
}
