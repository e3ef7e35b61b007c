package csshell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// maxOutput caps what is kept of a shell's stdout and of its stderr.
const maxOutput = 8 << 20

// runResult is what one shell run produced.
type runResult struct {
	stdout, stderr []byte
	exitCode       int
	truncated      bool
}

// cappedBuffer keeps the first maxOutput bytes written to it.
type cappedBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - c.buf.Len(); room < len(p) {
		c.truncated = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return c.buf.Write(p)
}

// errShellStart means the PowerShell executable could not be started.
var errShellStart = errors.New("cannot start the shell")

// runShell runs argv (the configured prefix plus the script) with env and
// waits for it. The shell runs in its own process group (a job object on
// Windows): when ctx ends or timeout passes the whole group is killed, and
// so is anything the shell left behind after it exits. A timeout is
// reported as context.DeadlineExceeded, cancellation as context.Canceled.
func runShell(ctx context.Context, argv, env []string, timeout time.Duration) (runResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin = nil
	var stdout, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Output pipes held open by a killed shell's stragglers must not block
	// Wait for long.
	cmd.WaitDelay = 2 * time.Second
	group := newProcGroup(cmd)
	if err := cmd.Start(); err != nil {
		return runResult{}, fmt.Errorf("%w %q: %v", errShellStart, argv[0], err)
	}
	group.started(cmd)
	err := cmd.Wait()
	group.kill() // nothing the shell started outlives the call
	res := runResult{stdout: stdout.buf.Bytes(), stderr: stderr.buf.Bytes(), truncated: stdout.truncated || stderr.truncated}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return res, ctxErr
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.exitCode = exitErr.ExitCode()
		if res.exitCode == -1 {
			return res, fmt.Errorf("the shell was killed: %v", err)
		}
	case errors.Is(err, exec.ErrWaitDelay):
	default:
		return res, err
	}
	return res, nil
}

// shellEnv returns the shell's environment: the plugin's, then extra
// (KEY=VALUE overriding earlier entries), sorted for determinism.
func shellEnv(extra map[string]string) []string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	for k, v := range extra {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
