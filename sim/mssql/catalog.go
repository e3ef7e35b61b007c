package mssql

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// Database states as sys.databases.state_desc shows them. A database
// restored WITH STANDBY is ONLINE with is_in_standby = 1 and read-only.
const (
	stateOnline    = "ONLINE"
	stateRestoring = "RESTORING"
	stateOffline   = "OFFLINE"
)

// dbMeta is the durable description of a database.
type dbMeta struct {
	Name       string    `json:"name"`
	ID         int       `json:"id"`
	Created    time.Time `json:"created"`
	State      string    `json:"state"`
	Standby    bool      `json:"standby,omitempty"`
	ReadOnly   bool      `json:"read_only,omitempty"`
	Recovery   string    `json:"recovery"`    // FULL, SIMPLE, BULK_LOGGED
	UserAccess string    `json:"user_access"` // MULTI_USER, SINGLE_USER, RESTRICTED_USER
	ForkGUID   tds.GUID  `json:"fork_guid"`
	// PrevForkGUID and ForkPointLSN record the last recovery: the fork the
	// database left and the LSN where it did. A log backup spanning that
	// point can still be applied to a copy left RESTORING on the old fork
	// (what lets a failed-over pair swap roles without a full restore).
	PrevForkGUID tds.GUID `json:"prev_fork_guid,omitempty"`
	ForkPointLSN uint64   `json:"fork_point_lsn,omitempty"`
	// LSN is the next log sequence number: it advances with every change.
	LSN uint64 `json:"lsn"`
	// RedoStartLSN and RedoStartFork are where the next restore of a
	// database in a restore sequence starts (sys.master_files); zero
	// outside a restore sequence.
	RedoStartLSN  uint64   `json:"redo_start_lsn,omitempty"`
	RedoStartFork tds.GUID `json:"redo_start_fork,omitempty"`
	// DatabaseBackupLSN is the first LSN of the last full backup (not
	// COPY_ONLY); LogBackupLSN is where the next log backup starts, zero
	// when no log chain exists yet.
	DatabaseBackupLSN uint64 `json:"database_backup_lsn,omitempty"`
	LogBackupLSN      uint64 `json:"log_backup_lsn,omitempty"`
	// DataFile and LogFile are the physical file names (MOVE changes them).
	DataFile string `json:"data_file"`
	LogFile  string `json:"log_file"`
	// Mirror is the database mirroring configuration, nil when not
	// mirrored (mirror.go).
	Mirror *mirrorMeta `json:"mirror,omitempty"`
}

// database is a database with its content.
type database struct {
	dbMeta
	tables map[string]*table // by lower-case schema.name
}

func (d *database) system() bool { return d.ID <= 4 }

// recover ends a restore sequence: the database starts a new recovery fork
// at its current LSN.
func (d *database) recover(from tds.GUID) {
	d.PrevForkGUID, d.ForkPointLSN = from, d.LSN
	d.ForkGUID = newGUID()
	d.RedoStartLSN, d.RedoStartFork = 0, tds.GUID{}
	d.advance(1)
}

// readable reports the error for reading the database, nil if allowed.
func (d *database) readable() error {
	switch d.State {
	case stateRestoring:
		if d.Mirror != nil && d.Mirror.Role == "MIRROR" {
			return sqlErr(954, d.Name)
		}
		return sqlErr(msgDBRestoring, d.Name)
	case stateOffline:
		return sqlErr(msgDBOffline, d.Name)
	}
	return nil
}

// writable reports the error for changing the database's content.
func (d *database) writable() error {
	if err := d.readable(); err != nil {
		return err
	}
	if d.Standby || d.ReadOnly {
		return sqlErr(msgReadOnly, d.Name)
	}
	return nil
}

// advance moves the LSN forward by n log records. Like
// SQL Server's, an LSN is VLF * 10^15 + block * 10^5 + slot.
func (d *database) advance(n int) {
	for range n {
		d.LSN++
		if d.LSN%100000 > 99990 {
			d.LSN = (d.LSN/100000+1)*100000 + 1
		}
	}
}

// colMeta is a column definition.
type colMeta struct {
	Name       string  `json:"name"`
	Type       colType `json:"type"`
	Nullable   bool    `json:"nullable"`
	Identity   bool    `json:"identity,omitempty"`
	Seed       int64   `json:"seed,omitempty"`
	Incr       int64   `json:"incr,omitempty"`
	DefaultSQL string  `json:"default,omitempty"`
	PrimaryKey bool    `json:"pk,omitempty"`

	def expr
}

// tableMeta is the durable description of a table.
type tableMeta struct {
	Schema    string    `json:"schema"`
	Name      string    `json:"name"`
	Cols      []colMeta `json:"cols"`
	IdentLast int64     `json:"ident_last"`
	IdentUsed bool      `json:"ident_used,omitempty"`
	NextRowID uint64    `json:"next_row_id"`
	Created   time.Time `json:"created,omitempty"`
}

// row is one row; id orders rows in insertion order.
type row struct {
	id   uint64
	vals []any
}

// table is a user table.
type table struct {
	tableMeta
	rows []*row
}

func (t *table) key() string { return strings.ToLower(t.Schema + "." + t.Name) }

// objectID is the table's object_id: stable, positive, derived from the
// database and table names.
func (t *table) objectID(d *database) int64 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(d.Name) + "." + t.key()))
	return int64(h.Sum32()&0x3fffffff) + 1000
}

// prepare parses the column defaults.
func (t *table) prepare() error {
	for i := range t.Cols {
		if t.Cols[i].DefaultSQL == "" {
			continue
		}
		stmts, err := parseBatch("SELECT " + t.Cols[i].DefaultSQL)
		if err != nil {
			return err
		}
		t.Cols[i].def = stmts[0].(*stSelect).Items[0].E
	}
	return nil
}

// pkColumns returns the primary key columns, nil when the key is absent or
// is a single identity column (unique by construction).
func (t *table) pkColumns() []int {
	var idx []int
	for i, c := range t.Cols {
		if c.PrimaryKey {
			idx = append(idx, i)
		}
	}
	if len(idx) == 1 && t.Cols[idx[0]].Identity {
		return nil
	}
	return idx
}

// checkUnique reports 2627 if a candidate row repeats the primary key of
// another row. rows are the table's rows as they will be (skip is the index
// of the candidate's own old version, -1 for none).
func (t *table) checkUnique(cand []any, rows []*row, skip int) error {
	pk := t.pkColumns()
	if len(pk) == 0 {
		return nil
	}
	for i, r := range rows {
		if i == skip {
			continue
		}
		same := true
		for _, c := range pk {
			if !sameRow([]any{cand[c]}, []any{r.vals[c]}) {
				same = false
				break
			}
		}
		if same {
			vals := make([]string, len(pk))
			for k, c := range pk {
				vals[k] = fmt.Sprint(cand[c])
			}
			return sqlErr(2627, "PK__"+t.Name, t.Schema+"."+t.Name, strings.Join(vals, ", "))
		}
	}
	return nil
}

func (t *table) colIndex(name string) int {
	for i, c := range t.Cols {
		if strings.EqualFold(c.Name, name) {
			return i
		}
	}
	return -1
}
