package csshell_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/sim/csshell"
	"github.com/chatdr/chatdr/sim/csshell/csshelltest"
)

// Environment variables that turn the test binary into a helper process.
const (
	envWriter = "CHATDR_CSSHELL_TEST_WRITER" // "path,service,n": toggle a service n times
	envMain   = "CHATDR_CSSHELL_TEST_MAIN"   // run csshell.Main with the arguments
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envWriter); spec != "" {
		os.Exit(runWriter(spec))
	}
	if os.Getenv(envMain) == "1" {
		os.Exit(csshell.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// runWriter toggles one service n times through the Store API.
func runWriter(spec string) int {
	var path, svc string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %s %d", &path, &svc, &n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	st, err := csshell.Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for i := range n {
		status := csshell.ServiceStopped
		if i%2 == 1 {
			status = csshell.ServiceRunning
		}
		changed, err := st.SetServiceStatus(ctx, "pc1.dc1.contoso.com", []string{svc}, status)
		if err != nil || changed != 1 {
			fmt.Fprintln(os.Stderr, "toggle", svc, i, changed, err)
			return 1
		}
	}
	return 0
}

// goraceNoExitSleep returns GORACE without the race detector's 1 s sleep
// at a successful exit (helper processes would each take a second).
func goraceNoExitSleep() string {
	return strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
}

func newStore(t *testing.T, c csshell.CMS) *csshell.Store {
	t.Helper()
	st, err := csshell.Create(t.Context(), filepath.Join(t.TempDir(), "cms.json"), c)
	require.NoError(t, err)
	return st
}

func TestStore_Create_defaultsAndReopen(t *testing.T) {
	st := newStore(t, csshelltest.LabCMS(nil))
	c, err := st.Read(t.Context())
	require.NoError(t, err)
	require.Equal(t, csshell.CMSFormat, c.Format)
	require.Equal(t, []string{"PersistentChatServer:pchat01.contoso.com", "service:pchat01.contoso.com"}, c.Pool.Identities)
	require.Equal(t, []string{"global"}, c.Pool.ActiveServerIdentities)
	require.Equal(t, "numbers", c.JSONEnums)
	require.Equal(t, []csshell.Service{{Name: "RTCCHAT", DisplayName: "Skype for Business Server Persistent Chat", Status: "Running", ActivityLevel: "Full"}}, c.Servers[0].Services)

	_, err = csshell.Create(t.Context(), st.Path(), csshelltest.LabCMS(nil))
	require.ErrorIs(t, err, csshell.ErrExists)

	again, err := csshell.Open(t.Context(), st.Path())
	require.NoError(t, err)
	snap, err := again.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, csshell.Normal, snap.PoolState)
	require.Equal(t, []string{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com"}, snap.ActiveServers)

	info, err := os.Stat(st.Path())
	require.NoError(t, err)
	if os.PathSeparator == '/' {
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the file holds SQL passwords")
	}
}

func TestStore_Open_invalid(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"not json":        "{",
		"unknown field":   `{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a.contoso.com"}],"surprise":1}`,
		"bad fqdn":        `{"pool":{"fqdn":"p contoso"},"servers":[{"fqdn":"a.contoso.com"}]}`,
		"too many active": `{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"},{"fqdn":"b"},{"fqdn":"c"},{"fqdn":"d"},{"fqdn":"e"}],"history":[{"version":1,"pool_state":"Normal","active_servers":["a","b","c","d","e"]}]}`,
		"bad role":        `{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"}],"sql":{"tertiary":{"fqdn":"s","addr":"127.0.0.1:1"}}}`,
		"bad addr":        `{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"}],"sql":{"primary":{"fqdn":"s","addr":"nowhere"}}}`,
		"bad database":    `{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"}],"databases":{"chat":"mgc]; DROP"}}`,
		"unknown active":  `{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"}],"history":[{"version":1,"pool_state":"Normal","active_servers":["z"]}]}`,
		"bad state":       `{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"}],"history":[{"version":1,"pool_state":"Broken"}]}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".json")
			require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
			_, err := csshell.Open(t.Context(), path)
			require.ErrorIs(t, err, csshell.ErrInvalidCMS)
		})
	}
}

func TestStore_SetState_history(t *testing.T) {
	st := newStore(t, csshelltest.LabCMS(nil))
	before, err := st.State(t.Context())
	require.NoError(t, err)

	changed, err := st.SetState(t.Context(), csshell.FailedOver)
	require.NoError(t, err)
	require.True(t, changed)
	changed, err = st.SetState(t.Context(), "failedover")
	require.NoError(t, err)
	require.False(t, changed, "same state twice is no change")

	after, err := st.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, csshell.FailedOver, after.PoolState)
	require.Equal(t, before.Version+1, after.Version)
	require.Equal(t, before.ActiveServers, after.ActiveServers)
	require.False(t, after.At.Before(before.At))

	_, err = st.SetState(t.Context(), "Sideways")
	require.ErrorIs(t, err, csshell.ErrInvalidCMS)
}

func TestStore_LocalStateAt_followsDelay(t *testing.T) {
	c := csshelltest.LabCMS(nil)
	c.Servers[4].ReplicationDelay = csshell.Duration(2 * time.Second) // pc5
	st := newStore(t, c)
	_, err := st.SetState(t.Context(), csshell.FailedOver)
	require.NoError(t, err)
	central, err := st.State(t.Context())
	require.NoError(t, err)

	local, err := st.LocalStateAt(t.Context(), "PC5.dc2.contoso.com", central.At.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, csshell.Normal, local.PoolState, "1s after the change the 2s-delayed store lags")
	require.Less(t, local.Version, central.Version)

	local, err = st.LocalStateAt(t.Context(), "pc5.dc2.contoso.com", central.At.Add(2*time.Second))
	require.NoError(t, err)
	require.Equal(t, central, local)

	local, err = st.LocalStateAt(t.Context(), "pc1.dc1.contoso.com", central.At)
	require.NoError(t, err)
	require.Equal(t, csshell.FailedOver, local.PoolState, "no delay: at once")

	_, err = st.LocalState(t.Context(), "pc9.dc2.contoso.com")
	require.ErrorIs(t, err, csshell.ErrUnknownServer)
}

func TestStore_SetActive_rules(t *testing.T) {
	st := newStore(t, csshelltest.LabCMS(nil))
	five := append(csshelltest.SiteServers("dc2"), "pc1.dc1.contoso.com")
	_, err := st.SetActive(t.Context(), five)
	require.ErrorIs(t, err, csshell.ErrTooManyActive)
	_, err = st.SetActive(t.Context(), []string{"pc9.dc2.contoso.com"})
	require.ErrorIs(t, err, csshell.ErrUnknownServer)

	changed, err := st.SetActive(t.Context(), []string{"PC5.DC2.CONTOSO.COM", "pc6.dc2.contoso.com", "pc5.dc2.contoso.com"})
	require.NoError(t, err)
	require.True(t, changed)
	snap, err := st.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"pc5.dc2.contoso.com", "pc6.dc2.contoso.com"}, snap.ActiveServers, "topology spelling, no duplicates")

	changed, err = st.SetActive(t.Context(), []string{"pc6.dc2.contoso.com", "pc5.dc2.contoso.com"})
	require.NoError(t, err)
	require.False(t, changed)

	after, changed, err := st.ModifyActive(t.Context(), []string{"pc7.dc2.contoso.com"}, []string{"pc5.dc2.contoso.com"})
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, []string{"pc6.dc2.contoso.com", "pc7.dc2.contoso.com"}, after.ActiveServers)
	require.Equal(t, snap.Version+1, after.Version)
}

func TestStore_Update_prunesHistory(t *testing.T) {
	c := csshelltest.LabCMS(nil)
	c.Servers[0].ReplicationDelay = csshell.Duration(time.Second)
	old := time.Now().Add(-time.Hour).UTC()
	c.History = []csshell.Change{
		{Version: 1, At: old, PoolState: csshell.Normal},
		{Version: 2, At: old.Add(time.Minute), PoolState: csshell.FailedOver},
		{Version: 3, At: old.Add(2 * time.Minute), PoolState: csshell.Normal},
	}
	st := newStore(t, c)
	_, err := st.SetState(t.Context(), csshell.FailedOver)
	require.NoError(t, err)
	got, err := st.Read(t.Context())
	require.NoError(t, err)
	require.Len(t, got.History, 2, "entries no local store can still show are dropped")
	require.Equal(t, int64(3), got.History[0].Version, "the newest old entry stays: a lagging store shows it")
	require.Equal(t, int64(4), got.Version)
}

func TestStore_ServiceStatus(t *testing.T) {
	st := newStore(t, csshelltest.LabCMS(nil))
	n, err := st.SetServiceStatus(t.Context(), "pc1.dc1.contoso.com", []string{"rtcchat"}, csshell.ServiceStopped)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	running, err := st.ServiceRunning(t.Context(), "pc1.dc1.contoso.com", "RTCCHAT")
	require.NoError(t, err)
	require.False(t, running)
	n, err = st.SetServiceStatus(t.Context(), "pc1.dc1.contoso.com", nil, csshell.ServiceStopped)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = st.SetServiceStatus(t.Context(), "pc1.dc1.contoso.com", []string{"W3SVC"}, csshell.ServiceStopped)
	require.ErrorIs(t, err, csshell.ErrUnknownService)
}

// Stopping a service waits for the work it has in flight, and once the stop
// has returned no new work starts.
func TestStore_ServiceWork_stopWaitsForWorkInFlight(t *testing.T) {
	st := newStore(t, csshelltest.LabCMS(nil))
	const srv = "pc1.dc1.contoso.com"
	running, release, err := st.ServiceWork(t.Context(), srv, "RTCCHAT")
	require.NoError(t, err)
	require.True(t, running)
	stopped := make(chan error, 1)
	go func() {
		_, err := st.SetServiceStatus(t.Context(), srv, []string{"RTCCHAT"}, csshell.ServiceStopped)
		stopped <- err
	}()
	// The stop is recorded at once but does not return while the work runs.
	require.NoError(t, testutil.Eventually(10*time.Second, 10*time.Millisecond, func() error {
		if up, _ := st.ServiceRunning(t.Context(), srv, "RTCCHAT"); up {
			return errors.New("stop not recorded yet")
		}
		return nil
	}))
	select {
	case err := <-stopped:
		t.Fatalf("the stop returned while work was in flight (err %v)", err)
	default:
	}
	release()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the stop did not return after the work ended")
	}
	running, release, err = st.ServiceWork(t.Context(), srv, "RTCCHAT")
	require.NoError(t, err)
	release()
	require.False(t, running, "no work starts once the stop returned")
	// Another server's service is not held by this one's work.
	running, release, err = st.ServiceWork(t.Context(), "pc2.dc1.contoso.com", "RTCCHAT")
	require.NoError(t, err)
	defer release()
	require.True(t, running)
	_, _, err = st.ServiceWork(t.Context(), srv, "W3SVC")
	require.ErrorIs(t, err, csshell.ErrUnknownService)
}

func TestStore_Update_concurrentProcessesLoseNothing(t *testing.T) {
	const writers, toggles = 8, 24 // even: every service ends Running
	c := csshelltest.LabCMS(nil)
	for i := range writers {
		c.Servers[0].Services = append(c.Servers[0].Services, csshell.Service{Name: "SVC" + strconv.Itoa(i), Status: csshell.ServiceRunning})
	}
	st := newStore(t, c)
	start, err := st.Read(t.Context())
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s SVC%d %d", envWriter, st.Path(), i, toggles), "GORACE="+goraceNoExitSleep())
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("writer %d: %v: %s", i, err, out)
			}
		}()
	}
	// This process reads while the others write: every read sees a whole file.
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Read(context.Background()); err != nil {
				readErr <- err
				return
			}
			select {
			case <-t.Context().Done():
				readErr <- nil
				return
			default:
			}
			if len(errs) > 0 {
				readErr <- nil
				return
			}
			time.Sleep(time.Millisecond) // pace the reader, not a wait for an event
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	end, err := st.Read(t.Context())
	require.NoError(t, err)
	require.Equal(t, start.Version+writers*toggles, end.Version, "every locked read-modify-write counted once")
	for _, s := range end.Servers[0].Services {
		require.Equal(t, csshell.ServiceRunning, s.Status, s.Name)
	}
	b, err := os.ReadFile(st.Path())
	require.NoError(t, err)
	require.True(t, json.Valid(b))
	leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(st.Path()), ".cms.json.tmp-*"))
	require.NoError(t, err)
	require.Empty(t, leftovers, "no temp file is left behind")
}

func TestStore_Update_lockHonoursContext(t *testing.T) {
	st := newStore(t, csshelltest.LabCMS(nil))
	entered := make(chan struct{})
	release := make(chan struct{})
	go st.Update(context.Background(), func(c *csshell.CMS) error {
		close(entered)
		<-release
		return nil
	})
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := st.SetState(ctx, csshell.FailedOver)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	close(release)
	// The abandoned wait must not keep the lock once it gets it.
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	changed, err := st.SetState(ctx, csshell.FailedOver)
	require.NoError(t, err)
	require.True(t, changed)
}
