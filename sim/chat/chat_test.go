package chat_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/sim/chat"
	"github.com/chatdr/chatdr/sim/csshell"
	sim "github.com/chatdr/chatdr/sim/mssql"
)

const pw = "Chat-Pa55"

func sqlServer(t *testing.T, name string) (string, *sql.DB) {
	t.Helper()
	in, err := sim.Open(sim.Config{Name: name, DataDir: t.TempDir(), Logins: map[string]string{"sa": pw}})
	require.NoError(t, err)
	t.Cleanup(func() { in.Close() })
	addr, err := in.Serve("127.0.0.1:0")
	require.NoError(t, err)
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:%s@%s?database=master&encrypt=disable", pw, addr))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		"CREATE DATABASE mgc",
		"CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1) PRIMARY KEY, room nvarchar(100), sender nvarchar(256), body nvarchar(max), posted_at datetime2 DEFAULT SYSUTCDATETIME())",
	} {
		_, err := db.Exec(q)
		require.NoError(t, err)
	}
	return addr.String(), db
}

func bodies(t *testing.T, db *sql.DB) map[string]bool {
	t.Helper()
	rows, err := db.Query("SELECT body FROM mgc.dbo.messages")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var b string
		require.NoError(t, rows.Scan(&b))
		out[b] = true
	}
	return out
}

func TestChat_followsPoolStateAndActiveList(t *testing.T) {
	pAddr, pdb := sqlServer(t, "SQL1")
	bAddr, bdb := sqlServer(t, "SQL3")
	dir := t.TempDir()
	cms := filepath.Join(dir, "cms.json")
	st, err := csshell.Create(t.Context(), cms, csshell.CMS{
		Pool:    csshell.Pool{FQDN: "pchat.lab"},
		Servers: []csshell.ChatServer{{FQDN: "pc1.lab"}, {FQDN: "pc5.lab"}},
		SQL: map[string]csshell.SQLInstance{
			csshell.RolePrimary: {FQDN: "sql1.lab", Addr: pAddr, Login: "sa", Password: pw},
			csshell.RoleBackup:  {FQDN: "sql3.lab", Addr: bAddr, Login: "sa", Password: pw},
		},
	})
	require.NoError(t, err)
	_, err = st.SetActive(t.Context(), []string{"pc1.lab"})
	require.NoError(t, err)

	ackFile := filepath.Join(dir, "pc1.acks")
	statusFile := filepath.Join(dir, "pc1.status")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- chat.Run(ctx, chat.Config{FQDN: "pc1.lab", CMS: cms, AckFile: ackFile, Rate: 50, Poll: 20 * time.Millisecond, StatusFile: statusFile})
	}()
	waitAcks := func(n int) []chat.Ack {
		var acks []chat.Ack
		require.NoError(t, testutil.Eventually(10*time.Second, 20*time.Millisecond, func() error {
			var err error
			if acks, err = chat.ReadAcks(ackFile); err != nil {
				return err
			}
			if len(acks) < n {
				return fmt.Errorf("%d acks", len(acks))
			}
			return nil
		}))
		return acks
	}

	// Normal: messages go to the primary.
	acks := waitAcks(5)
	for _, a := range acks {
		require.Equal(t, csshell.RolePrimary, a.Role)
	}
	// Off the active list: once its local store shows the change, it writes
	// no more (the status is written before it would post).
	_, err = st.SetActive(t.Context(), nil)
	require.NoError(t, err)
	cur, err := st.State(t.Context())
	require.NoError(t, err)
	require.NoError(t, testutil.Eventually(10*time.Second, 20*time.Millisecond, func() error {
		s, err := chat.ReadStatus(statusFile)
		if err != nil {
			return err
		}
		if s.LocalVersion < cur.Version || s.Active {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	}))
	stopped, err := chat.ReadAcks(ackFile)
	require.NoError(t, err)
	// Failed over and active again: messages go to the backup.
	_, err = st.SetState(t.Context(), csshell.FailedOver)
	require.NoError(t, err)
	_, err = st.SetActive(t.Context(), []string{"pc1.lab"})
	require.NoError(t, err)
	acks = waitAcks(len(stopped) + 5)
	for _, a := range acks[len(stopped):] {
		require.Equal(t, csshell.RoleBackup, a.Role, "nothing was written while inactive, then only to the backup")
	}
	cancel()
	require.NoError(t, <-done)

	// Every acknowledged message is in the database it was acknowledged by.
	final, err := chat.ReadAcks(ackFile)
	require.NoError(t, err)
	inPrimary, inBackup := bodies(t, pdb), bodies(t, bdb)
	for _, a := range final {
		if a.Role == csshell.RolePrimary {
			require.True(t, inPrimary[a.Body], a.Body)
		} else {
			require.True(t, inBackup[a.Body], a.Body)
		}
	}
}
