package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
)

// Pool is the FQDN of the lab's Persistent Chat pool.
const Pool = "pchat.chatdr.lab"

// labTopology returns the lab's deployment: two sites, eight chat servers
// (pc1-4 in dc1 active when normal, pc5-8 in dc2 active when failed over),
// and four SQL hosts, with agents on the given 127.0.0.1 ports in that order.
func labTopology(dir string, ports []int) *topology.Topology {
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	t := &topology.Topology{
		Pool:         Pool,
		PoolIdentity: "service:" + Pool,
		Sites: []topology.Site{
			{Name: "dc1", Role: topology.SitePrimary},
			{Name: "dc2", Role: topology.SiteBackup},
		},
		Databases: topology.Databases{Chat: "mgc", Compliance: "mgccomp"},
		LogShipping: topology.LogShipping{
			BackupShare: filepath.Join(dir, "share", "logship"),
			CopyDir:     filepath.Join(dir, "copy", "mgc"),
			MirrorShare: filepath.Join(dir, "share", "mirror"),
		},
		ManagementShellHost: "pc5.dc2.chatdr.lab",
		Approvals:           topology.Approvals{DataLossApprovers: 1},
	}
	for i := range 8 {
		site, when := "dc1", topology.ActiveNormal
		if i >= 4 {
			site, when = "dc2", topology.ActiveFailedOver
		}
		t.ChatServers = append(t.ChatServers, topology.ChatServer{
			FQDN: fmt.Sprintf("pc%d.%s.chatdr.lab", i+1, site), Site: site, Agent: addr(i), ActiveWhen: when,
		})
	}
	sql := func(i int, fqdn, site string) *topology.SQLHost {
		return &topology.SQLHost{FQDN: fqdn, Instance: topology.DefaultInstance, Agent: addr(i), Site: site}
	}
	t.SQL = topology.SQL{
		Primary:       sql(8, "sql1.dc1.chatdr.lab", "dc1"),
		PrimaryMirror: sql(9, "sql2.dc1.chatdr.lab", "dc1"),
		Backup:        sql(10, "sql1.dc2.chatdr.lab", "dc2"),
		BackupMirror:  sql(11, "sql2.dc2.chatdr.lab", "dc2"),
	}
	return t
}

// tlsConfig is the tls section of a daemon config.
type tlsConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

func tlsFor(tlsDir, name string) tlsConfig {
	return tlsConfig{CA: filepath.Join(tlsDir, pki.CACertFile), Cert: filepath.Join(tlsDir, name+".crt"), Key: filepath.Join(tlsDir, name+".key")}
}

// create writes a new lab into dir and returns its state.
func create(dir, simBin string) (*State, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty; give an empty or new directory, or an existing lab", dir)
	}
	for _, d := range []string{"share/logship", "share/mirror", "copy/mgc", "logs", "run", "sql", "chat"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	const nAgents, nSQL = 12, 4
	ports, err := freePorts(2*nAgents + 2 + 2*nSQL)
	if err != nil {
		return nil, err
	}
	topo := labTopology(dir, ports[:nAgents])
	data, err := topology.Marshal(topo)
	if err != nil {
		return nil, err
	}
	topoPath := filepath.Join(dir, "topology.yaml")
	if _, err := topology.Parse(topoPath, data); err != nil {
		return nil, fmt.Errorf("lab topology is invalid (a bug): %w", err)
	}
	if err := os.WriteFile(topoPath, data, 0o644); err != nil {
		return nil, err
	}

	tlsDir := filepath.Join(dir, "tls")
	agentHosts := []string{"localhost", "127.0.0.1"}
	for _, a := range topo.Agents() {
		agentHosts = append(agentHosts, a.Host)
	}
	if err := pki.InitDir(tlsDir, pki.InitOptions{
		ControllerHosts: []string{"localhost", "127.0.0.1"},
		AgentHosts:      agentHosts,
		Validity:        90 * 24 * time.Hour,
	}); err != nil {
		return nil, err
	}

	st := &State{Pool: topo.Pool, TLSDir: tlsDir, Topology: topoPath, SQLPasswordFile: filepath.Join(dir, "sql", "password"),
		CMS: filepath.Join(dir, "cms.json")}
	if err := os.WriteFile(st.SQLPasswordFile, []byte(newPassword()+"\n"), 0o600); err != nil {
		return nil, err
	}
	sqlPorts := ports[2*nAgents+2:]
	sqlHosts := sqlRoles(topo)
	for i, h := range sqlHosts {
		st.Procs = append(st.Procs, sqlProc(dir, h, "127.0.0.1:"+strconv.Itoa(sqlPorts[i]), "127.0.0.1:"+strconv.Itoa(sqlPorts[nSQL+i]), st.SQLPasswordFile))
	}
	proc := func(name, kind, site, binary, addr, metrics string) Proc {
		base := filepath.Join(dir, kind+"s", name)
		if kind == KindController {
			base = filepath.Join(dir, "controller")
		}
		return Proc{
			Name: name, Kind: kind, Site: site, Binary: binary,
			Config:  filepath.Join(base, kind+".yaml"),
			Address: addr, Metrics: metrics,
			Log:     filepath.Join(dir, "logs", name+".log"),
			PidFile: filepath.Join(dir, "run", name+".pid"),
		}
	}
	for i, a := range topo.Agents() {
		p := proc(a.Host, KindAgent, a.Site, "chatdr-agent", a.Address, "127.0.0.1:"+strconv.Itoa(ports[nAgents+i]))
		cfg := map[string]any{
			"host": a.Host, "site": a.Site, "roles": a.Roles,
			"listen": p.Address, "metrics_listen": p.Metrics,
			"state_dir": filepath.Join(filepath.Dir(p.Config), "state"),
			"tls":       tlsFor(tlsDir, "agent"),
		}
		plugins, pluginConfig := agentPlugins(dir, simBin, st, a)
		cfg["plugins"] = map[string]any{"builtin": plugins}
		if len(pluginConfig) > 0 {
			cfg["plugin_config"] = pluginConfig
		}
		if err := writeYAML(p.Config, cfg); err != nil {
			return nil, err
		}
		st.Procs = append(st.Procs, p)
	}
	ctl := proc("controller", KindController, "", "chatdr-controller",
		"127.0.0.1:"+strconv.Itoa(ports[2*nAgents]), "127.0.0.1:"+strconv.Itoa(ports[2*nAgents+1]))
	if err := writeYAML(ctl.Config, map[string]any{
		"listen": ctl.Address, "metrics_listen": ctl.Metrics,
		"topology": topoPath, "state_dir": filepath.Join(filepath.Dir(ctl.Config), "state"),
		"tls":   tlsFor(tlsDir, "controller"),
		"fleet": map[string]any{"agent_timeout": "2s", "concurrency": 64},
	}); err != nil {
		return nil, err
	}
	st.Procs = append(st.Procs, ctl)
	st.Controller = ctl.Address

	if err := createCMS(dir, st, topo); err != nil {
		return nil, err
	}
	if err := st.save(dir); err != nil {
		return nil, err
	}
	return st, nil
}

// save writes lab.json.
func (st *State) save(dir string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, StateFile))
}
