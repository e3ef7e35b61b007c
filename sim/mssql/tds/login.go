package tds

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
)

// Version is a SQL Server product version, sent in the PRELOGIN reply and
// in LOGINACK.
type Version struct {
	Major uint8
	Minor uint8
	Build uint16
}

// String formats v as SQL Server does in @@VERSION, e.g. "16.0.4135".
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Build)
}

// PRELOGIN option tokens (MS-TDS 2.2.6.5).
const (
	preloginVersion    = 0x00
	preloginEncryption = 0x01
	preloginInstOpt    = 0x02
	preloginThreadID   = 0x03
	preloginMARS       = 0x04
	preloginTraceID    = 0x05
	preloginFedAuth    = 0x06
	preloginTerminator = 0xFF

	encryptNotSupported = 0x02
)

// prelogin is what the server needs from a client PRELOGIN.
type prelogin struct {
	options    map[byte][]byte
	encryption byte
	mars       bool
}

// parsePrelogin decodes a PRELOGIN payload: option headers (token, BE16
// offset, BE16 length) ended by 0xFF, then the option data. Offsets count
// from the start of the payload.
func parsePrelogin(data []byte) (prelogin, error) {
	p := prelogin{options: map[byte][]byte{}}
	for i := 0; ; i += 5 {
		if i >= len(data) {
			return p, fmt.Errorf("%w: PRELOGIN option list has no terminator", ErrProtocol)
		}
		tok := data[i]
		if tok == preloginTerminator {
			break
		}
		if i+5 > len(data) {
			return p, fmt.Errorf("%w: truncated PRELOGIN option header", ErrProtocol)
		}
		off := int(binary.BigEndian.Uint16(data[i+1:]))
		n := int(binary.BigEndian.Uint16(data[i+3:]))
		if off+n > len(data) {
			return p, fmt.Errorf("%w: PRELOGIN option 0x%02X data out of bounds", ErrProtocol, tok)
		}
		p.options[tok] = data[off : off+n]
	}
	if v := p.options[preloginEncryption]; len(v) > 0 {
		p.encryption = v[0]
	}
	if v := p.options[preloginMARS]; len(v) > 0 {
		p.mars = v[0] != 0
	}
	return p, nil
}

// preloginReply builds the server PRELOGIN answer: VERSION, ENCRYPTION
// (always NOT_SUP: this server has no TLS), INSTOPT and MARS (off).
func preloginReply(v Version) []byte {
	type opt struct {
		tok  byte
		data []byte
	}
	ver := []byte{v.Major, v.Minor, byte(v.Build >> 8), byte(v.Build), 0, 0}
	opts := []opt{
		{preloginVersion, ver},
		{preloginEncryption, []byte{encryptNotSupported}},
		{preloginInstOpt, []byte{0}},
		{preloginMARS, []byte{0}},
	}
	off := 5*len(opts) + 1
	var b []byte
	for _, o := range opts {
		b = append(b, o.tok)
		b = binary.BigEndian.AppendUint16(b, uint16(off))
		b = binary.BigEndian.AppendUint16(b, uint16(len(o.data)))
		off += len(o.data)
	}
	b = append(b, preloginTerminator)
	for _, o := range opts {
		b = append(b, o.data...)
	}
	return b
}

// Login is a decoded LOGIN7 message (MS-TDS 2.2.6.4), given to
// Handler.Authenticate. The Password is only present there: Session.Login
// returns a copy without it.
type Login struct {
	TDSVersion     uint32 // version the client asks for, e.g. 0x74000004
	PacketSize     uint32 // requested packet size; 0 = server default
	ClientProgVer  uint32
	ClientPID      uint32
	ConnectionID   uint32
	OptionFlags1   uint8
	OptionFlags2   uint8
	TypeFlags      uint8
	OptionFlags3   uint8
	ClientTimeZone int32
	ClientLCID     uint32
	HostName       string // client workstation
	UserName       string
	Password       string // clear text (decoded from the LOGIN7 XOR scheme)
	AppName        string
	ServerName     string // server name as the client knows it
	LibraryName    string // client library, "go-mssqldb" for the Go driver
	Language       string
	Database       string // requested initial database; "" = login default
	ClientID       [6]byte
	// NewPassword is set when the client asks to change its password.
	NewPassword string
	// IntegratedSecurity is set when the client asks for SSPI/Kerberos
	// authentication, which this server refuses (error 18452).
	IntegratedSecurity bool
	// ReadOnlyIntent is the ApplicationIntent=ReadOnly flag.
	ReadOnlyIntent bool
	// Features lists the FeatureExt ids the client sent (0x02 federated
	// authentication, 0x04 column encryption...). None is acknowledged.
	Features []byte
	// RemoteAddr is the client's network address.
	RemoteAddr net.Addr
}

// String describes the login without its password.
func (l Login) String() string {
	return fmt.Sprintf("login user=%q app=%q host=%q database=%q", l.UserName, l.AppName, l.HostName, l.Database)
}

const (
	login7FixedSize  = 94
	optionFlags2Int  = 0x80 // fIntSecurity
	optionFlags3Ext  = 0x10 // fExtension
	typeFlagReadOnly = 0x20
	featureExtEnd    = 0xFF
	featureFedAuth   = 0x02
	maxLoginMessage  = 1 << 20
)

// parseLogin7 decodes a LOGIN7 payload. Variable fields are located by
// (offset, length in characters) pairs counted from the start of LOGIN7.
func parseLogin7(data []byte) (Login, error) {
	var l Login
	if len(data) < login7FixedSize {
		return l, fmt.Errorf("%w: LOGIN7 is %d bytes, shorter than its %d-byte fixed part", ErrProtocol, len(data), login7FixedSize)
	}
	le := binary.LittleEndian
	l.TDSVersion = le.Uint32(data[4:])
	l.PacketSize = le.Uint32(data[8:])
	l.ClientProgVer = le.Uint32(data[12:])
	l.ClientPID = le.Uint32(data[16:])
	l.ConnectionID = le.Uint32(data[20:])
	l.OptionFlags1 = data[24]
	l.OptionFlags2 = data[25]
	l.TypeFlags = data[26]
	l.OptionFlags3 = data[27]
	l.ClientTimeZone = int32(le.Uint32(data[28:]))
	l.ClientLCID = le.Uint32(data[32:])
	copy(l.ClientID[:], data[72:78])

	var err error
	field := func(pos int, name string, mangled bool) string {
		if err != nil {
			return ""
		}
		off := int(le.Uint16(data[pos:]))
		n := 2 * int(le.Uint16(data[pos+2:]))
		if n == 0 {
			return ""
		}
		if off+n > len(data) {
			err = fmt.Errorf("%w: LOGIN7 %s (offset %d, %d bytes) out of bounds", ErrProtocol, name, off, n)
			return ""
		}
		b := data[off : off+n]
		if mangled {
			b = unmanglePassword(b)
		}
		return decodeUTF16(b)
	}
	l.HostName = field(36, "HostName", false)
	l.UserName = field(40, "UserName", false)
	l.Password = field(44, "Password", true)
	l.AppName = field(48, "AppName", false)
	l.ServerName = field(52, "ServerName", false)
	l.LibraryName = field(60, "CltIntName", false)
	l.Language = field(64, "Language", false)
	l.Database = field(68, "Database", false)
	l.NewPassword = field(86, "ChangePassword", true)
	if err != nil {
		return l, err
	}
	sspiOff := int(le.Uint16(data[78:]))
	sspiLen := int(le.Uint16(data[80:]))
	if sspiLen == 0xFFFF {
		sspiLen = int(le.Uint32(data[90:]))
	}
	if sspiLen > 0 && (sspiOff+sspiLen > len(data) || sspiOff+sspiLen < sspiOff) {
		return l, fmt.Errorf("%w: LOGIN7 SSPI data out of bounds", ErrProtocol)
	}
	l.IntegratedSecurity = l.OptionFlags2&optionFlags2Int != 0 || sspiLen > 0
	l.ReadOnlyIntent = l.TypeFlags&typeFlagReadOnly != 0

	if l.OptionFlags3&optionFlags3Ext != 0 {
		extOff := int(le.Uint16(data[56:]))
		extLen := int(le.Uint16(data[58:]))
		if extLen < 4 || extOff+4 > len(data) {
			return l, fmt.Errorf("%w: LOGIN7 extension pointer out of bounds", ErrProtocol)
		}
		feats, ferr := parseFeatureExt(data, int(le.Uint32(data[extOff:])))
		if ferr != nil {
			return l, ferr
		}
		l.Features = feats
	}
	return l, nil
}

// parseFeatureExt lists the feature ids of a FeatureExt block.
func parseFeatureExt(data []byte, off int) ([]byte, error) {
	if off < 0 || off > len(data) {
		return nil, fmt.Errorf("%w: LOGIN7 FeatureExt offset %d out of bounds", ErrProtocol, off)
	}
	r := newWireReader(data[off:])
	var ids []byte
	for {
		id := r.u8()
		if r.err() != nil {
			return nil, fmt.Errorf("%w: LOGIN7 FeatureExt has no terminator", ErrProtocol)
		}
		if id == featureExtEnd {
			return ids, nil
		}
		n := r.u32()
		if n > uint32(r.remaining()) {
			return nil, fmt.Errorf("%w: LOGIN7 feature 0x%02X length %d out of bounds", ErrProtocol, id, n)
		}
		r.bytes(int(n))
		ids = append(ids, id)
	}
}

// unmanglePassword reverses the LOGIN7 password scheme: every byte was
// nibble-swapped then XORed with 0xA5.
func unmanglePassword(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		c ^= 0xA5
		out[i] = c<<4 | c>>4
	}
	return out
}

// manglePassword applies the LOGIN7 password scheme to UTF-16LE bytes (used
// by tests to build messages).
func manglePassword(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = (c<<4 | c>>4) ^ 0xA5
	}
	return out
}

// negotiatePacketSize returns the packet size the server uses for a login
// that asked for requested bytes.
func negotiatePacketSize(requested uint32) int {
	switch {
	case requested == 0:
		return DefaultPacketSize
	case requested < minPacketSize:
		return minPacketSize
	case requested > maxPacketSize:
		return maxPacketSize
	}
	return int(requested)
}

// TDS versions the server can acknowledge.
const (
	tdsVersion72  = 0x72090002
	tdsVersion73A = 0x730A0003
	tdsVersion73B = 0x730B0003
	tdsVersion74  = 0x74000004
)

// negotiateTDSVersion picks the version sent in LOGINACK.
func negotiateTDSVersion(client uint32) uint32 {
	switch client {
	case tdsVersion72, tdsVersion73A, tdsVersion73B:
		return client
	}
	return tdsVersion74
}

// Token types (MS-TDS 2.2.7).
const (
	tokenReturnStatus = 0x79
	tokenColMetadata  = 0x81
	tokenError        = 0xAA
	tokenInfo         = 0xAB
	tokenReturnValue  = 0xAC
	tokenLoginAck     = 0xAD
	tokenRow          = 0xD1
	tokenEnvChange    = 0xE3
	tokenDone         = 0xFD
	tokenDoneProc     = 0xFE
	tokenDoneInProc   = 0xFF
)

// ENVCHANGE types used by the server.
const (
	envDatabase   = 1
	envPacketSize = 4
	envCollation  = 7
)

// appendEnvChange appends an ENVCHANGE with B_VARCHAR new and old values.
func appendEnvChange(b []byte, typ byte, newValue, oldValue string) []byte {
	var body []byte
	body = append(body, typ)
	body = appendBVarChar(body, newValue)
	body = appendBVarChar(body, oldValue)
	b = append(b, tokenEnvChange)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// appendCollationChange appends ENVCHANGE type 7: a 5-byte new collation
// and an empty old value. The driver rejects any other length.
func appendCollationChange(b []byte, c Collation) []byte {
	b = append(b, tokenEnvChange)
	b = binary.LittleEndian.AppendUint16(b, 1+1+5+1)
	b = append(b, envCollation, 5)
	b = append(b, c[:]...)
	return append(b, 0)
}

// appendLoginAck appends LOGINACK: interface 1 (T-SQL), the TDS version
// (big-endian), the program name and the product version.
func appendLoginAck(b []byte, tdsVersion uint32, prog string, v Version) []byte {
	prog = truncateUTF16(prog, 255)
	var body []byte
	body = append(body, 1)
	body = binary.BigEndian.AppendUint32(body, tdsVersion)
	body = appendBVarChar(body, prog)
	body = append(body, v.Major, v.Minor, byte(v.Build>>8), byte(v.Build))
	b = append(b, tokenLoginAck)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// loginReply builds the tokens of a successful login: ENVCHANGE database
// and INFO 5701 (when a database is set), ENVCHANGE collation, LOGINACK,
// ENVCHANGE packet size, DONE.
func loginReply(cfg *Config, database string, tdsVersion uint32, packetSize int, requested uint32) []byte {
	var b []byte
	if database != "" {
		b = appendEnvChange(b, envDatabase, database, "master")
		b = appendMessage(b, tokenInfo, &Error{Number: 5701, State: 2, Class: 0,
			Message: fmt.Sprintf("Changed database context to '%s'.", database)}, cfg.ServerName)
	}
	b = appendCollationChange(b, cfg.Collation)
	b = appendLoginAck(b, tdsVersion, cfg.ProgramName, cfg.Version)
	b = appendEnvChange(b, envPacketSize, strconv.Itoa(packetSize), strconv.Itoa(int(requested)))
	return appendDone(b, tokenDone, 0, 0, 0)
}

// loginFailureReply builds the tokens of a refused login: the errors, then
// DONE with the error bit.
func loginFailureReply(cfg *Config, errs []*Error) []byte {
	var b []byte
	for _, e := range errs {
		b = appendMessage(b, tokenError, e, cfg.ServerName)
	}
	return appendDone(b, tokenDone, uint16(DoneError), 0, 0)
}
