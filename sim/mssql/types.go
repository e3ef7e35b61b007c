package mssql

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// colType is a T-SQL data type as declared in CREATE TABLE or inferred for
// an expression. Name is the lower-case base name ("bigint", "nvarchar"...);
// Len is the length in characters or bytes, -1 for (max); Prec and Scale are
// for decimal and the scale of datetime2.
type colType struct {
	Name  string `json:"name"`
	Len   int    `json:"len,omitempty"`
	Prec  int    `json:"prec,omitempty"`
	Scale int    `json:"scale,omitempty"`
}

var (
	typeInt       = colType{Name: "int"}
	typeBigInt    = colType{Name: "bigint"}
	typeBit       = colType{Name: "bit"}
	typeFloat     = colType{Name: "float"}
	typeSysname   = colType{Name: "nvarchar", Len: 128}
	typeNVarMax   = colType{Name: "nvarchar", Len: -1}
	typeDateTime  = colType{Name: "datetime"}
	typeDateTime2 = colType{Name: "datetime2", Scale: 7}
	typeGUID      = colType{Name: "uniqueidentifier"}
	typeLSN       = colType{Name: "numeric", Prec: 25}
	typeTinyInt   = colType{Name: "tinyint"}
	typeSmallInt  = colType{Name: "smallint"}
)

func nvarchar(n int) colType { return colType{Name: "nvarchar", Len: n} }

// knownTypes lists the type names CREATE TABLE accepts, with whether they
// take a length (1), precision/scale (2) or a scale (3).
var knownTypes = map[string]int{
	"bigint": 0, "int": 0, "smallint": 0, "tinyint": 0, "bit": 0,
	"float": 0, "real": 0, "decimal": 2, "numeric": 2, "money": 0,
	"nvarchar": 1, "nchar": 1, "varchar": 1, "char": 1, "sysname": 0,
	"datetime2": 3, "datetime": 0, "date": 0, "smalldatetime": 0, "datetimeoffset": 3,
	"uniqueidentifier": 0, "varbinary": 1, "binary": 1,
}

// normalize fills the defaults SQL Server applies to a declared type.
func (t colType) normalize() colType {
	switch t.Name {
	case "sysname":
		return typeSysname
	case "nvarchar", "varchar", "varbinary", "nchar", "char", "binary":
		if t.Len == 0 {
			t.Len = 1
		}
	case "decimal", "numeric":
		if t.Prec == 0 {
			t.Prec = 18
		}
	case "datetime2", "datetimeoffset":
		if t.Len == 0 && t.Scale == 0 {
			t.Scale = 7
		}
		t.Len = 0
	case "money":
		return colType{Name: "decimal", Prec: 19, Scale: 4}
	case "smalldatetime":
		return typeDateTime
	}
	return t
}

// String returns the T-SQL spelling of t, e.g. "nvarchar(max)".
func (t colType) String() string {
	switch t.Name {
	case "nvarchar", "varchar", "varbinary", "nchar", "char", "binary":
		if t.Len < 0 {
			return t.Name + "(max)"
		}
		return fmt.Sprintf("%s(%d)", t.Name, t.Len)
	case "decimal", "numeric":
		return fmt.Sprintf("%s(%d,%d)", t.Name, t.Prec, t.Scale)
	case "datetime2", "datetimeoffset":
		return fmt.Sprintf("%s(%d)", t.Name, t.Scale)
	}
	return t.Name
}

// tdsType maps t to the wire type. varchar and char travel as nvarchar and
// nchar so that the driver never decodes through a code page.
func (t colType) tdsType() tds.TypeInfo {
	switch t.Name {
	case "bigint":
		return tds.TypeBigInt()
	case "int":
		return tds.TypeInt()
	case "smallint":
		return tds.TypeSmallInt()
	case "tinyint":
		return tds.TypeTinyInt()
	case "bit":
		return tds.TypeBit()
	case "float":
		return tds.TypeFloat()
	case "real":
		return tds.TypeReal()
	case "decimal", "numeric":
		return tds.TypeDecimal(uint8(t.Prec), uint8(t.Scale))
	case "nvarchar", "varchar":
		if t.Len < 0 || t.Len > 4000 {
			return tds.TypeNVarCharMax()
		}
		return tds.TypeNVarChar(t.Len)
	case "nchar", "char":
		return tds.TypeNChar(min(max(t.Len, 1), 4000))
	case "datetime2":
		return tds.TypeDateTime2(uint8(t.Scale))
	case "datetimeoffset":
		return tds.TypeDateTimeOffset(uint8(t.Scale))
	case "datetime":
		return tds.TypeDateTime()
	case "date":
		return tds.TypeDate()
	case "uniqueidentifier":
		return tds.TypeUniqueIdentifier()
	case "varbinary", "binary":
		if t.Len < 0 || t.Len > 8000 {
			return tds.TypeVarBinaryMax()
		}
		return tds.TypeVarBinary(max(t.Len, 1))
	}
	return tds.TypeNVarCharMax()
}

// typeOfValue infers a type for a Go value produced by an expression.
func typeOfValue(v any) colType {
	switch x := v.(type) {
	case int64:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return typeInt
		}
		return typeBigInt
	case bool:
		return typeBit
	case float64:
		return typeFloat
	case tds.Decimal:
		return colType{Name: "numeric", Prec: 38, Scale: int(x.Scale)}
	case string:
		return typeNVarMax
	case time.Time:
		return typeDateTime2
	case tds.GUID:
		return typeGUID
	case []byte:
		return colType{Name: "varbinary", Len: -1}
	}
	return typeInt
}

// sqlTypeName names the type of a Go value in conversion error messages.
func sqlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "nvarchar"
	case int64:
		return "int"
	case float64:
		return "float"
	case tds.Decimal:
		return "numeric"
	case time.Time:
		return "datetime2"
	}
	return "sql_variant"
}

// coerce converts v to the Go representation of t (int64, bool, float64,
// tds.Decimal, string, time.Time, tds.GUID or []byte; nil stays nil),
// failing as SQL Server does on a bad conversion or a too long string.
func coerce(v any, t colType) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch t.Name {
	case "bigint", "int", "smallint", "tinyint":
		var n int64
		switch x := v.(type) {
		case int64:
			n = x
		case bool:
			if x {
				n = 1
			}
		case float64:
			if x > math.MaxInt64 || x < math.MinInt64 {
				return nil, sqlErr(msgOverflow, "expression", t.Name)
			}
			n = int64(x)
		case tds.Decimal:
			i := new(big.Int).Set(x.Rescale(0).Unscaled)
			if x.Unscaled == nil {
				i = big.NewInt(0)
			}
			if !i.IsInt64() {
				return nil, sqlErr(msgOverflow, "expression", t.Name)
			}
			n = i.Int64()
		case string:
			p, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return nil, sqlErr(msgConvertFailed, "nvarchar", x, t.Name)
			}
			n = p
		default:
			return nil, sqlErr(msgConvertFailed, sqlTypeName(v), fmt.Sprint(v), t.Name)
		}
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		switch t.Name {
		case "int":
			lo, hi = math.MinInt32, math.MaxInt32
		case "smallint":
			lo, hi = math.MinInt16, math.MaxInt16
		case "tinyint":
			lo, hi = 0, 255
		}
		if n < lo || n > hi {
			return nil, sqlErr(msgOverflow, "expression", t.Name)
		}
		return n, nil
	case "bit":
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			return x != 0, nil
		case float64:
			return x != 0, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "1", "true":
				return true, nil
			case "0", "false":
				return false, nil
			}
			return nil, sqlErr(msgConvertFailed, "nvarchar", x, "bit")
		}
	case "float", "real":
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		case tds.Decimal:
			f, _ := new(big.Float).SetInt(orZero(x.Unscaled)).Float64()
			return f / math.Pow10(int(x.Scale)), nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, sqlErr(msgConvertFailed, "nvarchar", x, "float")
			}
			return f, nil
		}
	case "decimal", "numeric":
		var d tds.Decimal
		switch x := v.(type) {
		case tds.Decimal:
			d = x
		case int64:
			d = tds.NewDecimal(x, 0)
		case float64:
			p, err := tds.ParseDecimal(strconv.FormatFloat(x, 'f', -1, 64))
			if err != nil {
				return nil, sqlErr(msgConvertFailed, "float", fmt.Sprint(x), "numeric")
			}
			d = p
		case string:
			p, err := tds.ParseDecimal(strings.TrimSpace(x))
			if err != nil {
				return nil, sqlErr(msgConvertFailed, "nvarchar", x, "numeric")
			}
			d = p
		default:
			return nil, sqlErr(msgConvertFailed, sqlTypeName(v), fmt.Sprint(v), "numeric")
		}
		d = d.Rescale(uint8(t.Scale))
		limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(t.Prec)), nil)
		if new(big.Int).Abs(orZero(d.Unscaled)).Cmp(limit) >= 0 {
			return nil, sqlErr(msgOverflow, "expression", "numeric")
		}
		return d, nil
	case "nvarchar", "varchar", "nchar", "char":
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case int64:
			s = strconv.FormatInt(x, 10)
		case float64:
			s = strconv.FormatFloat(x, 'g', -1, 64)
		case bool:
			s = "0"
			if x {
				s = "1"
			}
		case tds.Decimal:
			s = x.String()
		case time.Time:
			s = x.Format("2006-01-02 15:04:05.0000000")
		case tds.GUID:
			s = x.String()
		default:
			return nil, sqlErr(msgConvertFailed, sqlTypeName(v), fmt.Sprint(v), t.Name)
		}
		if t.Len >= 0 && len([]rune(s)) > t.Len {
			if t.Name == "nchar" || t.Name == "char" {
				if len(strings.TrimRight(s, " ")) <= t.Len {
					return strings.TrimRight(s, " "), nil
				}
			}
			return nil, sqlErr(msgTruncated)
		}
		return s, nil
	case "datetime2", "datetime", "date", "datetimeoffset":
		var tm time.Time
		switch x := v.(type) {
		case time.Time:
			tm = x
			if t.Name != "datetimeoffset" {
				tm = time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
			}
		case string:
			p, ok := parseTime(x)
			if !ok {
				return nil, sqlErr(msgConvertDate)
			}
			tm = p
		default:
			return nil, sqlErr(msgConvertFailed, sqlTypeName(v), fmt.Sprint(v), t.Name)
		}
		switch t.Name {
		case "date":
			tm = time.Date(tm.Year(), tm.Month(), tm.Day(), 0, 0, 0, 0, time.UTC)
		case "datetime":
			tm = tm.Round(time.Second / 300)
		default:
			tm = tm.Round(time.Duration(math.Pow10(9 - t.Scale)))
		}
		return tm, nil
	case "uniqueidentifier":
		switch x := v.(type) {
		case tds.GUID:
			return x, nil
		case string:
			g, err := tds.ParseGUID(x)
			if err != nil {
				return nil, sqlErr(8169)
			}
			return g, nil
		case []byte:
			if len(x) == 16 {
				var g tds.GUID
				copy(g[:], x)
				return g, nil
			}
		}
	case "varbinary", "binary":
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		case tds.GUID:
			b = x[:]
		default:
			return nil, sqlErr(msgConvertFailed, sqlTypeName(v), fmt.Sprint(v), t.Name)
		}
		if t.Len >= 0 && len(b) > t.Len {
			return nil, sqlErr(msgTruncated)
		}
		return b, nil
	}
	return nil, sqlErr(206, sqlTypeName(v), t.Name)
}

func orZero(i *big.Int) *big.Int {
	if i == nil {
		return new(big.Int)
	}
	return i
}

var timeLayouts = []string{
	"2006-01-02 15:04:05.9999999",
	"2006-01-02T15:04:05.9999999",
	"2006-01-02 15:04:05.9999999Z07:00",
	"2006-01-02T15:04:05.9999999Z07:00",
	"2006-01-02 15:04",
	"2006-01-02",
	"20060102 15:04:05",
	"20060102",
}

func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// encodeValue turns a stored value into its durable text form; nil is
// encoded as a nil pointer (JSON null).
func encodeValue(v any) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case int64:
		s = strconv.FormatInt(x, 10)
	case bool:
		s = "0"
		if x {
			s = "1"
		}
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case tds.Decimal:
		s = x.String()
	case string:
		s = x
	case time.Time:
		s = x.Format(time.RFC3339Nano)
	case tds.GUID:
		s = x.String()
	case []byte:
		s = base64.StdEncoding.EncodeToString(x)
	default:
		s = fmt.Sprint(x)
	}
	return &s
}

// decodeValue is the inverse of encodeValue for a column of type t.
func decodeValue(p *string, t colType) (any, error) {
	if p == nil {
		return nil, nil
	}
	s := *p
	switch t.Name {
	case "bigint", "int", "smallint", "tinyint":
		return strconv.ParseInt(s, 10, 64)
	case "bit":
		return s == "1", nil
	case "float", "real":
		return strconv.ParseFloat(s, 64)
	case "decimal", "numeric":
		return tds.ParseDecimal(s)
	case "datetime2", "datetime", "date", "datetimeoffset":
		return time.Parse(time.RFC3339Nano, s)
	case "uniqueidentifier":
		return tds.ParseGUID(s)
	case "varbinary", "binary":
		return base64.StdEncoding.DecodeString(s)
	}
	return s, nil
}
