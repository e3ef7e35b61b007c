package lab

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/sim/chat"
	"github.com/chatdr/chatdr/sim/csshell"
)

// KillSite stops every process of site at once (SIGKILL), as the loss of
// the data center would: its agents (with their plugins), its SQL Server
// simulators and its chat services. It returns the names of the processes
// killed.
func KillSite(dir, site string) ([]string, error) {
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	known := false
	for _, p := range st.Procs {
		known = known || p.Site == site
	}
	if !known {
		return nil, fmt.Errorf("site %q has no process in the lab in %s", site, dir)
	}
	var names []string
	for _, p := range st.Procs {
		if p.Site == site {
			if _, ok := running(p); ok {
				names = append(names, p.Name)
			}
		}
	}
	if _, err := Kill(dir, names...); err != nil {
		return nil, err
	}
	for _, svc := range chatServices(dir, st) {
		if svc.Site == site && svc.Running {
			if err := killProcess(svc.PID, svc.marker()); err != nil {
				return names, err
			}
			names = append(names, svc.Name)
		}
	}
	return names, nil
}

// Messages is the proof of what a failover cost: the messages the chat
// simulators saw acknowledged, against those present in the database the
// pool uses now.
type Messages struct {
	// PoolState is the central pool state; Database the SQL host whose
	// chat database the pool uses in that state.
	PoolState string `json:"pool_state"`
	Database  string `json:"database_host"`
	// Acknowledged, Present and Missing count acknowledged messages.
	Acknowledged int `json:"acknowledged"`
	Present      int `json:"present"`
	Missing      int `json:"missing"`
	// The id and acknowledgement time range of the missing messages.
	MissingFirstID   int64     `json:"missing_first_id,omitempty"`
	MissingLastID    int64     `json:"missing_last_id,omitempty"`
	MissingFirstTime time.Time `json:"missing_first_time,omitzero"`
	MissingLastTime  time.Time `json:"missing_last_time,omitzero"`
}

// CountMessages compares the chat simulators' acknowledgement files with the
// database the pool currently uses.
func CountMessages(ctx context.Context, dir string) (*Messages, error) {
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	store, err := csshell.Open(ctx, st.CMS)
	if err != nil {
		return nil, err
	}
	central, err := store.State(ctx)
	if err != nil {
		return nil, err
	}
	topo, err := topology.Load(st.Topology)
	if err != nil {
		return nil, err
	}
	host := topo.SQL.Primary.FQDN
	if central.PoolState == csshell.FailedOver {
		host = topo.SQL.Backup.FQDN
	}
	// The acknowledgements first: a message acknowledged after the SELECT
	// below would otherwise look missing.
	var acks []chat.Ack
	for _, s := range topo.ChatServers {
		a, err := chat.ReadAcks(AckFile(dir, s.FQDN))
		if err != nil {
			return nil, err
		}
		acks = append(acks, a...)
	}
	addr, _ := st.sqlAddr(host)
	db, err := sqlDB(st, addr, topo.Databases.Chat)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(cctx, "SELECT body FROM dbo.messages")
	if err != nil {
		return nil, fmt.Errorf("read the messages on %s: %w", host, err)
	}
	present := map[string]bool{}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, err
		}
		present[b] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	m := &Messages{PoolState: string(central.PoolState), Database: host}
	var missing []chat.Ack
	for _, a := range acks {
		m.Acknowledged++
		if present[a.Body] {
			m.Present++
		} else {
			missing = append(missing, a)
		}
	}
	m.Missing = len(missing)
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].At.Before(missing[j].At) })
		m.MissingFirstTime, m.MissingLastTime = missing[0].At, missing[len(missing)-1].At
		m.MissingFirstID, m.MissingLastID = missing[0].ID, missing[0].ID
		for _, a := range missing {
			m.MissingFirstID = min(m.MissingFirstID, a.ID)
			m.MissingLastID = max(m.MissingLastID, a.ID)
		}
	}
	return m, nil
}
