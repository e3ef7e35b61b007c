package mssql

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	execpkg "os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// childEnv makes the test binary serve an instance instead of running tests
// (see TestMain): the kill -9 test needs a real process to kill.
const childEnv = "CHATDR_MSSQL_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		in, err := Open(Config{Name: "SQL1", DataDir: dir, Logins: map[string]string{"sa": "pass"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		addr, err := in.Serve("127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("LISTENING", addr.String())
		select {} // until killed
	}
	code := m.Run()
	cleanupBench()
	os.Exit(code)
}

func TestInstance_Kill9_keepsAcknowledgedRows(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	cmd := execpkg.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "LISTENING"))

	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:pass@%s?database=master&encrypt=disable", addr))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(t.Context(), "CREATE DATABASE mgc")
	require.NoError(t, err)
	_, err = db.ExecContext(t.Context(), "USE mgc; "+createMessages)
	require.NoError(t, err)

	// Four writers insert until the process dies; every acknowledged id is
	// recorded.
	acked := make(chan int64, 100000)
	done := make(chan struct{})
	const writers = 4
	db.SetMaxOpenConns(writers)
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var id int64
				err := db.QueryRowContext(ctx, "INSERT INTO mgc.dbo.messages (room, sender, body) OUTPUT INSERTED.id VALUES (@p1, @p2, @p3)",
					"room", fmt.Sprintf("w%d", w), fmt.Sprintf("msg %d", i)).Scan(&id)
				cancel()
				if err != nil {
					return
				}
				acked <- id
			}
		}()
	}
	require.Eventually(t, func() bool { return len(acked) >= 60 }, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, cmd.Process.Kill()) // SIGKILL
	_ = cmd.Wait()
	for range writers {
		<-done
	}
	close(acked)

	in, err := Open(Config{Name: "SQL1", DataDir: dir, Logins: map[string]string{"sa": "pass"}})
	require.NoError(t, err)
	defer in.Close()
	res, err := in.Exec(t.Context(), "mgc", "SELECT id FROM dbo.messages")
	require.NoError(t, err)
	present := map[int64]bool{}
	for _, r := range res[0] {
		present[r[0].(int64)] = true
	}
	n := 0
	for id := range acked {
		require.True(t, present[id], "acknowledged id %d lost", id)
		n++
	}
	require.GreaterOrEqual(t, n, 60)
	info, ok := in.Database("mgc")
	require.True(t, ok)
	require.Equal(t, "ONLINE", info.State)
}
