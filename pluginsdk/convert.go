package pluginsdk

import (
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// ToStruct converts JSON-like values to a protobuf Struct.
func ToStruct(m map[string]any) (*structpb.Struct, error) {
	if m == nil {
		return &structpb.Struct{}, nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("value is not JSON-like: %w", err)
	}
	return s, nil
}

// FromStruct converts a protobuf Struct to JSON-like values (nil for nil).
func FromStruct(s *structpb.Struct) map[string]any {
	if s == nil {
		return map[string]any{}
	}
	return s.AsMap()
}

// ErrorToProto converts an error for the wire.
func ErrorToProto(err error) *agentv1.ActionError {
	e := AsError(err)
	if e == nil {
		return nil
	}
	return &agentv1.ActionError{Code: e.Code, Message: e.Message, Retryable: e.Retryable, Hint: e.Hint}
}

// ErrorFromProto converts a wire error (nil for nil).
func ErrorFromProto(pe *agentv1.ActionError) *Error {
	if pe == nil {
		return nil
	}
	return &Error{Code: pe.GetCode(), Message: pe.GetMessage(), Retryable: pe.GetRetryable(), Hint: pe.GetHint()}
}

// InfoToProto converts Info for the wire.
func InfoToProto(in *Info) *agentv1.PluginInfo {
	out := &agentv1.PluginInfo{Name: in.Name, Version: in.Version, ApiVersions: in.APIVersions}
	for _, a := range in.Actions {
		pa := &agentv1.ActionInfo{Name: a.Name, Description: a.Description, ReadOnly: a.ReadOnly,
			Idempotent: a.Idempotent, Destructive: a.Destructive}
		if a.DefaultTimeout > 0 {
			pa.DefaultTimeout = durationpb.New(a.DefaultTimeout)
		}
		for _, p := range a.Params {
			pa.Params = append(pa.Params, &agentv1.ParamSpec{Name: p.Name, Type: p.Type, Required: p.Required, Description: p.Description})
		}
		out.Actions = append(out.Actions, pa)
	}
	for _, p := range in.Probes {
		out.Probes = append(out.Probes, &agentv1.ProbeInfo{Name: p.Name, Description: p.Description})
	}
	return out
}

// InfoFromProto converts wire Info.
func InfoFromProto(pi *agentv1.PluginInfo) *Info {
	out := &Info{Name: pi.GetName(), Version: pi.GetVersion(), APIVersions: pi.GetApiVersions()}
	for _, a := range pi.GetActions() {
		sa := ActionSpec{Name: a.GetName(), Description: a.GetDescription(), ReadOnly: a.GetReadOnly(),
			Idempotent: a.GetIdempotent(), Destructive: a.GetDestructive(), DefaultTimeout: a.GetDefaultTimeout().AsDuration()}
		for _, p := range a.GetParams() {
			sa.Params = append(sa.Params, ParamSpec{Name: p.GetName(), Type: p.GetType(), Required: p.GetRequired(), Description: p.GetDescription()})
		}
		out.Actions = append(out.Actions, sa)
	}
	for _, p := range pi.GetProbes() {
		out.Probes = append(out.Probes, ProbeSpec{Name: p.GetName(), Description: p.GetDescription()})
	}
	return out
}
