package csshell

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// psObject is a PowerShell object with ordered properties, as ConvertTo-Json
// and Format-List print them.
type psObject []prop

type prop struct {
	name  string
	value any // string, int64, float64, bool, nil, []string, psEnum, psTimeSpan, psObject
}

// psEnum is a .NET enum value. Windows PowerShell 5.1's ConvertTo-Json
// writes enums as their numeric value; Format-List shows the name.
type psEnum struct {
	name  string
	value int
}

// Enum tables. ServiceControllerStatus is .NET's; the numeric values of the
// Lync/SfB enums are UNVERIFIED (see README.md).
var (
	poolStateEnum = map[PoolState]int{Normal: 0, FailedOver: 1}
	resultEnum    = map[string]int{"Success": 0, "Failure": 1}
	serviceEnum   = map[string]int{ServiceStopped: 1, "StartPending": 2, "StopPending": 3, ServiceRunning: 4}
)

func poolStateValue(s PoolState) psEnum { return psEnum{name: string(s), value: poolStateEnum[s]} }

// psTimeSpan is a System.TimeSpan; ConvertTo-Json writes all its properties.
type psTimeSpan time.Duration

func (d psTimeSpan) object() psObject {
	t := time.Duration(d)
	ticks := int64(t / 100)
	return psObject{
		{"Ticks", ticks},
		{"Days", int64(t / (24 * time.Hour))},
		{"Hours", int64(t/time.Hour) % 24},
		{"Milliseconds", int64(t/time.Millisecond) % 1000},
		{"Minutes", int64(t/time.Minute) % 60},
		{"Seconds", int64(t/time.Second) % 60},
		{"TotalDays", t.Hours() / 24},
		{"TotalHours", t.Hours()},
		{"TotalMilliseconds", float64(ticks) / 1e4},
		{"TotalMinutes", t.Minutes()},
		{"TotalSeconds", t.Seconds()},
	}
}

func (d psTimeSpan) String() string {
	t := time.Duration(d)
	return fmt.Sprintf("%02d:%02d:%02d.%07d", int64(t/time.Hour), int64(t/time.Minute)%60, int64(t/time.Second)%60, int64(t%time.Second)/100)
}

// jsonOptions are ConvertTo-Json's parameters and the enum style.
type jsonOptions struct {
	depth         int
	compress      bool
	enumsAsNumber bool
}

// writeJSON prints objs the way `… | ConvertTo-Json` does: nothing for no
// object, the object for one, an array for several.
func writeJSON(w io.Writer, objs []psObject, o jsonOptions) error {
	if len(objs) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if len(objs) == 1 {
		encodeValue(&buf, objs[0], o, 0)
	} else {
		buf.WriteByte('[')
		for i, obj := range objs {
			if i > 0 {
				buf.WriteByte(',')
			}
			encodeValue(&buf, obj, o, 0)
		}
		buf.WriteByte(']')
	}
	out := buf.Bytes()
	if !o.compress {
		var ind bytes.Buffer
		if err := json.Indent(&ind, out, "", "    "); err != nil {
			return err
		}
		out = widenColons(ind.Bytes())
	}
	_, err := w.Write(append(out, '\r', '\n'))
	return err
}

// encodeValue writes v as JSON. Objects deeper than o.depth are written as
// their string form, as ConvertTo-Json does.
func encodeValue(b *bytes.Buffer, v any, o jsonOptions, level int) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		s, _ := json.Marshal(x)
		b.Write(s)
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case int:
		b.WriteString(strconv.Itoa(x))
	case float64:
		s, _ := json.Marshal(x)
		b.Write(s)
	case []string:
		b.WriteByte('[')
		for i, s := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeValue(b, s, o, level+1)
		}
		b.WriteByte(']')
	case psEnum:
		if o.enumsAsNumber {
			b.WriteString(strconv.Itoa(x.value))
		} else {
			encodeValue(b, x.name, o, level)
		}
	case psTimeSpan:
		if level >= o.depth {
			encodeValue(b, x.String(), o, level)
			return
		}
		encodeValue(b, x.object(), o, level)
	case psObject:
		if level > o.depth {
			encodeValue(b, "System.Management.Automation.PSCustomObject", o, level)
			return
		}
		b.WriteByte('{')
		for i, p := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeValue(b, p.name, o, level)
			b.WriteByte(':')
			encodeValue(b, p.value, o, level+1)
		}
		b.WriteByte('}')
	default:
		encodeValue(b, fmt.Sprint(x), o, level)
	}
}

// widenColons writes `":  ` after each key, as Windows PowerShell 5.1's
// indented ConvertTo-Json does (two spaces).
func widenColons(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/8)
	inString, escaped := false, false
	for i, c := range b {
		out = append(out, c)
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && c == ':' && i+1 < len(b) && b[i+1] == ' ':
			out = append(out, ' ')
		}
	}
	return out
}

// writeList prints objs the way Format-List (the default view of these
// objects) does.
func writeList(w io.Writer, objs []psObject) error {
	var b strings.Builder
	for _, obj := range objs {
		width := 0
		for _, p := range obj {
			width = max(width, len(p.name))
		}
		b.WriteString("\r\n")
		for _, p := range obj {
			fmt.Fprintf(&b, "%-*s : %s\r\n", width, p.name, listText(p.value))
		}
	}
	if len(objs) > 0 {
		b.WriteString("\r\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func listText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []string:
		return "{" + strings.Join(x, ", ") + "}"
	case psEnum:
		return x.name
	case psTimeSpan:
		return x.String()
	case psObject:
		return "System.Management.Automation.PSCustomObject"
	}
	return fmt.Sprint(v)
}

// formatError renders a cmdlet error the way powershell.exe prints an
// ErrorRecord on stderr.
func formatError(script string, e *cmdletError) string {
	line, col, text := position(script, e.pos)
	var b strings.Builder
	if e.cmdlet != "" {
		fmt.Fprintf(&b, "%s : %s\n", e.cmdlet, e.msg)
	} else {
		b.WriteString(e.msg + "\n")
	}
	fmt.Fprintf(&b, "At line:%d char:%d\n", line, col)
	fmt.Fprintf(&b, "+ %s\n", text)
	fmt.Fprintf(&b, "+ %s%s\n", strings.Repeat(" ", max(col-1, 0)), strings.Repeat("~", max(len(e.cmdlet), 1)))
	category := e.category
	if category == "" {
		category = "NotSpecified"
	}
	typ := e.typ
	if typ == "" {
		typ = "CmdletInvocationException"
	}
	fmt.Fprintf(&b, "    + CategoryInfo          : %s: (%s:String) [%s], %s\n", category, e.target, e.cmdlet, typ)
	id := e.id
	if e.cmdlet != "" {
		id += ",Chatdr.Simulator." + strings.ReplaceAll(e.cmdlet, "-", "") + "Cmdlet"
	}
	fmt.Fprintf(&b, "    + FullyQualifiedErrorId : %s\n", id)
	return b.String()
}
