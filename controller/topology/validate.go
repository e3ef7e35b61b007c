package topology

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// applyDefaults fills the fields the file may leave out.
func applyDefaults(t *Topology) {
	if t.PoolIdentity == "" && t.Pool != "" {
		t.PoolIdentity = "service:" + t.Pool
	}
	if t.Databases.Chat == "" {
		t.Databases.Chat = DefaultChatDatabase
	}
	if t.Approvals.DataLossApprovers == 0 {
		t.Approvals.DataLossApprovers = DefaultDataLossApprovers
	}
	for _, rh := range t.sqlRoles() {
		if rh.host == nil {
			continue
		}
		if rh.host.Instance == "" {
			rh.host.Instance = DefaultInstance
		}
		if rh.host.Site == "" {
			if s, ok := uniqueSite(t.Sites, rh.site); ok {
				rh.host.Site = s.Name
			}
		}
	}
}

// uniqueSite returns the site with role r when exactly one site has it.
func uniqueSite(sites []Site, r SiteRole) (Site, bool) {
	var found Site
	n := 0
	for _, s := range sites {
		if s.Role == r {
			found = s
			n++
		}
	}
	return found, n == 1
}

// validate records every semantic problem of t. Values left empty by the
// decoder (missing or of the wrong type) were reported there and are skipped.
func validate(t *Topology, d *decoder) {
	if t.Pool != "" {
		d.checkFQDN("pool", t.Pool)
	}
	if d.has("pool_identity") && t.PoolIdentity != "" {
		checkPoolIdentity(d, t.PoolIdentity)
	}
	v := validator{t: t, d: d}
	v.sites()
	v.chatServers()
	v.sqlHosts()
	v.duplicates()
	v.databases()
	v.logShipping()
	v.managementShell()
}

// validator carries the topology being validated and its decoder.
type validator struct {
	t *Topology
	d *decoder
}

// siteNames lists the defined site names in file order, for messages.
func (v validator) siteNames() string {
	var names []string
	for _, s := range v.t.Sites {
		if s.Name != "" && !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return "no site is defined"
	}
	return "sites: " + strings.Join(names, ", ")
}

// site returns the site named name.
func (v validator) site(name string) (Site, bool) {
	for _, s := range v.t.Sites {
		if s.Name == name {
			return s, true
		}
	}
	return Site{}, false
}

// checkSiteRef records a problem at path when name is not a defined site.
// With no site defined at all, that problem (reported at sites) is not
// repeated at every reference.
func (v validator) checkSiteRef(path, name string) bool {
	if _, ok := v.site(name); ok {
		return true
	}
	if len(v.t.Sites) == 0 {
		return false
	}
	v.d.addf(path, "site %s is not defined (%s)", show(name), v.siteNames())
	return false
}

// sites checks names, roles and low_latency_to of every site.
func (v validator) sites() {
	seen := map[string]int{}
	roleCount := map[SiteRole]int{}
	for i, s := range v.t.Sites {
		p := index("sites", i)
		if s.Name != "" {
			np := join(p, "name")
			if reason := checkSiteName(s.Name); reason != "" {
				v.d.addf(np, "site name %s is invalid: %s", show(s.Name), reason)
			}
			key := strings.ToLower(s.Name)
			if first, dup := seen[key]; dup {
				v.d.addf(np, "site name %s is defined twice (also sites[%d])", show(s.Name), first)
			} else {
				seen[key] = i
			}
		}
		switch s.Role {
		case "":
		case SitePrimary, SiteBackup:
			roleCount[s.Role]++
			if roleCount[s.Role] > 1 {
				first := v.t.SiteByRole(s.Role)
				v.d.addf(join(p, "role"), "another site has role %s (site %s is already %s); exactly one site must be primary and one backup",
					s.Role, show(first.Name), s.Role)
			}
		default:
			v.d.addf(join(p, "role"), "site role %s is invalid (want primary or backup)", show(string(s.Role)))
		}
		lp := join(p, "low_latency_to")
		var listed []string
		for j, other := range s.LowLatencyTo {
			ep := index(lp, j)
			switch {
			case other == "":
			case s.Name != "" && other == s.Name:
				v.d.addf(ep, "site %s cannot list itself; name the other site it has a low-latency link to", show(other))
			case slices.Contains(listed, other):
				v.d.addf(ep, "site %s is listed twice", show(other))
			default:
				v.checkSiteRef(ep, other)
			}
			listed = append(listed, other)
		}
	}
	if len(v.t.Sites) == 0 {
		return
	}
	for _, r := range []SiteRole{SitePrimary, SiteBackup} {
		if roleCount[r] == 0 {
			v.d.addf("sites", "no site has role %s; exactly one site must be primary and one backup", r)
		}
	}
}

// stateText names a pool state for messages.
func stateText(a ActiveWhen) string {
	if a == ActiveFailedOver {
		return "failed over"
	}
	return string(a)
}

// chatServers checks each chat server and the pool-wide rules: at most 8
// servers, at most 4 active per state, at least one per state, and active
// servers near the database in use.
func (v validator) chatServers() {
	servers := v.t.ChatServers
	if len(servers) > MaxChatServers {
		v.d.addf(index("chat_servers", MaxChatServers), "%d chat servers are listed; a pool holds at most %d", len(servers), MaxChatServers)
	}
	total := map[ActiveWhen]int{}
	for _, cs := range servers {
		total[cs.ActiveWhen]++
	}
	primary, okP := uniqueSite(v.t.Sites, SitePrimary)
	backup, okB := uniqueSite(v.t.Sites, SiteBackup)
	dbSite := map[ActiveWhen]Site{}
	if okP {
		dbSite[ActiveNormal] = primary
	}
	if okB {
		dbSite[ActiveFailedOver] = backup
	}
	seen := map[ActiveWhen]int{}
	for i, cs := range servers {
		p := index("chat_servers", i)
		if cs.FQDN != "" {
			v.d.checkFQDN(join(p, "fqdn"), cs.FQDN)
		}
		siteOK := cs.Site != "" && v.checkSiteRef(join(p, "site"), cs.Site)
		if cs.Agent != "" {
			v.d.checkAgent(join(p, "agent"), cs.Agent)
		}
		ap := join(p, "active_when")
		switch cs.ActiveWhen {
		case "":
			continue
		case ActiveNever:
			continue
		case ActiveNormal, ActiveFailedOver:
		default:
			v.d.addf(ap, "active_when %s is invalid (want normal, failed_over or never)", show(string(cs.ActiveWhen)))
			continue
		}
		seen[cs.ActiveWhen]++
		if seen[cs.ActiveWhen] == MaxActiveServers+1 {
			v.d.addf(ap, "%d chat servers are active when the pool is %s; at most %d may be active at once",
				total[cs.ActiveWhen], stateText(cs.ActiveWhen), MaxActiveServers)
		}
		db, ok := dbSite[cs.ActiveWhen]
		if !ok || !siteOK || cs.Site == db.Name {
			continue
		}
		here, _ := v.site(cs.Site)
		if slices.Contains(here.LowLatencyTo, db.Name) {
			continue
		}
		name := cs.FQDN
		if name == "" {
			name = p
		}
		v.d.addf(join(p, "site"), "%s is active when the pool is %s but sits in site %s; the database in use is in site %s (add %s to low_latency_to of %s if the link is low-latency)",
			name, stateText(cs.ActiveWhen), show(cs.Site), show(db.Name), db.Name, cs.Site)
	}
	if len(servers) == 0 {
		return
	}
	if total[ActiveNormal] == 0 {
		v.d.addf("chat_servers", "no chat server is active when the pool is normal (active_when: normal); after a failback the pool would have no active server")
	}
	if total[ActiveFailedOver] == 0 {
		v.d.addf("chat_servers", "no chat server is active when the pool is failed over (active_when: failed_over); after a failover the pool would have no active server")
	}
}

// sqlHosts checks each configured SQL host and that its site fits its role.
func (v validator) sqlHosts() {
	for _, rh := range v.t.sqlRoles() {
		h := rh.host
		if h == nil {
			continue
		}
		p := join("sql", rh.key)
		if h.FQDN != "" {
			v.d.checkFQDN(join(p, "fqdn"), h.FQDN)
		}
		if h.Instance != "" && h.Instance != DefaultInstance {
			if reason := checkInstance(h.Instance); reason != "" {
				v.d.addf(join(p, "instance"), "%s is not a valid SQL Server instance name: %s", show(h.Instance), reason)
			}
		}
		if h.Agent != "" {
			v.d.checkAgent(join(p, "agent"), h.Agent)
		}
		if h.Site == "" {
			continue
		}
		sp := join(p, "site")
		if !v.checkSiteRef(sp, h.Site) {
			continue
		}
		if want, ok := uniqueSite(v.t.Sites, rh.site); ok && want.Name != h.Site {
			v.d.addf(sp, "%s lives in the %s site %s, not in %s (leave site out: the role implies it)",
				p, rh.site, show(want.Name), show(h.Site))
		}
	}
}

// hostRef is one host name or agent address written in the file.
type hostRef struct {
	path, value string
	line        int
}

// firstSeen reports refs whose key (as computed by key; "" to skip) was
// already seen earlier in the file.
func (v validator) firstSeen(refs []hostRef, key func(string) string, what, rule string) {
	slices.SortStableFunc(refs, func(a, b hostRef) int { return cmp.Compare(a.line, b.line) })
	seen := map[string]hostRef{}
	for _, r := range refs {
		k := key(r.value)
		if k == "" {
			continue
		}
		if first, dup := seen[k]; dup {
			v.d.addf(r.path, "%s %s is listed twice (also %s at line %d); %s", what, show(r.value), first.path, first.line, rule)
			continue
		}
		seen[k] = r
	}
}

// duplicates reports host names and agent addresses given twice.
func (v validator) duplicates() {
	var hosts, agents []hostRef
	add := func(p, fqdn, agent string) {
		if fqdn != "" {
			fp := join(p, "fqdn")
			hosts = append(hosts, hostRef{fp, fqdn, v.d.line(fp)})
		}
		if agent != "" {
			ap := join(p, "agent")
			agents = append(agents, hostRef{ap, agent, v.d.line(ap)})
		}
	}
	for i, cs := range v.t.ChatServers {
		add(index("chat_servers", i), cs.FQDN, cs.Agent)
	}
	for _, rh := range v.t.sqlRoles() {
		if rh.host != nil {
			add(join("sql", rh.key), rh.host.FQDN, rh.host.Agent)
		}
	}
	v.firstSeen(hosts, strings.ToLower, "host", "each host appears once")
	v.firstSeen(agents, func(s string) string {
		host, port, reason := parseAgent(s)
		if reason != "" {
			return ""
		}
		return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(port))
	}, "agent address", "each host has its own agent")
}

// databases checks the database names.
func (v validator) databases() {
	db := v.t.Databases
	check := func(path, name string) {
		if reason := checkDatabase(name); reason != "" {
			v.d.addf(path, "%s is not a valid SQL Server database name: %s", show(name), reason)
		}
	}
	check("databases.chat", db.Chat)
	if db.Compliance == "" {
		return
	}
	check("databases.compliance", db.Compliance)
	if strings.EqualFold(db.Chat, db.Compliance) {
		v.d.addf("databases.compliance", "%s is also the chat database; the compliance database must be a different one (usually mgccomp)", show(db.Compliance))
	}
}

// logShipping checks the paths and that mirror_share is set when needed.
func (v validator) logShipping() {
	ls := v.t.LogShipping
	for _, f := range []struct{ key, value string }{
		{"backup_share", ls.BackupShare}, {"copy_dir", ls.CopyDir}, {"mirror_share", ls.MirrorShare},
	} {
		if f.value == "" {
			continue
		}
		if reason := checkPath(f.value); reason != "" {
			v.d.addf(join("log_shipping", f.key), "%s %s", show(f.value), reason)
		}
	}
	if ls.MirrorShare != "" || !v.d.has("log_shipping") {
		return
	}
	var mirrors []string
	if v.t.SQL.PrimaryMirror != nil {
		mirrors = append(mirrors, "sql.primary_mirror")
	}
	if v.t.SQL.BackupMirror != nil {
		mirrors = append(mirrors, "sql.backup_mirror")
	}
	if len(mirrors) > 0 {
		v.d.addf("log_shipping.mirror_share", "is required when a SQL mirror is configured (%s): the share Install-CsMirrorDatabase uses", strings.Join(mirrors, ", "))
	}
}

// managementShell checks that management_shell_host is a chat server.
func (v validator) managementShell() {
	h := v.t.ManagementShellHost
	if h == "" || len(v.t.ChatServers) == 0 {
		return
	}
	var names []string
	for _, cs := range v.t.ChatServers {
		if strings.EqualFold(cs.FQDN, h) {
			return
		}
		if cs.FQDN != "" {
			names = append(names, cs.FQDN)
		}
	}
	v.d.addf("management_shell_host", "%s is not one of the chat servers (%s); Management Shell cmdlets run on a chat server",
		show(h), strings.Join(names, ", "))
}

// checkFQDN records a problem at path when s is not a DNS host name.
func (d *decoder) checkFQDN(path, s string) {
	if net.ParseIP(s) != nil {
		d.addf(path, "%s is an IP address; give the host's DNS name (IP addresses are allowed only in agent addresses)", show(s))
		return
	}
	if reason := checkDNSName(s); reason != "" {
		d.addf(path, "%s is not a valid DNS name: %s", show(s), reason)
	}
}

// checkAgent records a problem at path when s is not a host:port agent
// address.
func (d *decoder) checkAgent(path, s string) {
	if _, _, reason := parseAgent(s); reason != "" {
		d.addf(path, "agent address %s is invalid: %s", show(s), reason)
	}
}

// checkPoolIdentity records a problem when id is not service:<fqdn> or
// PersistentChatServer:<fqdn>.
func checkPoolIdentity(d *decoder, id string) {
	const want = "want service:<pool fqdn> or PersistentChatServer:<pool fqdn>"
	prefix, fqdn, ok := strings.Cut(id, ":")
	if !ok || !(strings.EqualFold(prefix, "service") || strings.EqualFold(prefix, "PersistentChatServer")) {
		d.addf("pool_identity", "%s is invalid: %s", show(id), want)
		return
	}
	if net.ParseIP(fqdn) != nil {
		d.addf("pool_identity", "%s is invalid: %s is an IP address; %s", show(id), show(fqdn), want)
		return
	}
	if reason := checkDNSName(fqdn); reason != "" {
		d.addf("pool_identity", "%s is invalid: %s is not a valid DNS name (%s); %s", show(id), show(fqdn), reason, want)
	}
}

// checkDNSName returns why s is not a DNS host name, or "" when it is one:
// dot-separated labels of 1-63 letters, digits and hyphens, no label starting
// or ending with a hyphen, at most 253 characters in all, and a last label
// that is not all digits (so that it cannot be mistaken for an IPv4 address).
// Single-label names such as "localhost" are accepted.
func checkDNSName(s string) string {
	if s == "" {
		return "it is empty"
	}
	if len(s) > 253 {
		return fmt.Sprintf("it is %d characters long; at most 253 are allowed", len(s))
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" {
			return "it has an empty label (a leading, trailing or doubled dot)"
		}
		if len(l) > 63 {
			return fmt.Sprintf("label %s is %d characters long; at most 63 are allowed", show(l), len(l))
		}
		for _, r := range l {
			if !isASCIIAlnum(r) && r != '-' {
				return fmt.Sprintf("it contains %s; use letters, digits, hyphens and dots", show(string(r)))
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Sprintf("label %s starts or ends with a hyphen", show(l))
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Sprintf("its last label %s is all digits", show(last))
	}
	return ""
}

// parseAgent splits an agent address into host and port, returning why it
// is invalid, or "" when it is valid: host:port (IPv6 in brackets), host a DNS
// name or IP address, port 1-65535.
func parseAgent(s string) (host string, port int, reason string) {
	const want = "want host:port, e.g. pc1.dc1.contoso.com:7443"
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, want
	}
	if h == "" {
		return "", 0, "the host is missing; " + want
	}
	if p == "" || strings.Trim(p, "0123456789") != "" {
		return "", 0, fmt.Sprintf("port %s is not a number; %s", show(p), want)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Sprintf("port %s is out of range 1-65535", p)
	}
	if net.ParseIP(h) == nil {
		if r := checkDNSName(h); r != "" {
			return "", 0, fmt.Sprintf("host %s is neither an IP address nor a valid DNS name (%s)", show(h), r)
		}
	}
	return h, n, ""
}

// checkSiteName returns why s is not a valid site name, or "".
func checkSiteName(s string) string {
	const want = "want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
	if len(s) > 63 || !isASCIIAlnum(rune(s[0])) {
		return want
	}
	for _, r := range s {
		if !isASCIIAlnum(r) && r != '.' && r != '_' && r != '-' {
			return want
		}
	}
	return ""
}

// checkDatabase returns why name is not usable as the name of a Persistent
// Chat database, or "": a SQL Server regular identifier that is not a system
// database.
func checkDatabase(name string) string {
	if !isIdentifier(name, 128, "_@$#") {
		return "want a letter or _ followed by up to 127 letters, digits, _, @, $ or # (e.g. mgc)"
	}
	switch strings.ToLower(name) {
	case "master", "model", "msdb", "tempdb":
		return "it is a SQL Server system database; name the Persistent Chat database (usually mgc, or mgccomp for compliance)"
	}
	return ""
}

// checkInstance returns why name is not a SQL Server named-instance name, or "".
func checkInstance(name string) string {
	if strings.EqualFold(name, "default") {
		return "\"default\" is reserved; use MSSQLSERVER (or leave instance out) for the default instance"
	}
	if !isIdentifier(name, 16, "_$") {
		return "want 1-16 characters, a letter or _ first, then letters, digits, _ or $ (use MSSQLSERVER for the default instance)"
	}
	return ""
}

// isIdentifier reports whether s is 1..maxLen ASCII characters, the first a
// letter or _, the rest letters, digits or one of extra.
func isIdentifier(s string, maxLen int, extra string) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i, r := range s {
		switch {
		case isASCIILetter(r), r == '_':
		case i > 0 && (isASCIIAlnum(r) || strings.ContainsRune(extra, r)):
		default:
			return false
		}
	}
	return true
}

// checkPath returns why p is not an absolute path, or "": a UNC path
// (\\host\share...), a Windows drive path (X:\...) or a POSIX absolute path
// (/...), without control characters.
func checkPath(p string) string {
	const want = "is not an absolute path: want a UNC path (\\\\host\\share\\...), a drive path (D:\\...) or a POSIX path (/...)"
	if strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return "contains a control character; paths must be plain text"
	}
	switch {
	case strings.HasPrefix(p, `\\`):
		host, rest, _ := strings.Cut(p[2:], `\`)
		share, _, _ := strings.Cut(rest, `\`)
		if host == "" || share == "" {
			return "is not a complete UNC path: want \\\\host\\share (optionally followed by \\folder...)"
		}
		return ""
	case len(p) >= 3 && isASCIILetter(rune(p[0])) && p[1] == ':' && p[2] == '\\':
		return ""
	case strings.HasPrefix(p, "/"):
		return ""
	}
	return want
}

func isASCIILetter(r rune) bool { return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') }

func isASCIIAlnum(r rune) bool { return isASCIILetter(r) || ('0' <= r && r <= '9') }

// show quotes a value written by the user for a message. Plain printable
// text is put in double quotes as is, so that Windows paths keep single
// backslashes; anything else is Go-quoted.
func show(s string) string {
	for _, r := range s {
		if r == '"' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return `"` + s + `"`
}
