package cli_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/cli"
	"github.com/chatdr/chatdr/internal/pki"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

func TestCerts_InitAndIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	code, out, stderr := run("certs", "init", "--dir", dir, "--controller-host", "chatdr.contoso.com",
		"--agent-host", "pc1.dc1.contoso.com", "--agent-host", "10.1.2.3")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "controller, agent, viewer, operator, approver, admin")

	ctl := readCert(t, filepath.Join(dir, "controller.crt"))
	require.ElementsMatch(t, []string{"localhost", "chatdr.contoso.com"}, ctl.DNSNames)
	agent := readCert(t, filepath.Join(dir, "agent.crt"))
	require.Contains(t, agent.DNSNames, "pc1.dc1.contoso.com")
	require.Len(t, agent.IPAddresses, 2) // 127.0.0.1 and 10.1.2.3
	for _, role := range []string{"viewer", "operator", "approver", "admin"} {
		id, err := pki.IdentityOf(readCert(t, filepath.Join(dir, role+".crt")))
		require.NoError(t, err)
		require.Equal(t, pki.Role(role), id.Role)
		fi, err := os.Stat(filepath.Join(dir, role+".key"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	}

	code, _, stderr = run("certs", "init", "--dir", dir)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "already holds a CA")

	code, out, stderr = run("certs", "issue", "--role", "approver", "--name", "alice", "--dir", dir)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "alice.crt (role approver)")
	id, err := pki.IdentityOf(readCert(t, filepath.Join(dir, "alice.crt")))
	require.NoError(t, err)
	require.Equal(t, pki.Identity{Name: "alice", Role: pki.RoleApprover}, id)

	code, _, stderr = run("certs", "issue", "--role", "approver", "--name", "alice", "--dir", dir)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "already exists")

	code, _, stderr = run("certs", "issue", "--role", "viewer", "--name", "../evil", "--dir", dir)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "cannot be used as a file name")
}

func TestIdentity_Resolution(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	code, _, _ := run("certs", "init", "--dir", dir)
	require.Equal(t, 0, code)
	// Several person certificates and no --identity: the CLI asks to choose.
	code, _, stderr := run("fleet", "status", "--controller", "127.0.0.1:1", "--tls-dir", dir, "--identity", "")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "several client certificates (admin, approver, operator, viewer)")
	// A named identity that does not exist.
	code, _, stderr = run("fleet", "status", "--controller", "127.0.0.1:1", "--tls-dir", dir, "--identity", "bob")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "bob.crt")
	// A valid identity, nothing listening: unreachable.
	code, _, stderr = run("fleet", "status", "--controller", "127.0.0.1:1", "--tls-dir", dir, "--identity", "viewer")
	require.Equal(t, 3, code, stderr)
	require.True(t, strings.Contains(stderr, "unreachable"), stderr)
}

func TestTopologyValidate_Output(t *testing.T) {
	for _, f := range []string{"lab", "low-latency", "no-compliance-no-mirrors", "single-server-per-site"} {
		path := "../controller/topology/testdata/valid/" + f + ".yaml"
		code, out, stderr := run("topology", "validate", path)
		require.Equal(t, 0, code, stderr)
		require.Contains(t, out, path+": valid: pool ")
	}
}
