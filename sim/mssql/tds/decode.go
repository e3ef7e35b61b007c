package tds

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"time"
)

// This file decodes RPC parameter types and values.
//
// Go values of decoded parameters:
//
//	NULL (any type)                   nil
//	tinyint/smallint/int/bigint       int64
//	bit                               bool
//	real/float                        float64
//	decimal/numeric/money/smallmoney  Decimal
//	nvarchar/nchar/varchar/char       string
//	varbinary/binary                  []byte
//	uniqueidentifier                  GUID
//	date, datetime2, datetime, smalldatetime
//	                                  time.Time in UTC (wall clock as sent)
//	time                              time.Time on 0001-01-01 UTC
//	datetimeoffset                    time.Time in a fixed zone with the sent offset

var (
	epoch1900 = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	epoch0001 = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
)

// readTypeInfo decodes a TYPE_INFO (MS-TDS 2.2.5.6).
func readTypeInfo(r *wireReader) (TypeInfo, error) {
	t := TypeInfo{ID: TypeID(r.u8())}
	if r.err() != nil {
		return t, r.err()
	}
	bad := func(format string, args ...any) (TypeInfo, error) {
		return t, fmt.Errorf("%w: %s: %s", ErrProtocol, t.SQLType(), fmt.Sprintf(format, args...))
	}
	switch t.ID {
	case TypeIDNull:
	case TypeIDInt1, TypeIDBit:
		t.Size = 1
	case TypeIDInt2:
		t.Size = 2
	case TypeIDInt4, TypeIDDateTim4, TypeIDFlt4, TypeIDMoney4:
		t.Size = 4
	case TypeIDMoney, TypeIDDateTime, TypeIDFlt8, TypeIDInt8:
		t.Size = 8
	case TypeIDGUID, TypeIDIntN, TypeIDBitN, TypeIDFltN, TypeIDMoneyN, TypeIDDateTimeN,
		TypeIDVarBinary, TypeIDVarChar, TypeIDBinary, TypeIDChar:
		t.Size = int(r.u8())
		ok := true
		switch t.ID {
		case TypeIDGUID:
			ok = t.Size == 16 || t.Size == 0
		case TypeIDIntN:
			ok = t.Size == 1 || t.Size == 2 || t.Size == 4 || t.Size == 8
		case TypeIDBitN:
			ok = t.Size == 1
		case TypeIDFltN, TypeIDMoneyN, TypeIDDateTimeN:
			ok = t.Size == 4 || t.Size == 8
		}
		if !ok && r.err() == nil {
			return bad("invalid length %d", t.Size)
		}
	case TypeIDDecimalN, TypeIDNumericN:
		t.Size = int(r.u8())
		t.Precision = r.u8()
		t.Scale = r.u8()
		if r.err() == nil && (t.Precision < 1 || t.Precision > 38 || t.Scale > t.Precision || t.Size < 1 || t.Size > 17) {
			return bad("invalid precision/scale/length %d/%d/%d", t.Precision, t.Scale, t.Size)
		}
	case TypeIDDateN:
		t.Size = 3
	case TypeIDTimeN, TypeIDDateTime2N, TypeIDDateTimeOffsetN:
		t.Scale = r.u8()
		if r.err() == nil && t.Scale > 7 {
			return bad("invalid scale %d", t.Scale)
		}
		t.Size = timeValueSize(t)
	case TypeIDBigVarBinary, TypeIDBigBinary, TypeIDBigVarChar, TypeIDBigChar, TypeIDNVarChar, TypeIDNChar:
		t.Size = int(r.u16())
		if t.ID == TypeIDBigVarChar || t.ID == TypeIDBigChar || t.ID == TypeIDNVarChar || t.ID == TypeIDNChar {
			copy(t.Collation[:], r.bytes(5))
		}
	default:
		return t, fmt.Errorf("%w: data type 0x%02X", ErrUnsupportedType, byte(t.ID))
	}
	return t, r.err()
}

// timeValueSize is the value length of TIMEN/DATETIME2N/DATETIMEOFFSETN.
func timeValueSize(t TypeInfo) int {
	n := timeBytes(t.Scale)
	switch t.ID {
	case TypeIDDateTime2N:
		n += 3
	case TypeIDDateTimeOffsetN:
		n += 5
	}
	return n
}

// timeBytes is the length of the time part for a scale.
func timeBytes(scale uint8) int {
	switch {
	case scale <= 2:
		return 3
	case scale <= 4:
		return 4
	}
	return 5
}

// readValue decodes one value of type t.
func readValue(r *wireReader, t TypeInfo) (any, error) {
	var data []byte
	switch t.ID {
	case TypeIDNull:
		return nil, nil
	case TypeIDInt1, TypeIDBit, TypeIDInt2, TypeIDInt4, TypeIDDateTim4, TypeIDFlt4,
		TypeIDMoney4, TypeIDMoney, TypeIDDateTime, TypeIDFlt8, TypeIDInt8:
		data = r.bytes(t.Size)
	case TypeIDGUID, TypeIDIntN, TypeIDBitN, TypeIDFltN, TypeIDMoneyN, TypeIDDateTimeN,
		TypeIDDecimalN, TypeIDNumericN, TypeIDDateN, TypeIDTimeN, TypeIDDateTime2N,
		TypeIDDateTimeOffsetN, TypeIDVarBinary, TypeIDVarChar, TypeIDBinary, TypeIDChar:
		n := int(r.u8())
		if r.err() != nil {
			return nil, r.err()
		}
		if n == 0 {
			return nil, nil // NULL (also for the legacy character and binary types)
		}
		if n > t.Size {
			return nil, fmt.Errorf("%w: %s value of %d bytes exceeds its declared length %d", ErrProtocol, t.SQLType(), n, t.Size)
		}
		data = r.bytes(n)
	case TypeIDBigVarBinary, TypeIDBigBinary, TypeIDBigVarChar, TypeIDBigChar, TypeIDNVarChar, TypeIDNChar:
		if t.Size == SizeMax {
			var null bool
			var err error
			data, null, err = readPLP(r)
			if err != nil || null {
				return nil, err
			}
			break
		}
		n := int(r.u16())
		if r.err() != nil {
			return nil, r.err()
		}
		if n == 0xFFFF {
			return nil, nil
		}
		if n > t.Size {
			return nil, fmt.Errorf("%w: %s value of %d bytes exceeds its declared length %d", ErrProtocol, t.SQLType(), n, t.Size)
		}
		data = r.bytes(n)
	default:
		return nil, fmt.Errorf("%w: data type 0x%02X", ErrUnsupportedType, byte(t.ID))
	}
	if r.err() != nil {
		return nil, r.err()
	}
	return decodeValue(t, data)
}

// readPLP reads a PLP value: u64 total length (all ones = NULL, all ones
// but the last bit = unknown), chunks of u32 length + data, and a zero
// length terminator. Chunks cannot exceed the message, so memory is bounded
// by the message size.
func readPLP(r *wireReader) (data []byte, null bool, err error) {
	const plpNull, plpUnknown = math.MaxUint64, math.MaxUint64 - 1
	total := r.u64()
	if r.err() != nil {
		return nil, false, r.err()
	}
	if total == plpNull {
		return nil, true, nil
	}
	if total != plpUnknown && total > uint64(r.remaining()) {
		return nil, false, fmt.Errorf("%w: PLP length %d exceeds the message", ErrProtocol, total)
	}
	data = []byte{}
	for {
		n := r.u32()
		if r.err() != nil {
			return nil, false, r.err()
		}
		if n == 0 {
			break
		}
		if uint64(n) > uint64(r.remaining()) {
			return nil, false, fmt.Errorf("%w: PLP chunk of %d bytes exceeds the message", ErrProtocol, n)
		}
		data = append(data, r.bytes(int(n))...)
	}
	if total != plpUnknown && uint64(len(data)) != total {
		return nil, false, fmt.Errorf("%w: PLP value has %d bytes, header announced %d", ErrProtocol, len(data), total)
	}
	return data, false, nil
}

// decodeValue converts the bytes of a non-NULL value to its Go value.
func decodeValue(t TypeInfo, b []byte) (any, error) {
	le := binary.LittleEndian
	bad := func() (any, error) {
		return nil, fmt.Errorf("%w: %s value has invalid length %d", ErrProtocol, t.SQLType(), len(b))
	}
	switch t.ID {
	case TypeIDInt1, TypeIDInt2, TypeIDInt4, TypeIDInt8, TypeIDIntN:
		switch len(b) {
		case 1:
			return int64(b[0]), nil
		case 2:
			return int64(int16(le.Uint16(b))), nil
		case 4:
			return int64(int32(le.Uint32(b))), nil
		case 8:
			return int64(le.Uint64(b)), nil
		}
		return bad()
	case TypeIDBit, TypeIDBitN:
		if len(b) != 1 {
			return bad()
		}
		return b[0] != 0, nil
	case TypeIDFlt4, TypeIDFlt8, TypeIDFltN:
		switch len(b) {
		case 4:
			return float64(math.Float32frombits(le.Uint32(b))), nil
		case 8:
			return math.Float64frombits(le.Uint64(b)), nil
		}
		return bad()
	case TypeIDMoney, TypeIDMoney4, TypeIDMoneyN:
		switch len(b) {
		case 4:
			return NewDecimal(int64(int32(le.Uint32(b))), 4), nil
		case 8:
			v := int64(uint64(le.Uint32(b))<<32 | uint64(le.Uint32(b[4:])))
			return NewDecimal(v, 4), nil
		}
		return bad()
	case TypeIDDateTime, TypeIDDateTim4, TypeIDDateTimeN:
		switch len(b) {
		case 4:
			days, mins := le.Uint16(b), le.Uint16(b[2:])
			return epoch1900.AddDate(0, 0, int(days)).Add(time.Duration(mins) * time.Minute), nil
		case 8:
			days, ticks := int32(le.Uint32(b)), le.Uint32(b[4:])
			ns := (int64(ticks)*1e9 + 150) / 300 // 1/300 s, rounded to the nanosecond
			ms := (ns + 500_000) / 1_000_000     // SQL Server shows datetime to the millisecond
			return epoch1900.AddDate(0, 0, int(days)).Add(time.Duration(ms) * time.Millisecond), nil
		}
		return bad()
	case TypeIDGUID:
		if len(b) != 16 {
			return bad()
		}
		return guidFromWire(b), nil
	case TypeIDDecimalN, TypeIDNumericN:
		if len(b) < 2 {
			return bad()
		}
		mag := make([]byte, len(b)-1)
		for i := range mag { // little endian to big endian
			mag[i] = b[len(b)-1-i]
		}
		u := new(big.Int).SetBytes(mag)
		if b[0] == 0 {
			u.Neg(u)
		}
		return Decimal{Unscaled: u, Scale: t.Scale}, nil
	case TypeIDDateN:
		if len(b) != 3 {
			return bad()
		}
		return epoch0001.AddDate(0, 0, int(uint24(b))), nil
	case TypeIDTimeN, TypeIDDateTime2N, TypeIDDateTimeOffsetN:
		if len(b) != timeValueSize(t) {
			return bad()
		}
		tb := timeBytes(t.Scale)
		tod := decodeTimeOfDay(b[:tb], t.Scale)
		if t.ID == TypeIDTimeN {
			return epoch0001.Add(tod), nil
		}
		v := epoch0001.AddDate(0, 0, int(uint24(b[tb:]))).Add(tod)
		if t.ID == TypeIDDateTime2N {
			return v, nil
		}
		off := int(int16(le.Uint16(b[tb+3:])))
		return v.In(time.FixedZone("", off*60)), nil
	case TypeIDNVarChar, TypeIDNChar:
		if len(b)%2 != 0 {
			return nil, fmt.Errorf("%w: %s value has an odd byte length %d", ErrProtocol, t.SQLType(), len(b))
		}
		return decodeUTF16(b), nil
	case TypeIDBigVarChar, TypeIDBigChar, TypeIDVarChar, TypeIDChar:
		return decodeSingleByte(b), nil
	case TypeIDBigVarBinary, TypeIDBigBinary, TypeIDVarBinary, TypeIDBinary:
		return append(make([]byte, 0, len(b)), b...), nil // never nil: nil means NULL
	}
	return nil, fmt.Errorf("%w: data type 0x%02X", ErrUnsupportedType, byte(t.ID))
}

func uint24(b []byte) uint32 { return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 }

// decodeTimeOfDay converts a TIME field (units of 10^-scale s) to a duration.
func decodeTimeOfDay(b []byte, scale uint8) time.Duration {
	var units uint64
	for i := len(b) - 1; i >= 0; i-- {
		units = units<<8 | uint64(b[i])
	}
	for range 7 - int(scale) {
		units *= 10
	}
	return time.Duration(units * 100)
}
