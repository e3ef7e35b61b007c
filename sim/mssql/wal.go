package mssql

import (
	"encoding/json"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// A database in the FULL (or BULK_LOGGED) recovery model with a log chain
// (a full backup was taken) keeps the changes of every committed statement
// in its log, in the bucket "log" of its bbolt bucket, keyed by the LSN
// after the statement. BACKUP LOG copies the entries since the previous log
// backup into the file and truncates the log; RESTORE LOG replays the
// entries after the database's redo_start_lsn. Outside a log chain nothing
// is kept, as in SQL Server's SIMPLE model.

// logOp is one change.
type logOp struct {
	Op    string     `json:"op"` // row (insert or update), del, table (create or alter), drop
	Table string     `json:"t"`
	ID    uint64     `json:"id,omitempty"`
	Vals  []*string  `json:"vals,omitempty"`
	Meta  *tableMeta `json:"meta,omitempty"`
}

// logEntry is the changes of one statement and the LSN after it.
type logEntry struct {
	LSN uint64  `json:"lsn"`
	Ops []logOp `json:"ops"`
}

// logContent is the content of a log backup.
type logContent struct {
	Entries []logEntry `json:"entries"`
}

var bucketLog = []byte("log")

func rowOp(t *table, r *row) logOp {
	enc := make([]*string, len(r.vals))
	for i, v := range r.vals {
		enc[i] = encodeValue(v)
	}
	return logOp{Op: "row", Table: t.key(), ID: r.id, Vals: enc}
}

func delOp(t *table, id uint64) logOp { return logOp{Op: "del", Table: t.key(), ID: id} }

func tableOp(m tableMeta) logOp {
	return logOp{Op: "table", Table: (&table{tableMeta: m}).key(), Meta: &m}
}

func dropOp(t *table) logOp { return logOp{Op: "drop", Table: t.key()} }

// keepsLog reports whether changes to the database are logged.
func (d *database) keepsLog() bool { return d.LogBackupLSN != 0 && d.Recovery != "SIMPLE" }

// appendLog records a statement's changes; nd is the database as the
// statement leaves it (its LSN is the entry's key).
func appendLog(tx *bolt.Tx, nd *database, ops []logOp) error {
	if !nd.keepsLog() || len(ops) == 0 {
		return nil
	}
	db, err := dbBucket(tx, nd)
	if err != nil {
		return err
	}
	lb, err := db.CreateBucketIfNotExists(bucketLog)
	if err != nil {
		return err
	}
	b, err := json.Marshal(logEntry{LSN: nd.LSN, Ops: ops})
	if err != nil {
		return err
	}
	return lb.Put(rowKey(nd.LSN), b)
}

// truncateLog drops every entry (they are in a log backup, or the chain is
// broken).
func truncateLog(tx *bolt.Tx, d *database) error {
	db := tx.Bucket(dbBucketName(d.Name))
	if db == nil || db.Bucket(bucketLog) == nil {
		return nil
	}
	return db.DeleteBucket(bucketLog)
}

// readLog returns the logged entries of a database in LSN order.
func (s *store) readLog(d *database) ([]logEntry, error) {
	var out []logEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		db := tx.Bucket(dbBucketName(d.Name))
		if db == nil {
			return nil
		}
		lb := db.Bucket(bucketLog)
		if lb == nil {
			return nil
		}
		return lb.ForEach(func(_, v []byte) error {
			var e logEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read log of %s: %w", ErrStorage, d.Name, err)
	}
	return out, nil
}

// applyLog replays the entries after LSN "after" on a copy of tables.
func applyLog(base map[string]*table, entries []logEntry, after uint64) (map[string]*table, error) {
	out := make(map[string]*table, len(base))
	byID := map[string]map[uint64]*row{}
	rowsOf := func(t *table) map[uint64]*row {
		m := byID[t.key()]
		if m == nil {
			m = make(map[uint64]*row, len(t.rows))
			for _, r := range t.rows {
				m[r.id] = r
			}
			byID[t.key()] = m
		}
		return m
	}
	for k, t := range base {
		nt := &table{tableMeta: t.tableMeta, rows: t.rows}
		nt.Cols = append([]colMeta(nil), t.Cols...)
		out[k] = nt
	}
	for _, e := range entries {
		if e.LSN <= after {
			continue
		}
		for _, op := range e.Ops {
			switch op.Op {
			case "table":
				if op.Meta == nil {
					return nil, fmt.Errorf("log entry %d: table op without definition", e.LSN)
				}
				t := out[op.Table]
				if t == nil {
					t = &table{}
					out[op.Table] = t
				}
				t.tableMeta = *op.Meta
				if err := t.prepare(); err != nil {
					return nil, err
				}
			case "drop":
				delete(out, op.Table)
				delete(byID, op.Table)
			case "row", "del":
				t := out[op.Table]
				if t == nil {
					return nil, fmt.Errorf("log entry %d: unknown table %s", e.LSN, op.Table)
				}
				m := rowsOf(t)
				if op.Op == "del" {
					delete(m, op.ID)
					continue
				}
				r := &row{id: op.ID, vals: make([]any, len(t.Cols))}
				for i, c := range t.Cols {
					if i < len(op.Vals) {
						v, err := decodeValue(op.Vals[i], c.Type)
						if err != nil {
							return nil, err
						}
						r.vals[i] = v
					}
				}
				m[op.ID] = r
			default:
				return nil, fmt.Errorf("log entry %d: unknown op %q", e.LSN, op.Op)
			}
		}
	}
	for k, m := range byID {
		t := out[k]
		if t == nil {
			continue
		}
		rows := make([]*row, 0, len(m))
		for _, r := range m {
			rows = append(rows, r)
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].id < rows[j].id })
		t.rows = rows
	}
	return out, nil
}
