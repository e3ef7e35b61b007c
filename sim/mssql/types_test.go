package mssql

import (
	"database/sql"
	"testing"
	"time"

	mssqldrv "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

func TestInstance_Types_roundTripAndRestart(t *testing.T) {
	dir := t.TempDir()
	ti := openTestInstance(t, dir)
	m := ti.connect(t, "master")
	exec(t, m, `CREATE TABLE dbo.t (a int, b smallint, c tinyint, d bit, e float, f real, g decimal(10,2),
		h nvarchar(10), i varchar(max), j nchar(3), k datetime2(3), l datetime, n date,
		o uniqueidentifier, p varbinary(16), q money, r bigint NOT NULL DEFAULT 42)`)
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123000000, time.UTC)
	exec(t, m, `INSERT INTO dbo.t (a, b, c, d, e, f, g, h, i, j, k, l, n, o, p, q)
		VALUES (-7, 300, 255, 1, 1.5, 2.25, 12.345, N'héllo', 'long', 'ab', @p1, '2026-03-04 05:06:07', '2026-03-04',
		'6F9619FF-8B86-D011-B42D-00C04FC964FF', 0x0102, 9.99)`, ts)
	exec(t, m, "INSERT INTO dbo.t (a) VALUES (NULL)")

	type row struct {
		a, b, c, r int64
		d          bool
		e, f       float64
		g, q       string
		h, i, j    string
		k, l, n    time.Time
		o          mssqldrv.UniqueIdentifier
		p          []byte
	}
	read := func(db *sql.DB) row {
		var r row
		require.NoError(t, db.QueryRowContext(t.Context(), "SELECT a, b, c, d, e, f, g, h, i, j, k, l, n, o, p, q, r FROM dbo.t WHERE a IS NOT NULL").Scan(
			&r.a, &r.b, &r.c, &r.d, &r.e, &r.f, &r.g, &r.h, &r.i, &r.j, &r.k, &r.l, &r.n, &r.o, &r.p, &r.q, &r.r))
		return r
	}
	want := read(m)
	require.Equal(t, int64(-7), want.a)
	require.Equal(t, int64(300), want.b)
	require.Equal(t, int64(255), want.c)
	require.True(t, want.d)
	require.Equal(t, 1.5, want.e)
	require.Equal(t, 2.25, want.f)
	require.Equal(t, "12.35", want.g)
	require.Equal(t, "héllo", want.h)
	require.Equal(t, "ab ", want.j)
	require.Equal(t, ts, want.k.UTC())
	require.Equal(t, time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), want.l.UTC())
	require.Equal(t, "6F9619FF-8B86-D011-B42D-00C04FC964FF", want.o.String())
	require.Equal(t, []byte{1, 2}, want.p)
	require.Equal(t, "9.9900", want.q)
	require.Equal(t, int64(42), want.r)
	require.Equal(t, int64(1), queryInt(t, m, "SELECT COUNT(*) FROM dbo.t WHERE b IS NULL AND r = 42"))

	for _, tt := range []struct {
		q      string
		number int32
	}{
		{"INSERT INTO dbo.t (h) VALUES (N'01234567890')", 8152},
		{"INSERT INTO dbo.t (c) VALUES (256)", 8115},
		{"INSERT INTO dbo.t (a) VALUES ('x')", 245},
		{"INSERT INTO dbo.t (k) VALUES ('not a date')", 241},
		{"INSERT INTO dbo.t (r) VALUES (NULL)", 515},
	} {
		_, err := m.ExecContext(t.Context(), tt.q)
		e := sqlError(t, err)
		require.Equal(t, int32(3621), e.Number, tt.q)
		require.Equal(t, tt.number, e.All[0].Number, tt.q)
	}

	require.NoError(t, m.Close())
	require.NoError(t, ti.in.Close())
	ti2 := openTestInstance(t, dir)
	m2 := ti2.connect(t, "master")
	require.Equal(t, want, read(m2))
	exec(t, m2, "DROP TABLE dbo.t")
	_, err := m2.ExecContext(t.Context(), "DROP TABLE dbo.t")
	e := sqlError(t, err)
	require.Equal(t, int32(3701), e.Number)
	exec(t, m2, "DROP TABLE IF EXISTS dbo.t")
}

func TestInstance_PrimaryKey_unique(t *testing.T) {
	ti := openTestInstance(t, "")
	m := ti.connect(t, "master")
	exec(t, m, "CREATE TABLE dbo.k (a int NOT NULL, b nvarchar(10) NOT NULL, c int, CONSTRAINT pk PRIMARY KEY (a, b))")
	exec(t, m, "INSERT INTO dbo.k (a, b) VALUES (1, 'x'), (1, 'y')")
	for _, q := range []string{
		"INSERT INTO dbo.k (a, b) VALUES (1, 'X')", // case-insensitive collation
		"INSERT INTO dbo.k (a, b) VALUES (2, 'z'), (2, 'z')",
		"UPDATE dbo.k SET b = 'x' WHERE b = 'y'",
	} {
		_, err := m.ExecContext(t.Context(), q)
		e := sqlError(t, err)
		require.Equal(t, int32(3621), e.Number, q)
		require.Equal(t, int32(2627), e.All[0].Number, q)
		require.Contains(t, e.All[0].Message, "Cannot insert duplicate key in object 'dbo.k'.")
	}
	require.Equal(t, int64(2), queryInt(t, m, "SELECT COUNT(*) FROM dbo.k"))
	exec(t, m, "UPDATE dbo.k SET c = 5") // no key change
}
