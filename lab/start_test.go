//go:build !windows

package lab_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
	"github.com/chatdr/chatdr/sim/chat"
	"github.com/chatdr/chatdr/sim/csshell"
)

// primaryMessages counts the rows of mgc.dbo.messages on sql1.dc1.
func primaryMessages(t *testing.T, dir string) int {
	t.Helper()
	st, err := lab.Load(dir)
	require.NoError(t, err)
	pw, err := os.ReadFile(st.SQLPasswordFile)
	require.NoError(t, err)
	var addr string
	for _, p := range st.Procs {
		if p.Name == "mssql.sql1.dc1.chatdr.lab" {
			addr = p.Address
		}
	}
	require.NotEmpty(t, addr)
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", strings.TrimSpace(string(pw))), Host: addr}
	u.RawQuery = url.Values{"database": {"mgc"}, "encrypt": {"disable"}}.Encode()
	db, err := sql.Open("sqlserver", u.String())
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM dbo.messages").Scan(&n))
	return n
}

// siteProcs returns the names of the lab processes of site and whether
// each runs.
func siteProcs(t *testing.T, dir, site string) map[string]bool {
	t.Helper()
	procs, err := lab.Status(dir)
	require.NoError(t, err)
	out := map[string]bool{}
	for _, p := range procs {
		if p.Site == site {
			out[p.Name] = p.Running
		}
	}
	return out
}

// TestLab_StartSite kills the primary site and brings it back with `chatdr
// lab start`: every process of the site runs again, its agents answer, the
// SQL Server data survived, and the chat servers do what the CMS records
// (they write again while the pool is Normal, and write nothing into their
// old database while it is FailedOver).
func TestLab_StartSite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	require.NoError(t, testutil.Eventually(30*time.Second, 100*time.Millisecond, func() error {
		acks, err := chat.ReadAcks(lab.AckFile(dir, "pc1.dc1.chatdr.lab"))
		if err != nil || len(acks) < 3 {
			return fmt.Errorf("%d acknowledged messages (%v)", len(acks), err)
		}
		return nil
	}))

	// A running site: nothing to do. An unknown site: exit 2 with the list.
	r := chatdr(t, nil, "lab", "start", "--dir", dir, "--site", "dc1", "--bin", binDir)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "site dc1 is already running: nothing started")
	r = chatdr(t, nil, "lab", "start", "--dir", dir, "--site", "dc9", "--bin", binDir)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, `unknown site "dc9"`)
	require.Contains(t, r.stderr, "has sites dc1, dc2")

	before := siteProcs(t, dir, "dc1")
	require.Len(t, before, 12, "2 SQL Server simulators, 6 agents, 4 chat services: %v", before)
	r = chatdr(t, nil, "lab", "kill", "--dir", dir, "--site", "dc1")
	require.Equal(t, 0, r.code, r.stderr)
	for name, up := range siteProcs(t, dir, "dc1") {
		require.False(t, up, "%s still runs after the kill", name)
	}
	// Every message acknowledged before the kill must survive it.
	acked := countAcks(t, dir)
	require.Positive(t, acked)

	// The site comes back: the processes, the agents, the data.
	r = chatdr(t, nil, "lab", "start", "--dir", dir, "--site", "dc1", "--bin", binDir, "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var res lab.SiteStart
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.False(t, res.AlreadyRunning)
	require.Len(t, res.Started, 12, res.Started)
	for name := range before {
		require.Contains(t, res.Started, name)
	}
	require.True(t, res.ControllerRunning)
	require.Equal(t, "Normal", res.PoolState)
	require.Len(t, res.ChatServers, 4)
	for _, c := range res.ChatServers {
		require.Equal(t, "Running", c.Service, "%+v", c)
		require.True(t, c.Writes, "%+v", c)
		require.Equal(t, "sql1.dc1.chatdr.lab", c.WritesTo)
	}
	for name, up := range siteProcs(t, dir, "dc1") {
		require.True(t, up, "%s does not run after lab start", name)
	}
	f := fleetStatus(t, env)
	upHosts, down := reachable(f)
	require.Empty(t, down)
	require.Len(t, upHosts, 12)
	m, err := lab.CountMessages(t.Context(), dir)
	require.NoError(t, err)
	require.Equal(t, "sql1.dc1.chatdr.lab", m.Database)
	require.Zero(t, m.Missing, "acknowledged messages lost across the kill: %+v", m)
	require.GreaterOrEqual(t, m.Present, acked)
	// The chat servers of the site write again into the primary.
	require.NoError(t, testutil.Eventually(30*time.Second, 100*time.Millisecond, func() error {
		if n := countAcks(t, dir); n <= acked {
			return fmt.Errorf("no new acknowledged message since the restart (%d)", n)
		}
		return nil
	}))
	r = chatdr(t, nil, "lab", "start", "--dir", dir, "--site", "dc1", "--bin", binDir)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "already running")

	// Lost again, and failed over meanwhile (F5 and F7 on the surviving
	// Management Shell host): back, the old primary site's chat servers run
	// but write nothing, not even into their old database.
	r = chatdr(t, nil, "lab", "kill", "--dir", dir, "--site", "dc1")
	require.Equal(t, 0, r.code, r.stderr)
	st, err := lab.Load(dir)
	require.NoError(t, err)
	store, err := csshell.Open(t.Context(), st.CMS)
	require.NoError(t, err)
	_, err = store.SetState(t.Context(), csshell.FailedOver)
	require.NoError(t, err)
	_, err = store.SetActive(t.Context(), []string{"pc5.dc2.chatdr.lab", "pc6.dc2.chatdr.lab", "pc7.dc2.chatdr.lab", "pc8.dc2.chatdr.lab"})
	require.NoError(t, err)
	var dc1Chat []string
	for _, c := range res.ChatServers {
		dc1Chat = append(dc1Chat, c.Host)
		require.NoError(t, os.Remove(filepath.Join(dir, "chat", c.Host+".status")))
	}
	r = chatdr(t, nil, "lab", "start", "--dir", dir, "--site", "dc1", "--bin", binDir)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "site dc1 is back: started 12 processes")
	require.Contains(t, r.stdout, "pool FailedOver")
	require.Contains(t, r.stdout, "pc1.dc1.chatdr.lab: RTCCHAT Running in the CMS, not on the active list: writes nothing")
	rows := primaryMessages(t, dir)
	require.NoError(t, testutil.Eventually(30*time.Second, 100*time.Millisecond, func() error {
		for _, h := range dc1Chat {
			s, err := chat.ReadStatus(filepath.Join(dir, "chat", h+".status"))
			if err != nil {
				return err
			}
			if s.PoolState != "FailedOver" || s.Active || s.Role != "" {
				return fmt.Errorf("%s: %+v", h, s)
			}
		}
		return nil
	}))
	require.Equal(t, rows, primaryMessages(t, dir), "a chat server of the old primary site wrote into its old database")
	require.True(t, slices.Equal(dc1Chat, []string{"pc1.dc1.chatdr.lab", "pc2.dc1.chatdr.lab", "pc3.dc1.chatdr.lab", "pc4.dc1.chatdr.lab"}), dc1Chat)
}

// countAcks returns how many messages the chat simulators saw acknowledged.
func countAcks(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for i := range 8 {
		site := "dc1"
		if i >= 4 {
			site = "dc2"
		}
		acks, err := chat.ReadAcks(lab.AckFile(dir, fmt.Sprintf("pc%d.%s.chatdr.lab", i+1, site)))
		if err != nil && !os.IsNotExist(err) {
			require.NoError(t, err)
		}
		n += len(acks)
	}
	return n
}
