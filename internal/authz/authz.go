// Package authz maps the mutual-TLS identity of a gRPC caller to the RPCs it
// may call. Servers declare a Policy (full method name → allowed roles) and
// install its interceptors; a method missing from the policy is refused, so a
// new RPC is closed until someone decides who may call it.
package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/chatdr/chatdr/internal/pki"
)

// Policy maps a full gRPC method name ("/pkg.Service/Method") to the roles
// allowed to call it.
type Policy map[string][]pki.Role

type identityKey struct{}

// PeerIdentity returns the identity of the caller of ctx, read from its
// verified client certificate.
func PeerIdentity(ctx context.Context) (pki.Identity, error) {
	if id, ok := ctx.Value(identityKey{}).(pki.Identity); ok {
		return id, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return pki.Identity{}, status.Error(codes.Unauthenticated, "a client certificate issued by the deployment CA is required")
	}
	id, err := pki.IdentityOf(ti.State.VerifiedChains[0][0])
	if err != nil {
		return pki.Identity{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	return id, nil
}

// check authorizes method for the caller of ctx and returns a context that
// carries the caller's identity.
func (p Policy) check(ctx context.Context, method string) (context.Context, error) {
	id, err := PeerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	allowed, ok := p[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not open to any role", method)
	}
	if !slices.Contains(allowed, id.Role) {
		names := make([]string, len(allowed))
		for i, r := range allowed {
			names[i] = string(r)
		}
		return nil, status.Errorf(codes.PermissionDenied, "%s is not allowed to call %s (allowed roles: %s)",
			id, shortMethod(method), strings.Join(names, ", "))
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// UnaryInterceptor enforces the policy on unary RPCs.
func (p Policy) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := p.check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor enforces the policy on streaming RPCs.
func (p Policy) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := p.check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
	}
}

// ServerOptions returns the interceptors of the policy as server options.
func (p Policy) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(p.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(p.StreamInterceptor()),
	}
}

// Validate reports methods of the services that the policy does not mention,
// so that a server refuses to start with an RPC nobody decided about.
func (p Policy) Validate(services ...grpc.ServiceDesc) error {
	var missing []string
	for _, sd := range services {
		for _, m := range sd.Methods {
			if _, ok := p["/"+sd.ServiceName+"/"+m.MethodName]; !ok {
				missing = append(missing, sd.ServiceName+"/"+m.MethodName)
			}
		}
		for _, s := range sd.Streams {
			if _, ok := p["/"+sd.ServiceName+"/"+s.StreamName]; !ok {
				missing = append(missing, sd.ServiceName+"/"+s.StreamName)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("authorization policy has no entry for %s", strings.Join(missing, ", "))
	}
	return nil
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

func shortMethod(full string) string {
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[i+1:]
	}
	return full
}
