// Command chatdr-sim runs the simulators that stand in, in the lab and in
// tests, for what cannot run on a Linux build machine: SQL Server (over real
// TDS), the Lync/Skype for Business Management Shell, and Persistent Chat
// servers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/chatdr/chatdr/internal/buildinfo"
	"github.com/chatdr/chatdr/internal/logging"
	"github.com/chatdr/chatdr/sim/chat"
	"github.com/chatdr/chatdr/sim/csshell"
	sim "github.com/chatdr/chatdr/sim/mssql"
)

const usage = `Usage: chatdr-sim COMMAND [flags]

Commands:
  mssql     a SQL Server instance speaking TDS 7.4 (go-mssqldb connects unchanged)
  chat      a Persistent Chat server posting messages into the pool's current database
  csshell   the Lync/Skype for Business Management Shell (runs the scripts the csshell plugin sends)
  version   print the version

Run 'chatdr-sim COMMAND --help' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "mssql":
		return runMSSQL(args[1:], stdout, stderr)
	case "chat":
		return runChat(args[1:], stderr)
	case "csshell":
		return csshell.Main(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, buildinfo.Version())
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "chatdr-sim: unknown command %q\n%s", args[0], usage)
	return 2
}

// logins collects repeated --login user:password flags.
type logins map[string]string

func (l logins) String() string { return fmt.Sprintf("%d logins", len(l)) }

// Set takes user:password, or user:@FILE to read the password from FILE
// (so that it does not show in the process list).
func (l logins) Set(v string) error {
	user, pw, ok := strings.Cut(v, ":")
	if !ok || user == "" || pw == "" {
		return errors.New("want user:password or user:@file")
	}
	if file, ok := strings.CutPrefix(pw, "@"); ok {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("password file: %w", err)
		}
		if pw = strings.TrimRight(string(b), "\r\n"); pw == "" {
			return fmt.Errorf("password file %s is empty", file)
		}
	}
	l[user] = pw
	return nil
}

func runMSSQL(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chatdr-sim mssql", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "server name (@@SERVERNAME), e.g. SQL1 or HOST\\INSTANCE (required)")
	listen := fs.String("listen", "127.0.0.1:0", "TCP address to accept TDS connections on")
	data := fs.String("data", "", "data directory: the instance's durable state (required)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	share := fs.String("share", "", "backup share directory the instance's service account reaches (fault injection can make it unreadable: EXEC master.dbo.sp_chatdr_fault @action = N'share_unreadable')")
	mirrorListen := fs.String("mirror-listen", "", "TCP address of the database mirroring endpoint (what SET PARTNER = 'TCP://host:port' names; SQL Server's is port 5022); empty: no endpoint")
	ls := logins{}
	fs.Var(ls, "login", "SQL login as user:password or user:@FILE (repeatable; default sa:chatdr-lab-Pa55)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: chatdr-sim mssql --name SQL1 --data DIR [--listen 127.0.0.1:0] [--login user:password] [--share DIR] [--mirror-listen ADDR]\n\n"+
			"Runs one simulated SQL Server instance. Prints \"listening on ADDR\" once it accepts\n"+
			"connections (and \"mirroring endpoint on TCP://ADDR\" with --mirror-listen).\n"+
			"State survives a restart (and a kill -9, but for the statement in flight).\n"+
			"Stops on SIGTERM or SIGINT.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *name == "" || *data == "" {
		fmt.Fprintln(stderr, "chatdr-sim mssql: --name and --data are required")
		return 2
	}
	if len(ls) == 0 {
		ls["sa"] = "chatdr-lab-Pa55"
	}
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "chatdr-sim mssql:", err)
		return 2
	}
	in, err := sim.Open(sim.Config{Name: *name, DataDir: *data, Logins: ls, Logger: log, Share: *share, MirrorListen: *mirrorListen})
	if err != nil {
		fmt.Fprintln(stderr, "chatdr-sim mssql:", err)
		return 1
	}
	defer in.Close()
	addr, err := in.Serve(*listen)
	if err != nil {
		fmt.Fprintln(stderr, "chatdr-sim mssql:", err)
		return 1
	}
	fmt.Fprintf(stdout, "listening on %s\n", addr)
	if ep := in.MirrorAddr(); ep != "" {
		fmt.Fprintf(stdout, "mirroring endpoint on %s\n", ep)
	}
	log.Info("SQL Server simulator ready", "name", *name, "addr", addr.String(), "data", *data)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("stopping")
	return 0
}

func runChat(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("chatdr-sim chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg chat.Config
	fs.StringVar(&cfg.FQDN, "fqdn", "", "this chat server's FQDN in the CMS (required)")
	fs.StringVar(&cfg.CMS, "cms", os.Getenv("CHATDR_CMS_FILE"), "Central Management Store file (default $CHATDR_CMS_FILE)")
	fs.StringVar(&cfg.AckFile, "ack-file", "", "file that receives one line per acknowledged message (required)")
	fs.StringVar(&cfg.StatusFile, "status-file", "", "file that receives what the server observes, as JSON")
	fs.Float64Var(&cfg.Rate, "rate", 5, "messages per second while active")
	fs.StringVar(&cfg.Room, "room", "lab", "chat room the messages go to")
	fs.DurationVar(&cfg.Poll, "poll", 200*time.Millisecond, "how often the local store is read")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: chatdr-sim chat --fqdn pc1.dc1.example --cms cms.json --ack-file pc1.acks\n\n"+
			"Runs a simulated Persistent Chat server: while its local store shows it on the active\n"+
			"server list it posts messages into the database the pool state points at, and appends\n"+
			"every acknowledged message to --ack-file. Stops on SIGTERM or SIGINT.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "chatdr-sim chat:", err)
		return 2
	}
	cfg.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := chat.Run(ctx, cfg); err != nil {
		fmt.Fprintln(stderr, "chatdr-sim chat:", err)
		return 1
	}
	return 0
}
