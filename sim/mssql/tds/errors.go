package tds

import (
	"errors"
	"fmt"
)

// Well-known SQL Server message numbers used by this package.
const (
	// NumberLoginFailed is "Login failed for user '%s'." (class 14).
	NumberLoginFailed int32 = 18456
	// NumberUntrustedDomain is sent when a client asks for integrated
	// (SSPI) authentication, which this server does not implement.
	NumberUntrustedDomain int32 = 18452
	// NumberCannotOpenDatabase is "Cannot open database "%s" requested by
	// the login. The login failed." (class 11).
	NumberCannotOpenDatabase int32 = 4060
	// NumberProtocolError reports a request whose TDS payload could not be
	// decoded (SQL Server uses 8009 for a malformed RPC stream).
	NumberProtocolError int32 = 8009
	// NumberNotSupported reports a TDS feature this server does not
	// implement, such as transaction manager requests or bulk load.
	NumberNotSupported int32 = 40517
	// NumberUserError is the number given to handler errors that are not
	// an *Error (the number RAISERROR uses for ad-hoc messages).
	NumberUserError int32 = 50000
)

// Sentinel errors. Errors returned by this package wrap one of these; test
// them with errors.Is.
var (
	// ErrServerClosed is returned by Serve after Close.
	ErrServerClosed = errors.New("tds: server closed")
	// ErrSessionNotFound is returned by Kill for an unknown session id.
	ErrSessionNotFound = errors.New("tds: session not found")
	// ErrProtocol wraps every malformed packet, message or request.
	ErrProtocol = errors.New("tds: protocol error")
	// ErrMessageTooLarge is returned when a client message exceeds
	// Config.MaxMessageSize.
	ErrMessageTooLarge = errors.New("tds: message too large")
	// ErrUnsupportedType is returned for a data type the package cannot
	// decode (parameters) or encode (columns, return values).
	ErrUnsupportedType = errors.New("tds: unsupported data type")
	// ErrInvalidValue is returned by ResponseWriter methods when a value
	// does not fit its column: wrong Go type, too long, out of range, or
	// NULL in a non-nullable column. Nothing is written in that case.
	ErrInvalidValue = errors.New("tds: invalid value")
	// ErrNoResultSet is returned by ResponseWriter.Row when no result set
	// is open (Columns was not called since the last Done).
	ErrNoResultSet = errors.New("tds: no open result set")
	// ErrResponseComplete is returned by ResponseWriter methods once the
	// response has ended: after the handler returned, or after a DONE
	// carrying DoneSrvError.
	ErrResponseComplete = errors.New("tds: response already complete")
	// ErrNotExecuteSQL is returned by RPCCall.ExecuteSQL when the call is
	// not sp_executesql.
	ErrNotExecuteSQL = errors.New("tds: RPC is not sp_executesql")
)

// Error is a SQL Server message: the content of an ERROR token (0xAA) when
// returned by a handler or passed to ResponseWriter.Error, or of an INFO
// token (0xAB) when passed to ResponseWriter.Info.
//
// The driver (go-mssqldb) turns the ERROR tokens of a response into one
// mssql.Error whose Number/Message are those of the LAST error and whose All
// field lists every one in order. To send several errors, return
// errors.Join(first, second) from the handler or call ResponseWriter.Error
// once per error.
type Error struct {
	Number  int32  // message number, e.g. 3013
	State   uint8  // state, usually 1
	Class   uint8  // severity: 0-10 informational, 11-16 user errors, 17+ server errors
	Message string // message text; truncated to fit a token (about 32,000 characters)
	Server  string // server name; empty means Config.ServerName
	Proc    string // procedure name, may be empty
	Line    int32  // line number in the batch or procedure, 1-based; 0 if unknown
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("mssql: msg %d, level %d, state %d: %s", e.Number, e.Class, e.State, e.Message)
}

// LoginFailed returns the error SQL Server sends when authentication fails:
// 18456, class 14, state 1, "Login failed for user '<user>'.".
func LoginFailed(user string) *Error {
	return &Error{Number: NumberLoginFailed, State: 1, Class: 14,
		Message: fmt.Sprintf("Login failed for user '%s'.", user)}
}

// CannotOpenDatabase returns error 4060 (class 11) for a login that asks for
// a database it cannot use. SQL Server follows it with LoginFailed; an
// Authenticate implementation mimics that with
// errors.Join(CannotOpenDatabase(db), LoginFailed(user)).
func CannotOpenDatabase(database string) *Error {
	return &Error{Number: NumberCannotOpenDatabase, State: 1, Class: 11,
		Message: fmt.Sprintf("Cannot open database \"%s\" requested by the login. The login failed.", database)}
}

// protocolError builds the client-facing error for a request that could not
// be decoded.
func protocolError(err error) *Error {
	return &Error{Number: NumberProtocolError, State: 1, Class: 16,
		Message: "The incoming tabular data stream (TDS) protocol stream is incorrect: " + err.Error()}
}

// notSupported builds the client-facing error for an unimplemented feature.
func notSupported(what string) *Error {
	return &Error{Number: NumberNotSupported, State: 1, Class: 16,
		Message: what + " is not supported by this server."}
}

// flattenErrors turns a handler error into the list of SQL Server errors to
// send, in order. *Error values are sent as they are; errors.Join trees are
// flattened depth-first; anything else becomes a NumberUserError message.
func flattenErrors(err error) []*Error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return []*Error{{Number: NumberUserError, State: 1, Class: 16, Message: err.Error()}}
}
