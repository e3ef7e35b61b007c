//go:build linux

package service

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// systemdBackend drives systemctl. A name without a unit suffix is a
// .service unit, as systemctl itself assumes.
type systemdBackend struct {
	cfg *config
	// systemctl is the program to run (a fake one in tests).
	systemctl string
}

func newSystemdBackend(cfg *config) (backend, error) {
	path, err := exec.LookPath("systemctl")
	if err != nil {
		return nil, pluginsdk.Terminal(CodeBackendUnavailable, "systemd backend: systemctl not found: %v", err).
			WithHint("this host does not run systemd; use backend: process")
	}
	return &systemdBackend{cfg: cfg, systemctl: path}, nil
}

func (b *systemdBackend) kind() string                { return backendSystemd }
func (b *systemdBackend) pollInterval() time.Duration { return 250 * time.Millisecond }
func (b *systemdBackend) close()                      {}

// showProps are the unit properties status reads.
const showProps = "LoadState,ActiveState,SubState,MainPID,ActiveEnterTimestamp,InactiveEnterTimestamp,NRestarts"

func (b *systemdBackend) status(ctx context.Context, name string) (Status, error) {
	out, err := b.run(ctx, name, "show", "--no-pager", "-p", showProps, "--", name)
	if err != nil {
		return Status{State: StateUnknown}, err
	}
	return parseShow(name, out)
}

// parseShow maps the KEY=VALUE lines of systemctl show to a Status.
func parseShow(name, out string) (Status, error) {
	p := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			p[k] = v
		}
	}
	if p["LoadState"] == "not-found" {
		return Status{State: StateUnknown}, errNotFound(name, "systemd has no unit "+name)
	}
	if p["ActiveState"] == "" {
		return Status{State: StateUnknown}, pluginsdk.Retryable(CodeBackendError, "systemctl show %s printed no ActiveState: %q", name, out)
	}
	st := Status{Detail: p["ActiveState"] + "/" + p["SubState"]}
	st.PID, _ = strconv.Atoi(p["MainPID"])
	st.Restarts, _ = strconv.Atoi(p["NRestarts"])
	switch p["ActiveState"] {
	case "active", "reloading":
		st.State, st.Since = StateRunning, parseSystemdTime(p["ActiveEnterTimestamp"])
	case "activating":
		st.State = StateStarting
	case "deactivating":
		st.State = StateStopping
	case "inactive", "failed":
		st.State, st.Since, st.PID = StateStopped, parseSystemdTime(p["InactiveEnterTimestamp"]), 0
	default:
		st.State = StateUnknown
	}
	return st, nil
}

// parseSystemdTime parses a timestamp as systemctl show prints it
// ("Thu 2024-01-04 10:00:00 CET", in the host's zone); zero when empty,
// "n/a" or in another format.
func parseSystemdTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" || s == "n/a" {
		return time.Time{}
	}
	if rest, ok := strings.CutPrefix(s, "@"); ok { // --timestamp=unix
		if sec, err := strconv.ParseInt(rest, 10, 64); err == nil {
			return time.Unix(sec, 0)
		}
	}
	for _, layout := range []string{"Mon 2006-01-02 15:04:05 MST", "Mon 2006-01-02 15:04:05.000000 MST"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t
		}
	}
	return time.Time{}
}

func (b *systemdBackend) start(ctx context.Context, name string, _ pluginsdk.Emitter) error {
	// systemctl start returns when the start job has finished (for
	// Type=simple at once, for notify units when they are ready); the
	// plugin then polls for the running state.
	_, err := b.run(ctx, name, "start", "--", name)
	return err
}

func (b *systemdBackend) stop(ctx context.Context, name string, graceful bool, emit pluginsdk.Emitter) (stopResult, error) {
	res := stopResult{Graceful: graceful}
	if !graceful {
		emit.Log("info", "sending SIGKILL to every process of "+name)
		if _, err := b.run(ctx, name, "kill", "--signal=SIGKILL", "--", name); err != nil {
			return res, err
		}
		res.Killed = true
	}
	_, err := b.run(ctx, name, "stop", "--", name)
	return res, err
}

// run runs systemctl and maps its failures to plugin errors.
func (b *systemdBackend) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.systemctl, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = err.Error()
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		return "", pluginsdk.Terminal(CodeBackendUnavailable, "run systemctl: %v", err)
	}
	verb := args[0]
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "access denied"), strings.Contains(lower, "authentication required"),
		strings.Contains(lower, "permission denied"):
		return "", pluginsdk.Terminal(CodeAccessDenied, "systemctl %s %s: %s", verb, name, msg).
			WithHint("run the agent as root, or allow its user to manage %s with a polkit rule", name)
	case strings.Contains(lower, "not found"), strings.Contains(lower, "not loaded"), code == 5: // LSB 5: not installed
		return "", errNotFound(name, "systemctl "+verb+" "+name+": "+msg)
	case strings.Contains(lower, "masked"):
		return "", pluginsdk.Terminal(CodeServiceDisabled, "systemctl %s %s: %s", verb, name, msg).
			WithHint("unmask the unit (systemctl unmask %s) if it should run", name)
	case strings.Contains(lower, "dependency"):
		return "", pluginsdk.Terminal(CodeDependencyFailed, "systemctl %s %s: %s", verb, name, msg).
			WithHint("see systemctl list-dependencies %s and journalctl -xe", name)
	case verb == "start":
		return "", pluginsdk.Terminal(CodeStartFailed, "systemctl start %s: %s", name, msg).
			WithHint("read systemctl status %s and journalctl -u %s", name, name)
	case verb == "stop" || verb == "kill":
		return "", pluginsdk.Retryable(CodeStopFailed, "systemctl %s %s: %s", verb, name, msg).
			WithHint("read systemctl status %s", name)
	}
	return "", pluginsdk.Retryable(CodeBackendError, "systemctl %s %s: %s (exit %d)", verb, name, msg, code)
}
