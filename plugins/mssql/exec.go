package mssql

import (
	"context"
	"database/sql"
	"errors"
	"regexp"
	"strconv"

	"github.com/golang-sql/sqlexp"
	mssqldb "github.com/microsoft/go-mssqldb"

	"github.com/chatdr/chatdr/pluginsdk"
)

var percentRe = regexp.MustCompile(`^(\d{1,3}) percent processed\.`)

// execProgress runs a statement that reports progress as INFO messages
// (BACKUP/RESTORE ... WITH STATS) and turns "n percent processed." into
// progress events. It returns the statement's SQL Server errors, all of
// them (the first is the cause), as one error.
func execProgress(ctx context.Context, db *sql.DB, emit pluginsdk.Emitter, stage, query string, args ...any) error {
	retmsg := &sqlexp.ReturnMessage{}
	rows, err := db.QueryContext(ctx, query, append(args, retmsg)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var sqlErrs []mssqldb.Error
	var other error
	for active := true; active; {
		switch m := retmsg.Message(ctx).(type) {
		case sqlexp.MsgNotice:
			text := m.Message.String()
			if sm := percentRe.FindStringSubmatch(text); sm != nil {
				n, _ := strconv.Atoi(sm[1])
				emit.Progress(stage, int64(n), 100, "percent")
			} else {
				emit.Log("info", text)
			}
		case sqlexp.MsgNext:
			for rows.Next() {
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		case sqlexp.MsgError:
			var me mssqldb.Error
			if errors.As(m.Error, &me) {
				if len(me.All) > 0 {
					sqlErrs = append(sqlErrs, me.All...)
				} else {
					sqlErrs = append(sqlErrs, me)
				}
			} else {
				other = m.Error
			}
		case sqlexp.MsgRowsAffected:
		case nil:
			active = false
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if len(sqlErrs) > 0 {
		last := sqlErrs[len(sqlErrs)-1]
		last.All = sqlErrs
		return last
	}
	if other != nil {
		return other
	}
	return rows.Err()
}
