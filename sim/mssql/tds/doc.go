// Package tds is the transport of the SQL Server simulator: a TDS 7.4
// server that the unmodified go-mssqldb driver (v1.11.2) talks to over
// TCP. It handles framing, PRELOGIN, LOGIN7 with SQL authentication,
// SQL batches, RPC requests (sp_executesql and procedures by name),
// attention (cancel) and the token stream of responses. It knows nothing of
// T-SQL: a Handler supplied by the engine package runs logins and requests.
// Only the standard library is used.
//
// # Serving
//
//	srv, err := tds.NewServer(tds.Config{Handler: engine})
//	err = srv.Listen("127.0.0.1:0")   // serves in the background
//	dsn := "sqlserver://user:pass@" + srv.Addr().String() + "?database=db1&encrypt=disable"
//	...
//	srv.Close()                       // closes everything, waits for goroutines
//
// Clients must not ask for TLS: PRELOGIN always answers ENCRYPTION=NOT_SUP,
// so encrypt=disable (or false/optional) works and encrypt=true fails in the
// driver with "server does not support encryption".
//
// # Handler contract
//
// Handler.Authenticate receives the decoded LOGIN7 (user, clear-text
// password, app, host, requested database, packet size) and returns the
// starting database or an error; an *Error is sent as is (for example
// errors.Join(CannotOpenDatabase(db), LoginFailed(user))), any other error
// as 18456 "Login failed for user '<name>'.". The connection is closed after
// a refused login.
//
// Handler.Batch and Handler.RPC run one request each, one at a time per
// session, concurrently across sessions. They write results through the
// ResponseWriter and return nil or an error. A returned error is sent as
// ERROR token(s): an *Error as is, errors.Join(e1, e2) as two tokens (the
// driver reports the last one in mssql.Error.Number and all of them in
// mssql.Error.All), any other error as message 50000 class 16. A panic is
// reported with DONE(SRVERROR) and closes the connection.
//
// The context passed to a handler is cancelled on attention (the client
// cancelled the query, or go-mssqldb's Rows.Close stopped reading early)
// and when the connection closes (client gone, Server.Kill,
// Server.DropConnections, Server.Close). Handlers must return promptly then.
// After an attention, ResponseWriter methods return the context's error and
// write nothing; the server ends the response with DONE(ATTN), or, if the
// response had already been sent, answers with a separate DONE(ATTN), which
// is what the driver waits for to keep the pooled connection in sync.
//
// # Writing responses
//
// A SQL batch answer is a sequence of statements:
//
//	w.Columns(tds.Column{Name: "id", Type: tds.TypeInt()},
//		tds.Column{Name: "name", Type: tds.TypeNVarChar(50), Nullable: true})
//	w.Row(1, "a")
//	w.Row(2, nil)
//	w.EndResultSet()                              // DONE(COUNT, SELECT, 2)
//	w.Done(tds.DoneCount, tds.CmdUpdate, 3)        // an UPDATE of 3 rows
//	w.Info(&tds.Error{Number: 3211, Message: "10 percent processed."})
//	w.Flush()                                     // the INFO reaches the client now
//
// The writer enforces what the driver needs: values never exceed their
// declared length (an error is returned and nothing is written); the last
// DONE of a batch is the final token, without DONE_MORE, and a final DONE is
// added when the handler ends otherwise; DoneError is set after an ERROR.
// In an RPC, Done writes DONEINPROC and the server appends the final
// DONEPROC after the handler's RETURNSTATUS and RETURNVALUE tokens:
//
//	w.Columns(...); w.Row(...); w.EndResultSet()   // DONEINPROC
//	w.ReturnStatus(0)
//	w.ReturnValue(tds.ReturnValue{Ordinal: p.Ordinal, Name: p.Name, Type: tds.TypeBigInt(), Value: 42})
//	return nil                                     // DONEPROC
//
// Output goes out in packets of the size negotiated at login as it
// accumulates. Column types: INTN 1/2/4/8, BITN, FLTN 4/8, MONEYN,
// DECIMALN/NUMERICN, DATETIMN, DATEN, TIMEN, DATETIME2N, DATETIMEOFFSETN,
// UNIQUEIDENTIFIER, NVARCHAR(n|max), NCHAR(n), VARCHAR(n|max), CHAR(n),
// VARBINARY(n|max), BINARY(n); the Type* functions build them.
//
// # Requests
//
// Batch carries the SQL text; RPCCall the procedure (by id, with
// ProcName(10) == "sp_executesql", or by name), the option flags and the
// decoded parameters (Param: name, output flag, TypeInfo and a Go value:
// nil, int64, bool, float64, string, []byte, time.Time, GUID or Decimal).
// RPCCall.ExecuteSQL splits an sp_executesql call into statement,
// declarations and bound parameters. Both embed RequestHeader, whose
// ResetConnection reports the packet status flag 0x08 that go-mssqldb sets
// on the first request after taking a connection from its pool.
//
// # Sessions
//
// Every logged-in connection is a Session with an id of 51 or more, unique
// among live sessions, login name, host, app, login time, remote address and
// a current database that ResponseWriter.ChangeDatabase (USE) updates.
// Server.Sessions lists them (sys.dm_exec_sessions), Server.Kill closes one
// (KILL), Server.DropConnections closes all of them (fault injection).
// Handlers may keep per-session state with Session.SetValue and release it
// in SessionCloser.SessionClosed.
//
// Not implemented: TLS, MARS, SSPI/Kerberos and federated authentication,
// Always Encrypted, bulk load, transaction manager requests (answered with
// an error, so database/sql BeginTx fails instead of hanging), several RPC
// calls in one request, and the legacy TEXT/NTEXT/IMAGE, XML, UDT,
// SQL_VARIANT and TVP types.
package tds
