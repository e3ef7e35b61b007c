package pluginsdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chatdr/chatdr/internal/proc"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	pluginv1 "github.com/chatdr/chatdr/proto/chatdr/plugin/v1"
)

// Handshake is shared by the agent and every plugin. The magic cookie only
// stops a plugin binary from being run by hand by mistake; it is not a
// security measure (the agent pins third-party binaries by SHA-256).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "CHATDR_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "chatdr-action-plugin-7c0f6a52",
}

// PluginKey is the name of the one plugin a chatdr plugin process serves.
const PluginKey = "action"

// AgentPIDEnv names the environment variable through which the agent tells
// a plugin its pid, so that the plugin exits if the agent dies without
// stopping it.
const AgentPIDEnv = "CHATDR_AGENT_PID"

// GRPCPlugin is the go-plugin glue: the agent uses it with Impl unset to get
// a client, a plugin process with Impl set to serve.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
}

// GRPCServer registers the plugin's service.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterPluginServiceServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns a Plugin that calls the plugin process.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &client{c: pluginv1.NewPluginServiceClient(c)}, nil
}

// Serve serves p as a chatdr action plugin and blocks until the agent stops
// it. Call it from main.
func Serve(p Plugin) {
	go watchAgent()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginKey: &GRPCPlugin{Impl: p}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// watchAgent exits the plugin process when the agent that started it is
// gone, so that no plugin outlives its agent even after a crash.
func watchAgent() {
	pid, err := strconv.Atoi(os.Getenv(AgentPIDEnv))
	if err != nil || pid <= 0 {
		return
	}
	for {
		time.Sleep(time.Second) // a parent's death cannot be waited for portably; poll it
		if os.Getppid() != pid && !proc.Alive(pid) {
			os.Exit(3)
		}
	}
}

// server adapts a Plugin to the PluginService gRPC server.
type server struct {
	pluginv1.UnimplementedPluginServiceServer
	impl Plugin
}

func (s *server) Info(ctx context.Context, _ *pluginv1.InfoRequest) (*pluginv1.InfoResponse, error) {
	in, err := s.impl.Info(ctx)
	if err != nil {
		return nil, err
	}
	return &pluginv1.InfoResponse{Info: InfoToProto(in)}, nil
}

func (s *server) Execute(req *pluginv1.ExecuteRequest, stream grpc.ServerStreamingServer[pluginv1.ExecuteResponse]) error {
	em := &streamEmitter{send: stream.Send}
	out, err := s.impl.Execute(stream.Context(), &Request{
		Action: req.GetAction(), Params: FromStruct(req.GetParams()),
		Timeout: req.GetTimeout().AsDuration(), IdempotencyKey: req.GetIdempotencyKey(),
	}, em)
	res := &pluginv1.Result{}
	if err != nil {
		res.Error = ErrorToProto(err)
	} else if res.Output, err = ToStruct(out); err != nil {
		res.Error = ErrorToProto(Terminal("bad_output", "%s returned an output that cannot be sent: %v", req.GetAction(), err))
	}
	em.mu.Lock()
	defer em.mu.Unlock()
	return stream.Send(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Result{Result: res}})
}

func (s *server) Probe(ctx context.Context, req *pluginv1.ProbeRequest) (*pluginv1.ProbeResponse, error) {
	out, err := s.impl.Probe(ctx, req.GetName(), FromStruct(req.GetParams()))
	if err != nil {
		return &pluginv1.ProbeResponse{Error: ErrorToProto(err)}, nil
	}
	v, err := ToStruct(out)
	if err != nil {
		return &pluginv1.ProbeResponse{Error: ErrorToProto(Terminal("bad_output", "probe %s: %v", req.GetName(), err))}, nil
	}
	return &pluginv1.ProbeResponse{Value: v}, nil
}

// streamEmitter sends events on the Execute stream; gRPC streams are not
// safe for concurrent sends, so it serializes them.
type streamEmitter struct {
	mu   sync.Mutex
	send func(*pluginv1.ExecuteResponse) error
}

func (e *streamEmitter) Progress(stage string, done, total int64, unit string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.send(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Progress{
		Progress: &agentv1.Progress{Stage: stage, Done: done, Total: total, Unit: unit}}})
}

func (e *streamEmitter) Log(level, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.send(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Log{
		Log: &agentv1.LogLine{Level: level, Message: msg}}})
}

// client adapts the PluginService gRPC client to Plugin.
type client struct {
	c pluginv1.PluginServiceClient
}

func (c *client) Info(ctx context.Context) (*Info, error) {
	resp, err := c.c.Info(ctx, &pluginv1.InfoRequest{AgentApiVersions: []uint32{ProtocolVersion}})
	if err != nil {
		return nil, err
	}
	return InfoFromProto(resp.GetInfo()), nil
}

func (c *client) Execute(ctx context.Context, req *Request, emit Emitter) (Output, error) {
	params, err := ToStruct(req.Params)
	if err != nil {
		return nil, Terminal("bad_params", "%v", err)
	}
	preq := &pluginv1.ExecuteRequest{Action: req.Action, Params: params, IdempotencyKey: req.IdempotencyKey}
	if req.Timeout > 0 {
		preq.Timeout = durationpb.New(req.Timeout)
	}
	stream, err := c.c.Execute(ctx, preq)
	if err != nil {
		return nil, err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, Retryable("plugin_protocol", "plugin ended %s without a result", req.Action)
			}
			return nil, err
		}
		switch e := ev.GetEvent().(type) {
		case *pluginv1.ExecuteResponse_Progress:
			emit.Progress(e.Progress.GetStage(), e.Progress.GetDone(), e.Progress.GetTotal(), e.Progress.GetUnit())
		case *pluginv1.ExecuteResponse_Log:
			emit.Log(e.Log.GetLevel(), e.Log.GetMessage())
		case *pluginv1.ExecuteResponse_Result:
			if pe := e.Result.GetError(); pe != nil {
				return nil, ErrorFromProto(pe)
			}
			return Output(FromStruct(e.Result.GetOutput())), nil
		default:
			return nil, fmt.Errorf("plugin sent an unknown event %T", e)
		}
	}
}

func (c *client) Probe(ctx context.Context, name string, params Params) (Output, error) {
	ps, err := ToStruct(params)
	if err != nil {
		return nil, Terminal("bad_params", "%v", err)
	}
	resp, err := c.c.Probe(ctx, &pluginv1.ProbeRequest{Name: name, Params: ps})
	if err != nil {
		return nil, err
	}
	if pe := resp.GetError(); pe != nil {
		return nil, ErrorFromProto(pe)
	}
	return Output(FromStruct(resp.GetValue())), nil
}
