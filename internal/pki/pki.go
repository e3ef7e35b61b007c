// Package pki creates and loads the certificates of a chatdr deployment and
// builds the mutual-TLS configurations of its parts.
//
// Every certificate is issued by one deployment CA. A certificate's role is
// carried in its subject's OrganizationalUnit (exactly one of the Role
// constants) and its name in the CommonName. Agents admit any certificate of
// the CA but allow Execute only to RoleController; the controller maps a
// client certificate's role to the RPCs it may call.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Role is what a certificate's holder is allowed to be.
type Role string

// The roles a certificate can carry.
const (
	RoleController Role = "controller"
	RoleAgent      Role = "agent"
	RoleViewer     Role = "viewer"
	RoleOperator   Role = "operator"
	RoleApprover   Role = "approver"
	RoleAdmin      Role = "admin"
)

// ClientRoles are the roles a person's certificate can carry, least to most
// powerful.
var ClientRoles = []Role{RoleViewer, RoleOperator, RoleApprover, RoleAdmin}

// AllRoles lists every role.
func AllRoles() []Role {
	return []Role{RoleController, RoleAgent, RoleViewer, RoleOperator, RoleApprover, RoleAdmin}
}

// ParseRole returns the Role named s, or an error listing the valid roles.
func ParseRole(s string) (Role, error) {
	for _, r := range AllRoles() {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, 0, 6)
	for _, r := range AllRoles() {
		names = append(names, string(r))
	}
	return "", fmt.Errorf("unknown role %q (want one of %s)", s, strings.Join(names, ", "))
}

// organization is the subject Organization of every chatdr certificate.
const organization = "chatdr"

// File names inside a TLS directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// ErrNoRole is returned when a peer certificate carries no chatdr role.
var ErrNoRole = errors.New("certificate carries no chatdr role")

// CA is a deployment certificate authority able to issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// PEM is the CA certificate in PEM form.
	PEM []byte
}

// NewCA creates a self-signed CA valid for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{organization}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pemBlock("CERTIFICATE", der)}, nil
}

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	// Role carried by the certificate.
	Role Role
	// Name of the holder (CommonName): a person, a host or a service.
	Name string
	// Hosts are DNS names or IP addresses put in the subject alternative
	// names; needed for certificates that serve (controller, agent).
	Hosts []string
	// Validity of the certificate.
	Validity time.Duration
}

// Issued is a certificate and its key, both PEM encoded.
type Issued struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Issue creates a certificate signed by the CA.
func (ca *CA) Issue(req IssueRequest) (*Issued, error) {
	if req.Name == "" {
		return nil, errors.New("certificate name is empty")
	}
	if _, err := ParseRole(string(req.Role)); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         req.Name,
			Organization:       []string{organization},
			OrganizationalUnit: []string{string(req.Role)},
		},
		NotBefore:   now.Add(-5 * time.Minute),
		NotAfter:    now.Add(req.Validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if req.Role == RoleController || req.Role == RoleAgent {
		// Both serve gRPC; the controller is also the agents' client.
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", req.Name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Issued{CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: pemBlock("PRIVATE KEY", keyDER)}, nil
}

// KeyPEM returns the CA's private key in PEM form.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

// Save writes the CA certificate and key into dir as ca.crt and ca.key (the
// key readable by the owner only). It refuses to overwrite an existing CA.
func (ca *CA) Save(dir string) error {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, CACertFile), ca.PEM, 0o644); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, CAKeyFile), keyPEM, 0o600)
}

// LoadCA reads ca.crt and ca.key from dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w (create one with 'chatdr certs init --dir %s')", err, dir)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key cannot sign")
	}
	return &CA{Cert: cert, Key: signer, PEM: certPEM}, nil
}

// SaveIssued writes name.crt and name.key into dir, refusing to overwrite.
func SaveIssued(dir, name string, is *Issued) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, name+".crt"), is.CertPEM, 0o644); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, name+".key"), is.KeyPEM, 0o600)
}

// writeNew creates path with data, failing if it exists, and syncs it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; remove it or choose another directory", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Identity is who a peer certificate says its holder is.
type Identity struct {
	Name string
	Role Role
}

// String returns "name (role)".
func (id Identity) String() string { return fmt.Sprintf("%s (%s)", id.Name, id.Role) }

// IdentityOf extracts the chatdr identity of a verified peer certificate.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, ErrNoRole
	}
	var roles []Role
	for _, ou := range cert.Subject.OrganizationalUnit {
		if r, err := ParseRole(ou); err == nil {
			roles = append(roles, r)
		}
	}
	if len(roles) != 1 || !slices.Contains(cert.Subject.Organization, organization) {
		return Identity{}, fmt.Errorf("%w: subject %q", ErrNoRole, cert.Subject.String())
	}
	return Identity{Name: cert.Subject.CommonName, Role: roles[0]}, nil
}

// Material is the TLS material of one party: the CA pool that verifies peers
// and the party's own certificate.
type Material struct {
	CAs  *x509.CertPool
	Cert tls.Certificate
	// Identity is the party's own identity, read from its certificate.
	Identity Identity
}

// LoadMaterial reads a CA certificate and a certificate/key pair.
func LoadMaterial(caFile, certFile, keyFile string) (*Material, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s: %w", certFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("certificate %s is not issued by the CA in %s: %w", certFile, caFile, err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	return &Material{CAs: pool, Cert: pair, Identity: id}, nil
}

// ServerConfig returns a TLS configuration for a gRPC server that demands a
// client certificate issued by the CA.
func (m *Material) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{m.Cert},
		ClientCAs:    m.CAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// ClientConfig returns a TLS configuration for dialing a server whose
// certificate must be issued by the CA and carry role want.
func (m *Material) ClientConfig(want Role) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{m.Cert},
		RootCAs:      m.CAs,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			id, err := IdentityOf(cs.PeerCertificates[0])
			if err != nil {
				return err
			}
			if id.Role != want {
				return fmt.Errorf("server certificate %q has role %s, want %s", id.Name, id.Role, want)
			}
			return nil
		},
	}
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// InitOptions describe a new TLS directory.
type InitOptions struct {
	// ControllerHosts are the names and addresses the controller is reached at.
	ControllerHosts []string
	// AgentHosts are the names and addresses agents are reached at; the one
	// agent certificate covers them all. Issue per-host agent certificates
	// with Issue for production.
	AgentHosts []string
	// Validity of every certificate (the CA's too).
	Validity time.Duration
}

// InitDir creates a CA in dir and issues, with the CA, a controller
// certificate, an agent certificate and one client certificate per client
// role, each named after its role (admin.crt, viewer.crt, ...). It refuses a
// directory that already holds a CA.
func InitDir(dir string, opts InitOptions) error {
	if opts.Validity <= 0 {
		return errors.New("validity must be positive")
	}
	if _, err := os.Stat(filepath.Join(dir, CACertFile)); err == nil {
		return fmt.Errorf("%s already holds a CA (%s); use 'chatdr certs issue' to add certificates, or choose an empty directory", dir, CACertFile)
	}
	ca, err := NewCA("chatdr deployment CA", opts.Validity)
	if err != nil {
		return err
	}
	if err := ca.Save(dir); err != nil {
		return err
	}
	reqs := []IssueRequest{
		{Role: RoleController, Name: "controller", Hosts: opts.ControllerHosts},
		{Role: RoleAgent, Name: "agent", Hosts: opts.AgentHosts},
	}
	for _, r := range ClientRoles {
		reqs = append(reqs, IssueRequest{Role: r, Name: string(r)})
	}
	for _, r := range reqs {
		r.Validity = opts.Validity
		is, err := ca.Issue(r)
		if err != nil {
			return err
		}
		if err := SaveIssued(dir, r.Name, is); err != nil {
			return err
		}
	}
	return nil
}
