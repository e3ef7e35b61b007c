package plan

import (
	"fmt"

	"github.com/chatdr/chatdr/controller/topology"
)

// failback builds the failback to the rebuilt primary site (domain §3):
// writers stopped, mgc copied back with a full backup and restored WITH
// REPLACE, RECOVERY on the primary, mirroring and log shipping primary →
// backup re-created, the pool set Normal BEFORE the primary-site servers
// are activated (domain §3 ordering hazard), each server's local store
// waited for, then services started and a message tested.
func (b *builder) failback() error {
	t := b.t
	prim, bak := t.SQL.Primary, t.SQL.Backup
	db := t.Databases.Chat
	if b.r.Now.IsZero() {
		return fmt.Errorf("%w: a failback needs the request time (Now): its backup files are named after it", ErrBadRequest)
	}
	if b.f.PoolState == PoolNormal {
		return refuse("pool %s is Normal: it already uses the primary site's databases, so there is nothing to fail back (a failback would overwrite the primary's %s with the backup's copy)", t.Pool, db)
	}
	if b.unreachable(prim.FQDN) {
		return refuse("the primary SQL Server %s does not answer: a failback needs the rebuilt primary site (domain §3 preconditions)", prim.FQDN)
	}
	if b.unreachable(bak.FQDN) {
		return refuse("the backup SQL Server %s does not answer: a failback copies %s from it", bak.FQDN, db)
	}
	if d, ok := b.database(bak, db); ok && !d.Writable() {
		return refuse("%s is %s on the backup %s, not ONLINE and writable: the pool did not fail over, or the failover did not finish (resume it: chatdr run resume)",
			db, describeDB(d), bak.FQDN)
	}
	primarySite, backupSite := t.SiteByRole(topology.SitePrimary).Name, t.SiteByRole(topology.SiteBackup).Name
	activeNow := b.activeNow()
	writers := b.union(
		func(cs topology.ChatServer) bool { return cs.Site == backupSite },
		func(cs topology.ChatServer) bool { return cs.ActiveWhen == topology.ActiveFailedOver },
		activeNow)
	activate := t.ActiveServers(topology.ActiveNormal)
	for _, cs := range activate {
		if b.unreachable(cs.FQDN) {
			b.note("%s did not answer: its local-store wait and service start will fail until it does.", cs.FQDN)
		}
	}
	shell, err := b.shellHost("", primarySite, "")
	if err != nil {
		return err
	}
	share := t.LogShipping.BackupShare
	fbPath := joinPath(share, fmt.Sprintf("%s_failback_%s.bak", db, stamp(b.r.Now)))
	initPath := joinPath(share, fmt.Sprintf("%s_lsinit_%s.bak", db, stamp(b.r.Now)))

	// B1.
	b.add("stop-writers-clear-active-servers", b.step("B1-clear-active-servers", shell, actCSSetActive, map[string]any{"mode": "clear"},
		"domain B1: Set-CsPersistentChatActiveServer -ActiveServers $Null: no chat server connects to "+db+" during the failback"))
	b.addAll("stop-chat-services", b.serviceSteps("B1", "stop", writers, nil, func(cs topology.ChatServer, svc string) string {
		return fmt.Sprintf("domain B1 (inference): stop %s on %s (Stop-CsWindowsService -Graceful): existing sessions survive a cleared active list", svc, cs.FQDN)
	}))

	// B1 verify, B2, and the primary's preparation for B4.
	quiesce := []Step{b.step("B1-kill-sessions-backup-"+db, bak.FQDN, actKillSessions, map[string]any{"database": db},
		"domain B1 verify (inference): no Persistent Chat session is left on the backup's "+db+", so nothing is written after the B3 backup")}
	if t.SQL.BackupMirror != nil {
		quiesce = append(quiesce, b.step("B2-remove-mirror-"+db, bak.FQDN, actMirrorRemove, map[string]any{"database": db},
			"domain B2: ALTER DATABASE "+db+" SET PARTNER OFF on the backup; "+t.SQL.BackupMirror.FQDN+"'s copy stays RESTORING"))
		if comp := t.Databases.Compliance; comp != "" {
			quiesce = append(quiesce, b.step("B2-remove-mirror-"+comp, bak.FQDN, actMirrorRemove, map[string]any{"database": comp},
				"domain B2: ALTER DATABASE "+comp+" SET PARTNER OFF on the backup (mgc and mgccomp both)"))
		}
	}
	quiesce = append(quiesce, b.step("B4-kill-sessions-primary-"+db, prim.FQDN, actKillSessions, map[string]any{"database": db},
		"domain B4 (Msg 3101): end the sessions on the primary's "+db+" so the restore gets exclusive access"))
	if t.SQL.PrimaryMirror != nil {
		quiesce = append(quiesce, b.step("B4-remove-primary-mirror-"+db, prim.FQDN, actMirrorRemove, map[string]any{"database": db},
			"domain B4 note, §6.18 (inference): if the reinstall left "+db+" mirrored, SET PARTNER OFF before restoring over it"))
	}
	b.add("quiesce-databases", quiesce...)

	// B3, B4.
	b.add("full-backup", b.step("B3-full-backup-"+db, bak.FQDN, actBackupFull, map[string]any{"database": db, "path": fbPath, "init": true},
		"domain B3: full backup of "+db+" on the backup SQL Server to the log-shipping share (WITH INIT, CHECKSUM)"))
	rp := b.step("B4-restore-primary-"+db, prim.FQDN, actRestoreFull, map[string]any{"database": db, "path": fbPath, "recovery": "recovery", "replace": true},
		"domain B4: RESTORE DATABASE "+db+" WITH REPLACE, RECOVERY on the rebuilt primary (\"overwrite existing\", \"leave ready to use\")")
	rp.Expect = map[string]any{"state": "ONLINE", "writable": true}
	b.add("restore-primary", rp)

	// B5: primary mirror first (Install-CsMirrorDatabase takes its own log
	// backup, which would break a log-shipping chain set up before it),
	// then log shipping.
	var verifyMirror []Step
	switch pm := t.SQL.PrimaryMirror; {
	case pm == nil:
	case b.opt.SkipMirroring:
		b.note("The primary mirror is not re-created (requested): run Install-CsMirrorDatabase -SqlServerFqdn %s later (domain B5).", prim.FQDN)
	default:
		b.add("mirror-primary", b.installMirrorStep("B5-install-primary-mirror-"+db, shell, prim, "PersistentChat",
			"domain B5 (inference; the MS doc omits it): Install-CsMirrorDatabase -SqlServerFqdn "+prim.FQDN+" rebuilds the primary mirror on "+pm.FQDN+
				"; before log shipping, so that its log backup cannot break the log-shipping chain (domain §6.5)"))
		verifyMirror = append(verifyMirror, b.verifyMirrorStep("B5-verify-primary-mirror-"+db, prim, db,
			"domain B5 verify: sys.database_mirroring shows "+db+" PRINCIPAL and SYNCHRONIZED on the primary"))
	}
	b.add("log-shipping-init-backup", append(verifyMirror,
		b.step("B5-backup-for-log-shipping-"+db, prim.FQDN, actBackupFull, map[string]any{"database": db, "path": initPath, "init": true},
			"domain B5, §5.5 step 1: full backup of the restored primary to initialize the log-shipping secondary"))...)
	init := b.step("B5-init-secondary-"+db, bak.FQDN, actRestoreFull, map[string]any{"database": db, "path": initPath, "recovery": "norecovery", "replace": true},
		"domain B5, §5.5 step 1: RESTORE DATABASE "+db+" WITH NORECOVERY, REPLACE on the backup: it becomes a log-shipping secondary again (its data is on the primary since B4)")
	init.Expect = map[string]any{"state": "RESTORING"}
	init.Guards = []Guard{{Kind: GuardDatabaseWritable, Host: prim.FQDN, Database: db}}
	b.add("log-shipping-init-secondary", init)
	b.add("log-shipping-primary", b.step("B5-setup-log-shipping-primary", prim.FQDN, actLSSetupPrim,
		map[string]any{"database": db, "backup_dir": share, "backup_share": share, "secondary_server": sqlServerName(bak)},
		"domain B5, §5.5 steps 2 and 5: log shipping "+prim.FQDN+" → "+bak.FQDN+": backup job to the share, secondary link"))
	mode := "norecovery"
	if b.f.LogShipping != nil && b.f.LogShipping.RestoreMode == 1 {
		mode = "standby"
		b.note("Log shipping is re-created in STANDBY mode, as it was configured (domain §6.11).")
	}
	b.add("log-shipping-secondary", b.step("B5-setup-log-shipping-secondary", bak.FQDN, actLSSetupSec,
		map[string]any{"database": db, "primary_server": sqlServerName(prim), "source_dir": share, "dest_dir": t.LogShipping.CopyDir, "mode": mode},
		"domain B5, §5.5 steps 3 and 4: copy and restore jobs on the backup, restore delay 0"))

	// B7 before B6.
	sw := b.step("B7-set-pool-normal", shell, actCSSetState, map[string]any{"state": string(PoolNormal), "identity": t.PoolIdentity},
		"domain B7, run BEFORE B6 (domain §3 ordering hazard): Set-CsPersistentChatState -PoolState Normal: the pool uses the primary databases again")
	sw.Expect = map[string]any{"pool_state": string(PoolNormal)}
	b.add("switch-pool", sw)
	b.addAll("wait-local-stores", b.waitLocalStoreSteps("B7", activate, PoolNormal, func(cs topology.ChatServer) string {
		return "domain §3 ordering hazard: wait until " + cs.FQDN + "'s local store shows Normal before it is activated; until then it would use the backup, now a RESTORING secondary"
	}))
	b.add("activate", b.step("B6-set-active-servers", shell, actCSSetActive, map[string]any{"mode": "set", "servers": serverList(activate)},
		"domain B6: Set-CsPersistentChatActiveServer with "+count(len(activate), "server")+" active_when normal (at most 4), after B7"))
	b.addAll("start-chat-services", b.serviceSteps("B6", "start", activate, nil, func(cs topology.ChatServer, svc string) string {
		return fmt.Sprintf("domain B6: start %s on %s (Start-CsWindowsService)", svc, cs.FQDN)
	}))
	b.add("verify", b.testMessageStep("B6-test-message", shell,
		"domain B6 verify: Test-CsPersistentChatMessage posts a message through the pool, now on the primary database"))

	// Notes.
	b.note("Preconditions (domain §3): the primary site is rebuilt; %s is reinstalled through Topology Builder; no mirror or backup server was added during the failover; SQL Server Agent on %s runs as an account that reads the share and writes the copy directory.",
		dbList(t), bak.FQDN)
	b.note("The full backup %s is restored on the primary to the file paths it records; if the primary's data or log paths differ, the restore needs MOVE (RESTORE FILELISTONLY, domain B4).", fbPath)
	if comp := t.Databases.Compliance; comp != "" {
		b.note("%s is not copied back (domain §1): the primary uses its reinstalled %s; its mirroring on the primary is not touched by this plan (check Get-CsDatabaseMirrorState -DatabaseType PersistentChatCompliance).", comp, comp)
	}
	if t.SQL.PrimaryMirror != nil {
		b.note("Log shipping from the primary mirror %s (a second primary, domain §1) is not re-created: configure it by hand after the failback.", t.SQL.PrimaryMirror.FQDN)
	}
	b.note("Zero data loss: writers are stopped (B1) and their sessions ended before the B3 backup; nothing writes to the backup afterwards.")
	b.serviceNote()
	return nil
}

// dbList names the Persistent Chat databases for notes.
func dbList(t *topology.Topology) string {
	if t.Databases.ComplianceEnabled() {
		return t.Databases.Chat + " (and " + t.Databases.Compliance + ")"
	}
	return t.Databases.Chat
}

// serviceNote warns about default service names.
func (b *builder) serviceNote() {
	if b.r.Options.ChatService == "" || (b.t.Databases.ComplianceEnabled() && b.r.Options.ComplianceService == "") {
		b.note("The service names (%s) are defaults: domain §1 marks them UNVERIFIED; confirm with Get-CsWindowsService and pass the real names.", b.serviceNames())
	}
}

// serviceNames names the services the plan stops and starts.
func (b *builder) serviceNames() string {
	if b.t.Databases.ComplianceEnabled() {
		return b.opt.ChatService + ", " + b.opt.ComplianceService
	}
	return b.opt.ChatService
}
