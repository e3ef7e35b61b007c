package mssql

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// restorePending applies every applicable log backup of the copy directory
// in LSN order (domain §5.3) and reports how far it got and why it stopped.
func (p *Plugin) restorePending(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	dir := str(params, "dir")
	mode := str(params, "mode")
	if dir == "" || mode == "" {
		s, _, err := p.snapshot(ctx, db, name)
		switch {
		case err == nil:
			if dir == "" {
				dir = s.BackupDestinationDirectory
			}
			if mode == "" && s.RestoreMode == 1 {
				mode = "standby" // keep the configured restore mode (domain §6.11)
			}
		case dir == "":
			return nil, err
		}
		// With the directory given, a missing log-shipping configuration
		// only means there is no configured restore mode to keep.
	}
	if mode == "" {
		mode = "norecovery"
	}
	if mode != "norecovery" && mode != "standby" {
		return nil, pluginsdk.Terminal("bad_param", "mode %q: want norecovery or standby", mode)
	}
	if dir, err = confine(p.roots, dir); err != nil {
		return nil, err
	}
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !st.Exists {
		return nil, pluginsdk.Terminal("no_database", "database %s does not exist on this instance", name)
	}
	if !st.restoring() {
		return nil, pluginsdk.Terminal("not_restoring", "database %s is %s: no log can be restored onto it", name, st.State).
			WithHint("after RESTORE WITH RECOVERY no more logs apply; a full restore is needed")
	}
	if !st.HasRedo {
		return nil, pluginsdk.Terminal("no_redo_point", "sys.master_files has no redo point for %s: its restore state is unknown; a full restore is needed", name)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, pluginsdk.Retryable("dir_unreadable", "read %s: %v", dir, err)
	}
	re := logFileRe(name)
	var headers []backupHeader
	var unreadable []unapplied
	var newest time.Time
	for _, e := range entries {
		if !re.MatchString(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		hs, err := readHeaders(ctx, db, path)
		if err != nil {
			if ctx.Err() != nil {
				return nil, pluginsdk.AsError(ctx.Err())
			}
			unreadable = append(unreadable, unapplied{File: e.Name(), Reason: "unreadable: " + err.Error()})
			continue
		}
		for _, h := range hs {
			if h.BackupType == 2 && strings.EqualFold(h.DatabaseName, name) {
				h.File = path
				headers = append(headers, h)
				if h.FinishDate.After(newest) {
					newest = h.FinishDate
				}
			}
		}
	}
	plan := planLogRestore(st.Redo, st.Fork, headers)
	var applied []any
	var reachedTime time.Time
	for _, h := range plan.Skipped {
		if h.FinishDate.After(reachedTime) {
			reachedTime = h.FinishDate
		}
	}
	stop := plan.Stop
	remaining := plan.Unapplied
	for i, h := range plan.Apply {
		emit.Progress("restore "+filepath.Base(h.File), int64(i), int64(len(plan.Apply)), "files")
		stmt := "RESTORE LOG " + q + " FROM DISK = @p1 WITH NORECOVERY"
		args := []any{h.File}
		if mode == "standby" {
			stmt = "RESTORE LOG " + q + " FROM DISK = @p1 WITH STANDBY = @p2"
			args = append(args, filepath.Join(dir, name+"_undo.tuf"))
		}
		err := execProgress(ctx, db, pluginsdk.DiscardEmitter{}, "", stmt, args...)
		if err == nil {
			after, rerr := readState(ctx, db, name)
			if rerr != nil {
				return nil, rerr
			}
			if !after.HasRedo || after.Redo.Cmp(h.LastLSN) != 0 {
				err = fmt.Errorf("after restoring %s the redo point is %s, expected %s", filepath.Base(h.File), after.Redo, h.LastLSN)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, pluginsdk.AsError(ctx.Err())
			}
			stop = fmt.Sprintf("restore of %s failed: %v", filepath.Base(h.File), sqlError("RESTORE LOG", err))
			for _, rest := range plan.Apply[i:] {
				remaining = append([]unapplied{{File: rest.File, Reason: stop}}, remaining...)
			}
			break
		}
		applied = append(applied, filepath.Base(h.File))
		reachedTime = h.FinishDate
		emit.Log("info", fmt.Sprintf("restored %s (LSN %s to %s)", filepath.Base(h.File), h.FirstLSN, h.LastLSN))
	}
	emit.Progress("restore", int64(len(applied)), int64(len(plan.Apply)), "files")
	final, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	var un []any
	for _, u := range append(remaining, unreadable...) {
		un = append(un, map[string]any{"file": filepath.Base(u.File), "reason": u.Reason})
	}
	out := pluginsdk.Output{
		"database": name, "dir": dir, "mode": mode,
		"applied": nonNil(applied), "skipped": float64(len(plan.Skipped)), "unapplied": nonNil(un),
		"stop_reason": stop, "complete": stop == "" && len(unreadable) == 0,
		"reached_lsn": final.Redo.String(), "changed": len(applied) > 0,
	}
	if !reachedTime.IsZero() {
		out["reached_backup_time"] = reachedTime.UTC().Format(time.RFC3339)
	}
	if !newest.IsZero() {
		out["newest_backup_time"] = newest.UTC().Format(time.RFC3339)
	}
	return out, nil
}
