// Package cfgfile reads the YAML configuration files of chatdr's daemons:
// strictly (an unknown field is an error naming its line), with relative
// paths resolved against the file's own directory.
package cfgfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// Load decodes the YAML file at path into v, refusing unknown fields and
// trailing documents. Errors name the file.
func Load(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: the file is empty", path)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fmt.Errorf("%s: more than one YAML document; a config file holds one", path)
	}
	return nil
}

// Resolve returns p made absolute against the directory of the config file
// at cfgPath; an empty p stays empty.
func Resolve(cfgPath, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(cfgPath), p)
}

// Duration is a time.Duration written in YAML as a Go duration string ("2s").
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (examples: 500ms, 2s, 1m)", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// TLS names the TLS files of a daemon.
type TLS struct {
	// CA is the deployment CA certificate (PEM).
	CA string `yaml:"ca"`
	// Cert and Key are the daemon's own certificate and key (PEM).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Resolve makes the paths absolute against the config file at cfgPath and
// reports a missing one.
func (t *TLS) Resolve(cfgPath string) error {
	if t.CA == "" || t.Cert == "" || t.Key == "" {
		return fmt.Errorf("%s: tls.ca, tls.cert and tls.key are required (create them with 'chatdr certs init')", cfgPath)
	}
	t.CA, t.Cert, t.Key = Resolve(cfgPath, t.CA), Resolve(cfgPath, t.Cert), Resolve(cfgPath, t.Key)
	return nil
}
