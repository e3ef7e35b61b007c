package tds

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
)

// TypeID is a TDS data type identifier (MS-TDS 2.2.5.4).
type TypeID byte

// Data types. Fixed-length types carry no length in TYPE_INFO; the "N"
// types are their nullable, length-prefixed forms, which is what the writer
// sends for every column.
const (
	TypeIDNull     TypeID = 0x1F
	TypeIDInt1     TypeID = 0x30 // tinyint
	TypeIDBit      TypeID = 0x32
	TypeIDInt2     TypeID = 0x34 // smallint
	TypeIDInt4     TypeID = 0x38 // int
	TypeIDDateTim4 TypeID = 0x3A // smalldatetime
	TypeIDFlt4     TypeID = 0x3B // real
	TypeIDMoney    TypeID = 0x3C
	TypeIDDateTime TypeID = 0x3D
	TypeIDFlt8     TypeID = 0x3E // float
	TypeIDMoney4   TypeID = 0x7A // smallmoney
	TypeIDInt8     TypeID = 0x7F // bigint

	TypeIDGUID            TypeID = 0x24 // uniqueidentifier
	TypeIDIntN            TypeID = 0x26
	TypeIDBitN            TypeID = 0x68
	TypeIDDecimalN        TypeID = 0x6A
	TypeIDNumericN        TypeID = 0x6C
	TypeIDFltN            TypeID = 0x6D
	TypeIDMoneyN          TypeID = 0x6E
	TypeIDDateTimeN       TypeID = 0x6F
	TypeIDDateN           TypeID = 0x28
	TypeIDTimeN           TypeID = 0x29
	TypeIDDateTime2N      TypeID = 0x2A
	TypeIDDateTimeOffsetN TypeID = 0x2B
	TypeIDVarBinary       TypeID = 0x25 // legacy, parameters only
	TypeIDVarChar         TypeID = 0x27 // legacy, parameters only
	TypeIDBinary          TypeID = 0x2D // legacy, parameters only
	TypeIDChar            TypeID = 0x2F // legacy, parameters only

	TypeIDBigVarBinary TypeID = 0xA5 // varbinary(n|max)
	TypeIDBigVarChar   TypeID = 0xA7 // varchar(n|max)
	TypeIDBigBinary    TypeID = 0xAD // binary(n)
	TypeIDBigChar      TypeID = 0xAF // char(n)
	TypeIDNVarChar     TypeID = 0xE7 // nvarchar(n|max)
	TypeIDNChar        TypeID = 0xEF // nchar(n)
)

// SizeMax is the TypeInfo.Size of the (max) types: nvarchar(max),
// varchar(max), varbinary(max). Their values travel as PLP streams.
const SizeMax = 0xFFFF

// Collation is the 5-byte TDS collation: LCID and flags (4 bytes, little
// endian) and the SQL sort id.
type Collation [5]byte

// DefaultCollation returns SQL_Latin1_General_CP1_CI_AS, the SQL Server
// installation default (LCID 0x0409, sort id 52, code page 1252).
func DefaultCollation() Collation { return Collation{0x09, 0x04, 0xD0, 0x00, 0x34} }

// TypeInfo describes a parameter, column or return value type.
type TypeInfo struct {
	ID TypeID
	// Size is the TYPE_INFO length: the byte size of fixed and "N" types
	// (INTN 1/2/4/8, FLTN 4/8, MONEYN 4/8, DATETIMN 4/8, GUID 16), the
	// maximum length in BYTES of character and binary types (nvarchar(50)
	// has Size 100), or SizeMax for the (max) types. It is ignored for
	// DATEN/TIMEN/DATETIME2N/DATETIMEOFFSETN and DECIMALN/NUMERICN, whose
	// size follows from Scale or Precision.
	Size int
	// Precision and Scale of DECIMALN/NUMERICN; Scale (0-7) of TIMEN,
	// DATETIME2N and DATETIMEOFFSETN.
	Precision uint8
	Scale     uint8
	// Collation of character types. The zero value means the server's
	// collation (Config.Collation) when writing.
	Collation Collation
}

// Type constructors for result columns and return values.

// TypeTinyInt is tinyint (INTN 1; values 0-255).
func TypeTinyInt() TypeInfo { return TypeInfo{ID: TypeIDIntN, Size: 1} }

// TypeSmallInt is smallint (INTN 2).
func TypeSmallInt() TypeInfo { return TypeInfo{ID: TypeIDIntN, Size: 2} }

// TypeInt is int (INTN 4).
func TypeInt() TypeInfo { return TypeInfo{ID: TypeIDIntN, Size: 4} }

// TypeBigInt is bigint (INTN 8).
func TypeBigInt() TypeInfo { return TypeInfo{ID: TypeIDIntN, Size: 8} }

// TypeBit is bit (BITN).
func TypeBit() TypeInfo { return TypeInfo{ID: TypeIDBitN, Size: 1} }

// TypeFloat is float (FLTN 8).
func TypeFloat() TypeInfo { return TypeInfo{ID: TypeIDFltN, Size: 8} }

// TypeReal is real (FLTN 4).
func TypeReal() TypeInfo { return TypeInfo{ID: TypeIDFltN, Size: 4} }

// TypeMoney is money (MONEYN 8).
func TypeMoney() TypeInfo { return TypeInfo{ID: TypeIDMoneyN, Size: 8} }

// TypeNVarChar is nvarchar(n), n in characters (1-4000).
func TypeNVarChar(n int) TypeInfo { return TypeInfo{ID: TypeIDNVarChar, Size: 2 * n} }

// TypeNVarCharMax is nvarchar(max).
func TypeNVarCharMax() TypeInfo { return TypeInfo{ID: TypeIDNVarChar, Size: SizeMax} }

// TypeNChar is nchar(n), n in characters (1-4000); values are padded with
// spaces.
func TypeNChar(n int) TypeInfo { return TypeInfo{ID: TypeIDNChar, Size: 2 * n} }

// TypeVarChar is varchar(n) (1-8000) in the server collation's code page
// (Windows-1252 by default).
func TypeVarChar(n int) TypeInfo { return TypeInfo{ID: TypeIDBigVarChar, Size: n} }

// TypeVarCharMax is varchar(max).
func TypeVarCharMax() TypeInfo { return TypeInfo{ID: TypeIDBigVarChar, Size: SizeMax} }

// TypeVarBinary is varbinary(n) (1-8000).
func TypeVarBinary(n int) TypeInfo { return TypeInfo{ID: TypeIDBigVarBinary, Size: n} }

// TypeVarBinaryMax is varbinary(max).
func TypeVarBinaryMax() TypeInfo { return TypeInfo{ID: TypeIDBigVarBinary, Size: SizeMax} }

// TypeBinary is binary(n) (1-8000); values are padded with zero bytes.
func TypeBinary(n int) TypeInfo { return TypeInfo{ID: TypeIDBigBinary, Size: n} }

// TypeDateTime is datetime (DATETIMN 8; 1/300 s precision).
func TypeDateTime() TypeInfo { return TypeInfo{ID: TypeIDDateTimeN, Size: 8} }

// TypeSmallDateTime is smalldatetime (DATETIMN 4; minute precision).
func TypeSmallDateTime() TypeInfo { return TypeInfo{ID: TypeIDDateTimeN, Size: 4} }

// TypeDateTime2 is datetime2(scale), scale 0-7.
func TypeDateTime2(scale uint8) TypeInfo { return TypeInfo{ID: TypeIDDateTime2N, Scale: scale} }

// TypeDateTimeOffset is datetimeoffset(scale), scale 0-7.
func TypeDateTimeOffset(scale uint8) TypeInfo {
	return TypeInfo{ID: TypeIDDateTimeOffsetN, Scale: scale}
}

// TypeDate is date.
func TypeDate() TypeInfo { return TypeInfo{ID: TypeIDDateN} }

// TypeTime is time(scale), scale 0-7.
func TypeTime(scale uint8) TypeInfo { return TypeInfo{ID: TypeIDTimeN, Scale: scale} }

// TypeUniqueIdentifier is uniqueidentifier.
func TypeUniqueIdentifier() TypeInfo { return TypeInfo{ID: TypeIDGUID, Size: 16} }

// TypeDecimal is decimal(precision, scale), precision 1-38.
func TypeDecimal(precision, scale uint8) TypeInfo {
	return TypeInfo{ID: TypeIDDecimalN, Precision: precision, Scale: scale, Size: decimalSize(precision)}
}

// IsMax reports whether t is a (max) type sent as PLP.
func (t TypeInfo) IsMax() bool {
	switch t.ID {
	case TypeIDNVarChar, TypeIDBigVarChar, TypeIDBigVarBinary:
		return t.Size == SizeMax
	}
	return false
}

// SQLType returns the T-SQL name of t as used in declarations, e.g.
// "bigint", "nvarchar(50)", "varbinary(max)", "decimal(18,2)".
func (t TypeInfo) SQLType() string {
	lenOrMax := func(n int) string {
		if n == SizeMax {
			return "max"
		}
		return fmt.Sprint(n)
	}
	switch t.ID {
	case TypeIDNull:
		return "null"
	case TypeIDInt1:
		return "tinyint"
	case TypeIDBit, TypeIDBitN:
		return "bit"
	case TypeIDInt2:
		return "smallint"
	case TypeIDInt4:
		return "int"
	case TypeIDInt8:
		return "bigint"
	case TypeIDIntN:
		switch t.Size {
		case 1:
			return "tinyint"
		case 2:
			return "smallint"
		case 4:
			return "int"
		}
		return "bigint"
	case TypeIDDateTim4:
		return "smalldatetime"
	case TypeIDDateTime:
		return "datetime"
	case TypeIDDateTimeN:
		if t.Size == 4 {
			return "smalldatetime"
		}
		return "datetime"
	case TypeIDFlt4:
		return "real"
	case TypeIDFlt8:
		return "float"
	case TypeIDFltN:
		if t.Size == 4 {
			return "real"
		}
		return "float"
	case TypeIDMoney4:
		return "smallmoney"
	case TypeIDMoney:
		return "money"
	case TypeIDMoneyN:
		if t.Size == 4 {
			return "smallmoney"
		}
		return "money"
	case TypeIDGUID:
		return "uniqueidentifier"
	case TypeIDDecimalN:
		return fmt.Sprintf("decimal(%d,%d)", t.Precision, t.Scale)
	case TypeIDNumericN:
		return fmt.Sprintf("numeric(%d,%d)", t.Precision, t.Scale)
	case TypeIDDateN:
		return "date"
	case TypeIDTimeN:
		return fmt.Sprintf("time(%d)", t.Scale)
	case TypeIDDateTime2N:
		return fmt.Sprintf("datetime2(%d)", t.Scale)
	case TypeIDDateTimeOffsetN:
		return fmt.Sprintf("datetimeoffset(%d)", t.Scale)
	case TypeIDNVarChar:
		if t.Size == SizeMax {
			return "nvarchar(max)"
		}
		return fmt.Sprintf("nvarchar(%d)", t.Size/2)
	case TypeIDNChar:
		return fmt.Sprintf("nchar(%d)", t.Size/2)
	case TypeIDBigVarChar, TypeIDVarChar:
		return "varchar(" + lenOrMax(t.Size) + ")"
	case TypeIDBigChar, TypeIDChar:
		return fmt.Sprintf("char(%d)", t.Size)
	case TypeIDBigVarBinary, TypeIDVarBinary:
		return "varbinary(" + lenOrMax(t.Size) + ")"
	case TypeIDBigBinary, TypeIDBinary:
		return fmt.Sprintf("binary(%d)", t.Size)
	}
	return fmt.Sprintf("type0x%02X", byte(t.ID))
}

// decimalSize is the value length of DECIMALN for a precision: a sign byte
// and 4, 8, 12 or 16 bytes of magnitude.
func decimalSize(precision uint8) int {
	switch {
	case precision <= 9:
		return 5
	case precision <= 19:
		return 9
	case precision <= 28:
		return 13
	}
	return 17
}

// GUID is a uniqueidentifier in canonical (string) byte order: GUID[0] is
// the first byte of "6F9619FF-8B86-D011-B42D-00C04FC964FF". On the wire
// SQL Server stores the first three groups little-endian; the package
// converts both ways.
type GUID [16]byte

// ParseGUID parses "6F9619FF-8B86-D011-B42D-00C04FC964FF", with or
// without braces and dashes, in any case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	t := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	t = strings.ReplaceAll(t, "-", "")
	if len(t) != 32 {
		return g, fmt.Errorf("%w: %q is not a uniqueidentifier", ErrInvalidValue, s)
	}
	if _, err := hex.Decode(g[:], []byte(t)); err != nil {
		return g, fmt.Errorf("%w: %q is not a uniqueidentifier", ErrInvalidValue, s)
	}
	return g, nil
}

// String formats g as SQL Server does: upper case with dashes.
func (g GUID) String() string {
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", g[0:4], g[4:6], g[6:8], g[8:10], g[10:16]))
}

// wire returns g in SQL Server's mixed byte order.
func (g GUID) wire() [16]byte {
	w := [16]byte(g)
	w[0], w[1], w[2], w[3] = g[3], g[2], g[1], g[0]
	w[4], w[5] = g[5], g[4]
	w[6], w[7] = g[7], g[6]
	return w
}

// guidFromWire converts SQL Server's mixed byte order to a GUID.
func guidFromWire(b []byte) GUID {
	var w GUID
	copy(w[:], b)
	return GUID(GUID(w).wire()) // the swap is its own inverse
}

// Decimal is an exact decimal number: Unscaled × 10^-Scale. It is the Go
// value of DECIMALN/NUMERICN and MONEYN parameters (money has Scale 4) and
// may be written to decimal and money columns. A nil Unscaled is zero.
type Decimal struct {
	Unscaled *big.Int
	Scale    uint8
}

// NewDecimal returns unscaled × 10^-scale.
func NewDecimal(unscaled int64, scale uint8) Decimal {
	return Decimal{Unscaled: big.NewInt(unscaled), Scale: scale}
}

// ParseDecimal parses a plain decimal literal such as "-123.4500".
func ParseDecimal(s string) (Decimal, error) {
	t := strings.TrimSpace(s)
	neg := false
	if strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+") {
		neg = t[0] == '-'
		t = t[1:]
	}
	intPart, frac, _ := strings.Cut(t, ".")
	digits := intPart + frac
	if digits == "" || len(frac) > 38 || strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return Decimal{}, fmt.Errorf("%w: %q is not a decimal number", ErrInvalidValue, s)
	}
	u, _ := new(big.Int).SetString(digits, 10)
	if neg {
		u.Neg(u)
	}
	return Decimal{Unscaled: u, Scale: uint8(len(frac))}, nil
}

func (d Decimal) unscaled() *big.Int {
	if d.Unscaled == nil {
		return new(big.Int)
	}
	return d.Unscaled
}

// String formats d with exactly Scale fraction digits, e.g. "123.45".
func (d Decimal) String() string {
	u := d.unscaled()
	s := new(big.Int).Abs(u).String()
	if d.Scale > 0 {
		if len(s) <= int(d.Scale) {
			s = strings.Repeat("0", int(d.Scale)-len(s)+1) + s
		}
		s = s[:len(s)-int(d.Scale)] + "." + s[len(s)-int(d.Scale):]
	}
	if u.Sign() < 0 {
		s = "-" + s
	}
	return s
}

// Rescale returns d with the given scale, rounding half away from zero
// when digits are dropped.
func (d Decimal) Rescale(scale uint8) Decimal {
	u := new(big.Int).Set(d.unscaled())
	switch {
	case scale > d.Scale:
		u.Mul(u, pow10(int(scale-d.Scale)))
	case scale < d.Scale:
		div := pow10(int(d.Scale - scale))
		q, r := new(big.Int).QuoRem(u, div, new(big.Int))
		r.Abs(r).Lsh(r, 1)
		if r.Cmp(div) >= 0 {
			if u.Sign() < 0 {
				q.Sub(q, big.NewInt(1))
			} else {
				q.Add(q, big.NewInt(1))
			}
		}
		u = q
	}
	return Decimal{Unscaled: u, Scale: scale}
}

func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}
