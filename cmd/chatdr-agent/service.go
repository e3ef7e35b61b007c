package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/chatdr/chatdr/agent/install"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// serviceUsage is the help of `chatdr-agent service`.
const serviceUsage = `Usage: chatdr-agent service install --config PATH [flags]
       chatdr-agent service uninstall [--name NAME]
       chatdr-agent service status [--name NAME]

Registers the agent with the operating system's service manager.
Windows: a service started automatically (delayed), restarted by the Service
Control Manager 5s, 10s and 30s after a failure (count reset after a day),
logging to the Application event log; run from an elevated prompt.
Linux: a systemd unit (Restart=on-failure, RestartSec=5, hardened, with the
agent's state_dir writable); run as root. The service runs this binary with
--config PATH; the configuration is checked before anything is registered.
`

// runService runs `chatdr-agent service ...` and returns the exit code:
// 0 done, 1 refused or failed, 2 usage error.
func runService(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, serviceUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("chatdr-agent service "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := install.Options{Out: stdout}
	fs.StringVar(&o.Name, "name", install.DefaultName, "service name (Windows) or unit name without .service (Linux)")
	switch verb {
	case "install":
		fs.StringVar(&o.ConfigPath, "config", "", "agent configuration file the service runs with (required; made absolute)")
		fs.StringVar(&o.DisplayName, "display-name", install.DefaultDisplayName, "display name (Windows) or Description= (Linux)")
		fs.StringVar(&o.Description, "description", install.DefaultDescription, "service description (Windows)")
		fs.StringVar(&o.User, "user", "", `account the service runs as: Linux user (default root); Windows account such as "NT AUTHORITY\NetworkService", DOMAIN\user or DOMAIN\gmsa$ (default LocalSystem)`)
		fs.StringVar(&o.PasswordFile, "password-file", "", "file holding the password of --user (Windows; not for built-in or managed service accounts)")
		fs.StringVar(&o.LogFormat, "log-format", "", "--log-format given to the service (text or json)")
		fs.StringVar(&o.LogLevel, "log-level", "", "--log-level given to the service (debug, info, warn, error)")
		fs.StringVar(&o.UnitDir, "unit-dir", install.DefaultUnitDir, "directory of the systemd unit (Linux)")
		fs.Var((*stringList)(&o.ReadWritePaths), "read-write-path", "another directory the systemd unit lets the agent write (Linux; repeatable)")
		fs.BoolVar(&o.Force, "force", false, "replace an existing service or unit")
		fs.BoolVar(&o.Start, "start", false, "start the service once installed (Windows: start it; Linux: systemctl daemon-reload, enable, restart)")
	case "uninstall", "status":
		fs.StringVar(&o.UnitDir, "unit-dir", install.DefaultUnitDir, "directory of the systemd unit (Linux)")
	default:
		fmt.Fprintf(stderr, "chatdr-agent service: unknown command %q (want install, uninstall or status)\n\n%s", verb, serviceUsage)
		return 2
	}
	fs.Usage = func() {
		fmt.Fprint(stderr, serviceUsage+"\nFlags of "+verb+":\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chatdr-agent service %s: unexpected argument %q\n", verb, fs.Arg(0))
		return 2
	}
	if runtime.GOOS != "linux" && o.UnitDir == install.DefaultUnitDir {
		o.UnitDir = ""
	}
	var err error
	switch verb {
	case "install":
		if o.ConfigPath == "" {
			fmt.Fprintln(stderr, "chatdr-agent service install: --config is required (the agent.yaml the service runs with)")
			return 2
		}
		err = install.Install(o)
	case "uninstall":
		err = install.Uninstall(o)
	case "status":
		err = install.Status(o)
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatdr-agent service %s: %v\n", verb, err)
		return 1
	}
	return 0
}
