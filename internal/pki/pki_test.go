package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// initDir runs InitDir in a new temporary directory and returns it.
func initDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	require.NoError(t, InitDir(dir, InitOptions{
		ControllerHosts: []string{"127.0.0.1", "controller.chatdr.test"},
		AgentHosts:      []string{"127.0.0.1", "::1", "localhost"},
		Validity:        time.Hour,
	}))
	return dir
}

// readCert parses the PEM certificate file at path.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "%s holds no PEM block", path)
	require.Equal(t, "CERTIFICATE", block.Type)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}

// requireOwnerOnly checks that the file at path has mode 0600. Windows has
// no such permission bits (ACLs protect the file there), so it only checks
// that the file exists.
func requireOwnerOnly(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	if runtime.GOOS == "windows" {
		return
	}
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s must be readable by its owner only", path)
}

func TestInitDir_createsEveryFile(t *testing.T) {
	dir := initDir(t)

	ca := readCert(t, filepath.Join(dir, CACertFile))
	require.True(t, ca.IsCA)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	tests := []struct {
		name string
		role Role
	}{
		{"controller", RoleController},
		{"agent", RoleAgent},
		{"viewer", RoleViewer},
		{"operator", RoleOperator},
		{"approver", RoleApprover},
		{"admin", RoleAdmin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := readCert(t, filepath.Join(dir, tt.name+".crt"))
			_, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			require.NoError(t, err, "%s.crt must be issued by the CA of the directory", tt.name)

			id, err := IdentityOf(cert)
			require.NoError(t, err)
			require.Equal(t, Identity{Name: tt.name, Role: tt.role}, id)

			requireOwnerOnly(t, filepath.Join(dir, tt.name+".key"))

			mat, err := LoadMaterial(filepath.Join(dir, CACertFile), filepath.Join(dir, tt.name+".crt"), filepath.Join(dir, tt.name+".key"))
			require.NoError(t, err)
			require.Equal(t, id, mat.Identity)
		})
	}

	requireOwnerOnly(t, filepath.Join(dir, CAKeyFile))

	ctl := readCert(t, filepath.Join(dir, "controller.crt"))
	require.Equal(t, []string{"controller.chatdr.test"}, ctl.DNSNames)
	require.Len(t, ctl.IPAddresses, 1)
	require.True(t, ctl.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")))
	require.Contains(t, ctl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)

	viewer := readCert(t, filepath.Join(dir, "viewer.crt"))
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, viewer.ExtKeyUsage, "a person's certificate cannot serve")

	loaded, err := LoadCA(dir)
	require.NoError(t, err)
	require.True(t, loaded.Cert.Equal(ca))
}

func TestInitDir_refusesExistingCA(t *testing.T) {
	dir := initDir(t)
	before, err := os.ReadFile(filepath.Join(dir, CACertFile))
	require.NoError(t, err)

	err = InitDir(dir, InitOptions{Validity: time.Hour})
	require.Error(t, err)
	require.Contains(t, err.Error(), "already holds a CA")

	after, err := os.ReadFile(filepath.Join(dir, CACertFile))
	require.NoError(t, err)
	require.Equal(t, before, after, "the existing CA must be left alone")
}

func TestInitDir_refusesNonPositiveValidity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	err := InitDir(dir, InitOptions{})
	require.ErrorContains(t, err, "validity must be positive")
	_, err = os.Stat(filepath.Join(dir, CACertFile))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestIdentityOf(t *testing.T) {
	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    Identity
		wantErr bool
	}{
		{
			name: "viewer",
			cert: &x509.Certificate{Subject: pkix.Name{CommonName: "alice", Organization: []string{"chatdr"}, OrganizationalUnit: []string{"viewer"}}},
			want: Identity{Name: "alice", Role: RoleViewer},
		},
		{
			name: "unknown units are ignored",
			cert: &x509.Certificate{Subject: pkix.Name{CommonName: "pc1", Organization: []string{"chatdr"}, OrganizationalUnit: []string{"ops", "agent"}}},
			want: Identity{Name: "pc1", Role: RoleAgent},
		},
		{name: "nil certificate", cert: nil, wantErr: true},
		{
			name:    "no role",
			cert:    &x509.Certificate{Subject: pkix.Name{CommonName: "bob", Organization: []string{"chatdr"}}},
			wantErr: true,
		},
		{
			name:    "two roles",
			cert:    &x509.Certificate{Subject: pkix.Name{CommonName: "bob", Organization: []string{"chatdr"}, OrganizationalUnit: []string{"viewer", "admin"}}},
			wantErr: true,
		},
		{
			name:    "another organization",
			cert:    &x509.Certificate{Subject: pkix.Name{CommonName: "bob", Organization: []string{"contoso"}, OrganizationalUnit: []string{"admin"}}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IdentityOf(tt.cert)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrNoRole)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.want.Name+" ("+string(tt.want.Role)+")", got.String())
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range AllRoles() {
		got, err := ParseRole(string(r))
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
	_, err := ParseRole("root")
	require.ErrorContains(t, err, `unknown role "root"`)
	require.ErrorContains(t, err, "controller, agent, viewer, operator, approver, admin")
}

func TestLoadMaterial_refusesCertificateOfAnotherCA(t *testing.T) {
	ours, theirs := initDir(t), initDir(t)

	_, err := LoadMaterial(filepath.Join(ours, CACertFile), filepath.Join(theirs, "admin.crt"), filepath.Join(theirs, "admin.key"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "certificate "+filepath.Join(theirs, "admin.crt")+" is not issued by the CA in "+filepath.Join(ours, CACertFile))
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown)
}

func TestLoadMaterial_errors(t *testing.T) {
	dir := initDir(t)
	notPEM := filepath.Join(t.TempDir(), "garbage.crt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))

	tests := []struct {
		name, ca, cert, key, wantErr string
	}{
		{"missing CA", filepath.Join(dir, "nope.crt"), filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"), "read CA certificate"},
		{"CA not PEM", notPEM, filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"), "holds no PEM certificate"},
		{"key of another certificate", filepath.Join(dir, CACertFile), filepath.Join(dir, "admin.crt"), filepath.Join(dir, "viewer.key"), "load certificate " + filepath.Join(dir, "admin.crt")},
		{"CA certificate has no role", filepath.Join(dir, CACertFile), filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), "carries no chatdr role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadMaterial(tt.ca, tt.cert, tt.key)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestCA_Issue_hosts(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	require.NoError(t, err)

	tests := []struct {
		name     string
		hosts    []string
		wantIPs  []net.IP
		wantDNS  []string
		role     Role
		wantAuth []x509.ExtKeyUsage
	}{
		{
			name:     "IPs and names are told apart",
			hosts:    []string{"127.0.0.1", "pc1.dc1.contoso.com", "::1", "", "localhost"},
			wantIPs:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
			wantDNS:  []string{"pc1.dc1.contoso.com", "localhost"},
			role:     RoleAgent,
			wantAuth: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		},
		{
			name:     "no hosts",
			role:     RoleOperator,
			wantAuth: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is, err := ca.Issue(IssueRequest{Role: tt.role, Name: "holder", Hosts: tt.hosts, Validity: time.Hour})
			require.NoError(t, err)
			block, _ := pem.Decode(is.CertPEM)
			require.NotNil(t, block)
			cert, err := x509.ParseCertificate(block.Bytes)
			require.NoError(t, err)

			require.Equal(t, tt.wantDNS, cert.DNSNames)
			require.Len(t, cert.IPAddresses, len(tt.wantIPs))
			for i, ip := range tt.wantIPs {
				require.True(t, ip.Equal(cert.IPAddresses[i]), "IP %d: got %s, want %s", i, cert.IPAddresses[i], ip)
			}
			require.Equal(t, tt.wantAuth, cert.ExtKeyUsage)
			require.NoError(t, cert.CheckSignatureFrom(ca.Cert))
			_, err = tls.X509KeyPair(is.CertPEM, is.KeyPEM)
			require.NoError(t, err, "the key must match the certificate")
		})
	}
}

func TestCA_Issue_refusesBadRequest(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	require.NoError(t, err)
	tests := []struct {
		name    string
		req     IssueRequest
		wantErr string
	}{
		{"empty name", IssueRequest{Role: RoleViewer, Validity: time.Hour}, "certificate name is empty"},
		{"unknown role", IssueRequest{Role: "root", Name: "x", Validity: time.Hour}, `unknown role "root"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.Issue(tt.req)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestMaterial_ClientConfig_serverRole(t *testing.T) {
	dir := initDir(t)
	load := func(name string) *Material {
		m, err := LoadMaterial(filepath.Join(dir, CACertFile), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		require.NoError(t, err)
		return m
	}
	agent, controller := load("agent"), load("controller")

	tests := []struct {
		name    string
		want    Role
		wantErr string
	}{
		{"expected role", RoleAgent, ""},
		{"unexpected role", RoleController, "server certificate \"agent\" has role agent, want controller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer lis.Close()
			srvErr := make(chan error, 1)
			go func() {
				conn, err := lis.Accept()
				if err != nil {
					srvErr <- err
					return
				}
				defer conn.Close()
				srvErr <- tls.Server(conn, agent.ServerConfig()).HandshakeContext(t.Context())
			}()
			raw, err := net.Dial("tcp", lis.Addr().String())
			require.NoError(t, err)
			defer raw.Close()
			cfg := controller.ClientConfig(tt.want)
			cfg.ServerName = "127.0.0.1"
			err = tls.Client(raw, cfg).HandshakeContext(t.Context())
			raw.Close()
			<-srvErr
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestCA_Save_refusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("one", time.Hour)
	require.NoError(t, err)
	require.NoError(t, ca.Save(dir))
	other, err := NewCA("two", time.Hour)
	require.NoError(t, err)
	err = other.Save(dir)
	require.ErrorContains(t, err, "already exists")

	loaded, err := LoadCA(dir)
	require.NoError(t, err)
	require.Equal(t, "one", loaded.Cert.Subject.CommonName)
}
