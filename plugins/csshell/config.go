package csshell

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Config is plugin_config.csshell of agent.yaml.
type Config struct {
	// PowerShell is the argv prefix the script is appended to. When its last
	// element is -EncodedCommand (or -enc, -e, -ec) the script is passed
	// base64-encoded UTF-16LE, which avoids every command-line quoting rule
	// of powershell.exe on Windows.
	PowerShell []string `yaml:"powershell"`
	// Module is imported at the start of every script: SkypeForBusiness
	// (SfB 2015) or Lync (Lync 2013).
	Module string `yaml:"module"`
	// Identity is the pool identity for the Persistent Chat state cmdlets.
	// The documentation shows "service:<pool fqdn>" and
	// "PersistentChatServer:<fqdn>" (domain.md §4): resolve it once with
	// cs.resolve_identity and store it here.
	Identity string `yaml:"identity"`
	// ActiveServerIdentity is the -Identity of
	// Set-CsPersistentChatActiveServer: "global" (Lync 2013 examples) or
	// "PChatServerCollection" (SfB placeholder); UNVERIFIED.
	ActiveServerIdentity string `yaml:"active_server_identity"`
	// ActiveServersCmdlet reads the active server list. No Get- cmdlet is
	// documented (UNVERIFIED); the simulator emulates
	// Get-CsPersistentChatActiveServer, whose objects carry ActiveServers.
	ActiveServersCmdlet string `yaml:"active_servers_cmdlet"`
	// Timeout bounds one shell run (process start, module import, cmdlet).
	Timeout time.Duration `yaml:"timeout"`
	// MirrorTimeout bounds Install-/Uninstall-CsMirrorDatabase, which back
	// up and restore whole databases.
	MirrorTimeout time.Duration `yaml:"mirror_timeout"`
	// Env is added to the shell's environment (the lab sets CHATDR_CMS_FILE
	// here). CHATDR_CS_SERVER defaults to the agent's host.
	Env map[string]string `yaml:"env"`
	// Enums maps the numbers Windows PowerShell 5.1's ConvertTo-Json writes
	// for enum properties back to names, by property: index i is the name
	// of value i. Defaults: PoolState [Normal, FailedOver] and Result
	// [Success, Failure] (both UNVERIFIED), Status as .NET's
	// ServiceControllerStatus.
	Enums map[string][]string `yaml:"enums"`
}

// DefaultConfig returns the configuration used for missing fields.
func DefaultConfig() Config {
	return Config{
		PowerShell:           []string{"powershell.exe", "-NoProfile", "-NonInteractive", "-Command"},
		Module:               "SkypeForBusiness",
		ActiveServerIdentity: "global",
		ActiveServersCmdlet:  "Get-CsPersistentChatActiveServer",
		Timeout:              2 * time.Minute,
		MirrorTimeout:        4 * time.Hour,
		Enums:                defaultEnums(),
	}
}

func defaultEnums() map[string][]string {
	return map[string][]string{
		"PoolState": {"Normal", "FailedOver"},
		"Result":    {"Success", "Failure"},
		"Status":    {"", "Stopped", "StartPending", "StopPending", "Running", "ContinuePending", "PausePending", "Paused"},
	}
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid plugin_config.csshell")

// withDefaults fills the zero fields of c from DefaultConfig and validates
// it.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if len(c.PowerShell) == 0 {
		c.PowerShell = d.PowerShell
	}
	if c.Module == "" {
		c.Module = d.Module
	}
	if c.ActiveServerIdentity == "" {
		c.ActiveServerIdentity = d.ActiveServerIdentity
	}
	if c.ActiveServersCmdlet == "" {
		c.ActiveServersCmdlet = d.ActiveServersCmdlet
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.MirrorTimeout <= 0 {
		c.MirrorTimeout = d.MirrorTimeout
	}
	enums := d.Enums
	maps.Copy(enums, c.Enums)
	c.Enums = enums

	var problems []string
	if c.PowerShell[0] == "" {
		problems = append(problems, "powershell: the executable is empty")
	}
	if !validModule(c.Module) {
		problems = append(problems, fmt.Sprintf("module %q: want a module name such as SkypeForBusiness or Lync", c.Module))
	}
	if c.Identity != "" && !validIdentity(c.Identity) {
		problems = append(problems, fmt.Sprintf("identity %q: want <kind>:<fqdn>, e.g. service:pchat01.contoso.com (no spaces)", c.Identity))
	}
	if !validActiveIdentity(c.ActiveServerIdentity) {
		problems = append(problems, fmt.Sprintf("active_server_identity %q: want e.g. global or PChatServerCollection", c.ActiveServerIdentity))
	}
	if !validCmdletName(c.ActiveServersCmdlet) {
		problems = append(problems, fmt.Sprintf("active_servers_cmdlet %q: want Verb-Noun", c.ActiveServersCmdlet))
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			problems = append(problems, fmt.Sprintf("env: %q is not a variable name", k))
		}
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("%w: %s", ErrConfig, strings.Join(problems, "; "))
	}
	return c, nil
}

// encoded reports whether the script goes in as -EncodedCommand.
func (c Config) encoded() bool {
	switch strings.ToLower(c.PowerShell[len(c.PowerShell)-1]) {
	case "-encodedcommand", "-enc", "-e", "-ec":
		return true
	}
	return false
}
