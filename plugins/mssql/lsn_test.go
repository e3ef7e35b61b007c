package mssql

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func lsn(t *testing.T, s string) LSN {
	t.Helper()
	l, ok, err := parseLSN(s)
	require.NoError(t, err)
	require.True(t, ok)
	return l
}

func TestPlanLogRestore(t *testing.T) {
	const fork = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
	h := func(file, first, last string) backupHeader {
		return backupHeader{File: file, BackupType: 2, FirstLSN: lsn(t, first), LastLSN: lsn(t, last), RecoveryForkID: fork}
	}
	names := func(hs []backupHeader) []string {
		var out []string
		for _, x := range hs {
			out = append(out, x.File)
		}
		return out
	}
	a, b, c, d := h("a.trn", "100", "200"), h("b.trn", "200", "300"), h("c.trn", "300", "400"), h("d.trn", "400", "500")
	other := h("x.trn", "300", "400")
	other.RecoveryForkID = "11111111-2222-3333-4444-555555555555"

	tests := []struct {
		name      string
		redo      string
		logs      []backupHeader
		apply     []string
		skipped   []string
		unapplied []string
		stop      string
		reached   string
	}{
		{"all in order", "100", []backupHeader{a, b, c}, []string{"a.trn", "b.trn", "c.trn"}, nil, nil, "", "400"},
		{"unsorted input", "100", []backupHeader{c, a, b}, []string{"a.trn", "b.trn", "c.trn"}, nil, nil, "", "400"},
		{"some applied", "300", []backupHeader{a, b, c, d}, []string{"c.trn", "d.trn"}, []string{"a.trn", "b.trn"}, nil, "", "500"},
		{"redo inside a backup", "250", []backupHeader{b, c}, []string{"b.trn", "c.trn"}, nil, nil, "", "400"},
		{"all applied", "500", []backupHeader{a, b, c, d}, nil, []string{"a.trn", "b.trn", "c.trn", "d.trn"}, nil, "", "500"},
		{"gap", "100", []backupHeader{a, c, d}, []string{"a.trn"}, nil, []string{"c.trn", "d.trn"}, "gap in the log chain: c.trn starts at LSN 300 but the database needs LSN 200 next", "200"},
		{"gap at start", "50", []backupHeader{a, b}, nil, nil, []string{"a.trn", "b.trn"}, "gap in the log chain: a.trn starts at LSN 100", "50"},
		{"other fork", "300", []backupHeader{a, b, other}, nil, []string{"a.trn", "b.trn"}, []string{"x.trn"}, "x.trn belongs to recovery fork 11111111", "300"},
		{"nothing", "300", nil, nil, nil, nil, "", "300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planLogRestore(lsn(t, tt.redo), fork, tt.logs)
			require.Equal(t, tt.apply, names(p.Apply))
			require.Equal(t, tt.skipped, names(p.Skipped))
			var un []string
			for _, u := range p.Unapplied {
				un = append(un, u.File)
				require.Equal(t, p.Stop, u.Reason)
			}
			require.Equal(t, tt.unapplied, un)
			if tt.stop == "" {
				require.Empty(t, p.Stop)
			} else {
				require.Contains(t, p.Stop, tt.stop)
			}
			require.Equal(t, tt.reached, p.Reached.String())
		})
	}
}

func TestParseLSN(t *testing.T) {
	l, ok, err := parseLSN("39000000012300001")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "39000000012300001", l.String())
	_, ok, err = parseLSN("")
	require.NoError(t, err)
	require.False(t, ok)
	_, _, err = parseLSN("12a")
	require.Error(t, err)
	_, _, err = parseLSN("-5")
	require.Error(t, err)
	require.Equal(t, -1, lsn(t, "99").Cmp(lsn(t, "100")))
}
