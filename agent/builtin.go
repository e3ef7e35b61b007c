package agent

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// builtinPlugin is the name under which the agent reports its own actions.
const builtinPlugin = "agent"

// builtinActions are the actions every agent offers without plugins.
func builtinActions() []Action {
	return []Action{{
		Info: &agentv1.ActionInfo{
			Name:        "agent.noop",
			Description: "Does nothing (optionally for a while, with progress) and echoes its parameters; checks the whole path controller → agent → journal → result.",
			Params: []*agentv1.ParamSpec{
				{Name: "duration", Type: "string", Description: "how long to wait, as a Go duration (e.g. 2s); default 0"},
				{Name: "fail", Type: "string", Description: "when set, fail with this message (for testing error paths)"},
			},
			// Not marked read-only on purpose: it is journaled like a
			// state-changing action, so it exercises the whole path.
			Idempotent:     true,
			DefaultTimeout: durationpb.New(time.Minute),
		},
		Run: runNoop,
	}}
}

func runNoop(ctx context.Context, req *agentv1.ExecuteRequest, emit Emitter) (*structpb.Struct, *agentv1.ActionError) {
	f := req.GetParams().GetFields()
	var d time.Duration
	if v, ok := f["duration"]; ok {
		var err error
		if d, err = time.ParseDuration(v.GetStringValue()); err != nil || d < 0 {
			return nil, &agentv1.ActionError{Code: "bad_param", Message: fmt.Sprintf("duration %q is not a positive Go duration", v.GetStringValue())}
		}
	}
	if d > 0 {
		const steps = 10
		tick := time.NewTicker(d / steps)
		defer tick.Stop()
		for i := int64(1); i <= steps; i++ {
			select {
			case <-ctx.Done():
				return nil, &agentv1.ActionError{Code: "cancelled", Message: ctx.Err().Error(), Retryable: true}
			case <-tick.C:
				emit.Progress("waiting", i, steps, "steps")
			}
		}
	}
	if v, ok := f["fail"]; ok {
		return nil, &agentv1.ActionError{Code: "requested_failure", Message: v.GetStringValue()}
	}
	return &structpb.Struct{Fields: f}, nil
}
