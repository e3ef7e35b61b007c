// Command chatdr-agent runs the chatdr agent on a Persistent Chat server or a
// SQL Server host. See docs/configuration.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/chatdr/chatdr/agent"
	"github.com/chatdr/chatdr/internal/buildinfo"
	"github.com/chatdr/chatdr/internal/logging"
	"github.com/chatdr/chatdr/plugins"
	"github.com/chatdr/chatdr/pluginsdk"
)

func main() {
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
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatdr-agent --config agent.yaml\n       chatdr-agent plugin NAME   (started by the agent itself)\n\nRuns the chatdr agent: a gRPC server (mutual TLS) that reports host facts,\nanswers probes and executes actions for the chatdr controller.\nStops gracefully on SIGTERM or SIGINT.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *version {
		fmt.Println(buildinfo.Version())
		return
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
