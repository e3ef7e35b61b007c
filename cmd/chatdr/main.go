// Command chatdr is the operator's command line for chatdr. See docs/cli.md.
package main

import (
	"os"

	"github.com/chatdr/chatdr/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
