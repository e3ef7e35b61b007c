package tds

// Conformance suite: the real go-mssqldb driver (database/sql) against the
// server, replaying the scenarios verified in docs/tds-notes.md §3.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-sql/civil"
	"github.com/golang-sql/sqlexp"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

func TestConformance_Ping_sessionDetails(t *testing.T) {
	ts := startServer(t, Config{})
	db := ts.open(t, "app name=conformance&workstation id=ws1")
	before := time.Now()
	require.NoError(t, db.PingContext(t.Context()))

	log := ts.h.entriesFor("select 1;")
	require.Len(t, log, 1)
	require.Equal(t, "batch", log[0].Kind)

	sessions := ts.srv.Sessions()
	require.Len(t, sessions, 1)
	s := sessions[0]
	require.Equal(t, log[0].Session, s.ID())
	require.GreaterOrEqual(t, int(s.ID()), firstSessionID)
	require.Equal(t, "u", s.LoginName())
	require.Empty(t, s.Login().Password, "the session must not keep the password")
	require.Equal(t, "conformance", s.AppName())
	require.Equal(t, "ws1", s.HostName())
	require.Equal(t, "db1", s.Database())
	require.Equal(t, "db1", s.InitialDatabase())
	require.Equal(t, "go-mssqldb", s.Login().LibraryName)
	require.Equal(t, 4096, s.PacketSize())
	require.Contains(t, s.RemoteAddr().String(), "127.0.0.1:")
	require.WithinDuration(t, before, s.LoginTime(), 5*time.Second)
	require.False(t, s.Running())
	require.EqualValues(t, 1, s.Requests())
	got, ok := ts.srv.Session(s.ID())
	require.True(t, ok)
	require.Same(t, s, got)
}

// tenRows answers with 10 rows, more than the driver's 5-token buffer, so
// that QueryRow's early Close sends an attention.
func tenRows(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
	if err := w.Columns(Column{Name: "n", Type: TypeInt()}, Column{Name: "name", Type: TypeNVarChar(20)}); err != nil {
		return err
	}
	for i := 1; i <= 10; i++ {
		if err := w.Row(i, fmt.Sprintf("row %d", i)); err != nil {
			return err
		}
	}
	return w.EndResultSet()
}

func TestConformance_QueryRow_tenRowsTriggersAttention(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("select top 10 n, name from t", tenRows)
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	ctx := t.Context()
	var spid int
	require.NoError(t, db.QueryRowContext(ctx, "select @@SPID").Scan(&spid))

	for i := range 200 {
		var n int
		var name string
		require.NoError(t, db.QueryRowContext(ctx, "select top 10 n, name from t").Scan(&n, &name), "iteration %d", i)
		require.Equal(t, 1, n)
		require.Equal(t, "row 1", name)
	}
	var after int
	require.NoError(t, db.QueryRowContext(ctx, "select @@SPID").Scan(&after))
	require.Equal(t, spid, after, "the pooled connection must survive 200 attentions")

	attn := ts.srv.attentions.Load()
	t.Logf("attentions: %d (in flight %d, after the response %d)", attn, ts.srv.attnInFlight.Load(), ts.srv.attnAfterResponse.Load())
	require.Positive(t, attn, "QueryRow on 10 rows should send attentions")
	require.Equal(t, attn, ts.srv.attnInFlight.Load()+ts.srv.attnAfterResponse.Load(), "every attention must be acknowledged once")
	require.Len(t, ts.h.entriesFor("select top 10 n, name from t"), 200)
}

func TestConformance_QueryRow_oneRow(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("select name from t where id = 7", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		return writeResult(w, []Column{{Name: "name", Type: TypeNVarChar(10)}}, []any{"seven"})
	})
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	for range 200 {
		var name string
		require.NoError(t, db.QueryRowContext(t.Context(), "select name from t where id = 7").Scan(&name))
		require.Equal(t, "seven", name)
	}
	require.NoError(t, db.QueryRowContext(t.Context(), "select name from t where id = 7").Scan(new(string)))
}

func TestConformance_Exec_rowsAffected(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("update a; insert b; set nocount; delete c", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		for _, step := range []struct {
			in     bool
			status DoneStatus
			cmd    CurCmd
			n      uint64
		}{
			{false, DoneCount, CmdUpdate, 3},
			{true, DoneCount, CmdInsert, 4},
			{false, 0, CmdNone, 99}, // no COUNT bit: not counted
			{false, DoneCount, CmdDelete, 5},
		} {
			var err error
			if step.in {
				err = w.DoneInProc(step.status, step.cmd, step.n)
			} else {
				err = w.Done(step.status, step.cmd, step.n)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	ts.h.handle("update t set x = @p1", func(_ context.Context, _ *Session, r *testReq, w *ResponseWriter) error {
		n := r.Exec.Params[0].Value.(int64)
		return w.Done(DoneCount, CmdUpdate, uint64(n))
	})
	ts.h.handle("select open", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		if err := w.Columns(Column{Name: "n", Type: TypeInt()}); err != nil {
			return err
		}
		for i := range 3 {
			if err := w.Row(i); err != nil {
				return err
			}
		}
		return nil // the writer ends the open result set with DONE(COUNT 3)
	})
	db := ts.open(t, "")

	res, err := db.ExecContext(t.Context(), "select open")
	require.NoError(t, err)
	n, err := res.RowsAffected()
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	rows, err := db.QueryContext(t.Context(), "select open")
	require.NoError(t, err)
	count := 0
	for rows.Next() {
		count++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 3, count)

	res, err = db.ExecContext(t.Context(), "update a; insert b; set nocount; delete c")
	require.NoError(t, err)
	n, err = res.RowsAffected()
	require.NoError(t, err)
	require.EqualValues(t, 12, n)

	res, err = db.ExecContext(t.Context(), "update t set x = @p1", 7)
	require.NoError(t, err)
	n, err = res.RowsAffected()
	require.NoError(t, err)
	require.EqualValues(t, 7, n, "DONEINPROC counts inside sp_executesql")
}

// echoType is the column type used to send a parameter back.
func echoType(p Param) TypeInfo {
	if p.Type.ID == TypeIDNull {
		return TypeNVarChar(1)
	}
	return p.Type
}

// echoParams answers an sp_executesql call with one row holding every
// parameter in a column of its own type.
func echoParams(_ context.Context, _ *Session, r *testReq, w *ResponseWriter) error {
	cols := make([]Column, len(r.Exec.Params))
	row := make([]any, len(r.Exec.Params))
	for i, p := range r.Exec.Params {
		cols[i] = Column{Name: strings.TrimPrefix(p.Name, "@"), Type: echoType(p), Nullable: true}
		row[i] = p.Value
	}
	return writeResult(w, cols, row)
}

func TestConformance_Params_typedRoundTrip(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("select echo", echoParams)
	db := ts.open(t, "")

	dto := time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.FixedZone("X", 2*3600))
	long := strings.Repeat("x", 4999) + "é"
	guid := mssql.UniqueIdentifier{0x6F, 0x96, 0x19, 0xFF, 0x8B, 0x86, 0xD0, 0x11, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9, 0x64, 0xFF}
	dt1 := time.Date(2023, 1, 2, 3, 4, 5, 500_000_000, time.UTC)
	var (
		gotInt     int64
		gotBool    bool
		gotFloat   float64
		gotStr     string
		gotEmpty   string
		gotLong    string
		gotBytes   []byte
		gotTime    time.Time
		gotNull    sql.NullString
		gotNamed   string
		gotGUID    mssql.UniqueIdentifier
		gotDate    time.Time
		gotDT2     time.Time
		gotDT1     time.Time
		gotVarChar string
		gotNChar   string
		gotInt32   int64
		gotInt16   int64
		gotFloat32 float64
		gotBigBin  []byte
	)
	bigBin := bytes.Repeat([]byte{0xAB}, 9000)
	err := db.QueryRowContext(t.Context(), "select echo",
		int64(42), true, 3.25, "héllo", "", long, []byte{1, 2, 3}, dto, nil,
		sql.Named("named", "nv"), guid, civil.Date{Year: 2024, Month: 2, Day: 29},
		civil.DateTime{Date: civil.Date{Year: 2001, Month: 12, Day: 31}, Time: civil.Time{Hour: 23, Minute: 59, Second: 58, Nanosecond: 100}},
		mssql.DateTime1(dt1), mssql.VarChar("plain"), mssql.NChar("ab"), int32(-7), int16(300), float32(1.5), bigBin,
	).Scan(&gotInt, &gotBool, &gotFloat, &gotStr, &gotEmpty, &gotLong, &gotBytes, &gotTime, &gotNull,
		&gotNamed, &gotGUID, &gotDate, &gotDT2, &gotDT1, &gotVarChar, &gotNChar, &gotInt32, &gotInt16, &gotFloat32, &gotBigBin)
	require.NoError(t, err)
	require.EqualValues(t, 42, gotInt)
	require.True(t, gotBool)
	require.InDelta(t, 3.25, gotFloat, 0)
	require.Equal(t, "héllo", gotStr)
	require.Equal(t, "", gotEmpty)
	require.Equal(t, long, gotLong)
	require.Equal(t, []byte{1, 2, 3}, gotBytes)
	require.True(t, dto.Equal(gotTime), "got %v want %v", gotTime, dto)
	_, off := gotTime.Zone()
	require.Equal(t, 2*3600, off)
	require.False(t, gotNull.Valid)
	require.Equal(t, "nv", gotNamed)
	require.Equal(t, guid, gotGUID)
	require.Equal(t, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), gotDate)
	require.Equal(t, time.Date(2001, 12, 31, 23, 59, 58, 100, time.UTC), gotDT2)
	require.Equal(t, dt1, gotDT1)
	require.Equal(t, "plain", gotVarChar)
	require.Equal(t, "ab", gotNChar)
	require.EqualValues(t, -7, gotInt32)
	require.EqualValues(t, 300, gotInt16)
	require.InDelta(t, 1.5, gotFloat32, 0)
	require.Equal(t, bigBin, gotBigBin)

	// What the server decoded, parameter by parameter.
	log := ts.h.entriesFor("select echo")
	require.Len(t, log, 1)
	require.Equal(t, "exec", log[0].Kind)
	require.True(t, strings.HasPrefix(log[0].Decls, "@p1 bigint,@p2 bit,@p3 float,@p4 nvarchar("), log[0].Decls)
	require.Contains(t, log[0].Decls, "@named nvarchar(")
	ps := log[0].Params[2:]
	require.Equal(t, "@p1", ps[0].Name)
	require.Equal(t, TypeInfo{ID: TypeIDIntN, Size: 8}, ps[0].Type)
	require.Equal(t, int64(42), ps[0].Value)
	require.Equal(t, TypeIDBitN, ps[1].Type.ID)
	require.Equal(t, TypeIDFltN, ps[2].Type.ID)
	require.Equal(t, TypeIDNVarChar, ps[3].Type.ID)
	require.Equal(t, 10, ps[3].Type.Size, "short nvarchar: Size is the byte length")
	require.Equal(t, SizeMax, ps[4].Type.Size, "the empty string is sent as PLP")
	require.Equal(t, "", ps[4].Value)
	require.Equal(t, SizeMax, ps[5].Type.Size, "5000 characters are sent as PLP")
	require.Equal(t, TypeIDBigVarBinary, ps[6].Type.ID)
	require.Equal(t, TypeInfo{ID: TypeIDDateTimeOffsetN, Scale: 7, Size: 10}, ps[7].Type)
	require.Equal(t, TypeIDNull, ps[8].Type.ID)
	require.Nil(t, ps[8].Value)
	require.Equal(t, "@named", ps[9].Name)
	require.Equal(t, TypeIDGUID, ps[10].Type.ID)
	require.Equal(t, "6F9619FF-8B86-D011-B42D-00C04FC964FF", ps[10].Value.(GUID).String())
	require.Equal(t, TypeIDDateN, ps[11].Type.ID)
	require.Equal(t, TypeIDDateTime2N, ps[12].Type.ID)
	require.Equal(t, TypeIDDateTimeN, ps[13].Type.ID)
	require.Equal(t, TypeIDBigVarChar, ps[14].Type.ID)
	require.Equal(t, TypeIDNChar, ps[15].Type.ID)
	require.Equal(t, TypeInfo{ID: TypeIDIntN, Size: 4}, ps[16].Type)
	require.Equal(t, TypeInfo{ID: TypeIDIntN, Size: 2}, ps[17].Type)
	require.Equal(t, TypeInfo{ID: TypeIDFltN, Size: 4}, ps[18].Type)
	require.Equal(t, SizeMax, ps[19].Type.Size, "9000 bytes are sent as PLP")
	for i, p := range log[0].Params {
		require.Equal(t, i, p.Ordinal)
	}
}

func TestConformance_Params_unsupportedTypeIsAnError(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("select @p1", echoParams)
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	tvp := mssql.TVP{TypeName: "dbo.IntList", Value: []struct{ N int64 }{{1}, {2}}}
	_, err := db.ExecContext(t.Context(), "select @p1", tvp)
	e := mssqlError(t, err)
	require.Equal(t, NumberProtocolError, e.Number)
	require.Contains(t, e.Message, "0xF3")
	require.Empty(t, ts.h.entriesFor("select @p1"), "the handler must not see an undecodable request")
	require.NoError(t, db.PingContext(t.Context()), "the connection stays usable")
}

func TestConformance_Proc_byName(t *testing.T) {
	ts := startServer(t, Config{})
	sessionsProc := func(_ context.Context, s *Session, _ *testReq, w *ResponseWriter) error {
		if err := w.Columns(Column{Name: "SPID", Type: TypeSmallInt()}, Column{Name: "Login", Type: TypeNVarChar(128)},
			Column{Name: "DBName", Type: TypeNVarChar(128), Nullable: true}); err != nil {
			return err
		}
		for _, o := range s.Server().Sessions() {
			if err := w.Row(int(o.ID()), o.LoginName(), o.Database()); err != nil {
				return err
			}
		}
		if err := w.EndResultSet(); err != nil {
			return err
		}
		return w.ReturnStatus(0)
	}
	ts.h.handle("sp_who2", sessionsProc)
	ts.h.handle("EXEC sp_who2", sessionsProc)
	const proc = "msdb.dbo.sp_add_log_shipping_primary_database"
	ts.h.handle(proc, func(_ context.Context, _ *Session, r *testReq, w *ResponseWriter) error {
		dbp, _ := r.Call.Param("database")
		if err := w.Print("adding " + dbp.Value.(string)); err != nil {
			return err
		}
		if err := w.Done(DoneCount, CmdInsert, 1); err != nil {
			return err
		}
		if err := w.ReturnStatus(7); err != nil {
			return err
		}
		for _, p := range r.Call.Params {
			if !p.Output {
				continue
			}
			var rv ReturnValue
			switch p.Name {
			case "@job_id":
				rv = ReturnValue{Ordinal: p.Ordinal, Name: p.Name, Type: TypeUniqueIdentifier(), Value: "6F9619FF-8B86-D011-B42D-00C04FC964FF"}
			case "@count":
				rv = ReturnValue{Ordinal: p.Ordinal, Name: "count", Type: TypeBigInt(), Value: p.Value.(int64) + 41}
			case "@note":
				rv = ReturnValue{Ordinal: p.Ordinal, Name: p.Name, Type: p.Type, Value: "note for " + dbp.Value.(string)}
			}
			if err := w.ReturnValue(rv); err != nil {
				return err
			}
		}
		return nil
	})
	db := ts.open(t, "")
	ctx := t.Context()

	res, err := db.ExecContext(ctx, "sp_who2")
	require.NoError(t, err)
	_, err = res.RowsAffected()
	require.NoError(t, err)
	log := ts.h.entriesFor("sp_who2")
	require.Len(t, log, 1)
	require.Equal(t, "proc", log[0].Kind, "a bare procedure name is an RPC by name")
	require.Empty(t, log[0].Params)

	rows, err := db.QueryContext(ctx, "sp_who2")
	require.NoError(t, err)
	var ids []int
	for rows.Next() {
		var id int
		var login string
		var dbName sql.NullString
		require.NoError(t, rows.Scan(&id, &login, &dbName))
		require.Equal(t, "u", login)
		require.Equal(t, "db1", dbName.String)
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.NotEmpty(t, ids)

	_, err = db.ExecContext(ctx, "EXEC sp_who2")
	require.NoError(t, err)
	require.Equal(t, "batch", ts.h.entriesFor("EXEC sp_who2")[0].Kind)

	var (
		jobID mssql.UniqueIdentifier
		count = int64(1)
		note  = "x"
		rs    mssql.ReturnStatus
	)
	res, err = db.ExecContext(ctx, proc,
		sql.Named("database", "db1"), sql.Named("backup_directory", `\\share\logs`), sql.Named("retention", 4320),
		sql.Named("job_id", sql.Out{Dest: &jobID}), sql.Named("count", sql.Out{Dest: &count}),
		sql.Named("note", sql.Out{Dest: &note}), &rs)
	require.NoError(t, err)
	n, err := res.RowsAffected()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.EqualValues(t, 7, rs)
	require.EqualValues(t, 42, count)
	require.Equal(t, "note for db1", note)
	require.Equal(t, "6F9619FF-8B86-D011-B42D-00C04FC964FF", jobID.String())

	log = ts.h.entriesFor(proc)
	require.Len(t, log, 1)
	require.Equal(t, "proc", log[0].Kind)
	ps := log[0].Params
	require.Len(t, ps, 6)
	require.Equal(t, []string{"@database", "@backup_directory", "@retention", "@job_id", "@count", "@note"},
		[]string{ps[0].Name, ps[1].Name, ps[2].Name, ps[3].Name, ps[4].Name, ps[5].Name})
	require.Equal(t, `\\share\logs`, ps[1].Value)
	require.Equal(t, int64(4320), ps[2].Value)
	require.False(t, ps[2].Output)
	require.True(t, ps[3].Output)
	require.True(t, ps[4].Output)
	require.Equal(t, SizeMax, ps[5].Type.Size, "output strings are sent as PLP")
}

func TestConformance_Errors_chainKeepsEveryError(t *testing.T) {
	ts := startServer(t, Config{})
	const restore = "RESTORE DATABASE db9 FROM DISK = N'/nope.bak'"
	ts.h.handle(restore, func(_ context.Context, _ *Session, _ *testReq, _ *ResponseWriter) error {
		return errors.Join(
			&Error{Number: 3201, State: 2, Class: 16, Message: "Cannot open backup device '/nope.bak'. Operating system error 2(The system cannot find the file specified.).", Line: 1},
			&Error{Number: 3013, State: 1, Class: 16, Message: "RESTORE DATABASE is terminating abnormally.", Line: 1},
		)
	})
	ts.h.handle("select 1/0", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		if err := w.Columns(Column{Name: "x", Type: TypeInt(), Nullable: true}); err != nil {
			return err
		}
		if err := w.Row(1); err != nil {
			return err
		}
		if err := w.Error(&Error{Number: 8134, State: 1, Class: 16, Message: "Divide by zero error encountered.", Line: 1}); err != nil {
			return err
		}
		return w.Done(DoneCount, CmdSelect, 1)
	})
	ts.h.handle("plain error", func(context.Context, *Session, *testReq, *ResponseWriter) error {
		return errors.New("boom")
	})
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	ctx := t.Context()

	_, err := db.ExecContext(ctx, restore)
	e := mssqlError(t, err)
	require.EqualValues(t, 3013, e.Number, "Number is the last error")
	require.Len(t, e.All, 2)
	require.EqualValues(t, 3201, e.All[0].Number, "All keeps the real cause")
	require.EqualValues(t, 16, e.Class)
	require.EqualValues(t, 1, e.LineNo)
	require.Equal(t, "SIMSQL", e.ServerName)
	require.Equal(t, "RESTORE DATABASE is terminating abnormally.", e.Message)

	_, err = db.QueryContext(ctx, restore)
	require.EqualValues(t, 3013, mssqlError(t, err).Number, "QueryContext reports it too")

	rows, err := db.QueryContext(ctx, "select 1/0")
	require.NoError(t, err)
	require.True(t, rows.Next())
	var x int
	require.NoError(t, rows.Scan(&x))
	require.Equal(t, 1, x)
	require.False(t, rows.Next())
	require.EqualValues(t, 8134, mssqlError(t, rows.Err()).Number)
	require.NoError(t, rows.Close())

	_, err = db.ExecContext(ctx, "plain error")
	e = mssqlError(t, err)
	require.Equal(t, NumberUserError, e.Number)
	require.Equal(t, "boom", e.Message)

	_, err = db.ExecContext(ctx, "no such route")
	require.EqualValues(t, 2812, mssqlError(t, err).Number)

	var spid int
	require.NoError(t, db.QueryRowContext(ctx, "select @@SPID").Scan(&spid), "errors leave the connection usable")
}

func TestConformance_Info_progressArrivesOneAtATime(t *testing.T) {
	ts := startServer(t, Config{})
	const restore = "RESTORE DATABASE db2 FROM DISK = N'/b.bak' WITH STATS = 20"
	ack := make(chan struct{})
	ts.h.handle(restore, func(ctx context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		for pct := 20; pct <= 100; pct += 20 {
			if err := w.Info(&Error{Number: 3211, State: 1, Class: 0, Message: fmt.Sprintf("%d percent processed.", pct)}); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			// The next message is only written once the client has seen
			// this one: without Flush this would deadlock.
			select {
			case <-ack:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return w.Info(&Error{Number: 3014, State: 1, Class: 0, Message: "RESTORE DATABASE successfully processed 10 pages in 0.010 seconds (7.812 MB/sec)."})
	})
	db := ts.open(t, "")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	retmsg := &sqlexp.ReturnMessage{}
	rows, err := db.QueryContext(ctx, restore, retmsg)
	require.NoError(t, err)
	var got []string
	for active := true; active; {
		switch m := retmsg.Message(ctx).(type) {
		case sqlexp.MsgNotice:
			got = append(got, m.Message.String())
			if strings.HasSuffix(m.Message.String(), "percent processed.") {
				select {
				case ack <- struct{}{}:
				case <-ctx.Done():
					t.Fatal("the handler did not wait for the acknowledgement")
				}
			}
		case sqlexp.MsgNext:
			for rows.Next() {
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		case sqlexp.MsgError:
			t.Fatalf("unexpected error: %v", m.Error)
		}
	}
	require.NoError(t, ctx.Err(), "messages did not arrive one at a time")
	require.NoError(t, rows.Close())
	require.Equal(t, []string{
		"20 percent processed.", "40 percent processed.", "60 percent processed.", "80 percent processed.", "100 percent processed.",
		"RESTORE DATABASE successfully processed 10 pages in 0.010 seconds (7.812 MB/sec).",
	}, got)
}

func TestConformance_Cancel_longStatementThenReuse(t *testing.T) {
	// go-mssqldb treats context.DeadlineExceeded as a net.Error (it has
	// Timeout()), so after a timeout it discards the connection even though
	// the server confirmed the cancel; after an explicit cancel it keeps it.
	for _, tc := range []struct {
		name     string
		timeout  bool
		sameConn bool
		wantErr  error
	}{
		{"timeout", true, false, context.DeadlineExceeded},
		{"cancel", false, true, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Config{})
			const wait = "WAITFOR DELAY '00:10:00'"
			started := make(chan struct{}, 1)
			cancelled := make(chan error, 1)
			ts.h.handle(wait, func(ctx context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
				started <- struct{}{}
				<-ctx.Done()
				cancelled <- ctx.Err()
				// Writes after the attention are refused and discarded.
				if err := w.Print("too late"); !errors.Is(err, context.Canceled) {
					return fmt.Errorf("write after cancel: got %v", err)
				}
				return ctx.Err()
			})
			db := ts.open(t, "")
			db.SetMaxOpenConns(1)
			var spid int
			require.NoError(t, db.QueryRowContext(t.Context(), "select @@SPID").Scan(&spid))

			var ctx context.Context
			var cancel context.CancelFunc
			if tc.timeout {
				ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
			} else {
				ctx, cancel = context.WithCancel(t.Context())
				go func() {
					<-started
					cancel()
				}()
			}
			defer cancel()
			start := time.Now()
			_, err := db.ExecContext(ctx, wait)
			require.ErrorIs(t, err, tc.wantErr)
			require.Less(t, time.Since(start), 4*time.Second, "the driver must get its cancel confirmation at once")
			require.ErrorIs(t, <-cancelled, context.Canceled)
			require.EqualValues(t, 1, ts.srv.attnInFlight.Load())

			var again int
			require.NoError(t, db.QueryRowContext(t.Context(), "select @@SPID").Scan(&again), "the next query works")
			if tc.sameConn {
				require.Equal(t, spid, again, "same connection, still in sync")
			} else {
				require.NotEqual(t, spid, again)
				pollUntil(t, "the discarded connection's session to end", func() bool {
					_, ok := ts.srv.Session(uint16(spid))
					return !ok
				})
			}
			require.NoError(t, db.PingContext(t.Context()))
		})
	}
}

func TestConformance_Cancel_midStreamCutsCleanly(t *testing.T) {
	ts := startServer(t, Config{})
	rowErr := make(chan error, 1)
	ts.h.handle("select n from endless", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		if err := w.Columns(Column{Name: "n", Type: TypeBigInt()}, Column{Name: "pad", Type: TypeNVarChar(100)}); err != nil {
			return err
		}
		for i := range 10_000_000 {
			if err := w.Row(i, strings.Repeat("p", 100)); err != nil {
				rowErr <- err
				return err
			}
		}
		rowErr <- nil
		return w.EndResultSet()
	})
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(t.Context(), "select n from endless")
	require.NoError(t, err)
	for want := range 3 {
		require.True(t, rows.Next())
		var n int64
		var pad string
		require.NoError(t, rows.Scan(&n, &pad))
		require.EqualValues(t, want, n)
	}
	require.NoError(t, rows.Close())
	require.ErrorIs(t, <-rowErr, context.Canceled, "the handler sees the attention as a cancelled context")
	require.EqualValues(t, 1, ts.srv.attnInFlight.Load())

	for range 3 {
		var spid int
		require.NoError(t, db.QueryRowContext(t.Context(), "select @@SPID").Scan(&spid))
	}
	_, _, problems := ts.rec.stats()
	require.Empty(t, problems)
}

func TestConformance_Login_failures(t *testing.T) {
	ts := startServer(t, Config{})
	ctx := t.Context()
	open := func(user, password, extra string) *sql.DB {
		db, err := sql.Open("sqlserver", ts.dsn(user, password, extra))
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return db
	}

	e := mssqlError(t, open("u", "wrong", "").PingContext(ctx))
	require.Equal(t, NumberLoginFailed, e.Number)
	require.EqualValues(t, 14, e.Class)
	require.Contains(t, e.Message, "Login failed for user 'u'.")

	e = mssqlError(t, open("u", "p", "database=nope").PingContext(ctx))
	require.Equal(t, NumberLoginFailed, e.Number)
	require.Len(t, e.All, 2)
	require.Equal(t, NumberCannotOpenDatabase, e.All[0].Number)
	require.Contains(t, e.All[0].Message, `Cannot open database "nope"`)

	err := open("u", "p", "encrypt=true").PingContext(ctx)
	require.ErrorContains(t, err, "server does not support encryption")

	ts.h.loginErr = func(l Login) error {
		if l.AppName == "locked" {
			return &Error{Number: 18486, State: 1, Class: 14, Message: "Login failed for user 'u' because the account is currently locked out."}
		}
		return nil
	}
	e = mssqlError(t, open("u", "p", "app name=locked").PingContext(ctx))
	require.EqualValues(t, 18486, e.Number)

	require.Empty(t, ts.srv.Sessions(), "refused logins leave no session")
	require.NoError(t, open("u", "p", "").PingContext(ctx))
}

func TestConformance_ResetConnection_flag(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("mark", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		return w.Done(0, CmdNone, 0)
	})
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	ctx := t.Context()

	c1, err := db.Conn(ctx)
	require.NoError(t, err)
	for range 2 {
		_, err = c1.ExecContext(ctx, "mark")
		require.NoError(t, err)
	}
	require.NoError(t, c1.Close())
	c2, err := db.Conn(ctx)
	require.NoError(t, err)
	_, err = c2.ExecContext(ctx, "mark")
	require.NoError(t, err)
	require.NoError(t, c2.Close())

	log := ts.h.entriesFor("mark")
	require.Len(t, log, 3)
	require.Equal(t, []bool{true, false, true}, []bool{log[0].Reset, log[1].Reset, log[2].Reset},
		"first request of each checkout carries RESETCONNECTION")
	require.Equal(t, log[0].Session, log[2].Session, "same pooled connection")
}

func TestConformance_LargeResult_splitAcrossPackets(t *testing.T) {
	const n = 10_000
	payload := func(i int) string {
		s := strings.Repeat(string(rune('a'+i%26)), i%300) + fmt.Sprint(i)
		if i == 5000 {
			s = strings.Repeat("big", 40_000) // 240 KB in one value
		}
		return s
	}
	for _, size := range []int{512, 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			ts := startServer(t, Config{})
			ts.h.handle("select id, payload from big", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
				if err := w.Columns(Column{Name: "id", Type: TypeInt()}, Column{Name: "payload", Type: TypeNVarCharMax(), Nullable: true}); err != nil {
					return err
				}
				for i := range n {
					v := any(payload(i))
					if i%1000 == 999 {
						v = nil
					}
					if err := w.Row(i, v); err != nil {
						return err
					}
				}
				return w.EndResultSet()
			})
			db := ts.open(t, fmt.Sprintf("packet size=%d", size))
			rows, err := db.QueryContext(t.Context(), "select id, payload from big")
			require.NoError(t, err)
			i := 0
			for rows.Next() {
				var id int
				var p sql.NullString
				require.NoError(t, rows.Scan(&id, &p))
				require.Equal(t, i, id)
				if i%1000 == 999 {
					require.False(t, p.Valid)
				} else {
					require.Equal(t, payload(i), p.String)
				}
				i++
			}
			require.NoError(t, rows.Err())
			require.Equal(t, n, i)
			packets, maxSize, problems := ts.rec.stats()
			require.Empty(t, problems)
			require.LessOrEqual(t, maxSize, size)
			require.Greater(t, ts.rec.countOfSize(size), 100, "full packets of exactly the negotiated size")
			t.Logf("%d packets, largest %d bytes", packets, maxSize)
		})
	}
}

func TestConformance_Concurrency_poolOfEight(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("select @p1 + 1", func(_ context.Context, s *Session, r *testReq, w *ResponseWriter) error {
		v := r.Exec.Params[0].Value.(int64)
		return writeResult(w, []Column{{Name: "v", Type: TypeBigInt()}, {Name: "spid", Type: TypeSmallInt()}}, []any{v + 1, int(s.ID())})
	})
	ts.h.handle("select top 10 n, name from t", tenRows)
	db := ts.open(t, "")
	db.SetMaxOpenConns(8)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				want := int64(g*1000 + i)
				var got int64
				var spid int
				if err := db.QueryRowContext(t.Context(), "select @p1 + 1", want).Scan(&got, &spid); err != nil {
					errs <- err
					return
				}
				if got != want+1 {
					errs <- fmt.Errorf("goroutine %d: got %d want %d", g, got, want+1)
					return
				}
				if i%10 == 0 {
					var n int
					var name string
					if err := db.QueryRowContext(t.Context(), "select top 10 n, name from t").Scan(&n, &name); err != nil || n != 1 {
						errs <- fmt.Errorf("ten rows: %d %v", n, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, ts.h.entriesFor("select @p1 + 1"), 800)
	require.LessOrEqual(t, len(ts.srv.Sessions()), 8)
}

func TestConformance_Use_changesDatabase(t *testing.T) {
	ts := startServer(t, Config{})
	ts.h.handle("USE db2", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		if err := w.ChangeDatabase("db2"); err != nil {
			return err
		}
		return w.Info(&Error{Number: 5701, State: 1, Message: "Changed database context to 'db2'."})
	})
	db := ts.open(t, "")
	c, err := db.Conn(t.Context())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.ExecContext(t.Context(), "USE db2")
	require.NoError(t, err)
	var name string
	require.NoError(t, c.QueryRowContext(t.Context(), "select db_name()").Scan(&name))
	require.Equal(t, "db2", name)
	sessions := ts.srv.Sessions()
	require.Len(t, sessions, 1)
	require.Equal(t, "db2", sessions[0].Database())
	require.Equal(t, "db1", sessions[0].InitialDatabase())
}

func TestConformance_BeginTx_isRefusedNotHung(t *testing.T) {
	ts := startServer(t, Config{})
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	_, err := db.BeginTx(t.Context(), nil)
	e := mssqlError(t, err)
	require.Equal(t, NumberNotSupported, e.Number)
	require.NoError(t, db.PingContext(t.Context()))
}

func TestConformance_HandlerMisuse_keepsStreamValid(t *testing.T) {
	ts := startServer(t, Config{})
	misuse := make(chan []error, 1)
	ts.h.handle("misuse", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		var got []error
		got = append(got, w.Row(1))                                                                // no result set
		got = append(got, w.Columns())                                                             // no columns
		got = append(got, w.Columns(Column{Name: "bad", Type: TypeInfo{ID: TypeIDIntN, Size: 3}})) // bad size
		if err := w.Columns(Column{Name: "s", Type: TypeNVarChar(3)}, Column{Name: "i", Type: TypeTinyInt()}); err != nil {
			return err
		}
		got = append(got, w.Row("abcd", 1))  // longer than nvarchar(3)
		got = append(got, w.Row(nil, 1))     // NULL in a non-nullable column
		got = append(got, w.Row("abc", 256)) // out of range for tinyint
		got = append(got, w.Row("abc", "1")) // wrong Go type
		got = append(got, w.Row("abc"))      // too few values
		got = append(got, w.Done(DoneAttn, 0, 0))
		if err := w.Row("abc", 255); err != nil {
			return err
		}
		misuse <- got
		return w.EndResultSet()
	})
	ts.h.handle("panic", func(context.Context, *Session, *testReq, *ResponseWriter) error {
		panic("kaboom")
	})
	ts.h.handle("srverror", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		if err := w.Error(&Error{Number: 824, State: 2, Class: 24, Message: "I/O error"}); err != nil {
			return err
		}
		if err := w.Done(DoneSrvError, CmdNone, 0); err != nil {
			return err
		}
		return w.Print("ignored")
	})
	db := ts.open(t, "")
	db.SetMaxOpenConns(1)
	ctx := t.Context()

	var s string
	var i int
	require.NoError(t, db.QueryRowContext(ctx, "misuse").Scan(&s, &i))
	require.Equal(t, "abc", s)
	require.Equal(t, 255, i)
	got := <-misuse
	require.ErrorIs(t, got[0], ErrNoResultSet)
	require.ErrorIs(t, got[1], ErrInvalidValue)
	require.ErrorIs(t, got[2], ErrUnsupportedType)
	for _, err := range got[3:] {
		require.ErrorIs(t, err, ErrInvalidValue)
	}

	var spid int
	require.NoError(t, db.QueryRowContext(ctx, "select @@SPID").Scan(&spid))
	_, err := db.ExecContext(ctx, "panic")
	var se mssql.ServerError
	require.ErrorAs(t, err, &se, "a panic is a server error: the driver drops the connection")
	require.ErrorContains(t, se.Unwrap(), "kaboom")
	var spid2 int
	require.NoError(t, db.QueryRowContext(ctx, "select @@SPID").Scan(&spid2), "the pool recovers")
	require.NotEqual(t, spid, spid2)
	pollUntil(t, "the panicked session to close", func() bool {
		_, ok := ts.srv.Session(uint16(spid))
		return !ok
	})

	_, err = db.ExecContext(ctx, "srverror")
	require.ErrorAs(t, err, &se)
	require.EqualValues(t, 824, se.Unwrap().(mssql.Error).Number)
	require.NoError(t, db.PingContext(ctx))
}

func TestConformance_ColumnTypes(t *testing.T) {
	ts := startServer(t, Config{})
	dt2 := time.Date(2024, 2, 29, 13, 14, 15, 123456700, time.UTC)
	dto := time.Date(2024, 2, 29, 13, 14, 15, 123456700, time.FixedZone("IST", 5*3600+1800))
	dt := time.Date(2023, 1, 2, 3, 4, 5, 500_000_000, time.UTC)
	sdt := time.Date(2023, 1, 2, 3, 4, 0, 0, time.UTC)
	tod := time.Date(1, 1, 1, 13, 14, 15, 123456700, time.UTC)
	g, err := ParseGUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
	require.NoError(t, err)
	bigDec, err := ParseDecimal("-1234567890123456789012345678.0123456789")
	require.NoError(t, err)
	longStr := strings.Repeat("ab", 5000)
	longBin := bytes.Repeat([]byte{7}, 10_000)
	cols := []Column{
		{Name: "tiny", Type: TypeTinyInt()}, {Name: "small", Type: TypeSmallInt()}, {Name: "int", Type: TypeInt()},
		{Name: "big", Type: TypeBigInt()}, {Name: "bit", Type: TypeBit()}, {Name: "float", Type: TypeFloat()},
		{Name: "real", Type: TypeReal()}, {Name: "nv", Type: TypeNVarChar(10)}, {Name: "nvmax", Type: TypeNVarCharMax()},
		{Name: "nchar", Type: TypeNChar(5)}, {Name: "vc", Type: TypeVarChar(10)}, {Name: "vcmax", Type: TypeVarCharMax()},
		{Name: "vb", Type: TypeVarBinary(4)}, {Name: "vbmax", Type: TypeVarBinaryMax()}, {Name: "bin", Type: TypeBinary(4)},
		{Name: "dt2", Type: TypeDateTime2(7)}, {Name: "dto", Type: TypeDateTimeOffset(7)}, {Name: "dt", Type: TypeDateTime()},
		{Name: "sdt", Type: TypeSmallDateTime()}, {Name: "date", Type: TypeDate()}, {Name: "time", Type: TypeTime(7)},
		{Name: "guid", Type: TypeUniqueIdentifier()}, {Name: "dec", Type: TypeDecimal(10, 2)}, {Name: "bigdec", Type: TypeDecimal(38, 10)},
		{Name: "money", Type: TypeMoney()}, {Name: "fixedint", Type: TypeInfo{ID: TypeIDInt4}},
	}
	values := []any{
		255, -300, -70000, int64(1) << 40, true, 3.5, float32(1.25), "héllo", longStr,
		"ab", "café", "plain", []byte{1, 2, 3}, longBin, []byte{9},
		dt2, dto, dt, sdt, dt2, tod,
		g, "12345.67", bigDec, NewDecimal(-123456, 4), int32(5),
	}
	ts.h.handle("select types", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		nullable := make([]Column, len(cols))
		for i, c := range cols {
			c.Nullable = true
			nullable[i] = c
		}
		if err := w.Columns(nullable...); err != nil {
			return err
		}
		if err := w.Row(values...); err != nil {
			return err
		}
		if err := w.Row(make([]any, len(cols))...); err != nil {
			return err
		}
		return w.EndResultSet()
	})
	db := ts.open(t, "")
	rows, err := db.QueryContext(t.Context(), "select types")
	require.NoError(t, err)
	defer rows.Close()
	types, err := rows.ColumnTypes()
	require.NoError(t, err)
	require.Equal(t, "NVARCHAR", types[7].DatabaseTypeName())
	l, ok := types[7].Length()
	require.True(t, ok)
	require.EqualValues(t, 10, l)
	require.Equal(t, "DECIMAL", types[22].DatabaseTypeName())
	p, sc, ok := types[22].DecimalSize()
	require.True(t, ok)
	require.Equal(t, []int64{10, 2}, []int64{p, sc})

	require.True(t, rows.Next())
	var (
		tiny, small, i32, big, fixed int64
		bit                          bool
		f64, f32                     float64
		nv, nvmax, nchar, vc, vcmax  string
		vb, vbmax, bin               []byte
		gotDT2, gotDTO, gotDT        time.Time
		gotSDT, gotDate, gotTime     time.Time
		gotGUID                      mssql.UniqueIdentifier
		dec, bigdec, money           string
	)
	require.NoError(t, rows.Scan(&tiny, &small, &i32, &big, &bit, &f64, &f32, &nv, &nvmax, &nchar, &vc, &vcmax,
		&vb, &vbmax, &bin, &gotDT2, &gotDTO, &gotDT, &gotSDT, &gotDate, &gotTime, &gotGUID, &dec, &bigdec, &money, &fixed))
	require.Equal(t, []int64{255, -300, -70000, 1 << 40, 5}, []int64{tiny, small, i32, big, fixed})
	require.True(t, bit)
	require.Equal(t, []float64{3.5, 1.25}, []float64{f64, f32})
	require.Equal(t, []string{"héllo", longStr, "ab   ", "café", "plain"}, []string{nv, nvmax, nchar, vc, vcmax})
	require.Equal(t, []byte{1, 2, 3}, vb)
	require.Equal(t, longBin, vbmax)
	require.Equal(t, []byte{9, 0, 0, 0}, bin)
	require.Equal(t, dt2, gotDT2)
	require.True(t, dto.Equal(gotDTO))
	_, off := gotDTO.Zone()
	require.Equal(t, 5*3600+1800, off)
	require.Equal(t, dt, gotDT)
	require.Equal(t, sdt, gotSDT)
	require.Equal(t, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), gotDate)
	require.Equal(t, tod, gotTime)
	require.Equal(t, g.String(), gotGUID.String())
	require.Equal(t, "12345.67", dec)
	require.Equal(t, "-1234567890123456789012345678.0123456789", bigdec)
	require.Equal(t, "-12.3456", money)

	require.True(t, rows.Next())
	nulls := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range nulls {
		ptrs[i] = &nulls[i]
	}
	require.NoError(t, rows.Scan(ptrs...))
	for i, v := range nulls {
		require.Nil(t, v, "column %s", cols[i].Name)
	}
	require.False(t, rows.Next())
	require.NoError(t, rows.Err())
}
