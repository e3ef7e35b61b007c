package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// describeFact renders one probe value as short lines for fleet status.
func describeFact(f *agentv1.Fact) []string {
	if e := f.GetError(); e != nil {
		return []string{fmt.Sprintf("%s: error: %s", f.GetName(), e.GetMessage())}
	}
	v := f.GetValue().AsMap()
	list := func(key string) []map[string]any {
		var out []map[string]any
		if items, ok := v[key].([]any); ok {
			for _, it := range items {
				if m, ok := it.(map[string]any); ok {
					out = append(out, m)
				}
			}
		}
		return out
	}
	s := func(m map[string]any, k string) string {
		switch x := m[k].(type) {
		case nil:
			return ""
		case string:
			return x
		case float64:
			return fmt.Sprint(x)
		case bool:
			return fmt.Sprint(x)
		default:
			b, _ := json.Marshal(x)
			return string(b)
		}
	}
	var out []string
	switch f.GetName() {
	case "mssql.server":
		agent := "SQL Server Agent stopped"
		if v["agent_running"] == true {
			agent = "SQL Server Agent running"
		}
		out = append(out, fmt.Sprintf("sql: %s %s, %s", s(v, "server_name"), s(v, "version"), agent))
	case "mssql.databases":
		for _, d := range list("databases") {
			line := fmt.Sprintf("db %s: %s", s(d, "database"), s(d, "state"))
			if d["standby"] == true {
				line += " (standby, read-only)"
			} else if d["writable"] == true {
				line += " writable"
			}
			if r := s(d, "mirroring_role"); r != "" {
				line += fmt.Sprintf(", mirroring %s %s with %s", strings.ToLower(r), s(d, "mirroring_state"), s(d, "mirroring_partner"))
			}
			if d["exists"] == false {
				line = fmt.Sprintf("db %s: absent", s(d, "database"))
			}
			out = append(out, line)
		}
	case "mssql.log_shipping":
		for _, d := range list("databases") {
			switch s(d, "role") {
			case "primary":
				if s(d, "last_backup_file") == "" {
					out = append(out, fmt.Sprintf("log shipping %s: primary, no log backup yet", s(d, "database")))
					continue
				}
				out = append(out, fmt.Sprintf("log shipping %s: primary, last backup %s at %s", s(d, "database"), base(s(d, "last_backup_file")), s(d, "last_backup_time")))
			case "secondary":
				restored := "nothing restored yet"
				if f := s(d, "last_restored_file"); f != "" {
					restored = fmt.Sprintf("last restored %s (latency %s min)", base(f), s(d, "last_restored_latency_minutes"))
				}
				line := fmt.Sprintf("log shipping %s: secondary, %s", s(d, "database"), restored)
				if w, ok := d["files_waiting"].(float64); ok {
					line += fmt.Sprintf(", %d files waiting", int(w))
				}
				if l, ok := d["estimated_data_loss_seconds"].(float64); ok {
					line += fmt.Sprintf(", estimated data-loss window %s", (time.Duration(l) * time.Second).String())
				}
				out = append(out, line)
			}
		}
	case "service.states":
		for _, svc := range list("services") {
			line := fmt.Sprintf("service %s: %s", s(svc, "name"), s(svc, "state"))
			if p := s(svc, "pid"); p != "" && p != "0" {
				line += " (pid " + p
				if r := s(svc, "restarts"); r != "" && r != "0" {
					line += ", restarts " + r
				}
				line += ")"
			}
			if e := s(svc, "error"); e != "" {
				line += ": " + e
			}
			out = append(out, line)
		}
	case "csshell.cs.pool_state":
		line := fmt.Sprintf("pool state: %s (this server's local store: %s)", s(v, "central"), s(v, "local"))
		if v["consistent"] == false {
			line += ", replication pending"
		}
		out = append(out, line)
	case "csshell.cs.active_servers":
		var names []string
		if items, ok := firstList(v, "active_servers", "servers"); ok {
			for _, it := range items {
				names = append(names, fmt.Sprint(it))
			}
		}
		out = append(out, "active servers: "+strings.Join(names, ", "))
	default:
		b, _ := json.Marshal(v) // map keys come out sorted
		out = append(out, fmt.Sprintf("%s: %s", f.GetName(), b))
	}
	return out
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstList(v map[string]any, keys ...string) ([]any, bool) {
	for _, k := range keys {
		if l, ok := v[k].([]any); ok {
			return l, true
		}
	}
	return nil, false
}

func base(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}
