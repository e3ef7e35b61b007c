package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/chatdr/chatdr/internal/pki"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// serverCertNames are certificate names in a TLS directory that belong to
// daemons, not to people.
var serverCertNames = []string{"ca", "controller", "agent"}

// clientMaterial loads the CA and the caller's certificate from --tls-dir.
func (g *globals) clientMaterial() (*pki.Material, error) {
	if g.tlsDir == "" {
		return nil, usageErr("no TLS directory: set --tls-dir or CHATDR_TLS_DIR (created by 'chatdr certs init' or 'chatdr lab up')")
	}
	name := g.identity
	if name == "" {
		var err error
		if name, err = defaultIdentity(g.tlsDir); err != nil {
			return nil, err
		}
	}
	mat, err := pki.LoadMaterial(filepath.Join(g.tlsDir, pki.CACertFile),
		filepath.Join(g.tlsDir, name+".crt"), filepath.Join(g.tlsDir, name+".key"))
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return mat, nil
}

// defaultIdentity picks the client certificate of dir when the user named
// none: client.crt, or the only person certificate there.
func defaultIdentity(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "client.crt")); err == nil {
		return "client", nil
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.crt"))
	if err != nil {
		return "", err
	}
	var names []string
	for _, m := range matches {
		n := strings.TrimSuffix(filepath.Base(m), ".crt")
		if !slices.Contains(serverCertNames, n) {
			names = append(names, n)
		}
	}
	switch len(names) {
	case 0:
		return "", usageErr("no client certificate in %s: issue one with 'chatdr certs issue --role viewer --name NAME --dir %s'", dir, dir)
	case 1:
		return names[0], nil
	default:
		return "", usageErr("%s holds several client certificates (%s): choose one with --identity or CHATDR_IDENTITY", dir, strings.Join(names, ", "))
	}
}

// dialController connects to the controller with mutual TLS.
func (g *globals) dialController() (controllerv1.ControllerServiceClient, func(), error) {
	if g.controller == "" {
		return nil, nil, usageErr("no controller address: set --controller or CHATDR_CONTROLLER (host:port)")
	}
	mat, err := g.clientMaterial()
	if err != nil {
		return nil, nil, err
	}
	cc, err := grpc.NewClient(g.controller, grpc.WithTransportCredentials(credentials.NewTLS(mat.ClientConfig(pki.RoleController))))
	if err != nil {
		return nil, nil, usageErr("controller address %q: %v", g.controller, err)
	}
	return controllerv1.NewControllerServiceClient(cc), func() { cc.Close() }, nil
}

// rpcErr turns an error from a controller call into an ExitError with the
// right exit code and a sentence that says what to do.
func (g *globals) rpcErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("controller %s did not answer in time", g.controller)}
	}
	st, ok := status.FromError(err)
	if !ok {
		return failed(err)
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("controller %s is unreachable: %s (is chatdr-controller running, and is --tls-dir the deployment's?)", g.controller, st.Message())}
	case codes.Unauthenticated:
		return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("controller %s refused your certificate: %s", g.controller, st.Message())}
	case codes.PermissionDenied:
		return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("not authorized: %s", st.Message())}
	case codes.InvalidArgument, codes.NotFound:
		return &ExitError{Code: ExitUsage, Err: errors.New(st.Message())}
	case codes.FailedPrecondition:
		return failed(fmt.Errorf("refused: %s", st.Message()))
	default:
		return failed(errors.New(st.Message()))
	}
}

// printJSON writes a protobuf message as indented JSON with proto field names.
func (g *globals) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return failed(err)
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}
