package plan

import "time"

// The plugin actions the plans call (plugins/mssql, plugins/csshell). Their
// names live here only, so that a rename in a plugin is one edit.
const (
	actDBState       = "mssql.db.state"
	actKillSessions  = "mssql.db.kill_sessions"
	actRecover       = "mssql.db.recover"
	actTailLog       = "mssql.db.tail_log_backup"
	actFence         = "mssql.db.fence"
	actBackupFull    = "mssql.db.backup_full"
	actRestoreFull   = "mssql.db.restore_full"
	actLSSnapshot    = "mssql.ls.snapshot"
	actLSDisableJobs = "mssql.ls.disable_jobs"
	actLSRemoveSec   = "mssql.ls.remove_secondary"
	actLSCopy        = "mssql.ls.copy_pending"
	actLSRestore     = "mssql.ls.restore_pending"
	actLSSetupPrim   = "mssql.ls.setup_primary"
	actLSSetupSec    = "mssql.ls.setup_secondary"
	actMirrorStatus  = "mssql.mirror.status"
	actMirrorRemove  = "mssql.mirror.remove"

	actCSGetState      = "csshell.cs.get_state"
	actCSSetState      = "csshell.cs.set_state"
	actCSSetActive     = "csshell.cs.set_active_servers"
	actCSInstallMirror = "csshell.cs.install_mirror"
	actCSTestMessage   = "csshell.cs.test_message"
	actCSService       = "csshell.cs.windows_service"
)

// policy is an action's default timeout, retry policy and safety class.
type policy struct {
	timeout     time.Duration
	retry       Retry
	destructive bool
}

// retry builds a Retry.
func retry(attempts int, backoff, maxBackoff time.Duration) Retry {
	return Retry{MaxAttempts: attempts, Backoff: backoff, MaxBackoff: maxBackoff}
}

// policyFor returns the defaults for action. Timeouts follow the plugins'
// own defaults; retries are few for long or destructive actions (each
// action is check-then-act, so a retry after a lost answer is harmless) and
// many for cheap reads that wait for something (an expectation).
func policyFor(action string) policy {
	switch action {
	case actDBState, actMirrorStatus, actLSSnapshot:
		return policy{timeout: time.Minute, retry: retry(3, 5*time.Second, 30*time.Second)}
	case actKillSessions:
		return policy{timeout: 5 * time.Minute, retry: retry(5, 5*time.Second, 30*time.Second)}
	case actRecover:
		return policy{timeout: 30 * time.Minute, retry: retry(2, 30*time.Second, time.Minute), destructive: true}
	case actTailLog:
		return policy{timeout: 30 * time.Minute, retry: retry(2, 30*time.Second, time.Minute), destructive: true}
	case actFence:
		return policy{timeout: 30 * time.Minute, retry: retry(3, 10*time.Second, time.Minute), destructive: true}
	case actBackupFull:
		return policy{timeout: 2 * time.Hour, retry: retry(2, time.Minute, 5*time.Minute)}
	case actRestoreFull:
		return policy{timeout: 4 * time.Hour, retry: retry(2, time.Minute, 5*time.Minute), destructive: true}
	case actLSDisableJobs:
		return policy{timeout: 10 * time.Minute, retry: retry(3, 10*time.Second, time.Minute)}
	case actLSRemoveSec:
		return policy{timeout: 5 * time.Minute, retry: retry(3, 10*time.Second, time.Minute), destructive: true}
	case actLSCopy:
		return policy{timeout: time.Hour, retry: retry(3, 30*time.Second, 2*time.Minute)}
	case actLSRestore:
		return policy{timeout: 4 * time.Hour, retry: retry(3, 30*time.Second, 2*time.Minute)}
	case actLSSetupPrim, actLSSetupSec:
		return policy{timeout: 10 * time.Minute, retry: retry(3, 10*time.Second, time.Minute)}
	case actMirrorRemove:
		return policy{timeout: 5 * time.Minute, retry: retry(3, 10*time.Second, time.Minute)}
	case actCSGetState:
		return policy{timeout: 3 * time.Minute, retry: retry(3, 10*time.Second, time.Minute)}
	case actCSSetState, actCSSetActive:
		return policy{timeout: 5 * time.Minute, retry: retry(3, 15*time.Second, time.Minute)}
	case actCSInstallMirror:
		// A half-done Install-CsMirrorDatabase leaves the database on the
		// mirror; the plugin makes its timeout terminal and the operator
		// decides (plugins/csshell).
		return policy{timeout: 4 * time.Hour, retry: retry(1, 0, 0), destructive: true}
	case actCSTestMessage:
		return policy{timeout: 5 * time.Minute, retry: retry(5, 15*time.Second, time.Minute)}
	case actCSService:
		return policy{timeout: 10 * time.Minute, retry: retry(3, 10*time.Second, time.Minute)}
	}
	return policy{timeout: 5 * time.Minute, retry: retry(1, 0, 0)}
}

// Waiting policies: a step whose Expect waits for something that takes time
// (CMS replication, mirroring synchronization) gets many cheap attempts.

// waitLocalStore bounds the wait for a server's local store: about 15
// minutes of CMS replication.
func waitLocalStore() Retry { return retry(40, 5*time.Second, 30*time.Second) }

// waitMirror bounds the wait for mirroring to synchronize: about 30 minutes.
func waitMirror() Retry { return retry(60, 10*time.Second, 30*time.Second) }

// destructiveAction reports whether action overwrites or irreversibly
// changes data; Validate requires such steps to be marked Destructive.
func destructiveAction(action string) bool { return policyFor(action).destructive }
