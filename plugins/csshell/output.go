package csshell

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrBadOutput is wrapped by errors about output that is not what
// ConvertTo-Json prints.
var ErrBadOutput = errors.New("unexpected Management Shell output")

// parseOutput extracts the value `… | ConvertTo-Json -Compress` printed.
// It handles the quirks of Windows PowerShell: a UTF-8 BOM, CRLF, no output
// at all when the cmdlet wrote no object (nil), one object or an array of
// several, the {"value":[…],"Count":n} wrapping of arrays, "\/Date(ms)\/"
// dates (returned as RFC 3339 UTC strings), and lines the host printed
// around the JSON (returned in other). Numbers become float64, as in
// pluginsdk.Output.
func parseOutput(stdout []byte) (value any, other []string, err error) {
	text := strings.ToValidUTF8(string(stdout), "\uFFFD")
	text = strings.TrimPrefix(text, "\uFEFF")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	if strings.TrimSpace(text) == "" {
		return nil, nil, nil
	}
	if v, ok := decodeJSON(strings.TrimSpace(text)); ok {
		return normalize(v), nil, nil
	}
	// -Compress prints one line; anything else the host wrote (progress,
	// warnings sent to the host) is around it. Take the last line that is
	// a whole JSON document.
	lines := strings.Split(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if line == "" || !strings.ContainsAny(line[:1], `{["`) {
			continue
		}
		if v, ok := decodeJSON(line); ok {
			for j, l := range lines {
				if j != i && strings.TrimSpace(l) != "" {
					other = append(other, strings.TrimRight(l, " \t"))
				}
			}
			return normalize(v), other, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: no JSON document in %q", ErrBadOutput, clip(text, 300))
}

// decodeJSON decodes s if it is exactly one JSON document.
func decodeJSON(s string) (any, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return v, true
}

var dateRE = regexp.MustCompile(`^/Date\((-?\d{1,16})([+-]\d{4})?\)/$`)

// normalize converts json.Number to float64, PowerShell dates to RFC 3339
// and unwraps {"value":[…],"Count":n}.
func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return string(x)
		}
		return f
	case string:
		if m := dateRE.FindStringSubmatch(x); m != nil {
			ms, err := strconv.ParseInt(m[1], 10, 64)
			if err == nil {
				return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
			}
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		if len(x) == 2 {
			if list, ok := x["value"].([]any); ok {
				if _, ok := x["Count"].(json.Number); ok {
					return normalize(list)
				}
			}
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	}
	return v
}

// objects returns the objects of a parsed output: none for nil, one for an
// object, the elements of an array (which must be objects).
func objects(v any) ([]map[string]any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return []map[string]any{x}, nil
	case []any:
		out := make([]map[string]any, 0, len(x))
		for _, e := range x {
			if e == nil {
				continue
			}
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: an array element is %T, not an object", ErrBadOutput, e)
			}
			out = append(out, m)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: got %T, not an object", ErrBadOutput, v)
}

// property returns obj[name], matching the name case-insensitively as
// PowerShell does.
func property(obj map[string]any, name string) (any, bool) {
	if v, ok := obj[name]; ok {
		return v, true
	}
	for k, v := range obj {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// enumName reads enum property name of obj: a string (checked against
// table case-insensitively and returned in table's spelling) or a number
// (Windows PowerShell 5.1) mapped through table.
func enumName(obj map[string]any, name string, table []string) (string, error) {
	v, ok := property(obj, name)
	if !ok {
		return "", fmt.Errorf("%w: no %s property in %v", ErrBadOutput, name, obj)
	}
	switch x := v.(type) {
	case string:
		for _, t := range table {
			if t != "" && strings.EqualFold(t, x) {
				return t, nil
			}
		}
		return "", fmt.Errorf("%w: %s %q is not one of %v", ErrBadOutput, name, x, table)
	case float64:
		i := int(x)
		if float64(i) == x && i >= 0 && i < len(table) && table[i] != "" {
			return table[i], nil
		}
		return "", fmt.Errorf("%w: %s = %v has no name in plugin_config.csshell.enums.%s %v (the numeric values are UNVERIFIED; fix the table)", ErrBadOutput, name, x, name, table)
	}
	return "", fmt.Errorf("%w: %s is %T", ErrBadOutput, name, v)
}

// text returns a string property of obj ("" when absent or null). An
// object (e.g. an XdsIdentity serialized with its fields) is reduced to
// its first string among a few well-known fields.
func text(obj map[string]any, name string) string {
	v, _ := property(obj, name)
	return textOf(v)
}

func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case map[string]any:
		for _, k := range []string{"Value", "Fqdn", "Name", "InstanceId", "ServiceId", "Identity"} {
			if s, ok := property(x, k); ok {
				if str := textOf(s); str != "" {
					return str
				}
			}
		}
	}
	return ""
}

// textList returns a list property of obj as strings (one string makes a
// list of one; objects are reduced with textOf).
func textList(obj map[string]any, name string) []string {
	v, _ := property(obj, name)
	switch x := v.(type) {
	case nil:
		return []string{}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s := textOf(e); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	if s := textOf(v); s != "" {
		return []string{s}
	}
	return []string{}
}

// durationMS reads a TimeSpan: an object with TotalMilliseconds (what
// ConvertTo-Json writes) or a "[d.]hh:mm:ss[.fffffff]" string.
func durationMS(obj map[string]any, name string) (float64, bool) {
	v, ok := property(obj, name)
	if !ok {
		return 0, false
	}
	if m, ok := v.(map[string]any); ok {
		if f, ok := m["TotalMilliseconds"].(float64); ok {
			return f, true
		}
		return 0, false
	}
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	var days, h, mnt int
	var sec float64
	if strings.Count(s, ":") != 2 {
		return 0, false
	}
	if i := strings.IndexByte(s, '.'); i >= 0 && i < strings.IndexByte(s, ':') {
		d, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, false
		}
		days, s = d, s[i+1:]
	}
	parts := strings.Split(s, ":")
	var err error
	if h, err = strconv.Atoi(parts[0]); err != nil {
		return 0, false
	}
	if mnt, err = strconv.Atoi(parts[1]); err != nil {
		return 0, false
	}
	if sec, err = strconv.ParseFloat(parts[2], 64); err != nil {
		return 0, false
	}
	return float64(days)*864e5 + float64(h)*36e5 + float64(mnt)*6e4 + sec*1e3, true
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// toAny converts []string for pluginsdk.Output.
func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
