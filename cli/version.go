package cli

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/chatdr/chatdr/internal/buildinfo"
)

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of chatdr",
		Args:  noArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if g.output == "json" {
				b, _ := json.Marshal(map[string]string{"version": buildinfo.Version(), "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH})
				fmt.Fprintln(g.stdout, string(b))
				return nil
			}
			fmt.Fprintf(g.stdout, "chatdr %s (%s, %s/%s)\n", buildinfo.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
