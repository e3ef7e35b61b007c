package csshell

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/chatdr/chatdr/pluginsdk"
)

// shellError is an error record PowerShell printed on stderr.
type shellError struct {
	Cmdlet   string // "Set-CsPersistentChatState" (empty for parse errors)
	Message  string
	Category string // "InvalidArgument: (…) […], …"
	ID       string // FullyQualifiedErrorId, e.g. "IdentityNotFound,Microsoft.Rtc…"
}

var cmdletPrefixRE = regexp.MustCompile(`^([A-Za-z]+-[A-Za-z0-9]+) : (.*)$`)

// parseShellError reads the first error record of stderr: its message (the
// "Cmdlet : message" line and its continuation lines, or the message line
// of a parse error), CategoryInfo and FullyQualifiedErrorId.
func parseShellError(stderr string) shellError {
	stderr = strings.TrimPrefix(strings.ToValidUTF8(stderr, "\uFFFD"), "\uFEFF")
	lines := strings.Split(strings.ReplaceAll(stderr, "\r\n", "\n"), "\n")
	var e shellError
	var msg []string
	inMsg, sawAt := true, false
	for _, raw := range lines {
		line := strings.TrimRight(raw, " \t")
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "+ CategoryInfo"):
			if e.Category == "" {
				e.Category = afterColon(trimmed)
			}
			inMsg = false
		case strings.HasPrefix(trimmed, "+ FullyQualifiedErrorId"):
			if e.ID == "" {
				e.ID = afterColon(trimmed)
			}
			inMsg = false
		case strings.HasPrefix(trimmed, "At line:") || strings.HasPrefix(trimmed, "At char:"):
			sawAt = true
			if e.Cmdlet != "" {
				inMsg = false
			}
		case strings.HasPrefix(trimmed, "+"):
			// the echoed script and the ~~~ marker
		case trimmed == "":
		case inMsg:
			if len(msg) == 0 && !sawAt {
				if m := cmdletPrefixRE.FindStringSubmatch(trimmed); m != nil {
					e.Cmdlet = m[1]
					msg = append(msg, m[2])
					continue
				}
			}
			msg = append(msg, trimmed)
		}
		if e.ID != "" && !inMsg {
			break
		}
	}
	e.Message = strings.Join(msg, " ")
	if e.Message == "" {
		e.Message = clip(stderr, 2000)
	}
	return e
}

func afterColon(s string) string {
	_, after, _ := strings.Cut(s, ":")
	return strings.TrimSpace(after)
}

// idHead returns the first part of a FullyQualifiedErrorId.
func (e shellError) idHead() string {
	head, _, _ := strings.Cut(e.ID, ",")
	return strings.TrimSpace(head)
}

type errorClass struct {
	code      string
	retryable bool
	hint      string
}

// errorClasses maps the head of a FullyQualifiedErrorId to a stable code.
// The ids are PowerShell's own (CommandNotFoundException, parameter
// binding, module loading) or the simulator's; the real Lync/SfB cmdlets'
// ids are not documented, so their errors fall back to cs_cmdlet_failed
// with the message.
func errorClasses(module string) map[string]errorClass {
	param := errorClass{code: "cs_parameter_rejected", hint: "the cmdlet refused a parameter: this plugin version and the installed Management Shell disagree; report it with the message"}
	return map[string]errorClass{
		"CommandNotFoundException":   {code: "cs_command_not_found", hint: fmt.Sprintf("the cmdlet does not exist on this host: is the %s module installed, and is this a Lync 2013 / SfB 2015 server? (reading the active server list is UNVERIFIED: see plugin_config.csshell.active_servers_cmdlet)", module)},
		"Modules_ModuleNotFound":     {code: "cs_module_missing", hint: "set plugin_config.csshell.module to SkypeForBusiness (SfB 2015) or Lync (Lync 2013)"},
		"IdentityNotFound":           {code: "cs_identity_not_found", hint: "run cs.resolve_identity and set plugin_config.csshell.identity (or active_server_identity); the documented forms disagree (domain.md §4)"},
		"TooManyActiveServers":       {code: "too_many_active_servers", hint: "a Persistent Chat pool supports at most 4 active servers"},
		"UnknownServer":              {code: "cs_unknown_server", hint: "use the chat servers' FQDNs as the topology names them"},
		"SqlUnreachable":             {code: "cs_sql_unreachable", retryable: true, hint: "check that the SQL Server instance runs and that this host reaches it"},
		"SqlCommandFailed":           {code: "cs_sql_failed"},
		"MirrorDatabaseExists":       {code: "cs_mirror_database_exists", hint: "the database is already on the mirror: pass drop_existing to replace it, or check mirroring with mssql mirror.status"},
		"DatabaseNotOnline":          {code: "cs_database_unavailable", hint: "the principal database must be ONLINE"},
		"DatabaseNotFound":           {code: "cs_database_unavailable"},
		"SqlStoreNotFound":           {code: "cs_sql_store_not_in_topology", hint: "pass the FQDN (and instance) of a SQL store of the Persistent Chat pool as Topology Builder defines it"},
		"NotPrincipalStore":          {code: "cs_sql_store_not_in_topology", hint: "pass the primary SQL store, not its mirror"},
		"MirrorNotInTopology":        {code: "cs_mirror_not_in_topology", hint: "define the mirror in Topology Builder and publish first"},
		"CmsUnavailable":             {code: "cs_cms_unavailable", retryable: true, hint: "the Central Management store is unreachable from this host"},
		"CmsWriteFailed":             {code: "cs_cms_unavailable", retryable: true},
		"LocalStoreUnavailable":      {code: "cs_local_store_unavailable", hint: "-LocalStore reads the replica of the host the shell runs on: run it on a Persistent Chat server"},
		"NoServiceFoundForGivenName": {code: "cs_service_not_found", hint: "list the services with cs.windows_service operation=status"},
		"NamedParameterNotFound":     param, "MissingArgument": param, "PositionalParameterNotFound": param,
		"ParameterAlreadyBound": param, "ParameterArgumentTransformationError": param,
		"ParameterArgumentValidationError": param, "ParameterArgumentValidationErrorNullNotAllowed": param,
		"CannotConvertArgument": param, "CannotConvertArgumentNoMessage": param, "AmbiguousParameterSet": param,
		"MissingMandatoryParameter": param, "NotEmulated": param, "InvalidSipAddress": param,
	}
}

// classify turns a failed shell run into a pluginsdk error naming the
// cmdlet, the host and the cmdlet's own message.
func classify(module, cmdlet, host string, e shellError) *pluginsdk.Error {
	who := e.Cmdlet
	if who == "" {
		who = cmdlet
	}
	msg := fmt.Sprintf("%s failed on %s: %s", who, host, e.Message)
	if e.ID != "" {
		msg += " [" + e.ID + "]"
	}
	if c, ok := errorClasses(module)[e.idHead()]; ok {
		pe := &pluginsdk.Error{Code: c.code, Message: msg, Retryable: c.retryable}
		if c.hint != "" {
			pe.Hint = c.hint
		}
		return pe
	}
	if strings.HasPrefix(e.Category, "ParserError") {
		return pluginsdk.Terminal("cs_script_rejected", "%s", msg).WithHint("PowerShell could not parse the script the plugin built: report this with the message")
	}
	return &pluginsdk.Error{Code: "cs_cmdlet_failed", Message: msg}
}
