package mssql

import (
	"context"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// msdbTables are the backup and restore history tables SQL Server keeps in
// msdb (the columns our code and dbatools read). BACKUP and RESTORE write
// them in the same transaction as their own change.
var msdbTables = map[string]string{
	"backupmediafamily": `CREATE TABLE msdb.dbo.backupmediafamily (
		media_set_id int NOT NULL, family_sequence_number tinyint NOT NULL,
		physical_device_name nvarchar(260) NULL, device_type tinyint NULL)`,
	"backupset": `CREATE TABLE msdb.dbo.backupset (
		backup_set_id int IDENTITY(1,1) NOT NULL PRIMARY KEY, backup_set_uuid uniqueidentifier NOT NULL,
		media_set_id int NOT NULL, name nvarchar(128) NULL, server_name nvarchar(128) NULL,
		machine_name nvarchar(128) NULL, database_name nvarchar(128) NULL, type char(1) NULL,
		first_lsn numeric(25,0) NULL, last_lsn numeric(25,0) NULL, checkpoint_lsn numeric(25,0) NULL,
		database_backup_lsn numeric(25,0) NULL, database_creation_date datetime NULL,
		backup_start_date datetime NULL, backup_finish_date datetime NULL, recovery_model nvarchar(60) NULL,
		first_recovery_fork_guid uniqueidentifier NULL, last_recovery_fork_guid uniqueidentifier NULL,
		fork_point_lsn numeric(25,0) NULL,
		backup_size numeric(20,0) NULL, compressed_backup_size numeric(20,0) NULL,
		is_copy_only bit NULL, has_backup_checksums bit NULL, begins_log_chain bit NULL)`,
	"restorehistory": `CREATE TABLE msdb.dbo.restorehistory (
		restore_history_id int IDENTITY(1,1) NOT NULL PRIMARY KEY, restore_date datetime NULL,
		destination_database_name nvarchar(128) NULL, user_name nvarchar(128) NULL,
		backup_set_id int NOT NULL, restore_type char(1) NULL, [replace] bit NULL, recovery bit NULL,
		restart bit NULL, stop_at datetime NULL, device_count tinyint NULL)`,
}

// ensureMsdb creates the msdb history tables that are missing.
func (in *Instance) ensureMsdb() error {
	for name, ddl := range msdbTables {
		in.mu.Lock()
		_, exists := in.dbs["msdb"].tables["dbo."+name]
		in.mu.Unlock()
		if exists {
			continue
		}
		if _, err := in.Exec(context.Background(), "msdb", ddl); err != nil {
			return fmt.Errorf("create msdb.dbo.%s: %w", name, err)
		}
	}
	return nil
}

// pendingInsert is a row prepared for a table, written by a statement's
// commit and applied to memory after it.
type pendingInsert struct {
	d         *database
	t         *table
	r         *row
	identLast int64
	identUsed bool
}

// prepareInsert builds a row of db.dbo.table from values by column name;
// the identity column gets its next value (returned by identity()).
func (in *Instance) prepareInsert(db, tbl string, vals map[string]any) (*pendingInsert, error) {
	d := in.db(db)
	if d == nil {
		return nil, sqlErr(msgInvalidObject, db+".dbo."+tbl)
	}
	t := d.tables["dbo."+strings.ToLower(tbl)]
	if t == nil {
		return nil, sqlErr(msgInvalidObject, db+".dbo."+tbl)
	}
	p := &pendingInsert{d: d, t: t, identLast: t.IdentLast, identUsed: t.IdentUsed}
	r := &row{id: t.NextRowID, vals: make([]any, len(t.Cols))}
	for i, c := range t.Cols {
		if c.Identity {
			if p.identUsed {
				p.identLast += c.Incr
			} else {
				p.identLast, p.identUsed = c.Seed, true
			}
			r.vals[i] = p.identLast
			continue
		}
		v, err := coerce(vals[c.Name], c.Type)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", tbl, c.Name, err)
		}
		r.vals[i] = v
	}
	p.r = r
	return p, nil
}

func (p *pendingInsert) identity() int64 { return p.identLast }

// writeInserts stores prepared rows in tx, advancing the LSN of each
// database once per row.
func writeInserts(tx *bolt.Tx, ps []*pendingInsert) error {
	rowsPerDB := map[*database]int{}
	for _, p := range ps {
		nt := *p.t
		nt.IdentLast, nt.IdentUsed, nt.NextRowID = p.identLast, p.identUsed, p.r.id+1
		if err := putRow(tx, p.d, p.t, p.r); err != nil {
			return err
		}
		if err := putTable(tx, p.d, &nt); err != nil {
			return err
		}
		rowsPerDB[p.d]++
	}
	for d, n := range rowsPerDB {
		nd := *d
		nd.advance(n)
		if err := putDB(tx, &nd); err != nil {
			return err
		}
	}
	return nil
}

// applyInserts adds committed rows to memory.
func applyInserts(ps []*pendingInsert) {
	for _, p := range ps {
		p.t.IdentLast, p.t.IdentUsed, p.t.NextRowID = p.identLast, p.identUsed, p.r.id+1
		p.t.rows = append(p.t.rows, p.r)
		p.d.advance(1)
	}
}

// backupHistory prepares the msdb rows describing a backup set: the media
// family and the backupset row (SQL Server writes them on BACKUP, and on
// RESTORE for the set it read).
func (in *Instance) backupHistory(h backupHeader, path string) ([]*pendingInsert, int64, error) {
	mediaID := int64(1)
	if t := in.dbs["msdb"].tables["dbo.backupmediafamily"]; t != nil {
		mediaID = int64(len(t.rows)) + 1
	}
	typ := "D"
	if h.BackupType == 2 {
		typ = "L"
	}
	machine, _, _ := strings.Cut(h.ServerName, `\`)
	bs, err := in.prepareInsert("msdb", "backupset", map[string]any{
		"backup_set_uuid": h.BackupSetGUID, "media_set_id": mediaID, "server_name": h.ServerName,
		"machine_name": machine, "database_name": h.DatabaseName, "type": typ,
		"first_lsn": lsnZero(h.FirstLSN), "last_lsn": lsnZero(h.LastLSN), "checkpoint_lsn": lsnZero(h.CheckpointLSN),
		"database_backup_lsn": lsnZero(h.DatabaseBackupLSN), "database_creation_date": h.DatabaseCreated,
		"backup_start_date": h.BackupStartDate, "backup_finish_date": h.BackupFinishDate,
		"recovery_model": h.RecoveryModel, "first_recovery_fork_guid": firstFork(h), "fork_point_lsn": lsnValue(h.ForkPointLSN),
		"last_recovery_fork_guid": h.RecoveryForkID, "backup_size": lsnZero(uint64(h.BackupSize)),
		"compressed_backup_size": lsnZero(uint64(h.BackupSize)), "is_copy_only": h.IsCopyOnly,
		"has_backup_checksums": h.HasChecksums, "begins_log_chain": h.BeginsLogChain,
	})
	if err != nil {
		return nil, 0, err
	}
	mf, err := in.prepareInsert("msdb", "backupmediafamily", map[string]any{
		"media_set_id": mediaID, "family_sequence_number": int64(1), "physical_device_name": path, "device_type": int64(2),
	})
	if err != nil {
		return nil, 0, err
	}
	return []*pendingInsert{bs, mf}, bs.identity(), nil
}
