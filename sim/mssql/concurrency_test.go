package mssql

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInstance_Concurrent_sessions(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 0)
	db.SetMaxOpenConns(8)
	const workers, each = 8, 20
	var wg sync.WaitGroup
	ids := make(chan int64, workers*each)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var id int64
				err := db.QueryRowContext(t.Context(), "INSERT INTO dbo.messages (room, sender, body) OUTPUT INSERTED.id VALUES (@p1, @p2, @p3)",
					fmt.Sprintf("room%d", w), "s", fmt.Sprint(i)).Scan(&id)
				if err != nil {
					errs <- err
					return
				}
				ids <- id
				var n int64
				if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM dbo.messages WHERE room = @p1", fmt.Sprintf("room%d", w)).Scan(&n); err != nil {
					errs <- err
					return
				}
				if n != int64(i+1) {
					errs <- fmt.Errorf("worker %d: count %d after %d inserts", w, n, i+1)
					return
				}
				if i%5 == 0 {
					rows, err := db.QueryContext(t.Context(), "EXEC sp_who2")
					if err != nil {
						errs <- err
						return
					}
					for rows.Next() {
					}
					rows.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	seen := map[int64]bool{}
	for id := range ids {
		require.False(t, seen[id], "duplicate id %d", id)
		seen[id] = true
	}
	require.Len(t, seen, workers*each)
	require.Equal(t, int64(workers*each), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages"))
	require.Equal(t, int64(workers*each), queryInt(t, db, "SELECT MAX(id) FROM dbo.messages"))
}
