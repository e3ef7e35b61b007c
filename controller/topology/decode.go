package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Load reads the topology file at path and parses it like Parse, naming the
// file by path in every problem. A read failure is returned wrapped (it does
// not match ErrInvalid); a file that does not decode or validate yields a
// *ValidationError.
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology file: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data strictly, applies defaults and validates the result.
// filename is only used to name the file in problems. On any problem it
// returns a nil topology and a *ValidationError listing all problems found
// (errors.Is(err, ErrInvalid) holds). Parse is safe for concurrent use.
func Parse(filename string, data []byte) (*Topology, error) {
	d := &decoder{file: filename, lines: map[string]int{}}
	t := d.decodeFile(data)
	if t != nil {
		applyDefaults(t)
		validate(t, d)
	}
	if len(d.problems) > 0 {
		sortProblems(d.problems)
		return nil, &ValidationError{Problems: d.problems}
	}
	return t, nil
}

// The field names allowed in each mapping, in the order the documentation
// lists them. They are functions, not package variables, so that no caller
// can change them.
func topFields() []string {
	return []string{"pool", "pool_identity", "sites", "chat_servers", "sql", "databases",
		"log_shipping", "management_shell_host", "approvals"}
}

func siteFields() []string       { return []string{"name", "role", "low_latency_to"} }
func chatServerFields() []string { return []string{"fqdn", "site", "agent", "active_when"} }
func sqlFields() []string        { return []string{"primary", "primary_mirror", "backup", "backup_mirror"} }
func sqlHostFields() []string    { return []string{"fqdn", "instance", "agent", "site"} }
func databasesFields() []string  { return []string{"chat", "compliance"} }
func logShippingFields() []string {
	return []string{"backup_share", "copy_dir", "mirror_share"}
}
func approvalsFields() []string { return []string{"data_loss_approvers"} }

// decoder walks a yaml.Node tree into a Topology, recording the line of every
// field path it sees and every problem it finds. One decoder serves one Parse
// call.
type decoder struct {
	file     string
	problems []Problem
	// lines maps a field path to the line of its value (for a mapping or
	// list, the line of its key; for a list item, the line of its "-");
	// the root mapping is "".
	lines map[string]int
}

// line returns the line of path, or of its nearest recorded ancestor when
// path itself is absent from the file.
func (d *decoder) line(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// has reports whether path was written in the file.
func (d *decoder) has(path string) bool {
	_, ok := d.lines[path]
	return ok
}

// addf records a problem at path, on the line of path (or its ancestor).
func (d *decoder) addf(path, format string, args ...any) {
	d.addAt(d.line(path), path, format, args...)
}

// addAt records a problem at an explicit line.
func (d *decoder) addAt(line int, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Field: path, Message: fmt.Sprintf(format, args...)})
}

// parentPath strips the last component off a field path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// join appends a field name to a path.
func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// index appends a list index to a path.
func index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

// yamlLineErr matches the errors yaml.v3 reports for malformed input.
func yamlLineErr() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) }

// isParserError reports whether msg is one of the yaml.v3 parser (as opposed
// to scanner) errors. yaml.v3 reports the line of those zero-based.
func isParserError(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>", "did not find expected <document start>",
		"found undefined tag handle", "did not find expected node content",
		"did not find expected '-' indicator", "did not find expected key",
		"did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"found duplicate %YAML directive", "found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}

// syntax records a YAML syntax error.
func (d *decoder) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1 // yaml.v3 leaves the line out for errors on the first line
	if m := yamlLineErr().FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if isParserError(msg) {
			line++
		}
	}
	d.addAt(line, "", "invalid YAML: %s", msg)
}

// checkText records a problem when data is not UTF-8 text without control
// characters, which yaml.v3 would reject without saying where.
func (d *decoder) checkText(data []byte) bool {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			d.addAt(line, "", "the file is not valid UTF-8 text (byte 0x%02x at offset %d); save it as UTF-8", data[i], i)
			return false
		case r == '\n':
			line++
		case r == '\t', r == '\r', r == '\uFEFF' && i == 0:
		case unicode.IsControl(r) && r != 0x85:
			d.addAt(line, "", "the file contains the control character %U at offset %d; remove it", r, i)
			return false
		}
		i += size
	}
	return true
}

// decodeFile decodes the single document in data. It returns nil when the
// file cannot be decoded at all (problems are recorded).
func (d *decoder) decodeFile(data []byte) *Topology {
	if !d.checkText(data) {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.addAt(1, "", "the file is empty; it must hold the topology (pool, sites, chat_servers, sql, ...)")
		} else {
			d.syntax(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.addAt(extra.Line, "", "a second YAML document starts here; the file must hold exactly one document")
	case !errors.Is(err, io.EOF):
		d.syntax(err)
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = resolve(doc.Content[0])
	}
	if root == nil || isNull(root) {
		d.addAt(max(doc.Line, 1), "", "the file is empty; it must hold the topology (pool, sites, chat_servers, sql, ...)")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.addAt(root.Line, "", "the topology must be a mapping of fields (pool, sites, chat_servers, sql, ...), got %s", describe(root))
		return nil
	}
	d.lines[""] = root.Line
	f := d.mapping(root, "", topFields())
	t := &Topology{}
	t.Pool = d.str(f, "", "pool", "is required: the Persistent Chat pool FQDN")
	t.PoolIdentity = d.str(f, "", "pool_identity", "")
	t.Sites = d.sites(f)
	t.ChatServers = d.chatServers(f)
	t.SQL = d.sql(f)
	if df := d.section(f, "", "databases", "", databasesFields()); df != nil {
		t.Databases.Chat = d.str(df, "databases", "chat", "")
		t.Databases.Compliance = d.str(df, "databases", "compliance", "")
	}
	if lf := d.section(f, "", "log_shipping", "is required: backup_share and copy_dir", logShippingFields()); lf != nil {
		t.LogShipping.BackupShare = d.str(lf, "log_shipping", "backup_share", "is required: the share log backups are written to")
		t.LogShipping.CopyDir = d.str(lf, "log_shipping", "copy_dir", "is required: the folder the backup SQL Server copies log backups to")
		t.LogShipping.MirrorShare = d.str(lf, "log_shipping", "mirror_share", "")
	}
	t.ManagementShellHost = d.str(f, "", "management_shell_host", "is required: the chat server where Management Shell cmdlets run")
	if af := d.section(f, "", "approvals", "", approvalsFields()); af != nil {
		t.Approvals.DataLossApprovers = d.approvers(af)
	}
	return t
}

// sites decodes the sites list; bad entries become zero Sites so that
// indices keep matching the file.
func (d *decoder) sites(f map[string]*yaml.Node) []Site {
	items := d.list(f, "", "sites", "is required: one site with role primary and one with role backup")
	var out []Site
	for i, n := range items {
		p := index("sites", i)
		var s Site
		if sf := d.mapping(n, p, siteFields()); sf != nil {
			s.Name = d.str(sf, p, "name", "is required")
			s.Role = SiteRole(d.str(sf, p, "role", "is required: primary or backup"))
			for j, ln := range d.list(sf, p, "low_latency_to", "") {
				s.LowLatencyTo = append(s.LowLatencyTo, d.scalar(ln, index(join(p, "low_latency_to"), j), "must not be empty: name a site"))
			}
		}
		out = append(out, s)
	}
	return out
}

// chatServers decodes the chat_servers list; bad entries become zero
// ChatServers so that indices keep matching the file.
func (d *decoder) chatServers(f map[string]*yaml.Node) []ChatServer {
	items := d.list(f, "", "chat_servers", "is required: the pool's chat servers (1 to 8)")
	var out []ChatServer
	for i, n := range items {
		p := index("chat_servers", i)
		var cs ChatServer
		if cf := d.mapping(n, p, chatServerFields()); cf != nil {
			cs.FQDN = d.str(cf, p, "fqdn", "is required: the server's DNS name")
			cs.Site = d.str(cf, p, "site", "is required: the name of the site the server sits in")
			cs.Agent = d.str(cf, p, "agent", "is required: host:port of the chatdr agent on the server")
			cs.ActiveWhen = ActiveWhen(d.str(cf, p, "active_when", "is required: normal, failed_over or never"))
		}
		out = append(out, cs)
	}
	return out
}

// sql decodes the sql section.
func (d *decoder) sql(f map[string]*yaml.Node) SQL {
	var s SQL
	sf := d.section(f, "", "sql", "is required: at least sql.primary and sql.backup", sqlFields())
	if sf == nil {
		return s
	}
	host := func(key, required string) *SQLHost {
		p := join("sql", key)
		hf := d.section(sf, "sql", key, required, sqlHostFields())
		if hf == nil {
			return nil
		}
		return &SQLHost{
			FQDN:     d.str(hf, p, "fqdn", "is required: the SQL Server host's DNS name"),
			Instance: d.str(hf, p, "instance", ""),
			Agent:    d.str(hf, p, "agent", "is required: host:port of the chatdr agent on the SQL Server host"),
			Site:     d.str(hf, p, "site", ""),
		}
	}
	s.Primary = host("primary", "is required: the principal SQL Server in the primary site")
	s.PrimaryMirror = host("primary_mirror", "")
	s.Backup = host("backup", "is required: the log-shipping secondary SQL Server in the backup site")
	s.BackupMirror = host("backup_mirror", "")
	return s
}

// approvers decodes approvals.data_loss_approvers, returning 0 when absent
// or invalid (defaults fill it in; problems are recorded).
func (d *decoder) approvers(af map[string]*yaml.Node) int {
	const path = "approvals.data_loss_approvers"
	n := af["data_loss_approvers"]
	if n == nil || isNull(n) {
		return 0
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.addf(path, "must be an integer (1 or 2), got %s", describe(n))
		return 0
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil || v < 1 || v > 2 {
		d.addf(path, "%s is invalid: want 1 or 2 (how many different people must approve a step that loses data)", n.Value)
		return 0
	}
	return int(v)
}

// section decodes the mapping under key in f. It returns nil when the value
// is absent (recording required, when not empty, as a problem) or not a
// mapping.
func (d *decoder) section(f map[string]*yaml.Node, parent, key, required string, allowed []string) map[string]*yaml.Node {
	path := join(parent, key)
	n := f[key]
	if n == nil || isNull(n) {
		if required != "" {
			d.addf(path, "%s", required)
		}
		return nil
	}
	return d.mapping(n, path, allowed)
}

// mapping checks that n is a mapping with only allowed, unique keys and
// returns its values by key. It returns nil when n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, path string, allowed []string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		d.addf(path, "must be a mapping (%s), got %s", strings.Join(allowed, ", "), describe(n))
		return nil
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	firstLine := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.addAt(k.Line, path, "field names must be plain words, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.addAt(k.Line, path, "merge keys (<<) are not supported; write the fields out in full")
			continue
		}
		name := k.Value
		fp := join(path, name)
		if !slices.Contains(allowed, name) {
			d.addAt(k.Line, fp, "unknown field %s (allowed: %s)", show(name), strings.Join(allowed, ", "))
			continue
		}
		if first, dup := firstLine[name]; dup {
			d.addAt(k.Line, fp, "duplicate field %s (first given at line %d)", show(name), first)
			continue
		}
		firstLine[name] = k.Line
		rv := resolve(v)
		// A scalar is reported where it is written; a mapping or list (which
		// may start lines below) where its key is.
		if rv.Kind == yaml.ScalarNode && v.Kind != yaml.AliasNode {
			d.lines[fp] = v.Line
		} else {
			d.lines[fp] = k.Line
		}
		out[name] = rv
	}
	return out
}

// list returns the items under key in f (resolved), recording each item's
// line. It returns nil when the value is absent, empty or not a list;
// required, when not empty, is reported for an absent or empty list.
func (d *decoder) list(f map[string]*yaml.Node, parent, key, required string) []*yaml.Node {
	path := join(parent, key)
	n := f[key]
	if n == nil || isNull(n) || (n.Kind == yaml.SequenceNode && len(n.Content) == 0) {
		if required != "" {
			d.addf(path, "%s", required)
		}
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.addf(path, "must be a list, got %s", describe(n))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		d.lines[index(path, i)] = item.Line
		items[i] = resolve(item)
	}
	return items
}

// str decodes the string under key in f; see scalar.
func (d *decoder) str(f map[string]*yaml.Node, parent, key, required string) string {
	path := join(parent, key)
	n := f[key]
	if n == nil {
		if required != "" {
			d.addf(path, "%s", required)
		}
		return ""
	}
	return d.scalar(n, path, required)
}

// scalar decodes a string value. Only YAML strings are accepted: a number or
// boolean must be quoted, so that "compliance: false" cannot silently name a
// database "false". A null or empty value yields "" and, when required is
// not empty, a problem.
func (d *decoder) scalar(n *yaml.Node, path, required string) string {
	switch {
	case isNull(n):
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		if n.Value != "" {
			return n.Value
		}
	default:
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf(" (quote it if you mean the text: \"%s\")", n.Value)
		}
		d.addf(path, "must be a string, got %s%s", describe(n), hint)
		return ""
	}
	if required != "" {
		d.addf(path, "%s", required)
	}
	return ""
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for range 8 {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			break
		}
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty or null value.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the YAML type of n for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch t := n.ShortTag(); t {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!str":
			return "a string"
		case "!!timestamp":
			return "a timestamp"
		case "!!binary":
			return "binary data"
		default:
			return "a value tagged " + t
		}
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown kind of value"
}
