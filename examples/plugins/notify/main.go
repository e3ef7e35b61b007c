// Command chatdr-plugin-notify is an example third-party chatdr action
// plugin: it tells people that a failover step happened, by appending a JSON
// line to a file (for a ticketing inbox or a log shipper) or by posting JSON
// to a webhook. See README.md beside this file.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Environment variables that configure the plugin (set them for the agent).
const (
	envFile    = "CHATDR_NOTIFY_FILE"    // file notify.file appends to
	envWebhook = "CHATDR_NOTIFY_WEBHOOK" // URL notify.webhook posts to
)

type notify struct {
	mu sync.Mutex // serializes appends to the file
}

func main() { pluginsdk.Serve(&notify{}) }

func (n *notify) Info(context.Context) (*pluginsdk.Info, error) {
	params := []pluginsdk.ParamSpec{
		{Name: "message", Type: pluginsdk.TypeString, Required: true, Description: "what happened, for a person"},
		{Name: "severity", Type: pluginsdk.TypeString, Description: "info (default), warning or critical"},
		{Name: "run", Type: pluginsdk.TypeString, Description: "the chatdr run this belongs to"},
	}
	return &pluginsdk.Info{
		Name: "notify", Version: "1.0.0", APIVersions: []uint32{pluginsdk.ProtocolVersion},
		Actions: []pluginsdk.ActionSpec{
			{Name: "notify.file", Description: "append a JSON notification line to $" + envFile, Params: params,
				Idempotent: false, DefaultTimeout: 10 * time.Second},
			{Name: "notify.webhook", Description: "POST a JSON notification to $" + envWebhook, Params: params,
				DefaultTimeout: 30 * time.Second},
		},
		Probes: []pluginsdk.ProbeSpec{{Name: "notify.targets", Description: "the configured file and webhook"}},
	}, nil
}

// notification is what the plugin writes or posts.
type notification struct {
	Time     time.Time `json:"time"`
	Severity string    `json:"severity"`
	Message  string    `json:"message"`
	Run      string    `json:"run,omitempty"`
	Key      string    `json:"idempotency_key"`
	Host     string    `json:"host"`
}

func (n *notify) Execute(ctx context.Context, req *pluginsdk.Request, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	msg := notification{Time: time.Now().UTC(), Severity: "info", Key: req.IdempotencyKey}
	msg.Message, _ = req.Params["message"].(string)
	msg.Run, _ = req.Params["run"].(string)
	msg.Host, _ = os.Hostname()
	if s, ok := req.Params["severity"].(string); ok {
		switch s {
		case "info", "warning", "critical":
			msg.Severity = s
		default:
			return nil, pluginsdk.Terminal("bad_param", "severity %q: want info, warning or critical", s)
		}
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	switch req.Action {
	case "notify.file":
		path := os.Getenv(envFile)
		if path == "" {
			return nil, pluginsdk.Terminal("not_configured", "%s is not set", envFile).WithHint("set it in the agent's environment")
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, pluginsdk.Retryable("file_unwritable", "open %s: %v", path, err)
		}
		defer f.Close()
		if _, err := f.Write(append(body, '\n')); err != nil {
			return nil, pluginsdk.Retryable("file_unwritable", "write %s: %v", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, pluginsdk.Retryable("file_unwritable", "sync %s: %v", path, err)
		}
		emit.Log("info", "notification appended to "+path)
		return pluginsdk.Output{"file": path, "bytes": float64(len(body) + 1)}, nil
	case "notify.webhook":
		target := os.Getenv(envWebhook)
		u, err := url.Parse(target)
		if target == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, pluginsdk.Terminal("not_configured", "%s is not an http(s) URL: %q", envWebhook, target)
		}
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		hreq.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			return nil, pluginsdk.Retryable("webhook_unreachable", "POST %s: %v", u.Redacted(), err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return nil, pluginsdk.Retryable("webhook_error", "POST %s: %s", u.Redacted(), resp.Status)
		}
		if resp.StatusCode >= 300 {
			return nil, pluginsdk.Terminal("webhook_refused", "POST %s: %s", u.Redacted(), resp.Status)
		}
		return pluginsdk.Output{"status": float64(resp.StatusCode)}, nil
	}
	return nil, pluginsdk.Terminal("unknown_action", "notify does not offer %q", req.Action)
}

func (n *notify) Probe(_ context.Context, name string, _ pluginsdk.Params) (pluginsdk.Output, error) {
	if name != "notify.targets" {
		return nil, pluginsdk.Terminal("unknown_probe", "notify does not offer probe %q", name)
	}
	hook := ""
	if u, err := url.Parse(os.Getenv(envWebhook)); err == nil {
		hook = u.Redacted()
	}
	return pluginsdk.Output{"file": os.Getenv(envFile), "webhook": hook}, nil
}
