package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/chatdr/chatdr/internal/pki"
)

var (
	bucketAudit     = []byte("audit")
	bucketAuditHead = []byte("audit_head")
	keyAuditHead    = []byte("head")
)

// Audit actions. Run and step transitions are audited as "run.<x>" and
// "step.<x>" (see RunAction and StepAction); these are the others and the
// ones the issue names.
const (
	// ActionRunCreated: CreateRun registered a run.
	ActionRunCreated = "run.created"
	// ActionStepAttempt: an attempt and its idempotency key were journaled
	// (before the request is sent).
	ActionStepAttempt = "step.attempt"
	// ActionStepSucceed: an attempt succeeded.
	ActionStepSucceed = "step.succeeded"
	// ActionApproval: one approval was recorded.
	ActionApproval = "approval"
	// ActionCancel: an operator asked to cancel a run.
	ActionCancel = "cancel"
	// ActionResume: an operator resumed a paused run.
	ActionResume = "resume"
	// ActionAck: an operator acknowledged a finished run.
	ActionAck = "ack"
	// ActionForce: a refusal was overridden, with the operator's reason.
	ActionForce = "force"
)

// Actor is who did something: a person identified by their client
// certificate, or the controller itself.
type Actor struct {
	// Name is the identity (certificate common name).
	Name string `json:"name"`
	// Role is the identity's role.
	Role pki.Role `json:"role"`
}

// ControllerActor is the actor of the events the controller's runner fires
// on its own (start, attempts, pause, succeed...).
func ControllerActor() Actor { return Actor{Name: "controller", Role: pki.RoleController} }

// AuditEntry is one entry of the append-only audit log. Hash is SHA-256
// over PrevHash and the entry's canonical encoding (every other field, in
// a fixed order, the time in UTC with nanoseconds, Details compacted), so
// that editing, deleting, inserting or reordering an entry breaks the chain
// (Store.VerifyAudit).
type AuditEntry struct {
	// Seq numbers entries from 1 without gaps.
	Seq uint64 `json:"seq"`
	// Time is when the entry was appended (UTC).
	Time time.Time `json:"time"`
	// Actor is who caused it.
	Actor Actor `json:"actor"`
	// Action says what happened (Action* constants, "run.<x>", "step.<x>").
	Action string `json:"action"`
	// RunID and StepID say what it happened to, when applicable.
	RunID  string `json:"run_id,omitempty"`
	StepID string `json:"step_id,omitempty"`
	// Details are action-specific facts (compact JSON object, or empty).
	Details json.RawMessage `json:"details,omitempty"`
	// PrevHash is the previous entry's Hash, "" for the first entry.
	PrevHash string `json:"prev_hash"`
	// Hash chains the entry (hex SHA-256).
	Hash string `json:"hash"`
}

// canonical is the encoding the hash covers; its field order is fixed.
func (e *AuditEntry) canonical() []byte {
	var det any
	if len(e.Details) > 0 {
		det = e.Details
	}
	b, _ := json.Marshal(struct {
		Seq       uint64 `json:"seq"`
		Time      string `json:"time"`
		ActorName string `json:"actor_name"`
		ActorRole string `json:"actor_role"`
		Action    string `json:"action"`
		RunID     string `json:"run_id"`
		StepID    string `json:"step_id"`
		Details   any    `json:"details"`
	}{e.Seq, e.Time.UTC().Format(time.RFC3339Nano), e.Actor.Name, string(e.Actor.Role), e.Action, e.RunID, e.StepID, det})
	return b
}

// computeHash returns the hash the entry must carry.
func (e *AuditEntry) computeHash() string {
	h := sha256.New()
	h.Write([]byte(e.PrevHash))
	h.Write([]byte{0})
	h.Write(e.canonical())
	return hex.EncodeToString(h.Sum(nil))
}

// auditHead is the newest entry's position; it detects a deleted tail.
type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

// auditRecord is an entry to append, before it is numbered and chained.
type auditRecord struct {
	actor         Actor
	action        string
	runID, stepID string
	details       any
	now           time.Time
}

// appendAudit chains and writes one entry inside tx.
func appendAudit(tx *bolt.Tx, r auditRecord) (AuditEntry, error) {
	if r.actor.Name == "" || r.action == "" {
		return AuditEntry{}, errors.New("audit entry needs an actor and an action")
	}
	var head auditHead
	if v := tx.Bucket(bucketAuditHead).Get(keyAuditHead); v != nil {
		if err := json.Unmarshal(v, &head); err != nil {
			return AuditEntry{}, fmt.Errorf("audit head is corrupt: %w", err)
		}
	}
	e := AuditEntry{Seq: head.Seq + 1, Time: r.now.UTC(), Actor: r.actor, Action: r.action,
		RunID: r.runID, StepID: r.stepID, PrevHash: head.Hash}
	if r.details != nil {
		d, err := json.Marshal(r.details)
		if err != nil {
			return AuditEntry{}, fmt.Errorf("audit details: %w", err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, d); err != nil {
			return AuditEntry{}, err
		}
		if s := buf.String(); s != "null" && s != "{}" {
			e.Details = buf.Bytes()
		}
	}
	e.Hash = e.computeHash()
	v, err := json.Marshal(e)
	if err != nil {
		return AuditEntry{}, err
	}
	if err := tx.Bucket(bucketAudit).Put(seqKey(e.Seq), v); err != nil {
		return AuditEntry{}, fmt.Errorf("append audit entry: %w", err)
	}
	hv, _ := json.Marshal(auditHead{Seq: e.Seq, Hash: e.Hash})
	if err := tx.Bucket(bucketAuditHead).Put(keyAuditHead, hv); err != nil {
		return AuditEntry{}, fmt.Errorf("append audit entry: %w", err)
	}
	return e, nil
}

// Audit appends one entry for an action that is not a run transition
// (those are audited by the run methods in the same transaction), e.g. a
// refused request or a forced plan build. details must marshal to a JSON
// object (or be nil). Safe for concurrent use; entries are numbered in
// commit order.
func (s *Store) Audit(actor Actor, action, runID, stepID string, details any) (AuditEntry, error) {
	var e AuditEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		e, err = appendAudit(tx, auditRecord{actor: actor, action: action, runID: runID, stepID: stepID, details: details, now: time.Now()})
		return err
	})
	return e, err
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	// RunID, StepID and Action match exactly; Actor matches the actor's
	// name case-insensitively. Action may end in "*" to match a prefix
	// ("step.*").
	RunID, StepID, Action, Actor string
	// AfterSeq keeps entries with Seq > AfterSeq (paging, tailing).
	AfterSeq uint64
	// Since and Until bound Time (inclusive, exclusive).
	Since, Until time.Time
	// Limit caps the number of entries returned (0: no cap).
	Limit int
}

func (f AuditFilter) match(e *AuditEntry) bool {
	switch {
	case f.RunID != "" && e.RunID != f.RunID,
		f.StepID != "" && e.StepID != f.StepID,
		f.Actor != "" && !strings.EqualFold(e.Actor.Name, f.Actor),
		!f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && !e.Time.Before(f.Until):
		return false
	}
	if f.Action != "" {
		if p, ok := strings.CutSuffix(f.Action, "*"); ok {
			return strings.HasPrefix(e.Action, p)
		}
		return e.Action == f.Action
	}
	return true
}

// ListAudit returns the entries matching f, oldest first. It does not
// verify the chain (VerifyAudit does). Safe for concurrent use.
func (s *Store) ListAudit(f AuditFilter) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(seqKey(f.AfterSeq + 1)); k != nil; k, v = c.Next() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit entry %x is corrupt (run `chatdr audit verify`): %w", k, err)
			}
			if f.match(&e) {
				out = append(out, e)
				if f.Limit > 0 && len(out) >= f.Limit {
					break
				}
			}
		}
		return nil
	})
	return out, err
}

// VerifyAudit walks the whole chain and reports whether it is intact. When
// it is not, firstBad is the sequence number of the first entry that was
// edited, inserted, moved or is missing (a deleted tail gives the first
// deleted number). err is only for a store that cannot be read. The chain
// is anchored in the store's own head record: someone able to rewrite
// every later hash and the head can forge it; compare AuditHead with a
// copy kept elsewhere to catch that. Safe for concurrent use.
func (s *Store) VerifyAudit() (ok bool, firstBad uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ok, firstBad = verifyChain(tx)
		return nil
	})
	if err != nil {
		return false, 0, err
	}
	return ok, firstBad, nil
}

func verifyChain(tx *bolt.Tx) (bool, uint64) {
	// prev is the hash of the last good entry, prevPrev its PrevHash.
	prev, prevPrev, expect := "", "", uint64(1)
	c := tx.Bucket(bucketAudit).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 || binary.BigEndian.Uint64(k) != expect {
			return false, expect // a gap (deleted entry) or a foreign key
		}
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return false, expect
		}
		selfOK := e.computeHash() == e.Hash
		if selfOK && expect > 1 {
			// An intact entry that does not chain onto its predecessor
			// shows that the predecessor is not the original: it was
			// rewritten with a fresh hash (same Seq) or inserted before
			// this entry (which kept its old Seq).
			if (e.Seq == expect && e.PrevHash != prev) || (e.Seq == expect-1 && e.PrevHash == prevPrev) {
				return false, expect - 1
			}
		}
		if !selfOK || e.Seq != expect || e.PrevHash != prev {
			return false, expect
		}
		prevPrev, prev = prev, e.Hash
		expect++
	}
	last := expect - 1
	var head auditHead
	if v := tx.Bucket(bucketAuditHead).Get(keyAuditHead); v != nil {
		if err := json.Unmarshal(v, &head); err != nil {
			return false, last + 1
		}
	}
	switch {
	case head.Seq > last:
		return false, last + 1 // entries after last were deleted
	case head.Seq < last:
		return false, head.Seq + 1 // entries appended behind the store's back
	case head.Hash != prev:
		return false, last // the newest entry was rewritten with a fresh hash
	}
	return true, 0
}

// AuditHead returns the newest entry's sequence number and hash (0, "" for
// an empty log), to be kept outside the store as an anchor. Safe for
// concurrent use.
func (s *Store) AuditHead() (seq uint64, hash string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		var h auditHead
		if v := tx.Bucket(bucketAuditHead).Get(keyAuditHead); v != nil {
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("audit head is corrupt: %w", err)
			}
		}
		seq, hash = h.Seq, h.Hash
		return nil
	})
	return seq, hash, err
}
