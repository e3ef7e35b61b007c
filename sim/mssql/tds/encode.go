package tds

import (
	"database/sql/driver"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"time"
)

// This file encodes column and return value types and values.

// writeType validates a column or return value type and returns the form
// that goes on the wire: fixed-length types become their nullable "N"
// forms, DECIMALN gets its size from the precision, TIME-based types from
// their scale.
func writeType(t TypeInfo) (TypeInfo, error) {
	bad := func(why string) (TypeInfo, error) {
		return t, fmt.Errorf("%w: %s: %s", ErrUnsupportedType, t.SQLType(), why)
	}
	switch t.ID {
	case TypeIDInt1:
		t = TypeInfo{ID: TypeIDIntN, Size: 1}
	case TypeIDInt2:
		t = TypeInfo{ID: TypeIDIntN, Size: 2}
	case TypeIDInt4:
		t = TypeInfo{ID: TypeIDIntN, Size: 4}
	case TypeIDInt8:
		t = TypeInfo{ID: TypeIDIntN, Size: 8}
	case TypeIDBit:
		t = TypeInfo{ID: TypeIDBitN, Size: 1}
	case TypeIDFlt4:
		t = TypeInfo{ID: TypeIDFltN, Size: 4}
	case TypeIDFlt8:
		t = TypeInfo{ID: TypeIDFltN, Size: 8}
	case TypeIDMoney4:
		t = TypeInfo{ID: TypeIDMoneyN, Size: 4}
	case TypeIDMoney:
		t = TypeInfo{ID: TypeIDMoneyN, Size: 8}
	case TypeIDDateTim4:
		t = TypeInfo{ID: TypeIDDateTimeN, Size: 4}
	case TypeIDDateTime:
		t = TypeInfo{ID: TypeIDDateTimeN, Size: 8}
	case TypeIDVarBinary:
		t.ID = TypeIDBigVarBinary
	case TypeIDBinary:
		t.ID = TypeIDBigBinary
	case TypeIDVarChar:
		t.ID = TypeIDBigVarChar
	case TypeIDChar:
		t.ID = TypeIDBigChar
	}
	switch t.ID {
	case TypeIDIntN:
		if t.Size != 1 && t.Size != 2 && t.Size != 4 && t.Size != 8 {
			return bad("INTN size must be 1, 2, 4 or 8")
		}
	case TypeIDBitN:
		t.Size = 1
	case TypeIDFltN, TypeIDMoneyN, TypeIDDateTimeN:
		if t.Size != 4 && t.Size != 8 {
			return bad("size must be 4 or 8")
		}
	case TypeIDGUID:
		t.Size = 16
	case TypeIDDecimalN, TypeIDNumericN:
		if t.Precision < 1 || t.Precision > 38 || t.Scale > t.Precision {
			return bad("precision must be 1-38 and scale at most the precision")
		}
		t.Size = decimalSize(t.Precision)
	case TypeIDDateN:
		t.Size = 3
	case TypeIDTimeN, TypeIDDateTime2N, TypeIDDateTimeOffsetN:
		if t.Scale > 7 {
			return bad("scale must be 0-7")
		}
		t.Size = timeValueSize(t)
	case TypeIDNVarChar:
		if t.Size != SizeMax && (t.Size < 2 || t.Size > 8000 || t.Size%2 != 0) {
			return bad("length must be 1-4000 characters or max")
		}
	case TypeIDNChar:
		if t.Size < 2 || t.Size > 8000 || t.Size%2 != 0 {
			return bad("length must be 1-4000 characters")
		}
	case TypeIDBigVarBinary, TypeIDBigVarChar:
		if t.Size != SizeMax && (t.Size < 1 || t.Size > 8000) {
			return bad("length must be 1-8000 bytes or max")
		}
	case TypeIDBigBinary, TypeIDBigChar:
		if t.Size < 1 || t.Size > 8000 {
			return bad("length must be 1-8000 bytes")
		}
	default:
		return bad("cannot be sent to the client")
	}
	return t, nil
}

// appendTypeInfo appends the TYPE_INFO of a type returned by writeType.
func appendTypeInfo(b []byte, t TypeInfo, defaultCollation Collation) []byte {
	b = append(b, byte(t.ID))
	switch t.ID {
	case TypeIDIntN, TypeIDBitN, TypeIDFltN, TypeIDMoneyN, TypeIDDateTimeN, TypeIDGUID:
		b = append(b, byte(t.Size))
	case TypeIDDecimalN, TypeIDNumericN:
		b = append(b, byte(t.Size), t.Precision, t.Scale)
	case TypeIDDateN:
	case TypeIDTimeN, TypeIDDateTime2N, TypeIDDateTimeOffsetN:
		b = append(b, t.Scale)
	case TypeIDNVarChar, TypeIDNChar, TypeIDBigVarChar, TypeIDBigChar, TypeIDBigVarBinary, TypeIDBigBinary:
		b = binary.LittleEndian.AppendUint16(b, uint16(t.Size))
		if t.ID != TypeIDBigVarBinary && t.ID != TypeIDBigBinary {
			c := t.Collation
			if c == (Collation{}) {
				c = defaultCollation
			}
			b = append(b, c[:]...)
		}
	}
	return b
}

// appendNull appends the NULL form of a value of type t.
func appendNull(b []byte, t TypeInfo) []byte {
	switch t.ID {
	case TypeIDNVarChar, TypeIDNChar, TypeIDBigVarChar, TypeIDBigChar, TypeIDBigVarBinary, TypeIDBigBinary:
		if t.Size == SizeMax {
			return binary.LittleEndian.AppendUint64(b, math.MaxUint64)
		}
		return binary.LittleEndian.AppendUint16(b, 0xFFFF)
	}
	return append(b, 0)
}

// appendValue appends a non-NULL value v (a Go value) of type t, which
// writeType returned. On error b is returned unchanged in length.
func appendValue(b []byte, t TypeInfo, v any) ([]byte, error) {
	if valuer, ok := v.(driver.Valuer); ok {
		dv, err := valuer.Value()
		if err != nil {
			return b, fmt.Errorf("%w: %v", ErrInvalidValue, err)
		}
		v = dv
	}
	if v == nil {
		return appendNull(b, t), nil
	}
	bad := func(why string) ([]byte, error) {
		return b, fmt.Errorf("%w: %T value %v for %s: %s", ErrInvalidValue, v, clip(v), t.SQLType(), why)
	}
	le := binary.LittleEndian
	switch t.ID {
	case TypeIDIntN:
		n, ok := toInt64(v)
		if !ok {
			return bad("need an integer")
		}
		switch t.Size {
		case 1:
			if n < 0 || n > math.MaxUint8 {
				return bad("out of range for tinyint")
			}
			return append(b, 1, byte(n)), nil
		case 2:
			if n < math.MinInt16 || n > math.MaxInt16 {
				return bad("out of range for smallint")
			}
			return le.AppendUint16(append(b, 2), uint16(n)), nil
		case 4:
			if n < math.MinInt32 || n > math.MaxInt32 {
				return bad("out of range for int")
			}
			return le.AppendUint32(append(b, 4), uint32(n)), nil
		}
		return le.AppendUint64(append(b, 8), uint64(n)), nil
	case TypeIDBitN:
		x, ok := v.(bool)
		if !ok {
			return bad("need a bool")
		}
		if x {
			return append(b, 1, 1), nil
		}
		return append(b, 1, 0), nil
	case TypeIDFltN:
		f, ok := toFloat64(v)
		if !ok {
			return bad("need a number")
		}
		if t.Size == 4 {
			return le.AppendUint32(append(b, 4), math.Float32bits(float32(f))), nil
		}
		return le.AppendUint64(append(b, 8), math.Float64bits(f)), nil
	case TypeIDMoneyN:
		d, err := toDecimal(v)
		if err != nil {
			return bad(err.Error())
		}
		u := d.Rescale(4).unscaled()
		if t.Size == 4 {
			if !u.IsInt64() || u.Int64() < math.MinInt32 || u.Int64() > math.MaxInt32 {
				return bad("out of range for smallmoney")
			}
			return le.AppendUint32(append(b, 4), uint32(int32(u.Int64()))), nil
		}
		if !u.IsInt64() {
			return bad("out of range for money")
		}
		m := uint64(u.Int64())
		return le.AppendUint32(le.AppendUint32(append(b, 8), uint32(m>>32)), uint32(m)), nil
	case TypeIDDecimalN, TypeIDNumericN:
		d, err := toDecimal(v)
		if err != nil {
			return bad(err.Error())
		}
		u := d.Rescale(t.Scale).unscaled()
		mag := new(big.Int).Abs(u)
		if mag.Cmp(pow10(int(t.Precision))) >= 0 {
			return bad(fmt.Sprintf("does not fit precision %d", t.Precision))
		}
		b = append(b, byte(t.Size))
		if u.Sign() < 0 {
			b = append(b, 0)
		} else {
			b = append(b, 1)
		}
		be := mag.FillBytes(make([]byte, t.Size-1))
		for i := len(be) - 1; i >= 0; i-- {
			b = append(b, be[i])
		}
		return b, nil
	case TypeIDGUID:
		var g GUID
		switch x := v.(type) {
		case GUID:
			g = x
		case [16]byte:
			g = GUID(x)
		case string:
			var err error
			if g, err = ParseGUID(x); err != nil {
				return bad("not a uniqueidentifier")
			}
		default:
			return bad("need a GUID")
		}
		w := g.wire()
		return append(append(b, 16), w[:]...), nil
	case TypeIDDateTimeN, TypeIDDateN, TypeIDTimeN, TypeIDDateTime2N, TypeIDDateTimeOffsetN:
		tm, ok := v.(time.Time)
		if !ok {
			return bad("need a time.Time")
		}
		enc, err := encodeTime(t, tm)
		if err != nil {
			return bad(err.Error())
		}
		return append(append(b, byte(len(enc))), enc...), nil
	case TypeIDNVarChar, TypeIDNChar:
		s, ok := v.(string)
		if !ok {
			return bad("need a string")
		}
		n := 2 * utf16Len(s)
		if t.Size == SizeMax {
			return appendPLP(b, n, func(b []byte) []byte { return appendUTF16(b, s) }), nil
		}
		if n > t.Size {
			return bad(fmt.Sprintf("%d characters exceed the declared %d", n/2, t.Size/2))
		}
		pad := 0
		if t.ID == TypeIDNChar {
			pad = (t.Size - n) / 2
		}
		b = le.AppendUint16(b, uint16(n+2*pad))
		b = appendUTF16(b, s)
		for range pad {
			b = append(b, ' ', 0)
		}
		return b, nil
	case TypeIDBigVarChar, TypeIDBigChar:
		s, ok := v.(string)
		if !ok {
			return bad("need a string")
		}
		n := cp1252Len(s)
		if t.Size == SizeMax {
			return appendPLP(b, n, func(b []byte) []byte { return appendCP1252(b, s) }), nil
		}
		if n > t.Size {
			return bad(fmt.Sprintf("%d characters exceed the declared %d", n, t.Size))
		}
		pad := 0
		if t.ID == TypeIDBigChar {
			pad = t.Size - n
		}
		b = le.AppendUint16(b, uint16(n+pad))
		b = appendCP1252(b, s)
		for range pad {
			b = append(b, ' ')
		}
		return b, nil
	case TypeIDBigVarBinary, TypeIDBigBinary:
		var p []byte
		switch x := v.(type) {
		case []byte:
			p = x
		case string:
			p = []byte(x)
		default:
			return bad("need a []byte")
		}
		if t.Size == SizeMax {
			return appendPLP(b, len(p), func(b []byte) []byte { return append(b, p...) }), nil
		}
		if len(p) > t.Size {
			return bad(fmt.Sprintf("%d bytes exceed the declared %d", len(p), t.Size))
		}
		pad := 0
		if t.ID == TypeIDBigBinary {
			pad = t.Size - len(p)
		}
		b = le.AppendUint16(b, uint16(len(p)+pad))
		b = append(b, p...)
		return append(b, make([]byte, pad)...), nil
	}
	return bad("unsupported type")
}

// appendPLP appends a PLP value of known length n as a single chunk (or
// just the terminator for an empty value).
func appendPLP(b []byte, n int, data func([]byte) []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(n))
	if n > 0 {
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		b = data(b)
	}
	return binary.LittleEndian.AppendUint32(b, 0)
}

// encodeTime encodes the value bytes (without the length byte) of a date or
// time type. Types without a zone use the wall clock of tm in its own
// location; datetimeoffset stores UTC plus the zone offset. Fractions below
// the scale are truncated.
func encodeTime(t TypeInfo, tm time.Time) ([]byte, error) {
	le := binary.LittleEndian
	wall := time.Date(tm.Year(), tm.Month(), tm.Day(), tm.Hour(), tm.Minute(), tm.Second(), tm.Nanosecond(), time.UTC)
	if t.ID == TypeIDDateTimeOffsetN {
		wall = tm.UTC()
	}
	day := time.Date(wall.Year(), wall.Month(), wall.Day(), 0, 0, 0, 0, time.UTC)
	tod := wall.Sub(day)
	switch t.ID {
	case TypeIDDateTimeN:
		if t.Size == 4 {
			mins := int64((tod + 30*time.Second) / time.Minute)
			days := int64(daysSince0001(wall)) - int64(daysSince0001(epoch1900))
			if mins == 24*60 {
				days, mins = days+1, 0
			}
			if wall.Before(epoch1900) || days > math.MaxUint16 {
				return nil, fmt.Errorf("smalldatetime range is 1900-01-01 to 2079-06-06")
			}
			return le.AppendUint16(le.AppendUint16(nil, uint16(days)), uint16(mins)), nil
		}
		if wall.Year() < 1753 || wall.Year() > 9999 {
			return nil, fmt.Errorf("datetime range is 1753 to 9999")
		}
		days := int64(daysSince0001(wall)) - int64(daysSince0001(epoch1900))
		ticks := (int64(tod)*300 + 5e8) / 1e9 // round to 1/300 s
		if ticks == 300*86400 {
			days, ticks = days+1, 0
		}
		return le.AppendUint32(le.AppendUint32(nil, uint32(int32(days))), uint32(ticks)), nil
	}
	if wall.Year() < 1 || wall.Year() > 9999 {
		return nil, fmt.Errorf("year %d is outside 1-9999", wall.Year())
	}
	days := daysSince0001(wall)
	var out []byte
	if t.ID != TypeIDDateN {
		units := uint64(tod / 100)
		for range 7 - int(t.Scale) {
			units /= 10
		}
		for i := range timeBytes(t.Scale) {
			out = append(out, byte(units>>(8*i)))
		}
	}
	if t.ID != TypeIDTimeN {
		out = append(out, byte(days), byte(days>>8), byte(days>>16))
	}
	if t.ID == TypeIDDateTimeOffsetN {
		_, off := tm.Zone()
		if off%60 != 0 || off < -14*3600 || off > 14*3600 {
			return nil, fmt.Errorf("zone offset %ds is not whole minutes within ±14:00", off)
		}
		out = le.AppendUint16(out, uint16(int16(off/60)))
	}
	return out, nil
}

// daysSince0001 counts days from 0001-01-01 to the date of t (proleptic
// Gregorian), without time.Duration, which only spans about 292 years.
func daysSince0001(t time.Time) uint32 {
	y := t.Year() - 1
	return uint32(y*365 + y/4 - y/100 + y/400 + t.YearDay() - 1)
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return int64(x), uint64(x) <= math.MaxInt64
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	}
	return 0, false
}

func toFloat64(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	}
	if n, ok := toInt64(v); ok {
		return float64(n), true
	}
	return 0, false
}

func toDecimal(v any) (Decimal, error) {
	switch x := v.(type) {
	case Decimal:
		return x, nil
	case string:
		return ParseDecimal(x)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return Decimal{}, fmt.Errorf("%v is not a finite number", x)
		}
		return ParseDecimal(fmt.Sprintf("%.10f", x))
	}
	if n, ok := toInt64(v); ok {
		return NewDecimal(n, 0), nil
	}
	return Decimal{}, fmt.Errorf("need a Decimal, integer, float64 or numeric string")
}

// clip shortens long values in error messages.
func clip(v any) any {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			return x[:40] + "..."
		}
	case []byte:
		if len(x) > 20 {
			return fmt.Sprintf("%x...", x[:20])
		}
	}
	return v
}
