package tds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMessageReader_read(t *testing.T) {
	pkt := func(typ packetType, status byte, payload string) []byte {
		h := []byte{byte(typ), status, 0, 0, 0, 0, 1, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(headerSize+len(payload)))
		return append(h, payload...)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name    string
		in      []byte
		want    *message
		wantErr error
	}{
		{"single packet", pkt(packetSQLBatch, statusEOM, "abc"), &message{typ: packetSQLBatch, status: statusEOM, data: []byte("abc")}, nil},
		{"joined until EOM", cat(pkt(packetRPC, 0, "ab"), pkt(packetRPC, 0, ""), pkt(packetRPC, statusEOM, "cd")),
			&message{typ: packetRPC, status: statusEOM, data: []byte("abcd")}, nil},
		{"reset flag with EOM is status 0x09", pkt(packetSQLBatch, statusEOM|statusResetConnection, "x"),
			&message{typ: packetSQLBatch, status: 0x09, data: []byte("x")}, nil},
		{"attention without payload", pkt(packetAttention, statusEOM, ""), &message{typ: packetAttention, status: statusEOM}, nil},
		{"length below header", []byte{1, 1, 0, 7, 0, 0, 0, 0}, nil, ErrProtocol},
		{"unknown type", pkt(0x05, statusEOM, ""), nil, ErrProtocol},
		{"server reply type", pkt(packetReply, statusEOM, ""), nil, ErrProtocol},
		{"type change mid-message", cat(pkt(packetSQLBatch, 0, "a"), pkt(packetAttention, statusEOM, "")), nil, ErrProtocol},
		{"too large", cat(pkt(packetSQLBatch, 0, strings.Repeat("a", 40)), pkt(packetSQLBatch, statusEOM, strings.Repeat("b", 30))), nil, ErrMessageTooLarge},
		{"empty stream", nil, nil, io.EOF},
		{"EOF inside header", []byte{1, 1, 0}, nil, io.ErrUnexpectedEOF},
		{"EOF inside payload", pkt(packetSQLBatch, statusEOM, "abc")[:9], nil, io.ErrUnexpectedEOF},
		{"EOF before EOM", pkt(packetSQLBatch, 0, "abc"), nil, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := 0
			mr := &messageReader{r: bytes.NewReader(tc.in), max: 64, started: func() { started++ }}
			got, err := mr.read()
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, *tc.want, got)
			require.Equal(t, 1, started, "started runs once per message")
		})
	}
}

func TestPacketWriter_write_splitsAtPacketSize(t *testing.T) {
	var out bytes.Buffer
	pw := newPacketWriter(&out, 77, 512)
	data := bytes.Repeat([]byte{0xAB}, 1300)
	require.NoError(t, pw.write(data[:100], false))
	require.NoError(t, pw.write(data[100:], true))
	require.NoError(t, pw.write([]byte{1}, true))

	r := bytes.NewReader(out.Bytes())
	var payload []byte
	var seqs []byte
	var statuses []byte
	for r.Len() > 0 {
		var h [headerSize]byte
		_, err := io.ReadFull(r, h[:])
		require.NoError(t, err)
		n := int(binary.BigEndian.Uint16(h[2:]))
		require.LessOrEqual(t, n, 512)
		require.Equal(t, byte(packetReply), h[0])
		require.EqualValues(t, 77, binary.BigEndian.Uint16(h[4:]), "SPID in every header")
		body := make([]byte, n-headerSize)
		_, err = io.ReadFull(r, body)
		require.NoError(t, err)
		payload = append(payload, body...)
		seqs = append(seqs, h[6])
		statuses = append(statuses, h[1])
	}
	require.Equal(t, append(data, 1), payload)
	require.Equal(t, []byte{1, 2, 3, 4, 1}, seqs, "packet numbers restart after EOM")
	require.Equal(t, []byte{0, 0, 0, statusEOM, statusEOM}, statuses)
}

func TestParseLogin7_roundTrip(t *testing.T) {
	in := Login{TDSVersion: tdsVersion74, PacketSize: 8000, UserName: "sä", Password: "Pä$$wörd😀", AppName: "app",
		HostName: "host", ServerName: "srv", LibraryName: "lib", Language: "us_english", Database: "db1",
		NewPassword: "new", TypeFlags: typeFlagReadOnly}
	got, err := parseLogin7(buildLogin7(in))
	require.NoError(t, err)
	in.ReadOnlyIntent = true
	require.Equal(t, in, got)
	require.NotContains(t, got.String(), in.Password)
}

func TestParseLogin7_rejectsOutOfBounds(t *testing.T) {
	b := buildLogin7(Login{UserName: "user"})
	binary.LittleEndian.PutUint16(b[42:], 500) // user name length beyond the message
	_, err := parseLogin7(b)
	require.ErrorIs(t, err, ErrProtocol)

	b = buildLogin7(Login{OptionFlags3: optionFlags3Ext})
	_, err = parseLogin7(b) // extension flag without an extension block
	require.ErrorIs(t, err, ErrProtocol)

	b = buildLogin7(Login{})
	b[27] |= optionFlags3Ext
	binary.LittleEndian.PutUint16(b[56:], uint16(len(b)))
	binary.LittleEndian.PutUint16(b[58:], 4)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(b)+4))
	b = append(b, featureFedAuth, 2, 0, 0, 0, 0xAA, 0xBB, featureExtEnd)
	got, err := parseLogin7(b)
	require.NoError(t, err)
	require.Equal(t, []byte{featureFedAuth}, got.Features)
}

func TestNegotiatePacketSize(t *testing.T) {
	for in, want := range map[uint32]int{0: 4096, 100: 512, 512: 512, 4096: 4096, 32767: 32767, 65536: 32767} {
		require.Equal(t, want, negotiatePacketSize(in), "requested %d", in)
	}
}

func TestParsePrelogin(t *testing.T) {
	p, err := parsePrelogin(testPrelogin())
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3, 4, 0, 0}, p.options[preloginVersion])
	require.EqualValues(t, 0, p.encryption)
	require.False(t, p.mars)

	reply, err := parsePrelogin(preloginReply(Version{16, 0, 4135}))
	require.NoError(t, err)
	require.Equal(t, []byte{16, 0, 0x10, 0x27, 0, 0}, reply.options[preloginVersion])
	require.EqualValues(t, encryptNotSupported, reply.encryption)

	for _, bad := range [][]byte{nil, {0}, {0, 0, 6, 0, 1}, {0, 0, 9, 0, 5, 0xFF}} {
		_, err := parsePrelogin(bad)
		require.ErrorIs(t, err, ErrProtocol, "%x", bad)
	}
}

// roundTrip encodes v as type t the way the writer does and decodes it the
// way RPC parameters are decoded.
func roundTrip(t *testing.T, typ TypeInfo, v any) any {
	t.Helper()
	wt, err := writeType(typ)
	require.NoError(t, err)
	b := appendTypeInfo(nil, wt, DefaultCollation())
	b, err = appendValue(b, wt, v)
	require.NoError(t, err)
	r := newWireReader(b)
	ti, err := readTypeInfo(r)
	require.NoError(t, err)
	got, err := readValue(r, ti)
	require.NoError(t, err)
	require.Zero(t, r.remaining(), "every byte consumed")
	return got
}

func TestValues_roundTrip(t *testing.T) {
	ist := time.FixedZone("", 5*3600+1800)
	for _, tc := range []struct {
		typ  TypeInfo
		in   any
		want any
	}{
		{TypeTinyInt(), uint8(255), int64(255)},
		{TypeSmallInt(), int16(-2), int64(-2)},
		{TypeInt(), math.MinInt32, int64(math.MinInt32)},
		{TypeBigInt(), int64(math.MaxInt64), int64(math.MaxInt64)},
		{TypeInfo{ID: TypeIDInt4}, 7, int64(7)},
		{TypeBit(), false, false},
		{TypeFloat(), math.Pi, math.Pi},
		{TypeReal(), 0.5, 0.5},
		{TypeMoney(), "922337203685477.5807", NewDecimal(math.MaxInt64, 4)},
		{TypeInfo{ID: TypeIDMoney4}, -3, NewDecimal(-30000, 4)},
		{TypeDecimal(38, 0), "99999999999999999999999999999999999999", Decimal{}},
		{TypeDecimal(5, 2), 12.345, NewDecimal(1235, 2)},
		{TypeNVarChar(3), "日本語", "日本語"},
		{TypeNVarChar(2), "😀", "😀"},
		{TypeNVarCharMax(), "", ""},
		{TypeNChar(3), "a", "a  "},
		{TypeVarChar(5), "€uro", "€uro"},
		{TypeInfo{ID: TypeIDBigChar, Size: 3}, "x", "x  "},
		{TypeVarBinaryMax(), []byte{}, []byte{}},
		{TypeBinary(2), []byte{1}, []byte{1, 0}},
		{TypeUniqueIdentifier(), "6f9619ff-8b86-d011-b42d-00c04fc964ff", GUID{0x6F, 0x96, 0x19, 0xFF, 0x8B, 0x86, 0xD0, 0x11, 0xB4, 0x2D, 0, 0xC0, 0x4F, 0xC9, 0x64, 0xFF}},
		{TypeDate(), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{TypeDate(), time.Date(9999, 12, 31, 23, 0, 0, 0, ist), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)},
		{TypeDateTime2(3), time.Date(2020, 1, 1, 1, 2, 3, 456789000, ist), time.Date(2020, 1, 1, 1, 2, 3, 456000000, time.UTC)},
		{TypeDateTime2(0), time.Date(1752, 9, 2, 23, 59, 59, 999999999, time.UTC), time.Date(1752, 9, 2, 23, 59, 59, 0, time.UTC)},
		{TypeTime(7), time.Date(2000, 1, 1, 23, 59, 59, 999999900, time.UTC), time.Date(1, 1, 1, 23, 59, 59, 999999900, time.UTC)},
		{TypeDateTime(), time.Date(1999, 12, 31, 23, 59, 59, 999_000_000, time.UTC), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{TypeDateTime(), time.Date(1753, 1, 1, 0, 0, 0, 3_000_000, time.UTC), time.Date(1753, 1, 1, 0, 0, 0, 3_000_000, time.UTC)},
		{TypeSmallDateTime(), time.Date(2079, 6, 6, 23, 58, 31, 0, time.UTC), time.Date(2079, 6, 6, 23, 59, 0, 0, time.UTC)},
		{TypeBigInt(), nil, nil},
		{TypeNVarChar(5), nil, nil},
		{TypeNVarCharMax(), nil, nil},
		{TypeDateTimeOffset(7), nil, nil},
		{TypeUniqueIdentifier(), nil, nil},
	} {
		t.Run(tc.typ.SQLType(), func(t *testing.T) {
			got := roundTrip(t, tc.typ, tc.in)
			if d, ok := tc.want.(Decimal); ok && d.Unscaled == nil {
				require.Equal(t, tc.in, got.(Decimal).String())
				return
			}
			if d, ok := tc.want.(Decimal); ok {
				require.Equal(t, d.String(), got.(Decimal).String())
				return
			}
			require.Equal(t, tc.want, got)
		})
	}
	got := roundTrip(t, TypeDateTimeOffset(7), time.Date(2024, 1, 2, 3, 4, 5, 600, ist)).(time.Time)
	require.True(t, got.Equal(time.Date(2024, 1, 2, 3, 4, 5, 600, ist)))
	_, off := got.Zone()
	require.Equal(t, 5*3600+1800, off)
}

func TestAppendValue_rejectsWhatDoesNotFit(t *testing.T) {
	for _, tc := range []struct {
		typ TypeInfo
		v   any
	}{
		{TypeTinyInt(), -1}, {TypeSmallInt(), 40000}, {TypeInt(), int64(math.MaxInt32) + 1}, {TypeBigInt(), uint64(math.MaxUint64)},
		{TypeBigInt(), "1"}, {TypeBit(), 1}, {TypeFloat(), "x"}, {TypeNVarChar(2), "abc"}, {TypeNVarChar(1), "😀"},
		{TypeVarBinary(1), []byte{1, 2}}, {TypeVarChar(1), "ab"}, {TypeDecimal(3, 1), "100"}, {TypeDecimal(3, 1), "x"},
		{TypeMoney(), "1e30"}, {TypeUniqueIdentifier(), "not-a-guid"}, {TypeUniqueIdentifier(), 5},
		{TypeDateTime(), time.Date(1752, 12, 31, 0, 0, 0, 0, time.UTC)}, {TypeSmallDateTime(), time.Date(1899, 1, 1, 0, 0, 0, 0, time.UTC)},
		{TypeDateTime2(7), "2020-01-01"}, {TypeDateTimeOffset(0), time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("", 15*3600))},
		{TypeDateTime2(7), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		wt, err := writeType(tc.typ)
		require.NoError(t, err)
		b, err := appendValue([]byte{9}, wt, tc.v)
		require.ErrorIs(t, err, ErrInvalidValue, "%s %#v", tc.typ.SQLType(), tc.v)
		require.Equal(t, []byte{9}, b, "nothing written on error")
	}
	for _, bad := range []TypeInfo{
		{ID: TypeIDIntN, Size: 3}, {ID: TypeIDNVarChar, Size: 8002}, {ID: TypeIDNVarChar, Size: 3}, {ID: TypeIDNChar, Size: SizeMax},
		{ID: TypeIDDecimalN, Precision: 39}, {ID: TypeIDDecimalN, Precision: 5, Scale: 6}, {ID: TypeIDTimeN, Scale: 8},
		{ID: TypeIDNull}, {ID: 0xF1},
	} {
		_, err := writeType(bad)
		require.ErrorIs(t, err, ErrUnsupportedType, "%+v", bad)
	}
}

func TestReadValue_fixedLegacyAndPLPForms(t *testing.T) {
	le := binary.LittleEndian
	plp := func(chunks ...string) []byte {
		b := le.AppendUint64(nil, math.MaxUint64-1)
		for _, c := range chunks {
			b = le.AppendUint32(b, uint32(len(c)))
			b = append(b, c...)
		}
		return le.AppendUint32(b, 0)
	}
	coll := DefaultCollation()
	for _, tc := range []struct {
		name string
		in   []byte
		want any
		err  error
	}{
		{"INT1", []byte{0x30, 200}, int64(200), nil},
		{"INT2", []byte{0x34, 0xFE, 0xFF}, int64(-2), nil},
		{"INT4", le.AppendUint32([]byte{0x38}, 0xFFFFFFFF), int64(-1), nil},
		{"INT8", le.AppendUint64([]byte{0x7F}, 5), int64(5), nil},
		{"BIT", []byte{0x32, 1}, true, nil},
		{"FLT8", le.AppendUint64([]byte{0x3E}, math.Float64bits(2.5)), 2.5, nil},
		{"FLT4", le.AppendUint32([]byte{0x3B}, math.Float32bits(0.25)), 0.25, nil},
		{"MONEY", []byte{0x3C, 0, 0, 0, 0, 0x10, 0x27, 0, 0}, NewDecimal(10000, 4), nil},
		{"DATETIME", []byte{0x3D, 1, 0, 0, 0, 0x2C, 0x01, 0, 0}, time.Date(1900, 1, 2, 0, 0, 1, 0, time.UTC), nil},
		{"SMALLDATETIME", []byte{0x3A, 1, 0, 61, 0}, time.Date(1900, 1, 2, 1, 1, 0, 0, time.UTC), nil},
		{"NULL", []byte{0x1F}, nil, nil},
		{"INTN NULL", []byte{0x26, 4, 0}, nil, nil},
		{"DECIMALN", []byte{0x6A, 5, 5, 2, 5, 0, 0x39, 0x30, 0, 0}, NewDecimal(-12345, 2), nil},
		{"legacy VARCHAR", []byte{0x27, 10, 3, 'a', 'b', 'c'}, "abc", nil},
		{"legacy VARBINARY", []byte{0x25, 10, 2, 7, 8}, []byte{7, 8}, nil},
		{"BIGCHAR cp1252", append(append([]byte{0xAF, 4, 0}, coll[:]...), 2, 0, 0x80, 0xE9), "€é", nil},
		{"NVARCHAR NULL", append(append([]byte{0xE7, 8, 0}, coll[:]...), 0xFF, 0xFF), nil, nil},
		{"NVARCHAR PLP chunks", append(append([]byte{0xE7, 0xFF, 0xFF}, coll[:]...), plp("a\x00", "b\x00c\x00")...), "abc", nil},
		{"NVARCHAR PLP known length", append(append(append([]byte{0xE7, 0xFF, 0xFF}, coll[:]...), le.AppendUint64(nil, 2)...), 2, 0, 0, 0, 'x', 0, 0, 0, 0, 0), "x", nil},
		{"VARBINARY PLP NULL", le.AppendUint64([]byte{0xA5, 0xFF, 0xFF}, math.MaxUint64), nil, nil},
		{"PLP length mismatch", append(le.AppendUint64([]byte{0xA5, 0xFF, 0xFF}, 3), 1, 0, 0, 0, 9, 0, 0, 0, 0), nil, ErrProtocol},
		{"PLP chunk beyond message", append(le.AppendUint64([]byte{0xA5, 0xFF, 0xFF}, math.MaxUint64-1), 0xFF, 0xFF, 0, 0, 1), nil, ErrProtocol},
		{"value longer than declared", append(append([]byte{0xE7, 2, 0}, coll[:]...), 4, 0, 'a', 0, 'b', 0), nil, ErrProtocol},
		{"odd NVARCHAR length", append(append([]byte{0xE7, 4, 0}, coll[:]...), 3, 0, 'a', 0, 'b'), nil, ErrProtocol},
		{"INTN size 3", []byte{0x26, 3, 3, 1, 2, 3}, nil, ErrProtocol},
		{"DATETIME2 scale 8", []byte{0x2A, 8}, nil, ErrProtocol},
		{"DATEN wrong length", []byte{0x28, 2, 1, 2}, nil, ErrProtocol},
		{"truncated", []byte{0x7F, 1, 2}, nil, ErrProtocol},
		{"XML", []byte{0xF1, 0}, nil, ErrUnsupportedType},
		{"TVP", []byte{0xF3}, nil, ErrUnsupportedType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newWireReader(tc.in)
			ti, err := readTypeInfo(r)
			var got any
			if err == nil {
				got, err = readValue(r, ti)
			}
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if d, ok := tc.want.(Decimal); ok {
				require.Equal(t, d.String(), got.(Decimal).String())
				return
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// rpcPayload builds an RPC request body after ALL_HEADERS.
func rpcPayload(proc any, params ...[]byte) []byte {
	b := allHeadersForTest()
	switch p := proc.(type) {
	case uint16:
		b = binary.LittleEndian.AppendUint16(b, 0xFFFF)
		b = binary.LittleEndian.AppendUint16(b, p)
	case string:
		b = binary.LittleEndian.AppendUint16(b, uint16(utf16Len(p)))
		b = appendUTF16(b, p)
	}
	b = binary.LittleEndian.AppendUint16(b, RPCNoMetadata)
	for _, p := range params {
		b = append(b, p...)
	}
	return b
}

// rpcParam encodes a parameter as go-mssqldb does for short types.
func rpcParam(name string, status byte, typ TypeInfo, v any) []byte {
	b := appendBVarChar(nil, name)
	b = append(b, status)
	wt, _ := writeType(typ)
	b = appendTypeInfo(b, wt, Collation{})
	b, _ = appendValue(b, wt, v)
	return b
}

func TestParseRPC(t *testing.T) {
	msg := func(data []byte) message {
		return message{typ: packetRPC, status: statusEOM | statusResetConnection, data: data}
	}
	c, err := parseRPC(msg(rpcPayload(uint16(10),
		rpcParam("", 0, TypeNVarChar(20), "select @a"),
		rpcParam("", 0, TypeNVarChar(20), "@a int"),
		rpcParam("@a", 0, TypeInt(), 5),
		rpcParam("@o", 1, TypeBigInt(), nil),
	)), true)
	require.NoError(t, err)
	require.True(t, c.ResetConnection)
	require.EqualValues(t, 1, c.OutstandingRequests)
	require.Equal(t, "sp_executesql", c.Name)
	require.EqualValues(t, RPCNoMetadata, c.Options)
	e, err := c.ExecuteSQL()
	require.NoError(t, err)
	require.Equal(t, ExecuteSQL{Statement: "select @a", Declarations: "@a int", Params: c.Params[2:]}, e)
	require.True(t, e.Params[1].Output)
	require.Equal(t, 3, e.Params[1].Ordinal)
	p, ok := c.Param("A")
	require.True(t, ok)
	require.Equal(t, int64(5), p.Value)

	c, err = parseRPC(msg(rpcPayload("dbo.proc", rpcParam("@x", 2, TypeBit(), true))), true)
	require.NoError(t, err)
	require.Equal(t, "dbo.proc", c.Name)
	require.Zero(t, c.ProcID)
	require.True(t, c.Params[0].Default)
	_, err = c.ExecuteSQL()
	require.ErrorIs(t, err, ErrNotExecuteSQL)

	c, err = parseRPC(msg(rpcPayload("sp_executesql", rpcParam("@stmt", 0, TypeInt(), 1))), true)
	require.NoError(t, err)
	_, err = c.ExecuteSQL()
	require.ErrorIs(t, err, ErrProtocol, "statement must be a string")

	require.Equal(t, "sp_prepexec", ProcName(13))
	require.Equal(t, "", ProcName(99))
	for name, data := range map[string][]byte{
		"unknown proc id":    rpcPayload(uint16(99)),
		"second call":        append(rpcPayload("a"), 0xFF),
		"encrypted param":    rpcPayload("a", rpcParam("@x", 0x08, TypeInt(), 1)),
		"truncated param":    rpcPayload("a", rpcParam("@x", 0, TypeBigInt(), 1)[:6]),
		"bad ALL_HEADERS":    append([]byte{3, 0, 0, 0}, rpcPayload("a")[22:]...),
		"ALL_HEADERS beyond": append([]byte{0xFF, 0, 0, 0}, rpcPayload("a")[4:]...),
	} {
		_, err := parseRPC(msg(data), true)
		require.ErrorIs(t, err, ErrProtocol, name)
	}
}

func TestParseBatch(t *testing.T) {
	b, err := parseBatch(message{typ: packetSQLBatch, status: statusEOM, data: append(allHeadersForTest(), appendUTF16(nil, "select N'é😀'")...)}, true)
	require.NoError(t, err)
	require.Equal(t, "select N'é😀'", b.SQL)
	require.False(t, b.ResetConnection)
	b, err = parseBatch(message{typ: packetSQLBatch, data: appendUTF16(nil, "go")}, false)
	require.NoError(t, err)
	require.Equal(t, "go", b.SQL)
	_, err = parseBatch(message{typ: packetSQLBatch, data: append(allHeadersForTest(), 'x')}, true)
	require.ErrorIs(t, err, ErrProtocol)
}

func TestDecimal(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "-0.50": "-0.50", "+12.3": "12.3", ".5": "0.5", "007": "7"} {
		d, err := ParseDecimal(in)
		require.NoError(t, err)
		require.Equal(t, want, d.String())
	}
	for _, bad := range []string{"", "-", "1.2.3", "1e5", "abc", "1." + strings.Repeat("0", 39)} {
		_, err := ParseDecimal(bad)
		require.ErrorIs(t, err, ErrInvalidValue, bad)
	}
	require.Equal(t, "1.23", NewDecimal(12345, 4).Rescale(2).String())
	require.Equal(t, "1.24", NewDecimal(12350, 4).Rescale(2).String())
	require.Equal(t, "-1.24", NewDecimal(-12350, 4).Rescale(2).String(), "half away from zero")
	require.Equal(t, "-1.23", NewDecimal(-12349, 4).Rescale(2).String())
	require.Equal(t, "5.000", NewDecimal(5, 0).Rescale(3).String())
	require.Equal(t, "0.00", Decimal{Scale: 2}.String())
}

func TestGUID(t *testing.T) {
	g, err := ParseGUID("{6f9619ff-8b86-d011-b42d-00c04fc964ff}")
	require.NoError(t, err)
	require.Equal(t, "6F9619FF-8B86-D011-B42D-00C04FC964FF", g.String())
	w := g.wire()
	require.Equal(t, []byte{0xFF, 0x19, 0x96, 0x6F, 0x86, 0x8B, 0x11, 0xD0}, w[:8], "first three groups little-endian")
	require.Equal(t, g, guidFromWire(w[:]))
	_, err = ParseGUID("6F9619FF")
	require.ErrorIs(t, err, ErrInvalidValue)
}

func TestTypeInfo_SQLType(t *testing.T) {
	for want, typ := range map[string]TypeInfo{
		"tinyint": TypeTinyInt(), "smallint": TypeSmallInt(), "int": TypeInt(), "bigint": TypeBigInt(), "bit": TypeBit(),
		"float": TypeFloat(), "real": TypeReal(), "money": TypeMoney(), "nvarchar(50)": TypeNVarChar(50),
		"nvarchar(max)": TypeNVarCharMax(), "nchar(3)": TypeNChar(3), "varchar(7)": TypeVarChar(7), "varchar(max)": TypeVarCharMax(),
		"varbinary(16)": TypeVarBinary(16), "varbinary(max)": TypeVarBinaryMax(), "binary(4)": TypeBinary(4),
		"datetime": TypeDateTime(), "smalldatetime": TypeSmallDateTime(), "datetime2(7)": TypeDateTime2(7),
		"datetimeoffset(3)": TypeDateTimeOffset(3), "date": TypeDate(), "time(0)": TypeTime(0),
		"uniqueidentifier": TypeUniqueIdentifier(), "decimal(18,2)": TypeDecimal(18, 2), "null": {ID: TypeIDNull},
		"smallmoney": {ID: TypeIDMoney4}, "type0xF1": {ID: 0xF1},
	} {
		require.Equal(t, want, typ.SQLType())
	}
	require.True(t, TypeNVarCharMax().IsMax())
	require.False(t, TypeNVarChar(1).IsMax())
}

func TestFlattenErrors(t *testing.T) {
	a := &Error{Number: 1}
	b := &Error{Number: 2}
	got := flattenErrors(errors.Join(a, errors.Join(b, errors.New("plain")), nil))
	require.Len(t, got, 3)
	require.Same(t, a, got[0])
	require.Same(t, b, got[1])
	require.Equal(t, NumberUserError, got[2].Number)
	require.Equal(t, "plain", got[2].Message)
	require.Nil(t, flattenErrors(nil))
	wrapped := flattenErrors(errors.New("x"))
	require.EqualValues(t, 16, wrapped[0].Class)
	require.Same(t, a, flattenErrors(errors.Join(a))[0])
}

func TestAppendMessage_truncatesToFitAToken(t *testing.T) {
	long := strings.Repeat("é", 70_000)
	b := appendMessage(nil, tokenError, &Error{Number: 1, Message: long, Proc: strings.Repeat("p", 300)}, "srv")
	require.Equal(t, byte(tokenError), b[0])
	require.Equal(t, len(b)-3, int(binary.LittleEndian.Uint16(b[1:])), "the length covers the body exactly")
	r := newWireReader(b[3:])
	r.u32()
	r.u8()
	r.u8()
	require.Len(t, []rune(r.usVarChar()), maxMessageChars)
	require.Equal(t, "srv", r.bVarChar())
	require.Len(t, r.bVarChar(), 255)
}
