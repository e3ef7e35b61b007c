package mssql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	mssqldb "github.com/microsoft/go-mssqldb"
)

// row is one result row by column name. Numeric/decimal values are decimal
// strings, uniqueidentifiers canonical GUID strings, times time.Time.
type row map[string]any

func (r row) str(col string) string {
	switch v := r[col].(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(v)
	}
}

func (r row) int(col string) int64 {
	switch v := r[col].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case bool:
		if v {
			return 1
		}
		return 0
	case float64:
		return int64(v)
	case string:
		var n int64
		fmt.Sscan(v, &n)
		return n
	}
	return 0
}

func (r row) bool(col string) bool { return r.int(col) != 0 }

func (r row) time(col string) time.Time {
	if t, ok := r[col].(time.Time); ok {
		return t
	}
	return time.Time{}
}

// queryRows runs a query and returns every row of its first result set.
func queryRows(ctx context.Context, db *sql.DB, query string, args ...any) ([]row, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	var out []row
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := row{}
		for i, c := range cols {
			r[c.Name()] = normalize(c.DatabaseTypeName(), vals[i])
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func normalize(dbType string, v any) any {
	b, ok := v.([]byte)
	if !ok {
		return v
	}
	switch strings.ToUpper(dbType) {
	case "UNIQUEIDENTIFIER":
		var u mssqldb.UniqueIdentifier
		if err := u.Scan(b); err == nil {
			return u.String()
		}
	case "DECIMAL", "NUMERIC", "MONEY", "SMALLMONEY", "VARCHAR", "CHAR", "TEXT":
		return string(b)
	}
	return b
}
