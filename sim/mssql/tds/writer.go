package tds

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
)

// DoneStatus is the status field of DONE, DONEPROC and DONEINPROC tokens
// (MS-TDS 2.2.7.6).
type DoneStatus uint16

// DONE status bits.
const (
	// DoneMore means more results follow. The ResponseWriter manages it:
	// it is ignored when passed in.
	DoneMore DoneStatus = 0x01
	// DoneError marks a statement that failed. The writer sets it by itself
	// on the first DONE-family token after an ERROR token.
	DoneError DoneStatus = 0x02
	// DoneInXact means a transaction is open.
	DoneInXact DoneStatus = 0x04
	// DoneCount means RowCount is valid. go-mssqldb sums the RowCount of
	// every DONE and DONEINPROC with this bit into RowsAffected.
	DoneCount DoneStatus = 0x10
	// DoneAttn acknowledges an attention. Only the server sends it.
	DoneAttn DoneStatus = 0x20
	// DoneSrvError reports a severe server error. go-mssqldb returns an
	// mssql.ServerError and discards the connection; the writer makes the
	// token final and ends the response.
	DoneSrvError DoneStatus = 0x100
)

// CurCmd is the command code in DONE tokens. go-mssqldb only tests for
// CmdSelect.
type CurCmd uint16

// Command codes (the values SQL Server sends; not all are documented).
const (
	CmdNone       CurCmd = 0
	CmdSelect     CurCmd = 0xC1
	CmdInsert     CurCmd = 0xC3
	CmdDelete     CurCmd = 0xC4
	CmdUpdate     CurCmd = 0xC5
	CmdAbort      CurCmd = 0xD2
	CmdBeginXact  CurCmd = 0xD4
	CmdEndXact    CurCmd = 0xD5
	CmdExecute    CurCmd = 0xE0
	CmdBulkInsert CurCmd = 0xF0
	CmdMerge      CurCmd = 0x117
)

// Column describes one column of a result set.
type Column struct {
	Name     string // at most 255 UTF-16 code units; may be empty
	Type     TypeInfo
	Nullable bool // NULL values are refused unless set
}

// ReturnValue is the value of an OUTPUT parameter, sent in a RETURNVALUE
// token (0xAC).
type ReturnValue struct {
	// Ordinal is the parameter's Param.Ordinal.
	Ordinal int
	// Name is the parameter name; a leading '@' is added if missing (the
	// driver strips the first character to match sql.Named names).
	Name  string
	Type  TypeInfo
	Value any // nil sends NULL
}

const maxMessageChars = 32000

// doneToken is a DONE-family token not yet written.
type doneToken struct {
	tok    byte
	status DoneStatus
	cmd    CurCmd
	count  uint64
}

// ResponseWriter streams the tokens of one response to the client.
//
// The writer keeps the stream valid for go-mssqldb:
//   - tokens are encoded whole; a call that fails (for example a value
//     longer than its column) writes nothing;
//   - output is sent in packets of the negotiated size as it accumulates;
//     Flush sends what is buffered right away;
//   - the DONE bits MORE and ERROR are managed: in a SQL batch the last
//     DONE (or DONEPROC) the handler writes becomes the final token, and a
//     final DONE is added if the handler wrote none or wrote tokens after
//     it; in an RPC every handler DONE becomes a DONEINPROC and the server
//     ends the response with DONEPROC;
//   - after an attention the request context is cancelled, writes return
//     its error and are discarded, and the server ends the response with
//     DONE(ATTN).
//
// A ResponseWriter is only valid during the Handler call that received it
// and must not be used from several goroutines at once.
type ResponseWriter struct {
	ctx  context.Context
	c    *conn
	sess *Session
	rpc  bool

	buf      []byte
	pending  *doneToken
	errSince bool // an ERROR was written since the last DONE-family token
	anyError bool
	cols     []Column // wire types of the open result set; nil if none
	rows     uint64
	ended    bool
	werr     error // sticky transport error
}

func newResponseWriter(ctx context.Context, c *conn, rpc bool) *ResponseWriter {
	return &ResponseWriter{ctx: ctx, c: c, sess: c.sess, rpc: rpc}
}

// Session returns the session the response belongs to.
func (w *ResponseWriter) Session() *Session { return w.sess }

// RowCount returns the number of rows written to the current (or last)
// result set.
func (w *ResponseWriter) RowCount() uint64 { return w.rows }

func (w *ResponseWriter) check() error {
	switch {
	case w.ended:
		return ErrResponseComplete
	case w.werr != nil:
		return w.werr
	}
	return w.ctx.Err()
}

// begin is called before a token is appended: a held DONE is followed by
// something, so it goes out with MORE.
func (w *ResponseWriter) begin() {
	if p := w.pending; p != nil {
		w.pending = nil
		w.buf = appendDone(w.buf, p.tok, uint16(p.status|DoneMore), uint16(p.cmd), p.count)
	}
}

// spill sends every full packet of buffered output, keeping 1 to
// packet-size bytes so that the final packet always carries the last token.
func (w *ResponseWriter) spill() error {
	max := w.c.pw.payload()
	if len(w.buf) <= max {
		return nil
	}
	n := (len(w.buf) - 1) / max * max
	if err := w.c.pw.write(w.buf[:n], false); err != nil {
		w.werr = fmt.Errorf("tds: sending response: %w", err)
		return w.werr
	}
	w.buf = w.buf[:copy(w.buf, w.buf[n:])]
	return nil
}

// Flush sends everything buffered to the client now, in packets that do not
// end the response (status 0). Use it to stream progress: INFO messages
// flushed one by one reach a client reading with sqlexp.ReturnMessage one
// at a time. A DONE held to decide its MORE bit is not sent yet.
func (w *ResponseWriter) Flush() error {
	if err := w.check(); err != nil {
		return err
	}
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.c.pw.write(w.buf, false); err != nil {
		w.werr = fmt.Errorf("tds: sending response: %w", err)
		return w.werr
	}
	w.buf = w.buf[:0]
	return nil
}

// Columns starts a result set (COLMETADATA). A result set still open is
// ended first as by EndResultSet.
func (w *ResponseWriter) Columns(cols ...Column) error {
	if err := w.check(); err != nil {
		return err
	}
	if len(cols) == 0 || len(cols) > 4096 {
		return fmt.Errorf("%w: a result set needs 1 to 4096 columns, got %d", ErrInvalidValue, len(cols))
	}
	wire := make([]Column, len(cols))
	for i, col := range cols {
		t, err := writeType(col.Type)
		if err != nil {
			return fmt.Errorf("column %d (%q): %w", i+1, col.Name, err)
		}
		if utf16Len(col.Name) > 255 {
			return fmt.Errorf("%w: column %d name is longer than 255 characters", ErrInvalidValue, i+1)
		}
		wire[i] = Column{Name: col.Name, Type: t, Nullable: col.Nullable}
	}
	if w.cols != nil {
		if err := w.EndResultSet(); err != nil {
			return err
		}
	}
	w.begin()
	w.buf = append(w.buf, tokenColMetadata)
	w.buf = binary.LittleEndian.AppendUint16(w.buf, uint16(len(wire)))
	for _, col := range wire {
		w.buf = binary.LittleEndian.AppendUint32(w.buf, 0) // user type
		flags := uint16(0)
		if col.Nullable {
			flags |= 0x0001
		}
		w.buf = binary.LittleEndian.AppendUint16(w.buf, flags)
		w.buf = appendTypeInfo(w.buf, col.Type, w.c.srv.cfg.Collation)
		w.buf = appendBVarChar(w.buf, col.Name)
	}
	w.cols = wire
	w.rows = 0
	return w.spill()
}

// Row writes one row of the open result set; values must match the
// columns in number. Accepted Go values, by column type: integers (int,
// int8-int64, uint8-uint64) for INTN, range-checked; bool for BITN; float64,
// float32 or integers for FLTN; Decimal, integers, float64 or a numeric
// string for DECIMALN/NUMERICN and MONEYN; string for character types;
// []byte or string for binary types; time.Time for date and time types
// (wall clock for those without zone); GUID, [16]byte or a GUID string for
// UNIQUEIDENTIFIER. driver.Valuer values are converted first; nil is NULL.
func (w *ResponseWriter) Row(values ...any) error {
	if err := w.check(); err != nil {
		return err
	}
	if w.cols == nil {
		return ErrNoResultSet
	}
	if len(values) != len(w.cols) {
		return fmt.Errorf("%w: row has %d values for %d columns", ErrInvalidValue, len(values), len(w.cols))
	}
	w.begin()
	mark := len(w.buf)
	w.buf = append(w.buf, tokenRow)
	for i, v := range values {
		col := &w.cols[i]
		if v == nil && !col.Nullable {
			w.buf = w.buf[:mark]
			return fmt.Errorf("%w: NULL in non-nullable column %d (%q)", ErrInvalidValue, i+1, col.Name)
		}
		var err error
		if w.buf, err = appendValue(w.buf, col.Type, v); err != nil {
			w.buf = w.buf[:mark]
			return fmt.Errorf("column %d (%q): %w", i+1, col.Name, err)
		}
	}
	w.rows++
	return w.spill()
}

// EndResultSet ends the open result set with a DONE carrying DoneCount,
// CmdSelect and the number of rows written (DONEINPROC in an RPC).
func (w *ResponseWriter) EndResultSet() error {
	if w.cols == nil {
		return ErrNoResultSet
	}
	return w.Done(DoneCount, CmdSelect, w.rows)
}

// Done ends a statement: a DONE token in a SQL batch, a DONEINPROC in an
// RPC. Use DoneCount with the number of rows affected for INSERT, UPDATE,
// DELETE and SELECT. DoneMore is managed by the writer, DoneError is added
// after an Error, DoneAttn is refused. A status with DoneSrvError ends the
// response at once.
func (w *ResponseWriter) Done(status DoneStatus, cmd CurCmd, rowCount uint64) error {
	tok := byte(tokenDone)
	if w.rpc {
		tok = tokenDoneInProc
	}
	return w.done(tok, status, cmd, rowCount)
}

// DoneInProc writes a DONEINPROC: the end of a statement inside a stored
// procedure (for EXEC inside a SQL batch). It never ends the response.
func (w *ResponseWriter) DoneInProc(status DoneStatus, cmd CurCmd, rowCount uint64) error {
	return w.done(tokenDoneInProc, status, cmd, rowCount)
}

// DoneProc writes a DONEPROC: the end of a stored procedure executed from
// a SQL batch. In an RPC the server writes the final DONEPROC itself, and
// DoneProc writes a DONEINPROC instead.
func (w *ResponseWriter) DoneProc(status DoneStatus, cmd CurCmd, rowCount uint64) error {
	if w.rpc {
		return w.done(tokenDoneInProc, status, cmd, rowCount)
	}
	return w.done(tokenDoneProc, status, cmd, rowCount)
}

func (w *ResponseWriter) done(tok byte, status DoneStatus, cmd CurCmd, count uint64) error {
	if err := w.check(); err != nil {
		return err
	}
	if status&DoneAttn != 0 {
		return fmt.Errorf("%w: DoneAttn is reserved for the server", ErrInvalidValue)
	}
	status &^= DoneMore
	if w.errSince {
		status |= DoneError
		w.errSince = false
	}
	w.cols = nil
	w.begin()
	switch {
	case status&DoneSrvError != 0:
		if w.rpc {
			tok = tokenDoneProc
		} else if tok == tokenDoneInProc {
			tok = tokenDone
		}
		w.buf = appendDone(w.buf, tok, uint16(status|DoneError), uint16(cmd), count)
		w.ended = true
		if err := w.c.pw.write(w.buf, true); err != nil {
			w.werr = fmt.Errorf("tds: sending response: %w", err)
			return w.werr
		}
		w.buf = w.buf[:0]
		return nil
	case tok == tokenDoneInProc:
		w.buf = appendDone(w.buf, tok, uint16(status|DoneMore), uint16(cmd), count)
		return w.spill()
	}
	w.pending = &doneToken{tok: tok, status: status, cmd: cmd, count: count}
	return nil
}

// ReturnStatus writes a RETURNSTATUS token (0x79): the procedure's return
// code, read by the driver into an *mssql.ReturnStatus argument. In an
// RPC it belongs before the return values and the final DONEPROC.
func (w *ResponseWriter) ReturnStatus(status int32) error {
	if err := w.check(); err != nil {
		return err
	}
	w.begin()
	w.buf = append(w.buf, tokenReturnStatus)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(status))
	return w.spill()
}

// ReturnValue writes a RETURNVALUE token (0xAC) for an OUTPUT parameter;
// the driver stores it in the matching sql.Out destination.
func (w *ResponseWriter) ReturnValue(rv ReturnValue) error {
	if err := w.check(); err != nil {
		return err
	}
	if rv.Ordinal < 0 || rv.Ordinal > 0xFFFF {
		return fmt.Errorf("%w: return value ordinal %d", ErrInvalidValue, rv.Ordinal)
	}
	t, err := writeType(rv.Type)
	if err != nil {
		return fmt.Errorf("return value %q: %w", rv.Name, err)
	}
	name := rv.Name
	if !strings.HasPrefix(name, "@") {
		name = "@" + name
	}
	if utf16Len(name) > 255 {
		return fmt.Errorf("%w: return value name is longer than 255 characters", ErrInvalidValue)
	}
	w.begin()
	mark := len(w.buf)
	w.buf = append(w.buf, tokenReturnValue)
	w.buf = binary.LittleEndian.AppendUint16(w.buf, uint16(rv.Ordinal))
	w.buf = appendBVarChar(w.buf, name)
	w.buf = append(w.buf, 0x01)                            // status: output parameter
	w.buf = binary.LittleEndian.AppendUint32(w.buf, 0)     // user type
	w.buf = binary.LittleEndian.AppendUint16(w.buf, 0x001) // flags: nullable
	w.buf = appendTypeInfo(w.buf, t, w.c.srv.cfg.Collation)
	if w.buf, err = appendValue(w.buf, t, rv.Value); err != nil {
		w.buf = w.buf[:mark]
		return fmt.Errorf("return value %q: %w", rv.Name, err)
	}
	return w.spill()
}

// Error writes an ERROR token (0xAA). The next DONE gets DoneError. The
// driver attaches errors to the next DONE or DONEPROC: the statement keeps
// running as far as the protocol is concerned, so end it with Done (or
// return) as SQL Server would.
func (w *ResponseWriter) Error(e *Error) error {
	if err := w.check(); err != nil {
		return err
	}
	if e == nil {
		return fmt.Errorf("%w: nil *Error", ErrInvalidValue)
	}
	w.begin()
	w.buf = appendMessage(w.buf, tokenError, e, w.c.srv.cfg.ServerName)
	w.errSince, w.anyError = true, true
	return w.spill()
}

// Info writes an INFO token (0xAB): PRINT output, progress messages such as
// 3211 "10 percent processed.", or 5701 after USE. Call Flush to deliver
// it before the response ends.
func (w *ResponseWriter) Info(m *Error) error {
	if err := w.check(); err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("%w: nil *Error", ErrInvalidValue)
	}
	w.begin()
	w.buf = appendMessage(w.buf, tokenInfo, m, w.c.srv.cfg.ServerName)
	return w.spill()
}

// Print writes text as PRINT does: an INFO with number 0, state 1, class 0.
func (w *ResponseWriter) Print(text string) error {
	return w.Info(&Error{Number: 0, State: 1, Class: 0, Message: text})
}

// ChangeDatabase writes ENVCHANGE type 1 and makes name the session's
// current database (what USE does; SQL Server also sends INFO 5701
// "Changed database context to '<name>'.").
func (w *ResponseWriter) ChangeDatabase(name string) error {
	if err := w.check(); err != nil {
		return err
	}
	if utf16Len(name) > 255 {
		return fmt.Errorf("%w: database name is longer than 255 characters", ErrInvalidValue)
	}
	w.begin()
	w.buf = appendEnvChange(w.buf, envDatabase, name, w.sess.Database())
	w.sess.SetDatabase(name)
	return w.spill()
}

// finish ends the response after the handler returned: with DONE(ATTN) if
// an attention arrived, else with the handler's errors and the final DONE
// or DONEPROC. fatal adds DoneSrvError so that the client drops the
// connection.
func (w *ResponseWriter) finish(herr error, attn, fatal bool) error {
	if w.ended {
		return w.werr
	}
	if !attn && w.werr == nil && w.cols != nil {
		// A result set left open gets its DONE(COUNT), as SQL Server sends.
		_ = w.EndResultSet()
	}
	w.ended = true
	if w.werr != nil {
		return w.werr
	}
	if attn {
		// Everything buffered is whole tokens, so the stream is cut cleanly
		// at a token boundary. A held DONE is dropped: the client discards
		// all it reads until the acknowledgement anyway.
		w.buf = appendDone(w.buf, tokenDone, uint16(DoneAttn), 0, 0)
		return w.c.pw.write(w.buf, true)
	}
	for _, e := range flattenErrors(herr) {
		w.begin()
		w.buf = appendMessage(w.buf, tokenError, e, w.c.srv.cfg.ServerName)
		w.errSince, w.anyError = true, true
	}
	extra := DoneStatus(0)
	if fatal {
		extra = DoneSrvError | DoneError
	}
	switch {
	case w.rpc:
		w.begin()
		status := extra
		if w.anyError {
			status |= DoneError
		}
		w.buf = appendDone(w.buf, tokenDoneProc, uint16(status), 0, 0)
	case w.pending != nil && !w.errSince && !fatal:
		p := w.pending
		w.pending = nil
		w.buf = appendDone(w.buf, p.tok, uint16(p.status), uint16(p.cmd), p.count)
	default:
		w.begin()
		status := extra
		if w.errSince {
			status |= DoneError
		}
		w.buf = appendDone(w.buf, tokenDone, uint16(status), 0, 0)
	}
	err := w.c.pw.write(w.buf, true)
	w.buf = w.buf[:0]
	return err
}

// appendDone appends a DONE, DONEPROC or DONEINPROC token.
func appendDone(b []byte, tok byte, status, cmd uint16, count uint64) []byte {
	b = append(b, tok)
	b = binary.LittleEndian.AppendUint16(b, status)
	b = binary.LittleEndian.AppendUint16(b, cmd)
	return binary.LittleEndian.AppendUint64(b, count)
}

// appendMessage appends an ERROR or INFO token.
func appendMessage(b []byte, tok byte, e *Error, defaultServer string) []byte {
	server := e.Server
	if server == "" {
		server = defaultServer
	}
	var body []byte
	body = binary.LittleEndian.AppendUint32(body, uint32(e.Number))
	body = append(body, e.State, e.Class)
	body = appendUSVarChar(body, e.Message, maxMessageChars)
	body = appendBVarChar(body, server)
	body = appendBVarChar(body, e.Proc)
	body = binary.LittleEndian.AppendUint32(body, uint32(e.Line))
	b = append(b, tok)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}
