package mssql

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// FuzzReadBackupSets feeds arbitrary backup files to the reader behind
// RESTORE (HEADERONLY, VERIFYONLY, DATABASE, LOG). Properties: no panic; a
// refusal is 3013 joined with 3241 (malformed), 3203 (truncated) or 3183
// (checksum); every accepted set written back with writeBackupSet reads back
// with the same header and content, and its content decodes or is refused
// without a panic.
func FuzzReadBackupSets(f *testing.F) {
	// Backup files the simulator wrote (a full backup, a compressed one
	// appended, a log backup) are in testdata/fuzz/FuzzReadBackupSets; the
	// seeds here are small sets written directly, so that every fuzzing
	// worker starts without opening an Instance.
	hdr := backupHeader{BackupType: 1, DatabaseName: "mgc", ServerName: "SQL1", FirstLSN: 1, LastLSN: 2, Compressed: true}
	snap := []byte(`{"tables":[{"meta":{"schema":"dbo","name":"t","cols":[{"name":"id","type":{"name":"bigint"}},{"name":"b","type":{"name":"nvarchar","len":-1},"nullable":true}]},"rows":[{"id":1,"vals":["7",null]}]}]}`)
	dir := f.TempDir()
	var seeds [][]byte
	for i, h := range []backupHeader{hdr, {BackupType: 2, DatabaseName: "mgc"}} {
		p := filepath.Join(dir, fmt.Sprint(i))
		require.NoError(f, writeBackupSet(p, h, snap, true))
		require.NoError(f, writeBackupSet(p, h, []byte(`{"entries":[{"lsn":3,"ops":[]}]}`), false))
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		seeds = append(seeds, b, b[:len(b)/2])
	}
	seeds = append(seeds, []byte(backupMagic), []byte(backupMagic+"\xff\xff\xff\xff"))
	for _, b := range seeds {
		f.Add(b)
	}

	check := func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "in.bak")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		sets, err := readBackupSets(path, "RESTORE HEADERONLY")
		if err != nil {
			require.Nil(t, sets)
			requireBackupErr(t, err)
			return
		}
		require.NotEmpty(t, sets)
		again := filepath.Join(dir, "again.bak")
		for i, s := range sets {
			_ = checkContent(s)
			require.NoError(t, writeBackupSet(again, s.hdr, s.content, i == 0))
		}
		back, err := readBackupSets(again, "RESTORE HEADERONLY")
		require.NoError(t, err)
		require.Len(t, back, len(sets))
		for i := range sets {
			want, err := json.Marshal(sets[i].hdr)
			require.NoError(t, err)
			got, err := json.Marshal(back[i].hdr)
			require.NoError(t, err)
			require.JSONEq(t, string(want), string(got))
			require.True(t, bytes.Equal(sets[i].content, back[i].content), "content of set %d changed", i+1)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { check(t, data) })
}

// requireBackupErr checks that err is 3013 joined with a reason a reader
// of a damaged file may give.
func requireBackupErr(t testing.TB, err error) {
	t.Helper()
	var numbers []int32
	var walk func(error)
	walk = func(e error) {
		var te *tds.Error
		if errors.As(e, &te) && te == e {
			numbers = append(numbers, te.Number)
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	require.Contains(t, numbers, int32(3013), "%v", err)
	require.Len(t, numbers, 2, "%v", err)
	require.Contains(t, []int32{3241, 3203, 3183}, numbers[0], "%v", err)
}

// FuzzCheckContent decodes arbitrary backup content (RESTORE VERIFYONLY):
// no panic, whatever the JSON says about tables, columns and values.
func FuzzCheckContent(f *testing.F) {
	f.Add(2, []byte(`{"entries":[]}`))
	f.Add(1, []byte(`{"tables":[{"meta":{},"rows":[{"id":1,"vals":["x",null]}]}]}`))
	f.Add(1, []byte(`{"tables":null}`))
	f.Add(1, []byte(`[`))
	f.Fuzz(func(t *testing.T, typ int, content []byte) {
		_ = checkContent(backupSet{hdr: backupHeader{BackupType: typ}, content: content})
	})
}
