package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/chatdr/chatdr/internal/pki"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
	"github.com/chatdr/chatdr/sim/csshell"
)

// ErrUnknownSite is returned by StartSite for a site the lab does not have.
var ErrUnknownSite = errors.New("unknown site")

// Sites returns the names of the lab's sites, sorted.
func (st *State) Sites() []string {
	var out []string
	for _, p := range st.Procs {
		if p.Site != "" && !slices.Contains(out, p.Site) {
			out = append(out, p.Site)
		}
	}
	slices.Sort(out)
	return out
}

// SiteStart is what StartSite found and did.
type SiteStart struct {
	Site string `json:"site"`
	// AlreadyRunning is set when every process of the site ran: nothing
	// was started.
	AlreadyRunning bool `json:"already_running"`
	// Started names the processes started, in order: SQL Server
	// simulators, agents, chat services (as Status names them).
	Started []string `json:"started"`
	// PoolState is the central pool state when the site came back.
	PoolState string `json:"pool_state"`
	// ControllerRunning is whether the controller ran (and so was waited
	// for until it reached the site's agents).
	ControllerRunning bool `json:"controller_running"`
	// ChatServers is, for each chat server of the site, what the Central
	// Management Store says about it.
	ChatServers []ChatServerState `json:"chat_servers"`
}

// ChatServerState is what the CMS records for one chat server, and so what
// its chat simulator does: it writes only while its service is recorded
// Running and it is on the active list, into the database of the pool state.
type ChatServerState struct {
	Host string `json:"host"`
	// Service is the status the CMS records for the Persistent Chat
	// service (Running or Stopped: what Start-/Stop-CsWindowsService last set).
	Service string `json:"service"`
	Active  bool   `json:"active"`
	// Writes is whether the server posts messages, into WritesTo (the SQL
	// host of the pool state's database).
	Writes   bool   `json:"writes"`
	WritesTo string `json:"writes_to,omitempty"`
}

// StartSite brings back a site that KillSite (or a crash) took down, as a
// data center that recovers from a power loss: its SQL Server simulators
// restart on their data directories as the kill left them (a SQL Server
// keeps its files, so the old primary comes back with its old, possibly
// diverged, databases and its SQL Server Agent state; a failback overwrites
// them, domain §3 B4), then its agents, then the Persistent Chat service of
// its chat servers, which does what the CMS records: the CMS (a file) and
// the Management Shell host survive. A site whose processes all run is left
// alone (AlreadyRunning). It waits until the site's SQL Server simulators
// accept connections, its agents answer and, when the controller runs,
// the controller reaches them. A site the lab does not have is
// ErrUnknownSite.
func StartSite(ctx context.Context, opts Options, site string) (*SiteStart, error) {
	if opts.Dir == "" {
		return nil, errors.New("lab directory is empty")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(st.Sites(), site) {
		return nil, fmt.Errorf("%w %q: the lab in %s has sites %s", ErrUnknownSite, site, dir, strings.Join(st.Sites(), ", "))
	}
	if !st.Bootstrapped {
		return nil, fmt.Errorf("the lab in %s was never completely brought up; run 'chatdr lab up --dir %s'", dir, dir)
	}
	res := &SiteStart{Site: site}
	var procs []Proc
	down := 0
	for _, p := range st.Procs {
		if p.Site != site {
			continue
		}
		procs = append(procs, p)
		if _, ok := running(p); !ok {
			down++
		}
	}
	hosts := siteChatServers(st, site)
	svcUp := map[string]bool{}
	for _, svc := range chatServices(dir, st) {
		if svc.Site == site && svc.Running {
			svcUp[svc.Name] = true
		}
	}
	for _, h := range hosts {
		if !svcUp[ChatService+"."+h] {
			down++
		}
	}
	ctl := st.procs(KindController)
	if len(ctl) > 0 {
		_, res.ControllerRunning = running(ctl[0])
	}
	if down == 0 {
		res.AlreadyRunning = true
		return res, res.readCMS(ctx, st, hosts)
	}

	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	// SQL Server first: an agent's mssql plugin and the chat servers need it.
	for _, kind := range []string{KindSQL, KindAgent} {
		var batch []Proc
		for _, p := range procs {
			if p.Kind != kind {
				continue
			}
			batch = append(batch, p)
			if pid, ok := running(p); ok {
				fmt.Fprintf(opts.Out, "  %-24s already running (pid %d)\n", p.Name, pid)
				continue
			}
			pid, err := start(p, bins[p.Binary])
			if err != nil {
				return res, fmt.Errorf("start %s: %w", p.Name, err)
			}
			res.Started = append(res.Started, p.Name)
			fmt.Fprintf(opts.Out, "  %-24s started (pid %d, %s)\n", p.Name, pid, p.Address)
		}
		if err := waitProcs(wctx, st, batch); err != nil {
			return res, err
		}
	}
	if res.ControllerRunning {
		if err := waitControllerReaches(wctx, st, ctl[0], siteHosts(procs)); err != nil {
			return res, err
		}
	}
	// The agents' service plugins may restart a service of their own
	// accord (restart on failure); what counts is what runs now.
	err = startChatServices(wctx, st, opts.Out, site)
	for _, svc := range chatServices(dir, st) {
		if svc.Site == site && svc.Running && !svcUp[svc.Name] {
			res.Started = append(res.Started, svc.Name)
		}
	}
	if err != nil {
		return res, err
	}
	return res, res.readCMS(ctx, st, hosts)
}

// siteChatServers returns the chat servers of site, in topology order.
func siteChatServers(st *State, site string) []string {
	var out []string
	for _, a := range st.procs(KindAgent) {
		if a.Site != site {
			continue
		}
		if _, sql := st.sqlAddr(a.Name); !sql {
			out = append(out, a.Name)
		}
	}
	return out
}

// siteHosts returns the agent hosts among procs.
func siteHosts(procs []Proc) []string {
	var out []string
	for _, p := range procs {
		if p.Kind == KindAgent {
			out = append(out, p.Name)
		}
	}
	return out
}

// readCMS fills PoolState and ChatServers from the Central Management Store.
func (r *SiteStart) readCMS(ctx context.Context, st *State, hosts []string) error {
	store, err := csshell.Open(ctx, st.CMS)
	if err != nil {
		return err
	}
	topo, err := store.Topology(ctx)
	if err != nil {
		return err
	}
	r.ChatServers = r.ChatServers[:0]
	for _, h := range hosts {
		snap, err := store.LocalState(ctx, h)
		if err != nil {
			return err
		}
		r.PoolState = string(snap.PoolState)
		cs := ChatServerState{Host: h, Active: slices.ContainsFunc(snap.ActiveServers, func(s string) bool { return strings.EqualFold(s, h) })}
		if up, err := store.ServiceRunning(ctx, h, ChatService); err == nil {
			cs.Service = csshell.ServiceStopped
			if up {
				cs.Service = csshell.ServiceRunning
			}
		}
		if _, in, ok := topo.DatabaseFor(snap.PoolState); ok && cs.Active && cs.Service == csshell.ServiceRunning {
			cs.Writes, cs.WritesTo = true, in.FQDN
		}
		r.ChatServers = append(r.ChatServers, cs)
	}
	if len(hosts) == 0 {
		c, err := store.State(ctx)
		if err != nil {
			return err
		}
		r.PoolState = string(c.PoolState)
	}
	return nil
}

// waitControllerReaches polls the controller until its fleet status shows
// every one of hosts reachable, or ctx ends.
func waitControllerReaches(ctx context.Context, st *State, ctl Proc, hosts []string) error {
	mat, err := pki.LoadMaterial(filepath.Join(st.TLSDir, pki.CACertFile),
		filepath.Join(st.TLSDir, "viewer.crt"), filepath.Join(st.TLSDir, "viewer.key"))
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(ctl.Address, grpc.WithTransportCredentials(credentials.NewTLS(mat.ClientConfig(pki.RoleController))))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := controllerv1.NewControllerServiceClient(cc)
	err = waitFor(ctx, func() error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := client.GetFleetStatus(cctx, &controllerv1.GetFleetStatusRequest{})
		if err != nil {
			return err
		}
		up := map[string]bool{}
		for _, a := range resp.GetAgents() {
			up[a.GetHost()] = a.GetReachable()
		}
		var missing []string
		for _, h := range hosts {
			if !up[h] {
				missing = append(missing, h)
			}
		}
		if len(missing) > 0 {
			return errors.New("controller does not reach: " + strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("controller %s: %w", ctl.Address, err)
	}
	return nil
}
