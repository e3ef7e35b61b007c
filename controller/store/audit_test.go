package store

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

const nAudit = 6

// auditStore returns a store whose log holds nAudit entries.
func auditStore(t *testing.T) (*Store, string) {
	t.Helper()
	s, dir := openStore(t)
	for i := 1; i <= nAudit; i++ {
		_, err := s.Audit(alice, fmt.Sprintf("test.%d", i), "run-1", "", map[string]any{"i": i, "note": "x"})
		require.NoError(t, err)
	}
	return s, dir
}

func readEntry(t *testing.T, tx *bolt.Tx, seq uint64) AuditEntry {
	t.Helper()
	var e AuditEntry
	require.NoError(t, json.Unmarshal(tx.Bucket(bucketAudit).Get(seqKey(seq)), &e))
	return e
}

func putEntry(t *testing.T, tx *bolt.Tx, key uint64, e AuditEntry) {
	t.Helper()
	v, err := json.Marshal(e)
	require.NoError(t, err)
	require.NoError(t, tx.Bucket(bucketAudit).Put(seqKey(key), v))
}

func TestStore_VerifyAudit_detectsTampering(t *testing.T) {
	tests := []struct {
		name     string
		tamper   func(t *testing.T, tx *bolt.Tx)
		firstBad uint64
	}{
		{"intact", func(t *testing.T, tx *bolt.Tx) {}, 0},
		{"edit without rehash", func(t *testing.T, tx *bolt.Tx) {
			e := readEntry(t, tx, 3)
			e.Action = "nothing.happened"
			putEntry(t, tx, 3, e)
		}, 3},
		{"edit details bytes", func(t *testing.T, tx *bolt.Tx) {
			e := readEntry(t, tx, 2)
			e.Details = json.RawMessage(`{"i":2,"note":"y"}`)
			putEntry(t, tx, 2, e)
		}, 2},
		{"edit with rehash", func(t *testing.T, tx *bolt.Tx) {
			e := readEntry(t, tx, 3)
			e.Actor.Name = "mallory"
			e.Hash = e.computeHash()
			putEntry(t, tx, 3, e)
		}, 3},
		{"edit first with rehash", func(t *testing.T, tx *bolt.Tx) {
			e := readEntry(t, tx, 1)
			e.Time = e.Time.Add(-time.Hour)
			e.Hash = e.computeHash()
			putEntry(t, tx, 1, e)
		}, 1},
		{"edit last with rehash", func(t *testing.T, tx *bolt.Tx) {
			e := readEntry(t, tx, nAudit)
			e.Action = "test.other"
			e.Hash = e.computeHash()
			putEntry(t, tx, nAudit, e)
		}, nAudit},
		{"delete middle", func(t *testing.T, tx *bolt.Tx) {
			require.NoError(t, tx.Bucket(bucketAudit).Delete(seqKey(3)))
		}, 3},
		{"delete middle and renumber keys", func(t *testing.T, tx *bolt.Tx) {
			for k := uint64(3); k < nAudit; k++ {
				putEntry(t, tx, k, readEntry(t, tx, k+1))
			}
			require.NoError(t, tx.Bucket(bucketAudit).Delete(seqKey(nAudit)))
		}, 3},
		{"delete last", func(t *testing.T, tx *bolt.Tx) {
			require.NoError(t, tx.Bucket(bucketAudit).Delete(seqKey(nAudit)))
		}, nAudit},
		{"delete first", func(t *testing.T, tx *bolt.Tx) {
			require.NoError(t, tx.Bucket(bucketAudit).Delete(seqKey(1)))
		}, 1},
		{"append behind the store's back", func(t *testing.T, tx *bolt.Tx) {
			last := readEntry(t, tx, nAudit)
			e := AuditEntry{Seq: nAudit + 1, Time: last.Time, Actor: alice, Action: "test.forged", PrevHash: last.Hash}
			e.Hash = e.computeHash()
			putEntry(t, tx, nAudit+1, e)
		}, nAudit + 1},
		{"insert in the middle", func(t *testing.T, tx *bolt.Tx) {
			for k := uint64(nAudit); k >= 3; k-- {
				putEntry(t, tx, k+1, readEntry(t, tx, k))
			}
			two := readEntry(t, tx, 2)
			e := AuditEntry{Seq: 3, Time: two.Time, Actor: alice, Action: "test.forged", RunID: "run-1", PrevHash: two.Hash}
			e.Hash = e.computeHash()
			putEntry(t, tx, 3, e)
		}, 3},
		{"swap two entries", func(t *testing.T, tx *bolt.Tx) {
			a, b := readEntry(t, tx, 2), readEntry(t, tx, 4)
			putEntry(t, tx, 2, b)
			putEntry(t, tx, 4, a)
		}, 2},
		{"swap the last two", func(t *testing.T, tx *bolt.Tx) {
			a, b := readEntry(t, tx, nAudit-1), readEntry(t, tx, nAudit)
			putEntry(t, tx, nAudit-1, b)
			putEntry(t, tx, nAudit, a)
		}, nAudit - 1},
		{"garbage value", func(t *testing.T, tx *bolt.Tx) {
			require.NoError(t, tx.Bucket(bucketAudit).Put(seqKey(4), []byte("{not json")))
		}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := auditStore(t)
			ok, bad, err := s.VerifyAudit()
			require.NoError(t, err)
			require.True(t, ok)
			require.NoError(t, s.db.Update(func(tx *bolt.Tx) error { tt.tamper(t, tx); return nil }))
			ok, bad, err = s.VerifyAudit()
			require.NoError(t, err)
			require.Equal(t, tt.firstBad == 0, ok)
			require.Equal(t, tt.firstBad, bad)
		})
	}
}

func TestStore_Audit_chainAndReopen(t *testing.T) {
	s, dir := auditStore(t)
	es, err := s.ListAudit(AuditFilter{})
	require.NoError(t, err)
	require.Len(t, es, nAudit)
	prev := ""
	for i, e := range es {
		require.Equal(t, uint64(i+1), e.Seq)
		require.Equal(t, prev, e.PrevHash)
		require.Len(t, e.Hash, 64)
		prev = e.Hash
	}
	seq, hash, err := s.AuditHead()
	require.NoError(t, err)
	require.Equal(t, uint64(nAudit), seq)
	require.Equal(t, prev, hash)

	require.NoError(t, s.Close())
	s2, err := Open(dir, time.Second)
	require.NoError(t, err)
	defer s2.Close()
	ok, _, err := s2.VerifyAudit()
	require.NoError(t, err)
	require.True(t, ok, "the canonical encoding survives a round trip through the file")
	e, err := s2.Audit(bob, "test.after", "", "", nil)
	require.NoError(t, err)
	require.Equal(t, uint64(nAudit+1), e.Seq)
	require.Equal(t, prev, e.PrevHash)
	require.Empty(t, e.Details)

	_, err = s2.Audit(Actor{}, "x", "", "", nil)
	require.Error(t, err, "an entry needs an actor")
}

func TestStore_ListAudit_filters(t *testing.T) {
	s, _ := openStore(t)
	r := create(t, s, "pchat01.example")
	finish(t, s, r.ID)
	_, err := s.Audit(carol, "test.other", "run-77", "", nil)
	require.NoError(t, err)
	all, err := s.ListAudit(AuditFilter{})
	require.NoError(t, err)
	tests := []struct {
		name string
		f    AuditFilter
		want []string
	}{
		{"approvals", AuditFilter{Action: ActionApproval}, []string{ActionApproval, ActionApproval}},
		{"step R prefix", AuditFilter{StepID: "R", Action: "step.*"}, []string{"step.waiting_approval", "step.approved", ActionStepAttempt, ActionStepSucceed}},
		{"by actor", AuditFilter{Actor: "CAROL"}, []string{ActionApproval, "step.approved", "run.approved", "test.other"}},
		{"other run", AuditFilter{RunID: "run-77"}, []string{"test.other"}},
		{"after seq with limit", AuditFilter{AfterSeq: all[len(all)-3].Seq, Limit: 1}, []string{all[len(all)-2].Action}},
		{"until first", AuditFilter{Until: all[0].Time.Add(time.Nanosecond), Limit: 1}, []string{ActionRunCreated}},
		{"since future", AuditFilter{Since: time.Now().Add(time.Hour)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, auditActions(t, s, tt.f))
		})
	}
	ok, _, err := s.VerifyAudit()
	require.NoError(t, err)
	require.True(t, ok)
}
