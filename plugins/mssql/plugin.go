package mssql

import (
	"context"
	"sync"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Version is the plugin's version.
const Version = "1.0.0"

// Plugin is the mssql action plugin.
type Plugin struct {
	once    sync.Once
	initErr error
	cfg     Config
	agent   pluginsdk.AgentContext
	roots   []string
	conn    *conn
	// stateDir keeps log-shipping snapshots (they must survive the
	// deletion of the msdb rows, domain.md §5.1).
	stateDir string
}

// New returns the plugin; its configuration is read on first use.
func New() pluginsdk.Plugin { return &Plugin{} }

// NewWithConfig returns the plugin with an explicit configuration (tests,
// tools); roots must be absolute.
func NewWithConfig(cfg Config, stateDir string) *Plugin {
	p := &Plugin{}
	p.once.Do(func() { p.initErr = p.setup(cfg, pluginsdk.AgentContext{StateDir: stateDir}) })
	return p
}

func (p *Plugin) init() error {
	p.once.Do(func() {
		var cfg Config
		ac, err := pluginsdk.LoadConfig("mssql", &cfg)
		if err != nil {
			p.initErr = pluginsdk.Terminal("config", "%v", err)
			return
		}
		p.initErr = p.setup(cfg, ac)
	})
	return p.initErr
}

func (p *Plugin) setup(cfg Config, ac pluginsdk.AgentContext) error {
	roots, err := resolveRoots(ac.ConfigPath, cfg.Roots)
	if err != nil {
		return err
	}
	if len(cfg.Databases) == 0 {
		cfg.Databases = []string{"mgc"}
	}
	for _, d := range cfg.Databases {
		if _, err := checkDatabase(d); err != nil {
			return err
		}
	}
	p.cfg, p.agent, p.roots = cfg, ac, roots
	p.conn = &conn{cfg: cfg.Instance}
	if ac.StateDir != "" {
		p.stateDir = ac.StateDir + "/mssql"
	}
	return nil
}

// param specs shared by several actions.
var (
	pDatabase = pluginsdk.ParamSpec{Name: "database", Type: pluginsdk.TypeString, Required: true, Description: "database name (e.g. mgc)"}
	pPath     = pluginsdk.ParamSpec{Name: "path", Type: pluginsdk.TypeString, Required: true, Description: "backup file, under a configured root"}
)

func action(name, desc string, ro, idem, destr bool, timeout time.Duration, params ...pluginsdk.ParamSpec) pluginsdk.ActionSpec {
	return pluginsdk.ActionSpec{Name: "mssql." + name, Description: desc, Params: params, ReadOnly: ro, Idempotent: idem, Destructive: destr, DefaultTimeout: timeout}
}

// Info describes the plugin.
func (p *Plugin) Info(context.Context) (*pluginsdk.Info, error) {
	str := func(name, desc string) pluginsdk.ParamSpec {
		return pluginsdk.ParamSpec{Name: name, Type: pluginsdk.TypeString, Description: desc}
	}
	num := func(name, desc string) pluginsdk.ParamSpec {
		return pluginsdk.ParamSpec{Name: name, Type: pluginsdk.TypeNumber, Description: desc}
	}
	boolean := func(name, desc string) pluginsdk.ParamSpec {
		return pluginsdk.ParamSpec{Name: name, Type: pluginsdk.TypeBool, Description: desc}
	}
	return &pluginsdk.Info{
		Name: "mssql", Version: Version, APIVersions: []uint32{pluginsdk.ProtocolVersion},
		Actions: []pluginsdk.ActionSpec{
			action("db.state", "read a database's state, standby flag, recovery model and redo point", true, true, false, time.Minute, pDatabase),
			action("db.kill_sessions", "end every user session on a database (sp_who2/KILL), so that RESTORE gets exclusive access", false, true, false, 5*time.Minute, pDatabase),
			action("db.recover", "RESTORE DATABASE ... WITH RECOVERY: bring a RESTORING/STANDBY database online (irreversible: a new recovery fork)", false, true, true, 30*time.Minute, pDatabase),
			action("db.tail_log_backup", "BACKUP LOG ... WITH NORECOVERY: last log backup of the primary, leaving it RESTORING (fences it); never overwrites another backup", false, true, true, 30*time.Minute, pDatabase,
				str("path", "backup file, under a configured root (give path or dir)"),
				str("dir", "directory, under a configured root, in which the file is named at execution like a log-shipping backup to the millisecond: <db>_yyyymmddhhmmssfff.trn (give path or dir)")),
			action("db.fence", "make a database that must no longer be written non-writable, keeping its data: SET PARTNER OFF, KILL, BACKUP LOG ... WITH NORECOVERY to path, or SET OFFLINE when that backup fails (domain §6.1-6.2)", false, true, true, 30*time.Minute, pDatabase, pPath),
			action("db.backup_full", "BACKUP DATABASE to a file with CHECKSUM", false, true, false, 2*time.Hour, pDatabase, pPath,
				boolean("copy_only", "COPY_ONLY: do not disturb the log chain"), boolean("init", "overwrite the file (default true)")),
			action("db.restore_full", "RESTORE DATABASE from a full backup (REPLACE; RECOVERY, NORECOVERY or STANDBY; MOVE to the existing files' paths)", false, true, true, 2*time.Hour, pDatabase, pPath,
				str("recovery", "recovery (default), norecovery or standby"), str("standby_file", "undo file for standby"), boolean("replace", "overwrite an existing database (default true)"),
				pluginsdk.ParamSpec{Name: "move", Type: pluginsdk.TypeObject, Description: "logical file name → physical path"}),
			action("ls.snapshot", "read and keep the log-shipping configuration of a secondary database (domain F0c)", true, true, false, time.Minute, pDatabase),
			action("ls.disable_jobs", "stop and disable the log-shipping copy and restore jobs; wait until none runs (domain F0d)", false, true, false, 10*time.Minute, pDatabase),
			action("ls.enable_jobs", "enable the log-shipping copy and restore jobs", false, true, false, time.Minute, pDatabase),
			action("ls.remove_secondary", "sp_delete_log_shipping_secondary_database (domain F1)", false, true, true, 5*time.Minute, pDatabase),
			action("ls.copy_pending", "copy every log backup not yet copied from the backup share to the copy directory (domain F2)", false, true, false, time.Hour, pDatabase,
				str("source_dir", "override the snapshot's backup share"), str("dest_dir", "override the snapshot's copy directory"),
				boolean("verify", "read each copied file back with RESTORE HEADERONLY (default true)")),
			action("ls.restore_pending", "restore every applicable log backup in LSN order WITH NORECOVERY; stop at a gap or another fork (domain F3)", false, true, false, 4*time.Hour, pDatabase,
				str("dir", "override the snapshot's copy directory"), str("mode", "norecovery (default) or standby")),
			action("ls.setup_primary", "configure log shipping on the primary (sp_add_log_shipping_primary_database, schedule, secondary link) (domain §5.5)", false, true, false, 10*time.Minute, pDatabase,
				pluginsdk.ParamSpec{Name: "backup_dir", Type: pluginsdk.TypeString, Required: true, Description: "backup directory as the primary sees it"},
				pluginsdk.ParamSpec{Name: "backup_share", Type: pluginsdk.TypeString, Required: true, Description: "the same directory as the secondary sees it"},
				pluginsdk.ParamSpec{Name: "secondary_server", Type: pluginsdk.TypeString, Required: true, Description: "the secondary's server name"},
				num("interval_seconds", "backup job interval (default 300)"), num("retention_minutes", "backup retention (default 4320)")),
			action("ls.setup_secondary", "configure log shipping on the secondary (sp_add_log_shipping_secondary_primary / _secondary_database, schedules) (domain §5.5)", false, true, false, 10*time.Minute, pDatabase,
				pluginsdk.ParamSpec{Name: "primary_server", Type: pluginsdk.TypeString, Required: true, Description: "the primary's server name"},
				pluginsdk.ParamSpec{Name: "source_dir", Type: pluginsdk.TypeString, Required: true, Description: "the backup share"},
				pluginsdk.ParamSpec{Name: "dest_dir", Type: pluginsdk.TypeString, Required: true, Description: "the local copy directory"},
				num("interval_seconds", "copy and restore job interval (default 300)"), str("mode", "norecovery (default) or standby")),
			action("mirror.status", "read sys.database_mirroring for a database", true, true, false, time.Minute, pDatabase),
			action("mirror.remove", "ALTER DATABASE ... SET PARTNER OFF (domain B2)", false, true, false, 5*time.Minute, pDatabase),
			action("mirror.failover", "ALTER DATABASE ... SET PARTNER FAILOVER on a synchronized principal", false, true, false, 5*time.Minute, pDatabase),
			action("drill.restore_copy", "restore drill: restore the log-shipped copy under a scratch name (full + logs WITH NORECOVERY, then RECOVERY), time it, validate it, drop it; never touches the secondary, its jobs or the copy directory", false, true, false, 4*time.Hour, pDatabase,
				str("scratch_dir", "directory for the scratch database's files (default: chatdr-drill beside the secondary's data file)"), str("full_backup", "full backup to start from (default: found in msdb restore history and the share)"),
				str("source_dir", "override the snapshot's backup share"), str("copy_dir", "override the snapshot's copy directory"),
				str("table", "table to validate (default dbo.messages)"), str("time_column", "its time column (default posted_at)")),
		},
		Probes: []pluginsdk.ProbeSpec{
			{Name: "mssql.server", Description: "server name, version, and whether SQL Server Agent runs"},
			{Name: "mssql.databases", Description: "state, standby, recovery model, mirroring role and redo point of the configured databases"},
			{Name: "mssql.log_shipping", Description: "log-shipping status of the configured databases: last backup, copy and restore, files waiting, estimated data-loss window"},
		},
	}, nil
}
