// Package cli implements the chatdr command line (cobra), one file per verb.
//
// Exit codes (docs/cli.md): 0 success, 1 the operation failed, 2 bad usage or
// invalid input, 3 controller unreachable or not authorized, 4 the run waits
// for an approval (--wait, run watch).
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes of the chatdr command.
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitUnreachable = 3
)

// ExitError is an error that decides the process exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// usageErr marks err as bad usage or invalid input (exit 2).
func usageErr(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// failed marks err as a failed operation (exit 1).
func failed(err error) error { return &ExitError{Code: ExitFailed, Err: err} }

// globals are the flags every command shares.
type globals struct {
	controller string
	tlsDir     string
	identity   string
	output     string
	stdout     io.Writer
	stderr     io.Writer
}

// NewRootCommand returns the chatdr command tree writing to stdout/stderr.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "chatdr",
		Short: "Disaster recovery for Lync 2013 / Skype for Business 2015 Persistent Chat",
		Long: `chatdr fails a Persistent Chat pool over from its primary data center to its
backup data center and back, through agents on every chat and SQL host and a
controller that runs each procedure as a durable, resumable plan.

Exit codes:
  0  success
  1  the operation failed (preflight: no-go; a run that failed, paused or was cancelled)
  2  bad usage or invalid input
  3  controller unreachable or not authorized
  4  the run waits for an approval (failover/failback/run resume --wait, run watch)

Environment:
  CHATDR_CONTROLLER  default for --controller
  CHATDR_TLS_DIR     default for --tls-dir
  CHATDR_IDENTITY    default for --identity`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "table" && g.output != "json" {
				return usageErr("-o %q: want table or json", g.output)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.controller, "controller", os.Getenv("CHATDR_CONTROLLER"), "controller address host:port (env CHATDR_CONTROLLER)")
	pf.StringVar(&g.tlsDir, "tls-dir", os.Getenv("CHATDR_TLS_DIR"), "directory with ca.crt and your client certificate (env CHATDR_TLS_DIR)")
	pf.StringVar(&g.identity, "identity", os.Getenv("CHATDR_IDENTITY"), "name of your certificate in --tls-dir: NAME.crt and NAME.key (env CHATDR_IDENTITY)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: err}
	})

	root.AddCommand(
		newFleetCommand(g),
		newTopologyCommand(g),
		newCertsCommand(g),
		newVersionCommand(g),
		newLabCommand(g),
		newPlanCommand(g),
		newFailoverCommand(g),
		newFailbackCommand(g),
		newRunCommand(g),
		newAuditCommand(g),
		newPreflightCommand(g),
		newDrillCommand(g),
	)
	return root
}

// Main runs the chatdr command with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "chatdr:", err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	// Errors cobra raises itself (unknown command, wrong argument count)
	// are usage errors; anything else is a failed operation.
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "accepts ") ||
		strings.HasPrefix(msg, "requires at least") || strings.HasPrefix(msg, "required flag") {
		return ExitUsage
	}
	return ExitFailed
}
