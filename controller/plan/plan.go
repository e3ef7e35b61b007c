// Package plan builds the failover and failback plans of a Persistent Chat
// pool (design.md §4) as data: ordered groups of steps, each step naming
// the agent host, the plugin action, its parameters, its timeout and retry
// policy, its approval, the guards the engine re-checks right before it
// runs, the output it must show, and the procedure step it implements
// (domain.md §2, §3).
//
// Builders are pure functions of (topology, facts from probes, request): no
// I/O, no clock, deterministic output. That is what lets `chatdr plan`
// render a dry run and golden files pin every plan. The engine
// (controller/engine) executes plans; docs/plans.md states the contracts it
// must honour for approvals, guards, expectations and best-effort steps.
//
// A *Plan is a plain value: callers may read it from several goroutines as
// long as nobody mutates it.
package plan

import (
	"errors"
	"time"
)

// Kind is the kind of a plan.
type Kind string

// Plan kinds.
const (
	// FailoverPlanned moves the pool to the backup site while the primary
	// site is healthy: zero data loss, proven by LSN (design §4).
	FailoverPlanned Kind = "failover-planned"
	// FailoverDisaster moves the pool to the backup site after the primary
	// site is lost; the data-loss window is shown and approved before the
	// irreversible RESTORE WITH RECOVERY (design §4, domain §2).
	FailoverDisaster Kind = "failover-disaster"
	// Failback moves the pool back to the rebuilt primary site (domain §3).
	Failback Kind = "failback"
)

// Kinds lists every plan kind in a stable order.
func Kinds() []Kind { return []Kind{FailoverPlanned, FailoverDisaster, Failback} }

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool {
	switch k {
	case FailoverPlanned, FailoverDisaster, Failback:
		return true
	}
	return false
}

// Request is what the operator asks for.
type Request struct {
	// Kind is the plan kind.
	Kind Kind
	// Pool is the Persistent Chat pool FQDN; it must equal the topology's
	// pool (compared case-insensitively).
	Pool string
	// Now is the time the plan is built for. The builders never read the
	// clock: the names of the files the plan writes (the tail-log backup of
	// a planned failover, the full backups of a failback) are derived from
	// Now in UTC, so that a plan is deterministic and a re-run of a step
	// targets the same file. Required for FailoverPlanned and Failback.
	Now time.Time
	// Options tune the plan; the zero value is the recommended plan.
	Options Options
	// Force overrides the refusals the safety rules allow overriding.
	Force Force
}

// Options tune a plan. The zero value gives the recommended plan: mirroring
// re-created in the backup site, after the backup-site servers are active.
type Options struct {
	// SkipMirroring leaves out the re-creation of mirroring (domain F6 in a
	// failover, the primary mirror of B5 in a failback). The zero value
	// re-creates mirroring wherever the topology configures a mirror.
	SkipMirroring bool
	// MirrorBeforeActivate re-creates the backup-site mirror (F6) before the
	// servers are activated (F7), the Microsoft order 5→6→7. The zero value
	// activates first: F6 backs up and restores the whole database through
	// a share, so F7-before-F6 shortens the outage at the cost of running
	// without high availability until F6 completes (domain §2 notes (a)).
	// Failover plans only.
	MirrorBeforeActivate bool
	// ChatService is the Windows service name of the Persistent Chat
	// service on each chat server; default DefaultChatService (UNVERIFIED,
	// domain §1: confirm with Get-CsWindowsService).
	ChatService string
	// ComplianceService is the Windows service name of the Persistent Chat
	// Compliance service, stopped and started with the chat service when
	// compliance is enabled; default DefaultComplianceService (UNVERIFIED).
	ComplianceService string
	// TestSenderSIP and TestReceiverSIP are the users
	// Test-CsPersistentChatMessage posts as; both or neither. Empty: the
	// health-monitoring test users configured on the pool.
	TestSenderSIP, TestReceiverSIP string
}

// Default service names (domain §1: commonly quoted, UNVERIFIED).
const (
	// DefaultChatService is the Persistent Chat service's short name.
	DefaultChatService = "RTCCHAT"
	// DefaultComplianceService is the Persistent Chat Compliance service's
	// short name.
	DefaultComplianceService = "RTCCHATCOMPLIANCE"
)

// Force overrides refusals that the safety rules allow an operator to
// override. Any flag needs a Reason; the reason is copied into the plan's
// Notes and into every overridden guard, so the engine can audit it.
type Force struct {
	// SplitBrain builds a failover although the facts show the old
	// primary's database still writable (and possibly the backup's too), and
	// marks the fencing guards of the plan as overridden: the engine then
	// records, rather than obeys, a failed fencing check (design §5, domain
	// §6.1). Use only when the old primary is known to be isolated from
	// every client.
	SplitBrain bool
	// PoolState builds a failover although the pool already reads
	// FailedOver, e.g. to finish a failover begun by hand.
	PoolState bool
	// Reason says why; required when a flag is set.
	Reason string
}

// set reports whether a force flag is set.
func (f Force) set() bool { return f.SplitBrain || f.PoolState }

// PoolState is the state of the pool in the Central Management Store.
type PoolState string

// Pool states (Get-CsPersistentChatState).
const (
	// PoolUnknown means the state was not probed.
	PoolUnknown PoolState = ""
	// PoolNormal means the pool uses the primary site's databases.
	PoolNormal PoolState = "Normal"
	// PoolFailedOver means the pool uses the backup site's databases.
	PoolFailedOver PoolState = "FailedOver"
)

// Facts are what the probes found before the plan is built. Every field is
// optional; the zero value means "unknown" and never blocks a build. The
// builders use facts only to refuse requests that cannot work (with an
// error that says what to do instead) and to pick parameters.
type Facts struct {
	// Reachable says, by agent host FQDN (any case), whether the host's
	// agent answered: true answered, false did not. A host absent from the
	// map is unknown.
	Reachable map[string]bool
	// Databases are database states read with the mssql.databases probe.
	// A host/database pair absent from the list is unknown.
	Databases []DatabaseFact
	// PoolState is the pool state in the central store, PoolUnknown when
	// not read.
	PoolState PoolState
	// ActiveServers is the active server list; nil when not read, empty
	// and non-nil when known to be empty.
	ActiveServers []string
	// LogShipping is the log-shipping configuration of the backup database
	// (mssql.ls.snapshot); nil when not read.
	LogShipping *LogShippingFact
}

// DatabaseFact is one database on one SQL host, as mssql.databases reports
// it.
type DatabaseFact struct {
	// Host is the SQL host's FQDN.
	Host string `json:"host"`
	// Database is the database name.
	Database string `json:"database"`
	// State is sys.databases.state_desc (ONLINE, RESTORING, ...); empty
	// when the database does not exist on the host.
	State string `json:"state"`
	// Standby is sys.databases.is_in_standby.
	Standby bool `json:"standby"`
	// ReadOnly is sys.databases.is_read_only.
	ReadOnly bool `json:"read_only"`
}

// Exists reports whether the database exists on the host.
func (d DatabaseFact) Exists() bool { return d.State != "" }

// Writable reports whether the database accepts writes: ONLINE, not in
// standby, not read-only.
func (d DatabaseFact) Writable() bool { return d.State == "ONLINE" && !d.Standby && !d.ReadOnly }

// Restoring reports whether log backups can still be applied to it.
func (d DatabaseFact) Restoring() bool { return d.State == "RESTORING" || d.Standby }

// LogShippingFact is the log-shipping configuration of the backup database,
// in the shape of the mssql plugin's snapshot (domain §5.1).
type LogShippingFact struct {
	// PrimaryServer is the primary's server name as log shipping knows it.
	PrimaryServer string `json:"primary_server"`
	// BackupSourceDirectory is the backup share as the secondary reads it.
	BackupSourceDirectory string `json:"backup_source_directory"`
	// BackupDestinationDirectory is the secondary's copy directory.
	BackupDestinationDirectory string `json:"backup_destination_directory"`
	// LastCopiedFile is the newest log backup copied.
	LastCopiedFile string `json:"last_copied_file"`
	// LastRestoredFile is the newest log backup restored.
	LastRestoredFile string `json:"last_restored_file"`
	// RestoreMode is 0 (NORECOVERY) or 1 (STANDBY).
	RestoreMode int `json:"restore_mode"`
}

// Plan is an ordered list of groups: the steps of a group run in parallel,
// and a group starts when every step of the previous one succeeded.
type Plan struct {
	// Kind is the plan kind.
	Kind Kind `json:"kind"`
	// Pool is the pool FQDN, as the topology spells it.
	Pool string `json:"pool"`
	// Groups are run in order.
	Groups []Group `json:"groups"`
	// Notes are what the operator must know and the plan cannot do:
	// decisions taken from the facts, forced overrides, manual follow-ups.
	Notes []string `json:"notes"`
}

// Group is a set of steps that run in parallel.
type Group struct {
	// Name is a short kebab-case title, unique in the plan.
	Name string `json:"name"`
	// Steps run in parallel; the group succeeds when all of them did (or
	// were skipped under the best-effort rule).
	Steps []Step `json:"steps"`
}

// Step is one action on one agent.
type Step struct {
	// ID is stable, unique in the plan and human-readable; it starts with
	// the procedure step it implements (e.g. "F3-restore-logs-mgc"). It
	// contains only letters, digits and '-' (no '.': ExpectFrom references
	// are "<id>.<field>"). The engine derives idempotency keys from it.
	ID string
	// Host is the FQDN of the agent host that runs the action, exactly as
	// the topology spells it.
	Host string
	// Action is the plugin action name, e.g. "mssql.ls.restore_pending".
	Action string
	// Params are the action's parameters; JSON-like values only (string,
	// float64, bool, []any, map[string]any), as they travel in a protobuf
	// Struct. Never nil.
	Params map[string]any
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Retry says how often a retryable failure (or an unmet expectation) is
	// tried again.
	Retry Retry
	// Approval says whether the step waits for an approval before it runs.
	Approval Approval
	// Destructive marks an action that overwrites or irreversibly changes
	// data or state (RESTORE WITH RECOVERY, WITH REPLACE, dropping log
	// shipping, Install-CsMirrorDatabase).
	Destructive bool
	// BestEffort lets the engine skip the step when its agent cannot be
	// reached (the host is down, as in a lost site). When the agent
	// answers, the step runs and fails like any other step.
	BestEffort bool
	// Reason is one line citing the procedure step it implements.
	Reason string
	// Expect are output fields the engine must find equal (JSON equality)
	// after the action succeeded; otherwise the attempt counts as a
	// retryable failure until the retry budget is spent. Used to verify and
	// to wait (e.g. a server's local store showing FailedOver).
	Expect map[string]any
	// ExpectFrom are output fields that must equal a field of an earlier
	// step's output: field → "<step id>.<output field>" (e.g. the restore
	// reached the tail-log backup's last_lsn). Same failure rule as Expect.
	ExpectFrom map[string]string
	// Guards are conditions the engine re-checks right before each attempt;
	// a failed guard stops the run (terminal, resumable) unless the guard
	// carries an Override.
	Guards []Guard
	// DataLossFrom lists the IDs of earlier steps whose outputs give the
	// data-loss window for an approval with When == ApproveOnDataLoss.
	DataLossFrom []string
}

// Retry is a step's retry policy; only retryable errors are retried.
type Retry struct {
	// MaxAttempts is the number of attempts including the first (≥ 1).
	MaxAttempts int
	// Backoff is the wait before the second attempt; it doubles per attempt.
	Backoff time.Duration
	// MaxBackoff caps the wait between attempts.
	MaxBackoff time.Duration
}

// When an approval is needed.
const (
	// ApproveAlways: the step always waits for approval.
	ApproveAlways = "always"
	// ApproveOnDataLoss: the step waits for approval only when the
	// data-loss window computed from the DataLossFrom steps' outputs is not
	// zero (or cannot be computed).
	ApproveOnDataLoss = "data_loss"
)

// Approval says whether a step waits for an approval.
type Approval struct {
	// Required is true when the step may need an approval.
	Required bool `json:"required"`
	// When is ApproveAlways or ApproveOnDataLoss; empty when not required.
	When string `json:"when,omitempty"`
	// Approvers is how many different approvers are needed (≥ 1 when
	// required).
	Approvers int `json:"approvers,omitempty"`
}

// Guard kinds.
const (
	// GuardOldPrimaryNotWritable holds when Database on Host is not
	// writable, or Host cannot be reached (a lost site cannot be seen
	// writable; the engine records that it could not check). It sits on
	// every step that makes the backup database writable (design §5
	// fencing rule, domain §6.1).
	GuardOldPrimaryNotWritable = "old_primary_not_writable"
	// GuardDatabaseWritable holds when Database on Host is reachable and
	// writable. It sits on steps that overwrite another copy of the data,
	// so that the copy being overwritten is never the only writable one.
	GuardDatabaseWritable = "database_writable"
)

// Guard is a condition the engine re-checks right before a step runs.
type Guard struct {
	// Kind is a Guard* constant.
	Kind string `json:"kind"`
	// Host is the SQL host whose database is checked.
	Host string `json:"host"`
	// Database is the database checked.
	Database string `json:"database"`
	// Override, when set, is the operator's reason for forcing: the engine
	// evaluates the guard, records a failure in the audit log, and runs
	// the step anyway.
	Override string `json:"override,omitempty"`
}

// Errors returned by Build and Validate; test with errors.Is.
var (
	// ErrUnknownPool: the request names a pool the topology does not hold.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrBadRequest: the request is incomplete or contradictory.
	ErrBadRequest = errors.New("bad plan request")
	// ErrRefused: the facts show the request cannot work or is unsafe.
	ErrRefused = errors.New("plan refused")
	// ErrSplitBrain: the request would leave two writable chat databases
	// (refused unless Force.SplitBrain).
	ErrSplitBrain = errors.New("split-brain risk")
	// ErrInvalidPlan: Validate found a problem.
	ErrInvalidPlan = errors.New("invalid plan")
)
