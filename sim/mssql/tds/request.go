package tds

import (
	"fmt"
	"strings"
)

// RequestHeader holds what every SQL batch and RPC request carries besides
// its payload.
type RequestHeader struct {
	// ResetConnection is set when the client asked for the session to be
	// reset before this request (packet status 0x08). go-mssqldb sets it on
	// the first request after a connection is taken from the pool
	// (including the first request of a new connection). The handler
	// decides what a reset means (SQL Server runs sp_reset_connection:
	// drops temp tables, resets SET options, rolls back open transactions).
	ResetConnection bool
	// ResetConnectionSkipTran is packet status 0x10: reset, but keep the
	// transaction.
	ResetConnectionSkipTran bool
	// TransactionDescriptor and OutstandingRequests come from the
	// ALL_HEADERS transaction descriptor header (0 outside transactions).
	TransactionDescriptor uint64
	OutstandingRequests   uint32
}

// Batch is a SQL batch request (packet type 1).
type Batch struct {
	RequestHeader
	SQL string // the batch text, decoded from UTF-16
}

// RPC option flags (MS-TDS 2.2.6.6).
const (
	RPCWithRecompile   = 0x01
	RPCNoMetadata      = 0x02
	RPCReuseMetadata   = 0x04
	procIDExecuteSQL   = 10
	rpcBatchSeparator  = 0xFF
	rpcNoExecSeparator = 0xFE
)

// wellKnownProcs names the procedures a client can call by id.
var wellKnownProcs = [...]string{
	1: "sp_cursor", 2: "sp_cursoropen", 3: "sp_cursorprepare", 4: "sp_cursorexecute",
	5: "sp_cursorprepexec", 6: "sp_cursorunprepare", 7: "sp_cursorfetch", 8: "sp_cursoroption",
	9: "sp_cursorclose", 10: "sp_executesql", 11: "sp_prepare", 12: "sp_execute",
	13: "sp_prepexec", 14: "sp_prepexecrpc", 15: "sp_unprepare",
}

// ProcName returns the name of a well-known procedure id (10 =
// "sp_executesql", 13 = "sp_prepexec", ...), or "" for an unknown id.
func ProcName(id uint16) string {
	if int(id) < len(wellKnownProcs) {
		return wellKnownProcs[id]
	}
	return ""
}

// RPCCall is a remote procedure call request (packet type 3).
type RPCCall struct {
	RequestHeader
	// ProcID is the procedure id when the client called a well-known
	// procedure by number (go-mssqldb calls sp_executesql as id 10), else 0.
	ProcID uint16
	// Name is the procedure name as sent by the client (for example
	// "sp_who2" or "msdb.dbo.sp_add_job"), or ProcName(ProcID) for calls
	// by id.
	Name string
	// Options holds the RPC option flags (RPCWithRecompile...).
	Options uint16
	// Params are the parameters in the order sent.
	Params []Param
}

// Param is one RPC parameter.
type Param struct {
	// Ordinal is the 0-based position in RPCCall.Params; use it in
	// ReturnValue.Ordinal when answering an output parameter.
	Ordinal int
	// Name includes the leading '@' (for example "@p1"), or is empty for
	// positional parameters.
	Name string
	// Output is set for OUTPUT parameters (status bit 0x01).
	Output bool
	// Default is set when the client asks for the parameter's default
	// value (status bit 0x02).
	Default bool
	// Type is the type the client sent. go-mssqldb sends Go strings as
	// nvarchar with Size = their byte length (or SizeMax for long, empty
	// and output strings), ints as INTN 8, time.Time as
	// datetimeoffset(7), nil as TypeIDNull.
	Type TypeInfo
	// Value is the Go value: nil (NULL); int64 for integer types; bool;
	// float64; Decimal for decimal, numeric and money; string for
	// character types; []byte for binary types; GUID; time.Time for date
	// and time types (UTC wall clock, time-of-day on 0001-01-01 for time,
	// a fixed zone with the sent offset for datetimeoffset).
	Value any
}

// Param returns the parameter named name (with or without '@',
// case-insensitive).
func (c *RPCCall) Param(name string) (Param, bool) {
	name = strings.TrimPrefix(name, "@")
	for _, p := range c.Params {
		if strings.EqualFold(strings.TrimPrefix(p.Name, "@"), name) {
			return p, true
		}
	}
	return Param{}, false
}

// ExecuteSQL is the decoded form of an sp_executesql call, which
// go-mssqldb uses for every query with arguments.
type ExecuteSQL struct {
	// Statement is the SQL text (the @stmt parameter).
	Statement string
	// Declarations is the parameter declaration list (the @params
	// parameter), e.g. "@p1 bigint,@p2 nvarchar(4000)"; "" if absent.
	Declarations string
	// Params are the bound parameters in order (@p1..@pN or the sql.Named
	// names), with Ordinal relative to RPCCall.Params.
	Params []Param
}

// IsExecuteSQL reports whether the call is sp_executesql, by id or name.
func (c *RPCCall) IsExecuteSQL() bool {
	if c.ProcID == procIDExecuteSQL {
		return true
	}
	n := strings.ToLower(c.Name)
	return n == "sp_executesql" || n == "sys.sp_executesql" || n == "master.sys.sp_executesql"
}

// ExecuteSQL decodes an sp_executesql call. It returns ErrNotExecuteSQL for
// other procedures and an ErrProtocol error when the statement or
// declaration parameter is not a string.
func (c *RPCCall) ExecuteSQL() (ExecuteSQL, error) {
	var e ExecuteSQL
	if !c.IsExecuteSQL() {
		return e, ErrNotExecuteSQL
	}
	if len(c.Params) == 0 {
		return e, fmt.Errorf("%w: sp_executesql without a statement", ErrProtocol)
	}
	stmt, ok := c.Params[0].Value.(string)
	if !ok {
		return e, fmt.Errorf("%w: sp_executesql statement is %T, not a string", ErrProtocol, c.Params[0].Value)
	}
	e.Statement = stmt
	rest := c.Params[1:]
	if len(rest) > 0 {
		switch d := rest[0].Value.(type) {
		case string:
			e.Declarations = d
		case nil:
		default:
			return e, fmt.Errorf("%w: sp_executesql declarations are %T, not a string", ErrProtocol, d)
		}
		rest = rest[1:]
	}
	e.Params = rest
	return e, nil
}

// parseAllHeaders skips ALL_HEADERS (MS-TDS 2.2.5.3) and returns what the
// server uses from it.
func parseAllHeaders(r *wireReader, h *RequestHeader) error {
	start := r.off
	total := int(r.u32())
	if r.err() != nil {
		return r.err()
	}
	if total < 4 || total-4 > r.remaining() {
		return fmt.Errorf("%w: ALL_HEADERS length %d out of bounds", ErrProtocol, total)
	}
	for r.off < start+total {
		hlen := int(r.u32())
		htype := r.u16()
		if r.err() != nil {
			return r.err()
		}
		if hlen < 6 || r.off-6+hlen > start+total {
			return fmt.Errorf("%w: ALL_HEADERS entry length %d out of bounds", ErrProtocol, hlen)
		}
		body := newWireReader(r.bytes(hlen - 6))
		if htype == 2 { // transaction descriptor
			h.TransactionDescriptor = body.u64()
			h.OutstandingRequests = body.u32()
			if body.err() != nil {
				return fmt.Errorf("%w: short transaction descriptor header", ErrProtocol)
			}
		}
	}
	return r.err()
}

// parseBatch decodes a SQL batch payload.
func parseBatch(msg message, allHeaders bool) (*Batch, error) {
	b := &Batch{RequestHeader: requestHeader(msg)}
	r := newWireReader(msg.data)
	if allHeaders {
		if err := parseAllHeaders(r, &b.RequestHeader); err != nil {
			return nil, err
		}
	}
	text := r.bytes(r.remaining())
	if len(text)%2 != 0 {
		return nil, fmt.Errorf("%w: SQL batch text has an odd byte length", ErrProtocol)
	}
	b.SQL = decodeUTF16(text)
	return b, nil
}

func requestHeader(msg message) RequestHeader {
	return RequestHeader{
		ResetConnection:         msg.status&statusResetConnection != 0,
		ResetConnectionSkipTran: msg.status&statusResetConnectionSkipTran != 0,
	}
}

// parseRPC decodes an RPC request payload: ALL_HEADERS, the procedure (by
// id or name), option flags and parameters. Only one call per request is
// supported; a batch separator is an error.
func parseRPC(msg message, allHeaders bool) (*RPCCall, error) {
	c := &RPCCall{RequestHeader: requestHeader(msg)}
	r := newWireReader(msg.data)
	if allHeaders {
		if err := parseAllHeaders(r, &c.RequestHeader); err != nil {
			return nil, err
		}
	}
	n := r.u16()
	if n == 0xFFFF {
		c.ProcID = r.u16()
		c.Name = ProcName(c.ProcID)
	} else {
		c.Name = decodeUTF16(r.bytes(2 * int(n)))
	}
	c.Options = r.u16()
	if r.err() != nil {
		return nil, r.err()
	}
	if n == 0xFFFF && c.Name == "" {
		return nil, fmt.Errorf("%w: unknown procedure id %d", ErrProtocol, c.ProcID)
	}
	for r.remaining() > 0 {
		if b := r.b[r.off]; b == rpcBatchSeparator || b == rpcNoExecSeparator {
			return nil, fmt.Errorf("%w: several RPC calls in one request are not supported", ErrProtocol)
		}
		p := Param{Ordinal: len(c.Params)}
		p.Name = r.bVarChar()
		status := r.u8()
		if r.err() != nil {
			return nil, r.err()
		}
		p.Output = status&0x01 != 0
		p.Default = status&0x02 != 0
		if status&0x08 != 0 {
			return nil, fmt.Errorf("%w: parameter %d (%q) is encrypted (Always Encrypted is not supported)", ErrProtocol, p.Ordinal+1, p.Name)
		}
		t, err := readTypeInfo(r)
		if err != nil {
			return nil, fmt.Errorf("parameter %d (%q): %w", p.Ordinal+1, p.Name, err)
		}
		p.Type = t
		if p.Value, err = readValue(r, t); err != nil {
			return nil, fmt.Errorf("parameter %d (%q): %w", p.Ordinal+1, p.Name, err)
		}
		c.Params = append(c.Params, p)
	}
	return c, nil
}
