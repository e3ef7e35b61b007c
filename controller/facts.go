package controller

import (
	"fmt"
	"strings"

	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/topology"
)

// planFacts turns a fleet status with probes into what the plan builders
// may rely on, and a sentence per fact for the operator.
func planFacts(topo *topology.Topology, statuses []fleet.Status) (plan.Facts, []string) {
	f := plan.Facts{Reachable: map[string]bool{}}
	var said []string
	for _, s := range statuses {
		f.Reachable[s.Agent.Host] = s.Reachable
		if !s.Reachable {
			said = append(said, fmt.Sprintf("%s (%s) is unreachable", s.Agent.Host, s.Agent.Site))
			continue
		}
		for _, fact := range s.Facts {
			if fact.GetError() != nil {
				continue
			}
			v := fact.GetValue().AsMap()
			switch fact.GetName() {
			case "mssql.databases":
				dbs, _ := v["databases"].([]any)
				for _, d := range dbs {
					m, _ := d.(map[string]any)
					db := plan.DatabaseFact{Host: s.Agent.Host, Database: str(m["database"])}
					if m["exists"] == true {
						db.State = str(m["state"])
					}
					db.Standby, _ = m["standby"].(bool)
					db.ReadOnly, _ = m["read_only"].(bool)
					f.Databases = append(f.Databases, db)
					state := db.State
					if state == "" {
						state = "absent"
					} else if db.Writable() {
						state += ", writable"
					}
					said = append(said, fmt.Sprintf("%s on %s: %s", db.Database, s.Agent.Host, state))
				}
			case "csshell.cs.pool_state":
				if !strings.EqualFold(s.Agent.Host, topo.ManagementShellHost) {
					continue
				}
				switch str(v["central"]) {
				case "Normal":
					f.PoolState = plan.PoolNormal
				case "FailedOver":
					f.PoolState = plan.PoolFailedOver
				}
				said = append(said, fmt.Sprintf("pool state (central, read on %s): %s", s.Agent.Host, str(v["central"])))
			case "csshell.cs.active_servers":
				if !strings.EqualFold(s.Agent.Host, topo.ManagementShellHost) {
					continue
				}
				list, _ := v["active_servers"].([]any)
				f.ActiveServers = []string{}
				for _, a := range list {
					f.ActiveServers = append(f.ActiveServers, str(a))
				}
				said = append(said, "active servers: "+strings.Join(f.ActiveServers, ", "))
			}
		}
	}
	return f, said
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
