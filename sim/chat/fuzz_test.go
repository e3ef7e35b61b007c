package chat

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParseAck checks the reader of acknowledgement-file lines (the
// message-loss check of the lab reads them): no panic; an accepted line
// written back and read again gives the same ack; an ack written by the
// simulator (tab-free body and role) reads back unchanged.
func FuzzParseAck(f *testing.F) {
	for _, s := range []string{
		"1\thello\tprimary\t2026-11-29T02:30:00.123456789Z\n",
		"42\t\t\t2026-11-29T02:30:00+01:00",
		"0x10\tb\tr\t2026-11-29T02:30:00Z", "-1\tb\tr\t2026-11-29T02:30:00Z", "1\tb\tr", "1\ta\tb\tc\td", "", "\t\t\t",
		"99999999999999999999\tb\tr\t2026-11-29T02:30:00Z",
	} {
		f.Add(s, int64(7), "body", "mirror", int64(1764383400123456789))
	}
	f.Fuzz(func(t *testing.T, line string, id int64, body, role string, nanos int64) {
		if a, err := ParseAck(line); err == nil {
			b, err := ParseAck(a.line())
			require.NoError(t, err, "%q", a.line())
			requireSameAck(t, a, b)
		} else {
			require.Contains(t, err.Error(), "ack line")
		}

		if strings.ContainsAny(body+role, "\t\n") {
			return
		}
		at := time.Unix(0, nanos).UTC()
		want := Ack{ID: id, Body: body, Role: role, At: at}
		got, err := ParseAck(want.line())
		if at.Year() > 9999 || at.Year() < 0 {
			return // RFC 3339 has four-digit years
		}
		require.NoError(t, err, "%q", want.line())
		requireSameAck(t, want, got)
	})
}

func requireSameAck(t *testing.T, want, got Ack) {
	t.Helper()
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.Body, got.Body)
	require.Equal(t, want.Role, got.Role)
	require.True(t, want.At.Equal(got.At), "%v != %v", want.At, got.At)
}
