package csshell

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// cmdletDef is one emulated cmdlet.
type cmdletDef struct {
	name   string
	params []paramSpec
	run    func(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError)
}

func sw(name string) paramSpec { return paramSpec{name: name, kind: pSwitch, position: -1} }
func str(name string, position int) paramSpec {
	return paramSpec{name: name, kind: pString, position: position}
}
func unsupported(name string, kind paramKind) paramSpec {
	return paramSpec{name: name, kind: kind, position: -1, notEmulated: true}
}

// lookupCmdlet returns the emulated cmdlet name (case-insensitive), or nil.
func lookupCmdlet(name string) *cmdletDef {
	for _, c := range cmdletTable() {
		if strings.EqualFold(c.name, name) {
			return &c
		}
	}
	return nil
}

func cmdletTable() []cmdletDef {
	return []cmdletDef{
		{name: "Get-CsPersistentChatState", run: getState, params: []paramSpec{
			str("Identity", 0), str("Filter", -1), sw("LocalStore"),
		}},
		{name: "Set-CsPersistentChatState", run: setState, params: []paramSpec{
			str("Identity", 0), {name: "PoolState", kind: pString, position: -1, enum: []string{string(Normal), string(FailedOver)}},
			sw("Force"), sw("WhatIf"), sw("Confirm"), unsupported("Instance", pString),
		}},
		{name: "Get-CsPersistentChatActiveServer", run: getActive, params: []paramSpec{
			str("Identity", 0), sw("LocalStore"),
		}},
		{name: "Set-CsPersistentChatActiveServer", run: setActive, params: []paramSpec{
			str("Identity", 0), {name: "ActiveServers", kind: pListModifier, position: -1}, sw("Swap"),
			sw("Force"), sw("WhatIf"), sw("Confirm"),
		}},
		{name: "Get-CsService", run: getService, params: []paramSpec{
			sw("PersistentChatServer"), unsupported("Identity", pString), unsupported("Filter", pString),
			unsupported("PoolFqdn", pString), unsupported("Registrar", pSwitch), unsupported("WebServer", pSwitch),
			unsupported("ConferencingServer", pSwitch), unsupported("UserServer", pSwitch), unsupported("LocalStore", pSwitch),
		}},
		{name: "Install-CsMirrorDatabase", run: installMirror, params: []paramSpec{
			str("DatabaseType", -1), str("SqlServerFqdn", -1), str("SqlInstanceName", -1), str("FileShare", -1),
			sw("DropExistingDatabasesOnMirror"), sw("Confirm"), sw("WhatIf"),
			unsupported("ConfiguredDatabases", pSwitch), unsupported("ForInstance", pString), unsupported("ForDefaultInstance", pSwitch),
			unsupported("DatabasePathMap", pString), unsupported("ExcludeDatabaseList", pStrings), unsupported("Report", pString),
		}},
		{name: "Uninstall-CsMirrorDatabase", run: uninstallMirror, params: []paramSpec{
			str("DatabaseType", -1), str("SqlServerFqdn", -1), str("SqlInstanceName", -1),
			sw("DropExistingDatabasesOnMirror"), sw("Confirm"), sw("WhatIf"), unsupported("Report", pString),
		}},
		{name: "Test-CsPersistentChatMessage", run: testMessage, params: []paramSpec{
			str("TargetFqdn", -1), str("SenderSipAddress", -1), str("ReceiverSipAddress", -1), sw("Force"),
			unsupported("SenderCredential", pString), unsupported("ReceiverCredential", pString),
			unsupported("Authentication", pString), unsupported("RegistrarPort", pInt),
			unsupported("OutLoggerVariable", pString), unsupported("OutVerboseVariable", pString),
		}},
		{name: "Get-CsWindowsService", run: getWindowsService, params: []paramSpec{
			str("Name", 0), str("ComputerName", -1), unsupported("ExcludeActivityLevel", pSwitch),
		}},
		{name: "Start-CsWindowsService", run: startWindowsService, params: []paramSpec{
			str("Name", 0), str("ComputerName", -1), sw("NoWait"), unsupported("Report", pString),
		}},
		{name: "Stop-CsWindowsService", run: stopWindowsService, params: []paramSpec{
			str("Name", 0), str("ComputerName", -1), sw("Graceful"), sw("NoWait"), unsupported("Report", pString),
		}},
	}
}

// fail returns a cmdlet error.
func fail(id, category, target, format string, a ...any) *cmdletError {
	return &cmdletError{msg: fmt.Sprintf(format, a...), id: id, category: category, target: target, typ: "CmdletInvocationException"}
}

// store opens the CMS.
func (sh *shell) store(ctx context.Context) (*Store, CMS, *cmdletError) {
	if sh.opts.CMSFile == "" {
		return nil, CMS{}, fail("CmsUnavailable", "ConnectionError", "", "Cannot connect to the Central Management store: %s is not set (chatdr Management Shell simulator).", EnvCMSFile)
	}
	st := &Store{path: sh.opts.CMSFile, now: sh.opts.Now}
	c, err := st.Read(ctx)
	if err != nil {
		return nil, CMS{}, fail("CmsUnavailable", "ConnectionError", sh.opts.CMSFile, "Cannot read the Central Management store: %v", err)
	}
	sh.enumNames = c.JSONEnums == "names"
	return st, c, nil
}

// localServer returns the chat server this shell runs on (or the one
// named), in topology spelling.
func (sh *shell) localServer(c *CMS, named string) (string, *cmdletError) {
	name := named
	if name == "" {
		name = sh.opts.Server
	}
	if name == "" {
		return "", fail("LocalStoreUnavailable", "ResourceUnavailable", "", "This computer is not a Persistent Chat server of the topology: %s is not set (chatdr Management Shell simulator).", EnvServer)
	}
	canon, err := c.canonicalServer(name)
	if err != nil {
		return "", fail("LocalStoreUnavailable", "ResourceUnavailable", name, "The computer \"%s\" is not a Persistent Chat server of pool \"%s\" in the topology.", name, c.Pool.FQDN)
	}
	return canon, nil
}

func matchIdentity(ids []string, given string) bool {
	return slices.ContainsFunc(ids, func(id string) bool { return strings.EqualFold(id, given) })
}

func identityNotFound(kind, id string) *cmdletError {
	return fail("IdentityNotFound", "ObjectNotFound", id, "Cannot get \"%s\" \"%s\" because it does not exist.", kind, id)
}

func enumsAsNumber(c *CMS) bool { return c.JSONEnums != "names" }

func getState(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	id, hasID := p.str("Identity")
	filter, hasFilter := p.str("Filter")
	if hasID && hasFilter {
		return nil, fail("AmbiguousParameterSet", "InvalidArgument", "", "Parameter set cannot be resolved using the specified named parameters.")
	}
	_, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	if hasID && !matchIdentity(c.Pool.Identities, id) {
		return nil, identityNotFound("PersistentChatState", id)
	}
	canonical := c.Pool.Identities[0]
	if hasFilter && !globMatch(filter, canonical) {
		return nil, nil
	}
	snap := snapshot(c.current())
	if p.flag("LocalStore") {
		server, cerr := sh.localServer(&c, "")
		if cerr != nil {
			return nil, cerr
		}
		s, err := localState(&c, server, sh.opts.Now())
		if err != nil {
			return nil, fail("LocalStoreUnavailable", "ResourceUnavailable", server, "%v", err)
		}
		snap = s
	}
	return []psObject{{{"Identity", canonical}, {"PoolState", poolStateValue(snap.PoolState)}}}, nil
}

// globMatch matches PowerShell's -Filter wildcards (* and ?),
// case-insensitively.
func globMatch(pattern, s string) bool {
	pattern = strings.NewReplacer("[", "\\[", "]", "\\]", "\\", "\\\\").Replace(strings.ToLower(pattern))
	ok, err := path.Match(pattern, strings.ToLower(s))
	return err == nil && ok
}

func setState(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	id, hasID := p.str("Identity")
	if !hasID {
		return nil, fail("MissingIdentity", "InvalidArgument", "", "The chatdr Management Shell simulator needs -Identity for Set-CsPersistentChatState.")
	}
	st, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	if !matchIdentity(c.Pool.Identities, id) {
		return nil, identityNotFound("PersistentChatState", id)
	}
	state, ok := p.str("PoolState")
	if !ok || p.flag("WhatIf") {
		return nil, nil
	}
	if _, err := st.SetState(ctx, PoolState(state)); err != nil {
		return nil, fail("CmsWriteFailed", "WriteError", id, "Cannot write to the Central Management store: %v", err)
	}
	return nil, nil
}

func getActive(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	_, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	id, hasID := p.str("Identity")
	if hasID && !matchIdentity(c.Pool.ActiveServerIdentities, id) {
		return nil, identityNotFound("PersistentChatActiveServer", id)
	}
	snap := snapshot(c.current())
	if p.flag("LocalStore") {
		server, cerr := sh.localServer(&c, "")
		if cerr != nil {
			return nil, cerr
		}
		snap, _ = localState(&c, server, sh.opts.Now())
	}
	return []psObject{{{"Identity", c.Pool.ActiveServerIdentities[0]}, {"ActiveServers", snap.ActiveServers}}}, nil
}

func setActive(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	mod, hasList := p["ActiveServers"].(listModifier)
	swap := p.flag("Swap")
	switch {
	case hasList && swap:
		return nil, fail("AmbiguousParameterSet", "InvalidArgument", "", "Parameter set cannot be resolved using the specified named parameters.")
	case !hasList && !swap:
		return nil, fail("MissingMandatoryParameter", "InvalidArgument", "", "Cannot process command because of one or more missing mandatory parameters: ActiveServers.")
	}
	for _, list := range [][]string{mod.add, mod.remove, mod.replace} {
		for _, f := range list {
			if !ValidFQDN(f) {
				return nil, fail("ParameterArgumentTransformationError", "InvalidData", f, "Cannot bind parameter 'ActiveServers'. Cannot convert value \"%s\" to type \"Microsoft.Rtc.Management.Deploy.Fqdn\". Error: \"\"%s\" is not a valid FQDN.\"", f, f)
			}
		}
	}
	st, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	if id, ok := p.str("Identity"); ok && !matchIdentity(c.Pool.ActiveServerIdentities, id) {
		return nil, identityNotFound("PersistentChatActiveServer", id)
	}
	if p.flag("WhatIf") {
		return nil, nil
	}
	var failure *cmdletError
	err := st.Update(ctx, func(c *CMS) error {
		cur := c.current()
		var next []string
		var err error
		switch {
		case swap:
			var inactive []string
			for _, s := range c.Servers {
				if !containsFold(cur.ActiveServers, s.FQDN) {
					inactive = append(inactive, s.FQDN)
				}
			}
			next, err = c.activeList(inactive)
		case mod.clear:
			next = []string{}
		case mod.hasReplace:
			next, err = c.activeList(append(slices.Clone(mod.replace), mod.add...))
			if err == nil {
				next, err = modifyList(c, next, nil, mod.remove)
			}
		default:
			next, err = modifyList(c, cur.ActiveServers, mod.add, mod.remove)
		}
		switch {
		case errors.Is(err, ErrUnknownServer):
			failure = fail("UnknownServer", "InvalidArgument", "", "%v in pool \"%s\".", err, c.Pool.FQDN)
			return err
		case errors.Is(err, ErrTooManyActive):
			failure = fail("TooManyActiveServers", "InvalidOperation", "", "The active server list would hold more than %d servers: %v. A Persistent Chat pool supports at most %d active servers.", MaxActiveServers, err, MaxActiveServers)
			return err
		case err != nil:
			return err
		}
		if !sameSet(cur.ActiveServers, next) {
			c.record(sh.opts.Now(), cur.PoolState, next)
		}
		return nil
	})
	if failure != nil {
		return nil, failure
	}
	if err != nil {
		return nil, fail("CmsWriteFailed", "WriteError", "", "Cannot write to the Central Management store: %v", err)
	}
	return nil, nil
}

func getService(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	if !p.flag("PersistentChatServer") {
		return nil, notEmulated(cmd.Pos, "Get-CsService is emulated only with -PersistentChatServer.")
	}
	_, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	obj := psObject{
		{"Identity", "PersistentChatServer:" + c.Pool.FQDN},
		{"PoolFqdn", c.Pool.FQDN},
		{"Role", "PersistentChatServer"},
	}
	if c.Pool.Site != "" {
		obj = append(obj, prop{"SiteId", "Site:" + c.Pool.Site})
	}
	return []psObject{obj}, nil
}

// mirrorPair resolves -SqlServerFqdn [-SqlInstanceName] to the principal
// role's instance and its mirror. A mirror's name resolves to its pair too
// when allowMirrorName is set (Uninstall-CsMirrorDatabase).
func mirrorPair(c *CMS, fqdn, instance string, allowMirrorName bool) (principalRole string, principal, mirror SQLInstance, cerr *cmdletError) {
	if !ValidFQDN(fqdn) {
		return "", SQLInstance{}, SQLInstance{}, fail("ParameterArgumentTransformationError", "InvalidData", fqdn, "Cannot bind parameter 'SqlServerFqdn'. Cannot convert value \"%s\" to type \"Microsoft.Rtc.Management.Deploy.Fqdn\".", fqdn)
	}
	for _, role := range []string{RolePrimary, RoleBackup, RolePrimaryMirror, RoleBackupMirror} {
		in, ok := c.SQL[role]
		if !ok || !strings.EqualFold(in.FQDN, fqdn) {
			continue
		}
		if instance != "" && !strings.EqualFold(instance, in.Instance) && !(strings.EqualFold(instance, "MSSQLSERVER") && in.Instance == "") {
			continue
		}
		pr := strings.TrimSuffix(role, "_mirror")
		if pr != role && !allowMirrorName {
			return "", SQLInstance{}, SQLInstance{}, fail("NotPrincipalStore", "InvalidArgument", fqdn, "\"%s\" is the %s store of the topology; pass the primary SQL store whose mirror is to be installed.", in.Name(), role)
		}
		p, okP := c.SQL[pr]
		m, okM := c.SQL[pr+"_mirror"]
		if !okP || !okM {
			return "", SQLInstance{}, SQLInstance{}, fail("MirrorNotInTopology", "ObjectNotFound", fqdn, "The topology defines no mirror for the %s SQL store \"%s\"; add it in Topology Builder and publish.", pr, in.Name())
		}
		return pr, p, m, nil
	}
	name := fqdn
	if instance != "" {
		name += `\` + instance
	}
	return "", SQLInstance{}, SQLInstance{}, fail("SqlStoreNotFound", "ObjectNotFound", name, "Cannot find SQL store \"%s\" of a Persistent Chat database in the topology.", name)
}

// databaseFor maps -DatabaseType to the database name.
func databaseFor(c *CMS, dbType string) (string, *cmdletError) {
	switch {
	case strings.EqualFold(dbType, "PersistentChat"):
		return c.Databases.Chat, nil
	case strings.EqualFold(dbType, "PersistentChatCompliance"):
		return c.Databases.Compliance, nil
	}
	return "", notEmulated(0, "-DatabaseType %s is not emulated; PersistentChat and PersistentChatCompliance are.", dbType)
}

func required(p bound, names ...string) *cmdletError {
	var missing []string
	for _, n := range names {
		if !p.has(n) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fail("MissingMandatoryParameter", "InvalidArgument", "", "Cannot process command because of one or more missing mandatory parameters: %s.", strings.Join(missing, " "))
	}
	return nil
}

func installMirror(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	if cerr := required(p, "DatabaseType", "SqlServerFqdn", "FileShare"); cerr != nil {
		return nil, cerr
	}
	_, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	dbType, _ := p.str("DatabaseType")
	db, cerr := databaseFor(&c, dbType)
	if cerr != nil {
		return nil, cerr
	}
	fqdn, _ := p.str("SqlServerFqdn")
	inst, _ := p.str("SqlInstanceName")
	_, principal, mirror, cerr := mirrorPair(&c, fqdn, inst, false)
	if cerr != nil {
		return nil, cerr
	}
	share, _ := p.str("FileShare")
	if strings.TrimSpace(share) == "" {
		return nil, fail("ParameterArgumentValidationError", "InvalidArgument", "", "Cannot validate argument on parameter 'FileShare'. The argument is null or empty.")
	}
	if p.flag("WhatIf") {
		return nil, nil
	}
	return nil, sqlInstallMirror(ctx, db, principal, mirror, share, p.flag("DropExistingDatabasesOnMirror"), sh.opts.Now())
}

func uninstallMirror(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	if cerr := required(p, "DatabaseType", "SqlServerFqdn"); cerr != nil {
		return nil, cerr
	}
	_, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	dbType, _ := p.str("DatabaseType")
	db, cerr := databaseFor(&c, dbType)
	if cerr != nil {
		return nil, cerr
	}
	fqdn, _ := p.str("SqlServerFqdn")
	inst, _ := p.str("SqlInstanceName")
	_, principal, mirror, cerr := mirrorPair(&c, fqdn, inst, true)
	if cerr != nil {
		return nil, cerr
	}
	if p.flag("WhatIf") {
		return nil, nil
	}
	return nil, sqlUninstallMirror(ctx, db, principal, mirror, p.flag("DropExistingDatabasesOnMirror"))
}

func testMessage(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	if cerr := required(p, "TargetFqdn"); cerr != nil {
		return nil, cerr
	}
	target, _ := p.str("TargetFqdn")
	sender, hasSender := p.str("SenderSipAddress")
	receiver, hasReceiver := p.str("ReceiverSipAddress")
	if hasSender != hasReceiver {
		return nil, fail("AmbiguousParameterSet", "InvalidArgument", "", "Pass both -SenderSipAddress and -ReceiverSipAddress, or neither (to use the test users of the health monitoring configuration).")
	}
	for _, s := range []string{sender, receiver} {
		if hasSender && !strings.HasPrefix(strings.ToLower(s), "sip:") {
			return nil, fail("InvalidSipAddress", "InvalidArgument", s, "\"%s\" is not a SIP address (sip:user@domain).", s)
		}
	}
	_, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	start := time.Now()
	result := func(ok bool, errText, diagnosis string) []psObject {
		res := "Failure"
		if ok {
			res = "Success"
		}
		var e, d any
		if errText != "" {
			e = errText
		}
		if diagnosis != "" {
			d = diagnosis
		}
		return []psObject{{
			{"TargetFqdn", target},
			{"Result", psEnum{name: res, value: resultEnum[res]}},
			{"Latency", psTimeSpan(time.Since(start))},
			{"Error", e},
			{"Diagnosis", d},
		}}
	}
	if !ValidFQDN(target) || (!strings.EqualFold(target, c.Pool.FQDN) && len(c.Pool.Registrars) > 0 && !containsFold(c.Pool.Registrars, target)) {
		return result(false, fmt.Sprintf("Cannot reach target \"%s\": it is neither the Persistent Chat pool nor a registrar pool of the topology.", target), ""), nil
	}
	central := c.current()
	if len(central.ActiveServers) == 0 {
		return result(false, "The pool has no active Persistent Chat server.", "Add servers with Set-CsPersistentChatActiveServer -ActiveServers @{Add=...}."), nil
	}
	var ready, behind []string
	for _, s := range central.ActiveServers {
		local, err := localState(&c, s, sh.opts.Now())
		if err != nil || local.PoolState != central.PoolState {
			behind = append(behind, fmt.Sprintf("%s (local store shows %s, central %s)", s, local.PoolState, central.PoolState))
			continue
		}
		ready = append(ready, s)
	}
	if len(ready) == 0 {
		return result(false, "No active Persistent Chat server has the current pool state yet: "+strings.Join(behind, "; ")+".", "Wait for Central Management store replication (Get-CsPersistentChatState -LocalStore)."), nil
	}
	topo := c.topology()
	role, in, ok := topo.DatabaseFor(central.PoolState)
	if !ok {
		return result(false, fmt.Sprintf("The topology defines no %s SQL store for pool state %s.", role, central.PoolState), ""), nil
	}
	state, err := databaseState(ctx, in, c.Databases.Chat)
	if err != nil {
		return result(false, fmt.Sprintf("Persistent Chat server %s cannot use database %s on %s (%s): %v", ready[0], c.Databases.Chat, in.Name(), role, err), ""), nil
	}
	if state != "ONLINE" {
		return result(false, fmt.Sprintf("Database %s on %s (%s) is %s, not ONLINE.", c.Databases.Chat, in.Name(), role, state), ""), nil
	}
	return result(true, "", fmt.Sprintf("Message posted through %s to %s on %s (%s).", ready[0], c.Databases.Chat, in.Name(), role)), nil
}

func serviceObjects(c *CMS, server string, svcs []Service) []psObject {
	out := make([]psObject, 0, len(svcs))
	for _, v := range svcs {
		out = append(out, psObject{
			{"Status", psEnum{name: v.Status, value: serviceEnum[v.Status]}},
			{"Name", v.Name},
			{"ActivityLevel", v.ActivityLevel},
			{"DisplayName", v.DisplayName},
		})
	}
	return out
}

// services selects the services named (all when name is empty) on the
// shell's server or -ComputerName.
func (sh *shell) services(c *CMS, p bound) (string, []Service, *cmdletError) {
	computer, _ := p.str("ComputerName")
	server, cerr := sh.localServer(c, computer)
	if cerr != nil {
		return "", nil, cerr
	}
	all := c.server(server).Services
	name, hasName := p.str("Name")
	if !hasName {
		return server, all, nil
	}
	for _, v := range all {
		if strings.EqualFold(v.Name, name) {
			return server, []Service{v}, nil
		}
	}
	return "", nil, fail("NoServiceFoundForGivenName", "ObjectNotFound", name, "Cannot find any service with service name '%s'.", name)
}

func getWindowsService(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	_, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	server, svcs, cerr := sh.services(&c, p)
	if cerr != nil {
		return nil, cerr
	}
	return serviceObjects(&c, server, svcs), nil
}

func startWindowsService(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	return setWindowsService(ctx, sh, p, ServiceRunning)
}

func stopWindowsService(ctx context.Context, sh *shell, cmd Command, p bound) ([]psObject, *cmdletError) {
	return setWindowsService(ctx, sh, p, ServiceStopped)
}

func setWindowsService(ctx context.Context, sh *shell, p bound, status string) ([]psObject, *cmdletError) {
	st, c, cerr := sh.store(ctx)
	if cerr != nil {
		return nil, cerr
	}
	server, svcs, cerr := sh.services(&c, p)
	if cerr != nil {
		return nil, cerr
	}
	var names []string
	if p.has("Name") {
		names = []string{svcs[0].Name}
	}
	if _, err := st.SetServiceStatus(ctx, server, names, status); err != nil {
		return nil, fail("CmsWriteFailed", "WriteError", server, "Cannot record the service state: %v", err)
	}
	return nil, nil
}
