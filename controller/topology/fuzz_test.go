package topology

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse checks that Parse never panics, that every failure is an
// ErrInvalid with located problems, and that every success survives a
// Marshal/Parse round trip unchanged.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	require.NoError(f, err)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Parse("fuzz.yaml", data)
		if err != nil {
			require.Nil(t, topo)
			require.ErrorIs(t, err, ErrInvalid)
			for _, p := range problems(t, err) {
				require.Equal(t, "fuzz.yaml", p.File)
				require.GreaterOrEqual(t, p.Line, 0)
				require.NotEmpty(t, p.Message)
			}
			return
		}
		out, err := Marshal(topo)
		require.NoError(t, err)
		again, err := Parse("marshalled.yaml", out)
		require.NoError(t, err, "Marshal output:\n%s", out)
		require.Equal(t, topo, again)
	})
}
