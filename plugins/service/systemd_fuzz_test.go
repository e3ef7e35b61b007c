//go:build linux

package service

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

// FuzzParseShow checks the reader of `systemctl show` output: no panic; a
// failure is a coded plugin error with state unknown; otherwise the state is
// one the plugin knows and the detail is ActiveState/SubState.
func FuzzParseShow(f *testing.F) {
	for _, s := range []string{
		"LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=1234\nActiveEnterTimestamp=Thu 2024-01-04 10:00:00 UTC\nInactiveEnterTimestamp=n/a\nNRestarts=2\n",
		"LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\nInactiveEnterTimestamp=@1700000000\n",
		"LoadState=not-found\n", "", "ActiveState=\n", "ActiveState=weird\nMainPID=x\n", "=\n==\n", "ActiveState=active\nActiveEnterTimestamp=Mon 2006-01-02 15:04:05.000000 MST\n",
	} {
		f.Add(s)
	}
	known := map[State]bool{StateRunning: true, StateStopped: true, StateStarting: true, StateStopping: true, StateUnknown: true}
	f.Fuzz(func(t *testing.T, out string) {
		st, err := parseShow("chatdr-test", out)
		if err != nil {
			var pe *pluginsdk.Error
			require.True(t, errors.As(err, &pe), "%T", err)
			require.NotEmpty(t, pe.Code)
			require.Equal(t, StateUnknown, st.State)
			return
		}
		require.True(t, known[st.State], "%q", st.State)
		require.NotEqual(t, "/", st.Detail[:1], "an ActiveState is required: %q", st.Detail)
		if st.State == StateStopped {
			require.Zero(t, st.PID)
		}
	})
}
