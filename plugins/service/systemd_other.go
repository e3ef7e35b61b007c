//go:build !linux

package service

import "github.com/chatdr/chatdr/pluginsdk"

func newSystemdBackend(*config) (backend, error) {
	return nil, pluginsdk.Terminal(CodeBackendUnavailable, "the systemd backend is only available on Linux").
		WithHint("use backend: windows on Windows hosts, or backend: process")
}
