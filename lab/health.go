package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/chatdr/chatdr/internal/pki"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// waitHealthy polls until every agent answers GetInfo and the controller
// reports every agent reachable, or ctx ends. On failure it says which
// process is not healthy and shows the end of its log.
func waitHealthy(ctx context.Context, st *State) error {
	return waitProcs(ctx, st, st.Procs)
}

// waitProcs is waitHealthy for the given processes of st only.
func waitProcs(ctx context.Context, st *State, procs []Proc) error {
	mat, err := pki.LoadMaterial(filepath.Join(st.TLSDir, pki.CACertFile),
		filepath.Join(st.TLSDir, "viewer.crt"), filepath.Join(st.TLSDir, "viewer.key"))
	if err != nil {
		return err
	}
	pending := map[string]Proc{}
	for _, p := range procs {
		pending[p.Name] = p
	}
	var lastErr = map[string]error{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for name, p := range pending {
			if _, ok := running(p); !ok {
				return fmt.Errorf("%s exited during start-up:\n%s", name, tail(p.Log, 15))
			}
			if err := checkProc(ctx, st, mat, p, len(st.procs(KindAgent))); err != nil {
				lastErr[name] = err
				continue
			}
			delete(pending, name)
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var lines []string
			for name, p := range pending {
				lines = append(lines, fmt.Sprintf("%s (%s): %v\n%s", name, p.Address, lastErr[name], tail(p.Log, 10)))
			}
			return fmt.Errorf("lab not healthy in time; not ready:\n%s", strings.Join(lines, "\n"))
		case <-tick.C:
		}
	}
}

// checkProc asks one process whether it is ready: an agent must answer
// GetInfo, the controller must report wantAgents reachable agents.
func checkProc(ctx context.Context, st *State, mat *pki.Material, p Proc, wantAgents int) error {
	if p.Kind == KindSQL {
		return checkSQL(ctx, st, p)
	}
	role := pki.RoleAgent
	if p.Kind == KindController {
		role = pki.RoleController
	}
	cc, err := grpc.NewClient(p.Address, grpc.WithTransportCredentials(credentials.NewTLS(mat.ClientConfig(role))))
	if err != nil {
		return err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if p.Kind == KindAgent {
		_, err := agentv1.NewAgentServiceClient(cc).GetInfo(cctx, &agentv1.GetInfoRequest{})
		return err
	}
	resp, err := controllerv1.NewControllerServiceClient(cc).GetFleetStatus(cctx, &controllerv1.GetFleetStatusRequest{})
	if err != nil {
		return err
	}
	var down []string
	for _, a := range resp.GetAgents() {
		if !a.GetReachable() {
			down = append(down, a.GetHost())
		}
	}
	if len(down) > 0 || len(resp.GetAgents()) != wantAgents {
		return errors.New("controller does not reach: " + strings.Join(down, ", "))
	}
	return nil
}

// tail returns the last n lines of a log file, indented.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString("    " + string(l) + "\n")
	}
	return sb.String()
}
