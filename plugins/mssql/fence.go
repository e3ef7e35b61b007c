package mssql

import (
	"context"
	"database/sql"

	"github.com/chatdr/chatdr/pluginsdk"
)

// fence makes a database that must no longer be written non-writable while
// keeping what it holds (domain §6.1–6.2: an old primary that comes back
// after the backup was recovered is a second writable copy of mgc). It is
// check-then-act: a database that is absent, RESTORING, in STANDBY,
// OFFLINE or read-only is left alone. Otherwise it
//
//  1. removes database mirroring when the database is a mirroring
//     principal (the mirror's copy stays RESTORING);
//  2. ends the sessions on it;
//  3. takes a tail-log backup WITH NORECOVERY to path: the transactions
//     the old primary wrote after the restore point are kept in that file
//     for later salvage, and the database is left RESTORING;
//  4. when the backup cannot be written (the share was lost with the
//     site), sets the database OFFLINE WITH ROLLBACK IMMEDIATE instead: its
//     files are kept, nothing can write to it, and a failback restores over
//     it (RESTORE ... WITH REPLACE works on an OFFLINE database).
func (p *Plugin) fence(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	path, err := confine(p.roots, str(params, "path"))
	if err != nil {
		return nil, err
	}
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	out := pluginsdk.Output{"database": name, "changed": false, "fenced": true}
	if !st.Exists {
		out["state"] = "absent"
		return out, nil
	}
	if !st.writable() {
		out["state"] = st.State
		return out, nil
	}
	if m, err := readMirror(ctx, db, name); err != nil {
		return nil, err
	} else if m.Mirrored && m.Role == "PRINCIPAL" {
		if _, err := p.mirrorRemove(ctx, db, params); err != nil {
			return nil, err
		}
		out["mirroring_removed"] = true
	}
	if _, err := p.killSessions(ctx, db, params, emit); err != nil {
		return nil, err
	}
	err = backupTail(ctx, db, emit, "fencing tail-log backup", name, q, path)
	if err == nil {
		out["changed"], out["method"], out["path"], out["state"] = true, "tail_log_norecovery", path, "RESTORING"
		if hs, herr := readHeaders(ctx, db, path); herr == nil && len(hs) > 0 {
			tailFields(out, hs[len(hs)-1])
		}
		return out, nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	backupErr := err.Error()
	if _, oerr := db.ExecContext(ctx, "ALTER DATABASE "+q+" SET OFFLINE WITH ROLLBACK IMMEDIATE"); oerr != nil {
		return nil, pluginsdk.Terminal("fence_failed", "%s is writable and could not be fenced: the tail-log backup failed (%s) and SET OFFLINE failed (%v)",
			name, backupErr, sqlError("ALTER DATABASE "+name+" SET OFFLINE", oerr)).
			WithHint("stop the SQL Server service on this host, or disconnect it, before anything writes to %s", name)
	}
	out["changed"], out["method"], out["state"], out["backup_error"] = true, "offline", "OFFLINE", backupErr
	return out, nil
}
