// Package buildinfo carries the version stamped into chatdr binaries.
package buildinfo

import "runtime/debug"

// version is set at link time with -ldflags "-X github.com/chatdr/chatdr/internal/buildinfo.version=v1.2.3".
var version = ""

// Version returns the version of the running binary: the link-time stamp,
// else the module version recorded by the go command, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
