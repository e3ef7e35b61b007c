package mssql

import (
	"context"
	"database/sql"

	"github.com/chatdr/chatdr/pluginsdk"
)

// mirrorState is a database's row of sys.database_mirroring.
type mirrorState struct {
	Mirrored bool
	State    string // SYNCHRONIZED, SYNCHRONIZING, SUSPENDED, DISCONNECTED, PENDING_FAILOVER
	Role     string // PRINCIPAL or MIRROR
	Partner  string
	Safety   string
	Witness  string
}

func readMirror(ctx context.Context, db *sql.DB, name string) (mirrorState, error) {
	rows, err := queryRows(ctx, db, `SELECT m.mirroring_guid, m.mirroring_state_desc, m.mirroring_role_desc, m.mirroring_partner_name,
 m.mirroring_safety_level_desc, m.mirroring_witness_name
FROM sys.database_mirroring m JOIN sys.databases d ON d.database_id = m.database_id
WHERE d.name = @p1`, name)
	if err != nil {
		return mirrorState{}, sqlError("read sys.database_mirroring", err)
	}
	if len(rows) == 0 || rows[0].str("mirroring_guid") == "" {
		return mirrorState{}, nil
	}
	r := rows[0]
	return mirrorState{Mirrored: true, State: r.str("mirroring_state_desc"), Role: r.str("mirroring_role_desc"),
		Partner: r.str("mirroring_partner_name"), Safety: r.str("mirroring_safety_level_desc"), Witness: r.str("mirroring_witness_name")}, nil
}

func (m mirrorState) output(name string) pluginsdk.Output {
	return pluginsdk.Output{"database": name, "mirrored": m.Mirrored, "state": m.State, "role": m.Role,
		"partner": m.Partner, "safety": m.Safety, "witness": m.Witness}
}

func (p *Plugin) mirrorStatus(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	m, err := readMirror(ctx, db, name)
	if err != nil {
		return nil, err
	}
	return m.output(name), nil
}

// mirrorRemove runs SET PARTNER OFF when the database is mirrored.
func (p *Plugin) mirrorRemove(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	m, err := readMirror(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !m.Mirrored {
		out := m.output(name)
		out["changed"] = false
		return out, nil
	}
	if _, err := db.ExecContext(ctx, "ALTER DATABASE "+q+" SET PARTNER OFF"); err != nil {
		return nil, sqlError("ALTER DATABASE "+name+" SET PARTNER OFF", err)
	}
	out := mirrorState{}.output(name)
	out["changed"] = true
	out["former_partner"] = m.Partner
	return out, nil
}

// mirrorFailover swaps principal and mirror from a synchronized principal.
func (p *Plugin) mirrorFailover(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	m, err := readMirror(ctx, db, name)
	if err != nil {
		return nil, err
	}
	switch {
	case !m.Mirrored:
		return nil, pluginsdk.Terminal("not_mirrored", "database %s is not mirrored", name)
	case m.Role == "MIRROR":
		out := m.output(name)
		out["changed"] = false
		return out, nil
	case m.State != "SYNCHRONIZED":
		return nil, pluginsdk.Retryable("not_synchronized", "database %s is %s; a manual mirroring failover needs SYNCHRONIZED", name, m.State)
	}
	if _, err := db.ExecContext(ctx, "ALTER DATABASE "+q+" SET PARTNER FAILOVER"); err != nil {
		return nil, sqlError("ALTER DATABASE "+name+" SET PARTNER FAILOVER", err)
	}
	after, err := readMirror(ctx, db, name)
	if err != nil {
		return nil, err
	}
	out := after.output(name)
	out["changed"] = true
	return out, nil
}
