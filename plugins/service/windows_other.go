//go:build !windows

package service

import "github.com/chatdr/chatdr/pluginsdk"

func newWindowsBackend(*config) (backend, error) {
	return nil, pluginsdk.Terminal(CodeBackendUnavailable, "the windows backend is only available on Windows").
		WithHint("use backend: systemd or backend: process on this host")
}
