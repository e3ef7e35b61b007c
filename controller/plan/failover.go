package plan

import (
	"fmt"
	"strings"

	"github.com/chatdr/chatdr/controller/topology"
)

// failoverPlanned builds the planned failover: the primary site is healthy;
// writers are stopped, the primary's last log is taken WITH NORECOVERY
// (which also fences it), shipped and restored, and the backup is recovered
// only once it provably reached that log's LastLSN (design §4).
func (b *builder) failoverPlanned() error {
	t := b.t
	if b.r.Now.IsZero() {
		return fmt.Errorf("%w: a planned failover needs the request time (Now): the tail-log backup file is named after it", ErrBadRequest)
	}
	if err := b.failoverChecks(); err != nil {
		return err
	}
	p, db := t.SQL.Primary, t.Databases.Chat
	if b.unreachable(p.FQDN) {
		return refuse("the primary SQL Server %s does not answer: a planned failover needs it for the tail-log backup; use --mode disaster", p.FQDN)
	}
	if d, ok := b.database(p, db); ok && !d.Writable() {
		if t.SQL.PrimaryMirror != nil && b.writable(t.SQL.PrimaryMirror, db) {
			return refuse("%s is %s on the primary %s but writable on the primary mirror %s: fail the mirror back first (Invoke-CsDatabaseFailover -NewPrincipal Primary), then plan again",
				db, describeDB(d), p.FQDN, t.SQL.PrimaryMirror.FQDN)
		}
		return refuse("%s is %s on the primary %s, not ONLINE and writable: a planned failover takes its tail-log backup. If an earlier run already took it, resume that run (chatdr run resume); if the primary lost its data, use --mode disaster",
			db, describeDB(d), p.FQDN)
	}
	if d, ok := b.database(t.SQL.Backup, db); ok && d.Writable() {
		return refuse("%s is already ONLINE on the backup %s: no log can be restored onto it, so a planned failover cannot prove zero data loss; use --mode disaster",
			db, t.SQL.Backup.FQDN)
	}
	return b.failover(false)
}

// failoverDisaster builds the disaster failover: the primary site is lost;
// what can be reached is fenced, log shipping is snapshot and removed, what
// can be copied and restored is, and the irreversible recovery waits for
// an approval when the data-loss window is not zero (design §4).
func (b *builder) failoverDisaster() error {
	t := b.t
	if err := b.failoverChecks(); err != nil {
		return err
	}
	db := t.Databases.Chat
	if !b.r.Force.SplitBrain {
		for _, h := range []*topology.SQLHost{t.SQL.Primary, t.SQL.PrimaryMirror} {
			if h != nil && b.writable(h, db) {
				return splitBrain("%s answers and %s is writable there: the primary site is not lost. Use --mode planned (zero data loss); "+
					"if %s is isolated from every client, force with a reason", h.FQDN, db, h.FQDN)
			}
		}
	}
	return b.failover(true)
}

// failoverChecks are the refusals common to both failover kinds.
func (b *builder) failoverChecks() error {
	t := b.t
	db := t.Databases.Chat
	if b.f.PoolState == PoolFailedOver && !b.r.Force.PoolState {
		return refuse("pool %s is already FailedOver: to finish a stopped failover run, resume it (chatdr run resume); to go back, fail back (chatdr failback); "+
			"to finish a failover begun by hand, force with a reason", t.Pool)
	}
	if d, ok := b.database(t.SQL.Backup, db); ok && !d.Exists() {
		return refuse("%s does not exist on the backup SQL Server %s: there is nothing to fail over to; re-initialize log shipping first", db, t.SQL.Backup.FQDN)
	}
	if !b.writable(t.SQL.Backup, db) || b.r.Force.SplitBrain {
		return nil
	}
	for _, h := range []*topology.SQLHost{t.SQL.Primary, t.SQL.PrimaryMirror} {
		if h != nil && b.writable(h, db) {
			return splitBrain("%s is ONLINE and writable on both the backup %s and %s: two writable copies already exist (domain §6.1). "+
				"Stop every chat server, decide which copy to keep, and force with a reason only if it is the backup's", db, t.SQL.Backup.FQDN, h.FQDN)
		}
	}
	return nil
}

// failover builds the groups of both failover kinds.
func (b *builder) failover(disaster bool) error {
	t := b.t
	prim, bak := t.SQL.Primary, t.SQL.Backup
	db := t.Databases.Chat
	primarySite, backupSite := t.SiteByRole(topology.SitePrimary).Name, t.SiteByRole(topology.SiteBackup).Name
	kind := "planned failover"
	if disaster {
		kind = "disaster failover"
	}

	// Who writes now and who serves afterwards.
	activeNow := b.activeNow()
	writers := b.union(
		func(cs topology.ChatServer) bool { return cs.Site == primarySite },
		func(cs topology.ChatServer) bool { return cs.ActiveWhen == topology.ActiveNormal },
		activeNow)
	var activate, lost []topology.ChatServer
	for _, cs := range t.ActiveServers(topology.ActiveFailedOver) {
		if disaster && cs.Site == primarySite {
			lost = append(lost, cs)
			continue
		}
		activate = append(activate, cs)
	}
	if len(lost) > 0 {
		b.note("Not activated: %s (active_when failed_over but in the lost site %s).", fqdns(lost), primarySite)
	}
	if len(activate) == 0 {
		return refuse("no chat server outside the lost site %s is active_when failed_over: nothing would serve the pool; fix the topology", primarySite)
	}
	avoid := ""
	if disaster {
		avoid = primarySite
	}
	shell, err := b.shellHost(avoid, backupSite, "the primary site is lost")
	if err != nil {
		return err
	}
	bestEffort := func(cs topology.ChatServer) bool {
		if disaster {
			return cs.Site == primarySite
		}
		return b.unreachable(cs.FQDN)
	}
	for _, cs := range writers {
		if !disaster && b.unreachable(cs.FQDN) {
			b.note("%s did not answer: stopping its services is best effort; make sure it is down or off the network.", cs.FQDN)
		}
	}

	// Backup database state decides whether logs can still be restored.
	bakFact, bakKnown := b.database(bak, db)
	backupOnline := bakKnown && bakFact.Writable()
	standby := (bakKnown && bakFact.Standby) || (b.f.LogShipping != nil && b.f.LogShipping.RestoreMode == 1)

	// Directories: the facts' snapshot when known (it is what msdb holds),
	// else the topology.
	source, dest := t.LogShipping.BackupShare, t.LogShipping.CopyDir
	if ls := b.f.LogShipping; ls != nil {
		if ls.BackupSourceDirectory != "" && ls.BackupSourceDirectory != source {
			b.note("Log shipping reads from %s (msdb), not the topology's backup_share %s: the plan uses msdb's.", ls.BackupSourceDirectory, source)
			source = ls.BackupSourceDirectory
		}
		if ls.BackupDestinationDirectory != "" && ls.BackupDestinationDirectory != dest {
			b.note("Log shipping copies to %s (msdb), not the topology's copy_dir %s: the plan uses msdb's.", ls.BackupDestinationDirectory, dest)
			dest = ls.BackupDestinationDirectory
		}
	}

	// F0a: fence the writers.
	clearReason := "domain F0a/F7: Set-CsPersistentChatActiveServer -ActiveServers $Null: no chat server accepts new connections (existing ones survive, domain §6.1)"
	if disaster {
		clearReason += "; needs a writable CMS (domain F0b)"
	}
	b.add("fence-clear-active-servers", b.step("F0a-clear-active-servers", shell, actCSSetActive, map[string]any{"mode": "clear"}, clearReason))
	b.addAll("fence-stop-chat-services", b.serviceSteps("F0a", "stop", writers, bestEffort, func(cs topology.ChatServer, svc string) string {
		r := fmt.Sprintf("domain F0a: stop %s on %s (Stop-CsWindowsService -Graceful) so it stops writing; the active list blocks only new connections (domain §6.1)", svc, cs.FQDN)
		if disaster && cs.Site == primarySite {
			r += "; best effort: skipped when the host is down"
		}
		return r
	}))

	// F0c (and, planned, the primary's preparation for its tail-log backup).
	var tailID string
	prep := []Step{}
	if !backupOnline {
		prep = append(prep, b.step("F0c-snapshot-log-shipping", bak.FQDN, actLSSnapshot, map[string]any{"database": db},
			"domain F0c: save the msdb log-shipping configuration of "+db+" on the backup before F1 deletes it (domain §5.1)"))
	}
	if !disaster {
		prep = append(prep, b.step("F0a-kill-sessions-primary-"+db, prim.FQDN, actKillSessions, map[string]any{"database": db},
			"design §4 planned failover: end the sessions left on the primary's "+db+" so that the tail-log backup gets exclusive access"))
		if pm := t.SQL.PrimaryMirror; pm != nil {
			prep = append(prep, b.step("F0a-remove-primary-mirror-"+db, prim.FQDN, actMirrorRemove, map[string]any{"database": db},
				"inference (domain §5.4): a mirrored principal cannot be left RESTORING by a tail-log backup; SET PARTNER OFF leaves "+pm.FQDN+"'s copy RESTORING; the primary mirror is rebuilt at failback (B5)"))
		}
	}
	b.add("prepare", prep...)

	// F0d, and the planned failover's tail-log backup.
	var jobs []Step
	if !backupOnline {
		jobs = append(jobs, b.step("F0d-disable-log-shipping-jobs", bak.FQDN, actLSDisableJobs, map[string]any{"database": db},
			"domain F0d: stop and disable the copy and restore jobs so they cannot race the manual restores (domain §6.7)"))
	}
	if !disaster {
		tailID = "F0a-tail-log-backup-" + db
		jobs = append(jobs, b.step(tailID, prim.FQDN, actTailLog, map[string]any{"database": db, "dir": source},
			"design §4, domain §3 NORECOVERY variant step 2 [S35]: BACKUP LOG "+db+" WITH NORECOVERY into the log-shipping share: the last log, and the primary is left RESTORING (fenced)"))
		b.note("The tail-log backup is written to %s, named when it is taken like a log-shipping file but to the millisecond (%s_yyyymmddhhmmssfff.trn): it cannot overwrite a file of the backup job, and it sorts after all of them.", source, db)
	}
	if disaster {
		b.add("stop-log-shipping-jobs", jobs...)
	} else {
		b.add("tail-log-backup", jobs...)
	}

	var copyID, restoreID string
	if backupOnline {
		b.note("%s is already ONLINE on the backup %s (recovered earlier): the log-shipping, copy and restore steps are left out (no log applies after recovery, domain §5.3). Whatever the old primary wrote after that recovery point is lost; the recovery step is a no-op kept for its guard, and the pool switch needs an approval.",
			db, bak.FQDN)
	} else {
		// F1, F2, F3.
		f1 := []Step{b.step("F1-remove-log-shipping-secondary", bak.FQDN, actLSRemoveSec, map[string]any{"database": db},
			"domain F1: exec sp_delete_log_shipping_secondary_database "+db+" on the backup (the agent refuses unless the F0c snapshot is saved)")}
		if standby {
			f1 = append(f1, b.step("F3-kill-sessions-before-restore-"+db, bak.FQDN, actKillSessions, map[string]any{"database": db},
				"domain §5.3.6: the backup is in STANDBY, where readers can connect; RESTORE LOG needs them gone"))
		}
		b.add("remove-log-shipping", f1...)

		copyID = "F2-copy-logs-" + db
		cp := b.step(copyID, bak.FQDN, actLSCopy, map[string]any{"database": db, "source_dir": source, "dest_dir": dest, "verify": true},
			"domain F2: copy every "+db+"_*.trn not yet copied from the backup share to the copy directory, ignoring .wrk files; RESTORE HEADERONLY reads each")
		if !disaster {
			cp.Reason += " (the tail-log backup included)"
			cp.Expect = map[string]any{"source_readable": true}
		} else {
			cp.Reason += "; a lost share is not an error: what was copied is all there is (domain §6.3)"
		}
		b.add("copy-logs", cp)

		restoreID = "F3-restore-logs-" + db
		rs := b.step(restoreID, bak.FQDN, actLSRestore, map[string]any{"database": db, "dir": dest},
			"domain F3: RESTORE LOG "+db+" WITH NORECOVERY for each unapplied log backup in LSN order, stopping at a gap or another fork (domain §5.3); the configured restore mode is kept")
		if !disaster {
			rs.Reason += "; must reach the tail-log backup's LastLSN: zero data loss, proven by LSN"
			rs.Expect = map[string]any{"complete": true}
			rs.ExpectFrom = map[string]string{"reached_lsn": tailID + ".last_lsn"}
		}
		b.add("restore-logs", rs)
	}

	// F4a, F4b.
	b.add("kill-sessions-backup", b.step("F4a-kill-sessions-"+db, bak.FQDN, actKillSessions, map[string]any{"database": db},
		"domain F4a: end every session on the backup's "+db+" (sp_who2/KILL) so that RESTORE WITH RECOVERY gets exclusive access"))
	rec := b.step("F4b-recover-"+db, bak.FQDN, actRecover, map[string]any{"database": db},
		"domain F4b: RESTORE DATABASE "+db+" WITH RECOVERY on the backup: it becomes writable; irreversible, a new recovery fork (domain §2 notes (c))")
	rec.Expect = map[string]any{"state": "ONLINE", "writable": true}
	rec.Guards = b.fencingGuards(db)
	switch {
	case backupOnline:
	case disaster:
		rec.Approval = Approval{Required: true, When: ApproveOnDataLoss, Approvers: t.Approvals.DataLossApprovers}
		rec.DataLossFrom = []string{copyID, restoreID}
		rec.Reason += "; waits for approval when the data-loss window is not zero (design §4)"
	default:
		// A safety net: the window of a planned failover is zero, so this
		// waits only if the LSN proof above was not honoured.
		rec.Approval = Approval{Required: true, When: ApproveOnDataLoss, Approvers: t.Approvals.DataLossApprovers}
		rec.DataLossFrom = []string{tailID, copyID, restoreID}
	}
	b.add("recover-backup", rec)
	if disaster {
		// domain §6.1–6.2: from here on the old primary must stay fenced.
		b.add("fence-old-primary", b.fenceOldPrimarySteps("F4c", db, source,
			"domain §6.1 (inference): the backup is now writable; if the old primary answers again, its "+db+" is fenced before anything can write to it")...)
	}

	// F5, then wait for each server's local store.
	sw := b.step("F5-set-pool-failed-over", shell, actCSSetState, map[string]any{"state": string(PoolFailedOver), "identity": t.PoolIdentity},
		"domain F5: Set-CsPersistentChatState -PoolState FailedOver: the pool now uses the backup databases of the topology")
	sw.Expect = map[string]any{"pool_state": string(PoolFailedOver)}
	if backupOnline {
		sw.Approval = Approval{Required: true, When: ApproveAlways, Approvers: t.Approvals.DataLossApprovers}
		sw.Reason += "; approval always: the data-loss window of a database recovered outside this plan is unknown"
	}
	b.add("switch-pool", sw)
	b.addAll("wait-local-stores", b.waitLocalStoreSteps("F5", activate, PoolFailedOver, func(cs topology.ChatServer) string {
		return "domain F5 verify, §6.14: wait until " + cs.FQDN + "'s local store (Get-CsPersistentChatState -LocalStore) shows FailedOver, so that it never serves from the old database"
	}))

	mirror := b.failoverMirrorGroups(shell)
	if b.opt.MirrorBeforeActivate {
		mirror()
	}

	// F7.
	b.add("activate", b.step("F7-set-active-servers", shell, actCSSetActive, map[string]any{"mode": "set", "servers": serverList(activate)},
		"domain F7: Set-CsPersistentChatActiveServer with "+count(len(activate), "server")+" active_when failed_over (at most 4)"))
	b.addAll("start-chat-services", b.serviceSteps("F7", "start", activate, nil, func(cs topology.ChatServer, svc string) string {
		return fmt.Sprintf("domain F7: start %s on %s (Start-CsWindowsService)", svc, cs.FQDN)
	}))
	b.add("verify", b.testMessageStep("F7-test-message", shell,
		"domain F7 verify: Test-CsPersistentChatMessage posts a message through the pool, now on the backup database"))

	if !b.opt.MirrorBeforeActivate {
		mirror()
	}
	if disaster {
		b.add("fence-returned-primary", b.fenceOldPrimarySteps("F8", db, source,
			"domain §6.1–6.2 (inference): last check before the run ends: an old primary that came back during the failover is fenced, so that "+db+" has one writable copy")...)
	}

	b.failoverNotes(disaster, kind)
	return nil
}

// fenceOldPrimarySteps returns best-effort db.fence steps for database on
// the old primary and primary mirror: skipped while their agents are
// unreachable (a lost site), a no-op when the database is not writable, and
// otherwise a tail-log backup WITH NORECOVERY into the share under a name
// log shipping never picks up (or SET OFFLINE when the share is gone).
func (b *builder) fenceOldPrimarySteps(prefix, database, share, reason string) []Step {
	var steps []Step
	for _, h := range []*topology.SQLHost{b.t.SQL.Primary, b.t.SQL.PrimaryMirror} {
		if h == nil {
			continue
		}
		path := joinPath(share, fmt.Sprintf("%s_orphaned_tail_%s_%s.bak", database, h.FQDN, stamp(b.r.Now)))
		st := b.step(fmt.Sprintf("%s-fence-%s-%s", prefix, hostLabel(h.FQDN), database), h.FQDN, actFence,
			map[string]any{"database": database, "path": path}, reason)
		st.BestEffort = true
		steps = append(steps, st)
	}
	return steps
}

// hostLabel is the first label of a host name (sql1 for sql1.dc1.example).
func hostLabel(fqdn string) string {
	if i := strings.IndexByte(fqdn, '.'); i > 0 {
		return fqdn[:i]
	}
	return fqdn
}

// fencingGuards returns the old_primary_not_writable guards for database:
// the primary and, when configured, the primary mirror (which may have
// taken over as principal).
func (b *builder) fencingGuards(database string) []Guard {
	var gs []Guard
	for _, h := range []*topology.SQLHost{b.t.SQL.Primary, b.t.SQL.PrimaryMirror} {
		if h == nil {
			continue
		}
		g := Guard{Kind: GuardOldPrimaryNotWritable, Host: h.FQDN, Database: database}
		if b.r.Force.SplitBrain {
			g.Override = b.r.Force.Reason
		}
		gs = append(gs, g)
	}
	return gs
}

// failoverMirrorGroups returns a function adding the F6 groups (or noting
// why there are none).
func (b *builder) failoverMirrorGroups(shell string) func() {
	t := b.t
	return func() {
		bm := t.SQL.BackupMirror
		switch {
		case bm == nil:
			b.note("No backup mirror in the topology: after the failover the pool runs on %s without high availability (domain F6 does not apply).", t.SQL.Backup.FQDN)
			return
		case b.opt.SkipMirroring:
			b.note("Mirroring in the backup site is not re-created (requested): run Install-CsMirrorDatabase -SqlServerFqdn %s later (domain F6).", t.SQL.Backup.FQDN)
			return
		}
		when := "after activation, which shortens the outage; the pool has no high availability until it completes (domain §2 notes (a))"
		if b.opt.MirrorBeforeActivate {
			when = "before activation, the Microsoft order 5→6→7 (domain §2 notes (a))"
		}
		b.add("mirror-"+t.Databases.Chat, b.installMirrorStep("F6-install-mirror-"+t.Databases.Chat, shell, t.SQL.Backup, "PersistentChat",
			"domain F6: Install-CsMirrorDatabase with the backup "+t.SQL.Backup.FQDN+" as principal and "+bm.FQDN+" as mirror (not the original mirror), dropping the mirror's stale copy; "+when))
		verify := []Step{b.verifyMirrorStep("F6-verify-mirror-"+t.Databases.Chat, t.SQL.Backup, t.Databases.Chat,
			"domain F6 verify: sys.database_mirroring shows "+t.Databases.Chat+" PRINCIPAL and SYNCHRONIZED")}
		if comp := t.Databases.Compliance; comp != "" {
			b.add("mirror-"+comp, b.installMirrorStep("F6-install-mirror-"+comp, shell, t.SQL.Backup, "PersistentChatCompliance",
				"domain F6 notes (b) (inference): mirror "+comp+" the same way (-DatabaseType PersistentChatCompliance); failback B2 removes it"))
			verify = append(verify, b.verifyMirrorStep("F6-verify-mirror-"+comp, t.SQL.Backup, comp,
				"domain F6 verify: sys.database_mirroring shows "+comp+" PRINCIPAL and SYNCHRONIZED"))
		}
		b.add("verify-mirroring", verify...)
	}
}

// failoverNotes adds what the operator must know about a failover.
func (b *builder) failoverNotes(disaster bool, kind string) {
	t := b.t
	if comp := t.Databases.Compliance; comp != "" {
		b.note("%s (compliance) is not failed over (domain §1, §6.19): its content is transient and purged as the compliance adapter processes it; after the failover the compliance service uses the backup site's own %s. Collect the adapter's output (AdapterOutputDirectory) around the %s, or compliance records of the last minutes may be lost.",
			comp, comp, kind)
	}
	if disaster {
		b.note("Before running: if the Central Management Store lived in the lost site, run Invoke-CsManagementServerFailover on the surviving pool first; user sign-in needs Invoke-CsPoolFailOver -PoolFqdn <lost front-end pool> -DisasterMode (domain F0b). Neither is part of this plan.")
		b.note("Data-loss window: the recovery step (F4b) shows how far the restore got against the newest log backup known, and waits for %d approver(s) when they differ. Whatever the primary committed after its newest log backup is lost and cannot be measured.",
			t.Approvals.DataLossApprovers)
	} else {
		b.note("Zero data loss is proven by LSN: F3 must reach the tail-log backup's last_lsn before F4b may run.")
	}
	b.serviceNote()
}
