package mssql

import (
	"context"
	"errors"
	"fmt"
	"strings"

	mssqldb "github.com/microsoft/go-mssqldb"

	"github.com/chatdr/chatdr/pluginsdk"
)

// retryableSQL are SQL Server errors that a later retry can get past.
var retryableSQL = map[int32]string{
	3101: "sessions hold the database: find them with sp_who2 on this instance, stop their clients (or KILL them), then retry (a paused run: chatdr run resume)",
	1205: "deadlock victim; retry",
	5061: "the database is in use; retry after ending the sessions",
	924:  "the database is in single-user mode and that user is connected; retry",
}

// sqlError converts a driver error into a pluginsdk error whose code names
// the first SQL Server error (the cause: go-mssqldb reports the last one,
// e.g. 3013 "terminating abnormally", and lists the others in All), with
// the whole chain in the message.
func sqlError(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return pluginsdk.AsError(fmt.Errorf("%s: %w", what, err))
	}
	var me mssqldb.Error
	if !errors.As(err, &me) {
		// Network or protocol failure: SQL Server may come back.
		return pluginsdk.Retryable("sql_unreachable", "%s: %v", what, err).
			WithHint("check that SQL Server runs and that the agent can reach it")
	}
	all := me.All
	if len(all) == 0 {
		all = []mssqldb.Error{me}
	}
	cause := all[0]
	var msgs []string
	for _, e := range all {
		msgs = append(msgs, fmt.Sprintf("Msg %d: %s", e.Number, e.Message))
	}
	pe := &pluginsdk.Error{
		Code:    fmt.Sprintf("sql_%d", cause.Number),
		Message: fmt.Sprintf("%s: %s", what, strings.Join(msgs, "; ")),
	}
	if hint, ok := retryableSQL[cause.Number]; ok {
		pe.Retryable, pe.Hint = true, hint
	}
	return pe
}

// sqlNumber returns the first SQL Server error number in err, or 0.
func sqlNumber(err error) int32 {
	var me mssqldb.Error
	if !errors.As(err, &me) {
		return 0
	}
	if len(me.All) > 0 {
		return me.All[0].Number
	}
	return me.Number
}
