package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketDrills holds restore-drill reports by 8-byte big-endian sequence
// number. It is created by the first drill (stores written before drills
// existed do not have it).
var bucketDrills = []byte("drills")

// Drill states.
const (
	DrillRunning     = "running"
	DrillSucceeded   = "succeeded"
	DrillFailed      = "failed"
	DrillInterrupted = "interrupted"
)

// Audit actions of drills.
const (
	// ActionDrillStarted: a restore drill was registered.
	ActionDrillStarted = "drill.started"
	// ActionDrillFinished: a restore drill ended (details: state, error).
	ActionDrillFinished = "drill.finished"
)

// ErrDrillNotFound: no drill has that ID.
var ErrDrillNotFound = errors.New("drill not found")

// Drill is a restore drill's report: what the controller asked and what
// the backup SQL host's agent measured. Values returned by the store are
// copies.
type Drill struct {
	// ID is "drill-<n>", n increasing with creation.
	ID string `json:"id"`
	// Pool is the pool FQDN.
	Pool string `json:"pool"`
	// State is DrillRunning, DrillSucceeded, DrillFailed or
	// DrillInterrupted.
	State string `json:"state"`
	// StartedBy is who asked for it.
	StartedBy Actor `json:"started_by"`
	// StartedAt and FinishedAt bound it (FinishedAt zero while running).
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Host is the backup SQL host it ran on, Database the database drilled.
	Host     string `json:"host"`
	Database string `json:"database"`
	// Error says why it failed ("code: message"), when it did.
	Error string `json:"error,omitempty"`
	// ProbeDataLossSeconds is the log-shipping probe's estimated
	// data-loss window before the drill, when it reported one.
	ProbeDataLossSeconds *float64 `json:"probe_data_loss_seconds,omitempty"`
	// Output is the mssql.drill.restore_copy action's output (JSON object).
	Output json.RawMessage `json:"output,omitempty"`
}

func drillKey(id string) ([]byte, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, "drill-"), 10, 64)
	if err != nil || !strings.HasPrefix(id, "drill-") {
		return nil, fmt.Errorf("%w: %q", ErrDrillNotFound, id)
	}
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k, nil
}

func putDrill(b *bolt.Bucket, d *Drill) error {
	k, err := drillKey(d.ID)
	if err != nil {
		return err
	}
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// StartDrill registers a new drill in state running, numbering it, and
// marks every drill still recorded as running interrupted (their IDs are
// returned): the caller guarantees that no drill runs, so such a record
// was left by a controller that stopped in the middle of one. Safe for
// concurrent use.
func (s *Store) StartDrill(d Drill) (*Drill, []string, error) {
	var interrupted []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDrills)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		err = b.ForEach(func(_, v []byte) error {
			var old Drill
			if err := json.Unmarshal(v, &old); err != nil {
				return fmt.Errorf("drill record is corrupt: %w", err)
			}
			if old.State != DrillRunning {
				return nil
			}
			old.State, old.FinishedAt = DrillInterrupted, now
			old.Error = "interrupted: the controller stopped while the drill ran; the next drill drops its scratch database"
			interrupted = append(interrupted, old.ID)
			return putDrill(b, &old)
		})
		if err != nil {
			return err
		}
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		d.ID = "drill-" + strconv.FormatUint(n, 10)
		d.State = DrillRunning
		if d.StartedAt.IsZero() {
			d.StartedAt = now
		}
		return putDrill(b, &d)
	})
	if err != nil {
		return nil, nil, err
	}
	return &d, interrupted, nil
}

// SaveDrill stores d (an existing drill, typically finished). Safe for
// concurrent use.
func (s *Store) SaveDrill(d *Drill) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDrills)
		if b == nil {
			return fmt.Errorf("%w: %s", ErrDrillNotFound, d.ID)
		}
		k, err := drillKey(d.ID)
		if err != nil {
			return err
		}
		if b.Get(k) == nil {
			return fmt.Errorf("%w: %s", ErrDrillNotFound, d.ID)
		}
		return putDrill(b, d)
	})
}

// GetDrill returns one drill; ErrDrillNotFound when there is none with
// that ID. Safe for concurrent use.
func (s *Store) GetDrill(id string) (*Drill, error) {
	k, err := drillKey(id)
	if err != nil {
		return nil, err
	}
	var d *Drill
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDrills)
		var v []byte
		if b != nil {
			v = b.Get(k)
		}
		if v == nil {
			return fmt.Errorf("%w: %s", ErrDrillNotFound, id)
		}
		d = &Drill{}
		return json.Unmarshal(v, d)
	})
	return d, err
}

// ListDrills returns up to limit drills (0: all), newest first. Safe for
// concurrent use.
func (s *Store) ListDrills(limit int) ([]*Drill, error) {
	var out []*Drill
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDrills)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if limit > 0 && len(out) >= limit {
				break
			}
			d := &Drill{}
			if err := json.Unmarshal(v, d); err != nil {
				return fmt.Errorf("drill record is corrupt: %w", err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}
