// Command chatdr-agent runs the chatdr agent on a Persistent Chat server or a
// SQL Server host. See docs/configuration.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/chatdr/chatdr/agent"
	"github.com/chatdr/chatdr/agent/install"
	"github.com/chatdr/chatdr/internal/buildinfo"
	"github.com/chatdr/chatdr/internal/logging"
	"github.com/chatdr/chatdr/plugins"
	"github.com/chatdr/chatdr/pluginsdk"
)

func main() {
	// `chatdr-agent service install|uninstall|status` registers the agent
	// with the operating system's service manager.
	if len(os.Args) >= 2 && os.Args[1] == "service" {
		os.Exit(runService(os.Args[2:], os.Stdout, os.Stderr))
	}
	// `chatdr-agent plugin NAME` serves a built-in action plugin: the agent
	// starts it this way, one process per plugin (hashicorp/go-plugin).
	if len(os.Args) >= 2 && os.Args[1] == "plugin" {
		if len(os.Args) != 3 {
			fmt.Fprintf(os.Stderr, "usage: chatdr-agent plugin NAME (built-in: %s); the agent runs this itself\n", strings.Join(plugins.Names(), ", "))
			os.Exit(2)
		}
		p, ok := plugins.New(os.Args[2])
		if !ok {
			fmt.Fprintf(os.Stderr, "chatdr-agent: %q is not a built-in plugin (built-in: %s)\n", os.Args[2], strings.Join(plugins.Names(), ", "))
			os.Exit(2)
		}
		pluginsdk.Serve(p)
		return
	}
	fs := flag.NewFlagSet("chatdr-agent", flag.ContinueOnError)
	cfgPath := fs.String("config", "agent.yaml", "path of the agent configuration file")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	version := fs.Bool("version", false, "print the version and exit")
	serviceName := fs.String("service-name", install.DefaultName, "Windows service name, set by `service install`: the event-log source when the Service Control Manager runs the agent")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatdr-agent --config agent.yaml\n       chatdr-agent service install|uninstall|status [flags]   (see chatdr-agent service --help)\n       chatdr-agent plugin NAME   (started by the agent itself)\n\nRuns the chatdr agent: a gRPC server (mutual TLS) that reports host facts,\nanswers probes and executes actions for the chatdr controller.\nStops gracefully on SIGTERM or SIGINT, or on Stop/Shutdown when it runs\nas a Windows service.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *version {
		fmt.Println(buildinfo.Version())
		return
	}
	if isWindowsService() {
		os.Exit(serveWindows(*serviceName, *cfgPath, *logFormat, *logLevel))
	}
	log, err := logging.New(os.Stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatdr-agent:", err)
		os.Exit(2)
	}
	cfg, err := agent.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatdr-agent:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg, log, nil); err != nil {
		log.Error("agent failed", "err", err)
		os.Exit(1)
	}
}

// serveWindows runs the agent under the Windows Service Control Manager:
// logs go to the Application event log (source name), Stop and Shutdown
// stop it gracefully, and a failure (including an unusable configuration)
// ends the service with an error so that its recovery actions restart it.
// It returns the process exit code.
func serveWindows(name, cfgPath, logFormat, logLevel string) int {
	var out io.Writer = os.Stderr
	if w, closeLog, err := openServiceLog(name); err == nil {
		defer closeLog()
		out = w
	}
	log, err := logging.New(out, logFormat, logLevel)
	if err != nil {
		log = slog.New(slog.NewTextHandler(out, nil))
		log.Error("bad log flags; using text at info", "err", err)
	}
	cfg, cfgErr := agent.LoadConfig(cfgPath)
	grace := time.Duration(0)
	if cfgErr == nil {
		grace = time.Duration(cfg.ShutdownGrace)
	}
	err = runAsService(name, grace, func(ctx context.Context) error {
		if cfgErr != nil {
			return cfgErr
		}
		log.Info("agent starting as a Windows service", "service", name, "config", cfgPath)
		return agent.Run(ctx, cfg, log, nil)
	})
	if err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	log.Info("agent stopped")
	return 0
}
