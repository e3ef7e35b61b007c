package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	"github.com/chatdr/chatdr/sim/csshell"
)

// ChatService is the name of the Persistent Chat service on chat servers.
const ChatService = "RTCCHAT"

// ComplianceService is the name of the Persistent Chat compliance service
// (UNVERIFIED, as the chat service's; the plans use the same default).
const ComplianceService = "RTCCHATCOMPLIANCE"

// AckFile is where the chat simulator of host records acknowledged messages.
func AckFile(dir, host string) string { return filepath.Join(dir, "chat", host+".acks") }

// createCMS writes the Central Management Store: the pool Normal with the
// servers active in the normal state, every chat server replicating after
// a second, and the four SQL instances.
func createCMS(dir string, st *State, topo *topology.Topology) error {
	pw, err := os.ReadFile(st.SQLPasswordFile)
	if err != nil {
		return err
	}
	c := csshell.CMS{
		Pool:      csshell.Pool{FQDN: topo.Pool, Identities: []string{"service:" + topo.Pool, "PersistentChatServer:" + topo.Pool}},
		SQL:       map[string]csshell.SQLInstance{},
		Databases: csshell.Databases{Chat: topo.Databases.Chat, Compliance: topo.Databases.Compliance},
	}
	// Every chat server runs the Persistent Chat service and, with
	// compliance on, the compliance service (as Get-CsWindowsService lists them).
	services := []csshell.Service{{Name: ChatService, DisplayName: "Skype for Business Server Persistent Chat", Status: "Running"}}
	if topo.Databases.ComplianceEnabled() {
		services = append(services, csshell.Service{Name: ComplianceService, DisplayName: "Skype for Business Server Persistent Chat Compliance", Status: "Running"})
	}
	for _, s := range topo.ChatServers {
		c.Servers = append(c.Servers, csshell.ChatServer{FQDN: s.FQDN, Site: s.Site, ReplicationDelay: csshell.Duration(time.Second),
			Services: append([]csshell.Service(nil), services...)})
	}
	roles := map[string]string{
		topology.RoleSQLPrimary: csshell.RolePrimary, topology.RoleSQLPrimaryMirror: csshell.RolePrimaryMirror,
		topology.RoleSQLBackup: csshell.RoleBackup, topology.RoleSQLBackupMirror: csshell.RoleBackupMirror,
	}
	for _, h := range sqlRoles(topo) {
		var addr, mirror string
		for _, p := range st.procs(KindSQL) {
			if p.Name == sqlProcName(h.Host.FQDN) {
				addr, mirror = p.Address, p.Mirror
			}
		}
		c.SQL[roles[h.Role]] = csshell.SQLInstance{FQDN: h.Host.FQDN, Addr: addr, Login: "sa",
			Password: strings.TrimSpace(string(pw)), MirrorEndpoint: mirror}
	}
	var active []string
	for _, s := range topo.ActiveServers(topology.ActiveNormal) {
		active = append(active, s.FQDN)
	}
	ctx := context.Background()
	store, err := csshell.Create(ctx, st.CMS, c)
	if err != nil {
		return err
	}
	if err := os.Chmod(st.CMS, 0o600); err != nil {
		return err
	}
	_, err = store.SetActive(ctx, active)
	return err
}

// startChatServices asks the agent of each chat server of site (every site
// when site is "") to start its Persistent Chat service (check-then-act: a
// running service is left alone).
func startChatServices(ctx context.Context, st *State, out io.Writer, site string) error {
	mat, err := pki.LoadMaterial(filepath.Join(st.TLSDir, pki.CACertFile),
		filepath.Join(st.TLSDir, "controller.crt"), filepath.Join(st.TLSDir, "controller.key"))
	if err != nil {
		return err
	}
	topo, err := topology.Load(st.Topology)
	if err != nil {
		return err
	}
	for _, s := range topo.ChatServers {
		if site != "" && s.Site != site {
			continue
		}
		res, err := execute(ctx, mat, s.Agent, fmt.Sprintf("lab/start/%s/%d", s.FQDN, time.Now().UnixNano()),
			"service.start", map[string]any{"name": ChatService})
		if err != nil {
			return fmt.Errorf("start %s on %s: %w", ChatService, s.FQDN, err)
		}
		if res.GetState() != agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED {
			return fmt.Errorf("start %s on %s: %s", ChatService, s.FQDN, res.GetError().GetMessage())
		}
		if res.GetOutput().AsMap()["changed"] == true {
			fmt.Fprintf(out, "  %-24s %s started\n", s.FQDN, ChatService)
		}
	}
	return nil
}

// execute runs one action on the agent at addr with the controller's
// certificate and returns its result.
func execute(ctx context.Context, mat *pki.Material, addr, key, action string, params map[string]any) (*agentv1.ExecutionResult, error) {
	cc, err := dialAgent(mat, addr)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ps, err := structpb.NewStruct(params)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := agentv1.NewAgentServiceClient(cc).Execute(cctx, &agentv1.ExecuteRequest{IdempotencyKey: key, Action: action, Params: ps})
	if err != nil {
		return nil, err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if r := ev.GetResult(); r != nil {
			return r, nil
		}
	}
}

// serviceRecord is the part of the service plugin's state file the lab reads.
type serviceRecord struct {
	Name    string   `json:"name"`
	PID     int      `json:"pid"`
	Command []string `json:"command"`
}

// chatServices returns the chat simulator processes that the agents'
// service plugins started, read from the plugins' state files, with
// whether each still runs. They outlive their agent by design (as a Windows
// service outlives an agent upgrade), so the lab stops them itself.
func chatServices(dir string, st *State) []ProcStatus {
	var out []ProcStatus
	for _, a := range st.procs(KindAgent) {
		files, _ := filepath.Glob(filepath.Join(filepath.Dir(a.Config), "state", "service", "*.json"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			var r serviceRecord
			if json.Unmarshal(b, &r) != nil || r.PID <= 0 {
				continue
			}
			p := Proc{Name: r.Name + "." + a.Name, Kind: KindService, Site: a.Site, Binary: "chatdr-sim",
				Marker: AckFile(dir, a.Name), Log: filepath.Join(dir, "logs", ChatService+"."+a.Name+".log")}
			out = append(out, ProcStatus{Proc: p, PID: r.PID, Running: processAlive(r.PID, p.Marker)})
		}
	}
	return out
}

// dialAgent connects to an agent with the given client material.
func dialAgent(mat *pki.Material, addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mat.ClientConfig(pki.RoleAgent))))
}
