// Command chatdr-controller runs the chatdr controller. See docs/configuration.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatdr/chatdr/controller"
	"github.com/chatdr/chatdr/internal/buildinfo"
	"github.com/chatdr/chatdr/internal/logging"
)

func main() {
	fs := flag.NewFlagSet("chatdr-controller", flag.ContinueOnError)
	cfgPath := fs.String("config", "controller.yaml", "path of the controller configuration file")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatdr-controller --config controller.yaml\n\nRuns the chatdr controller: loads the topology, connects to every agent\nwith mutual TLS and serves the API the chatdr CLI uses.\nStops gracefully on SIGTERM or SIGINT.\n\nFlags:\n")
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
		fmt.Fprintln(os.Stderr, "chatdr-controller:", err)
		os.Exit(2)
	}
	cfg, err := controller.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatdr-controller:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := controller.Run(ctx, cfg, log, nil); err != nil {
		log.Error("controller failed", "err", err)
		fmt.Fprintln(os.Stderr, "chatdr-controller:", err)
		os.Exit(1)
	}
}
