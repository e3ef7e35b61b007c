package mssql

import (
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/chatdr/chatdr/pluginsdk"
)

// identRe is a SQL Server regular identifier, the only database names the
// plugin accepts (Persistent Chat uses mgc and mgccomp).
var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_@$#]{0,127}$`)

// instanceRe is a named-instance name.
var instanceRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,15}$`)

// checkDatabase validates a database name and returns it bracket-quoted.
func checkDatabase(name string) (string, error) {
	if !identRe.MatchString(name) {
		return "", pluginsdk.Terminal("bad_param", "database name %q is not a valid SQL Server identifier (letters, digits, _ @ $ #; starting with a letter or _; at most 128)", name)
	}
	switch strings.ToLower(name) {
	case "master", "model", "msdb", "tempdb":
		return "", pluginsdk.Terminal("bad_param", "database %q is a system database; chatdr acts only on Persistent Chat databases", name)
	}
	return quoteIdent(name), nil
}

// quoteIdent bracket-quotes an identifier (] doubled), as QUOTENAME does.
func quoteIdent(name string) string {
	return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
}

func checkInstanceName(name string) error {
	if !instanceRe.MatchString(name) || strings.EqualFold(name, "default") {
		return fmt.Errorf("instance name %q is not a valid SQL Server instance name", name)
	}
	return nil
}

// confine checks that path is absolute and lies under one of roots, after
// cleaning (so "..", doubled separators and the like cannot escape), and
// returns the cleaned path.
func confine(roots []string, path string) (string, error) {
	if path == "" {
		return "", pluginsdk.Terminal("bad_param", "path is empty")
	}
	if strings.ContainsAny(path, "\x00\r\n") {
		return "", pluginsdk.Terminal("bad_param", "path %q contains control characters", path)
	}
	if !filepath.IsAbs(path) {
		return "", pluginsdk.Terminal("bad_param", "path %q is not absolute", path)
	}
	clean := filepath.Clean(path)
	for _, r := range roots {
		if within(r, clean) {
			return clean, nil
		}
	}
	return "", pluginsdk.Terminal("path_not_allowed", "path %s is outside the directories this agent may use (%s)", clean, strings.Join(roots, ", ")).
		WithHint("add its directory to plugin_config.mssql.roots in agent.yaml if it is legitimate")
}

// within reports whether p is root or below it.
func within(root, p string) bool {
	if runtime.GOOS == "windows" {
		root, p = strings.ToLower(root), strings.ToLower(p)
	}
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}
