package topology

import (
	"bytes"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// The file shapes Marshal encodes; field order is the documentation's order.
type (
	fileTopology struct {
		Pool                string           `yaml:"pool"`
		PoolIdentity        string           `yaml:"pool_identity,omitempty"`
		Sites               []fileSite       `yaml:"sites"`
		ChatServers         []fileChatServer `yaml:"chat_servers"`
		SQL                 fileSQL          `yaml:"sql"`
		Databases           fileDatabases    `yaml:"databases"`
		LogShipping         fileLogShipping  `yaml:"log_shipping"`
		ManagementShellHost string           `yaml:"management_shell_host"`
		Approvals           *fileApprovals   `yaml:"approvals,omitempty"`
	}
	fileSite struct {
		Name         string   `yaml:"name"`
		Role         string   `yaml:"role"`
		LowLatencyTo []string `yaml:"low_latency_to,omitempty,flow"`
	}
	fileChatServer struct {
		FQDN       string `yaml:"fqdn"`
		Site       string `yaml:"site"`
		Agent      string `yaml:"agent"`
		ActiveWhen string `yaml:"active_when"`
	}
	fileSQL struct {
		Primary       *fileSQLHost `yaml:"primary,omitempty"`
		PrimaryMirror *fileSQLHost `yaml:"primary_mirror,omitempty"`
		Backup        *fileSQLHost `yaml:"backup,omitempty"`
		BackupMirror  *fileSQLHost `yaml:"backup_mirror,omitempty"`
	}
	fileSQLHost struct {
		FQDN     string `yaml:"fqdn"`
		Instance string `yaml:"instance,omitempty"`
		Agent    string `yaml:"agent"`
		Site     string `yaml:"site,omitempty"`
	}
	fileDatabases struct {
		Chat       string `yaml:"chat,omitempty"`
		Compliance string `yaml:"compliance,omitempty"`
	}
	fileLogShipping struct {
		BackupShare string `yaml:"backup_share"`
		CopyDir     string `yaml:"copy_dir"`
		MirrorShare string `yaml:"mirror_share,omitempty"`
	}
	fileApprovals struct {
		DataLossApprovers int `yaml:"data_loss_approvers"`
	}
)

// Marshal encodes t as a topology file, writing every field including those
// Parse would default, one site, chat server and SQL host per line. For a
// valid t (one returned by Parse or Load), Parse accepts the result and
// yields a topology equal to t. Marshal does not validate t.
func Marshal(t *Topology) ([]byte, error) {
	if t == nil {
		return nil, errors.New("marshal topology: nil topology")
	}
	f := fileTopology{
		Pool:                t.Pool,
		PoolIdentity:        t.PoolIdentity,
		SQL:                 fileSQL{Primary: fileHost(t.SQL.Primary), PrimaryMirror: fileHost(t.SQL.PrimaryMirror), Backup: fileHost(t.SQL.Backup), BackupMirror: fileHost(t.SQL.BackupMirror)},
		Databases:           fileDatabases{Chat: t.Databases.Chat, Compliance: t.Databases.Compliance},
		LogShipping:         fileLogShipping{BackupShare: t.LogShipping.BackupShare, CopyDir: t.LogShipping.CopyDir, MirrorShare: t.LogShipping.MirrorShare},
		ManagementShellHost: t.ManagementShellHost,
	}
	for _, s := range t.Sites {
		f.Sites = append(f.Sites, fileSite{Name: s.Name, Role: string(s.Role), LowLatencyTo: s.LowLatencyTo})
	}
	for _, cs := range t.ChatServers {
		f.ChatServers = append(f.ChatServers, fileChatServer{FQDN: cs.FQDN, Site: cs.Site, Agent: cs.Agent, ActiveWhen: string(cs.ActiveWhen)})
	}
	if t.Approvals.DataLossApprovers != 0 {
		f.Approvals = &fileApprovals{DataLossApprovers: t.Approvals.DataLossApprovers}
	}
	var root yaml.Node
	if err := root.Encode(&f); err != nil {
		return nil, fmt.Errorf("marshal topology: %w", err)
	}
	flowEntries(&root)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("marshal topology: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal topology: %w", err)
	}
	return buf.Bytes(), nil
}

// fileHost converts a SQL host for encoding.
func fileHost(h *SQLHost) *fileSQLHost {
	if h == nil {
		return nil
	}
	return &fileSQLHost{FQDN: h.FQDN, Instance: h.Instance, Agent: h.Agent, Site: h.Site}
}

// flowEntries writes each site, chat server, SQL host and the databases
// mapping on one line, as people write them by hand.
func flowEntries(root *yaml.Node) {
	for i := 0; i+1 < len(root.Content); i += 2 {
		v := root.Content[i+1]
		switch root.Content[i].Value {
		case "sites", "chat_servers":
			for _, item := range v.Content {
				item.Style = yaml.FlowStyle
			}
		case "sql":
			for j := 1; j < len(v.Content); j += 2 {
				v.Content[j].Style = yaml.FlowStyle
			}
		case "databases":
			v.Style = yaml.FlowStyle
		}
	}
}
