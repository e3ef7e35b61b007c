package csshell

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf16"
)

// Environment variables the simulator reads.
const (
	// EnvCMSFile is the path of the CMS file (flag --cms overrides it).
	EnvCMSFile = "CHATDR_CMS_FILE"
	// EnvServer is the FQDN of the chat server the shell "runs on": whose
	// local store -LocalStore reads and whose services Get-CsWindowsService
	// lists (flag --server overrides it).
	EnvServer = "CHATDR_CS_SERVER"
	// EnvTrace, when set, is a file to which every invocation appends one
	// JSON line: the script, the cmdlet, its bound parameters and the exit
	// code (for tests and for debugging the lab).
	EnvTrace = "CHATDR_CS_TRACE"
)

// Options configure one simulated shell invocation.
type Options struct {
	// CMSFile is the CMS file.
	CMSFile string
	// Server is the chat server the shell runs on ("" = none).
	Server string
	// TraceFile, if set, receives one JSON line per invocation.
	TraceFile string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Main is `chatdr-sim csshell ARGS…`: it accepts the command line of
// powershell.exe as the csshell plugin sends it,
//
//	[--cms FILE] [--server FQDN] -NoProfile -NonInteractive -Command SCRIPT
//	[--cms FILE] [--server FQDN] -NoProfile -NonInteractive -EncodedCommand BASE64(UTF-16LE)
//
// runs SCRIPT against the CMS file and returns the process exit code: 0, or
// 1 after a parse error or a cmdlet error (printed on stderr like
// PowerShell's error records).
func Main(args []string, stdout, stderr io.Writer) int {
	opts := Options{CMSFile: os.Getenv(EnvCMSFile), Server: os.Getenv(EnvServer), TraceFile: os.Getenv(EnvTrace)}
	script, err := parseArgs(args, &opts)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, script, opts, stdout, stderr)
}

// parseArgs reads powershell.exe's options (case-insensitive) and the
// simulator's own --cms and --server, and returns the script.
func parseArgs(args []string, opts *Options) (string, error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		needValue := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("Missing argument for parameter %s.", a)
			}
			i++
			return args[i], nil
		}
		switch strings.ToLower(name) {
		case "--cms":
			v, err := needValue()
			if err != nil {
				return "", err
			}
			opts.CMSFile = v
			continue
		case "--server":
			v, err := needValue()
			if err != nil {
				return "", err
			}
			opts.Server = v
			continue
		case "--trace":
			v, err := needValue()
			if err != nil {
				return "", err
			}
			opts.TraceFile = v
			continue
		}
		switch strings.ToLower(a) {
		case "-noprofile", "-nop", "-noninteractive", "-noni", "-nologo", "-nol":
		case "-executionpolicy", "-ep", "-ex", "-inputformat", "-outputformat":
			if i+1 >= len(args) {
				return "", fmt.Errorf("Missing argument for parameter %s.", a)
			}
			if low := strings.ToLower(a); (low == "-inputformat" || low == "-outputformat") && !strings.EqualFold(args[i+1], "Text") {
				return "", fmt.Errorf("%s %s is not emulated by the chatdr Management Shell simulator (only Text)", a, args[i+1])
			}
			i++
		case "-command", "-c":
			rest := args[i+1:]
			if len(rest) == 0 {
				return "", errors.New("Missing argument for parameter -Command.")
			}
			script := strings.Join(rest, " ")
			if script == "-" {
				return "", errors.New("-Command - (reading the script from standard input) is not emulated by the chatdr Management Shell simulator")
			}
			return script, nil
		case "-encodedcommand", "-enc", "-e", "-ec":
			if i+1 >= len(args) {
				return "", errors.New("Missing argument for parameter -EncodedCommand.")
			}
			if i+2 != len(args) {
				return "", fmt.Errorf("unexpected arguments after -EncodedCommand: %q", args[i+2:])
			}
			return decodeCommand(args[i+1])
		default:
			return "", fmt.Errorf("The argument '%s' is not recognized by the chatdr Management Shell simulator (it accepts -NoProfile, -NonInteractive, -NoLogo, -ExecutionPolicy X, then -Command SCRIPT or -EncodedCommand BASE64; and --cms FILE, --server FQDN, --trace FILE).", a)
		}
	}
	return "", errors.New("no -Command or -EncodedCommand: the chatdr Management Shell simulator has no interactive mode")
}

// decodeCommand decodes -EncodedCommand: base64 of UTF-16LE text.
func decodeCommand(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%2 != 0 {
		return "", errors.New("Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.")
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), nil
}

// EncodeCommand encodes script for -EncodedCommand (base64 of UTF-16LE).
func EncodeCommand(script string) string {
	u := utf16.Encode([]rune(script))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// shell is one invocation.
type shell struct {
	opts   Options
	script string
	stdout io.Writer
	trace  traceRecord
	// enumNames is the CMS's json_enums == "names", learnt when a cmdlet
	// reads the CMS.
	enumNames bool
}

type traceRecord struct {
	Time   time.Time      `json:"time"`
	PID    int            `json:"pid"`
	Server string         `json:"server,omitempty"`
	Script string         `json:"script"`
	Cmdlet string         `json:"cmdlet,omitempty"`
	Params map[string]any `json:"params,omitempty"`
	Exit   int            `json:"exit"`
	Error  string         `json:"error,omitempty"`
}

// Run runs one script with opts, writing what powershell.exe would write
// to stdout and stderr, and returns the exit code (0 or 1).
func Run(ctx context.Context, script string, opts Options, stdout, stderr io.Writer) int {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sh := &shell{opts: opts, script: script, stdout: stdout}
	sh.trace = traceRecord{Time: opts.Now().UTC(), PID: os.Getpid(), Server: opts.Server, Script: script}
	err := sh.run(ctx)
	if err != nil {
		sh.trace.Exit = 1
		var pe *ParseError
		var ce *cmdletError
		switch {
		case errors.As(err, &pe):
			sh.trace.Error = pe.ID
			io.WriteString(stderr, pe.Error())
		case errors.As(err, &ce):
			sh.trace.Error = ce.id
			io.WriteString(stderr, formatError(script, ce))
		default:
			sh.trace.Error = "Internal"
			fmt.Fprintf(stderr, "%v\n", err)
		}
	}
	if opts.TraceFile != "" {
		if b, err := json.Marshal(sh.trace); err == nil {
			if f, err := os.OpenFile(opts.TraceFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
				f.Write(append(b, '\n'))
				f.Close()
			}
		}
	}
	return sh.trace.Exit
}

// plan is a checked script: module imports, then at most one cmdlet
// pipeline, optionally ending in ConvertTo-Json.
type plan struct {
	modules []string
	cmdlet  *cmdletDef
	cmd     Command
	params  bound
	json    *jsonOptions
}

func (sh *shell) run(ctx context.Context) error {
	parsed, err := ParseScript(sh.script)
	if err != nil {
		return err
	}
	pl, err := sh.plan(parsed)
	if err != nil {
		return err
	}
	for _, m := range pl.modules {
		if !strings.EqualFold(m, "SkypeForBusiness") && !strings.EqualFold(m, "Lync") {
			return &cmdletError{cmdlet: "Import-Module", id: "Modules_ModuleNotFound", category: "ResourceUnavailable",
				target: m, typ: "FileNotFoundException",
				msg: fmt.Sprintf("The specified module '%s' was not loaded because no valid module file was found in any module directory.", m)}
		}
	}
	if pl.cmdlet == nil {
		return nil
	}
	sh.trace.Cmdlet = pl.cmdlet.name
	sh.trace.Params = traceParams(pl.params)
	objs, cerr := pl.cmdlet.run(ctx, sh, pl.cmd, pl.params)
	if cerr != nil {
		if cerr.cmdlet == "" {
			cerr.cmdlet = pl.cmdlet.name
		}
		if cerr.pos == 0 {
			cerr.pos = pl.cmd.Pos
		}
		return cerr
	}
	if pl.json == nil {
		return writeList(sh.stdout, objs)
	}
	o := *pl.json
	o.enumsAsNumber = !sh.enumNames
	return writeJSON(sh.stdout, objs, o)
}

func traceParams(b bound) map[string]any {
	out := map[string]any{}
	for k, v := range b {
		if m, ok := v.(listModifier); ok {
			lm := map[string]any{}
			if m.clear {
				lm["Clear"] = true
			}
			if m.add != nil {
				lm["Add"] = m.add
			}
			if m.remove != nil {
				lm["Remove"] = m.remove
			}
			if m.hasReplace {
				lm["Replace"] = m.replace
			}
			out[k] = lm
			continue
		}
		out[k] = v
	}
	return out
}

func notEmulated(pos int, format string, a ...any) *cmdletError {
	return &cmdletError{msg: fmt.Sprintf(format, a...) + " (chatdr Management Shell simulator)", id: "NotEmulated",
		category: "NotImplemented", typ: "NotSupportedException", pos: pos}
}

// plan checks the structure of the whole script and binds every command's
// parameters before anything runs, so that a bad script changes nothing.
func (sh *shell) plan(s *Script) (*plan, error) {
	pl := &plan{}
	for _, st := range s.Statements {
		if a := st.Assign; a != nil {
			if !strings.EqualFold(a.Var, "ErrorActionPreference") {
				return nil, notEmulated(st.Pos, "Assigning $%s is not emulated; only $ErrorActionPreference = 'Stop' is.", a.Var)
			}
			if (a.Value.Kind != VString && a.Value.Kind != VBare) || !strings.EqualFold(a.Value.Str, "Stop") {
				return nil, notEmulated(st.Pos, "$ErrorActionPreference = '%s' is not emulated; the simulator always stops at the first error ('Stop').", a.Value.text())
			}
			continue
		}
		first := st.Pipeline[0]
		if strings.EqualFold(first.Name, "Import-Module") {
			if len(st.Pipeline) > 1 {
				return nil, notEmulated(st.Pipeline[1].Pos, "Piping Import-Module into another command is not emulated.")
			}
			b, err := bind(first, []paramSpec{{name: "Name", kind: pStrings, position: 0}})
			if err != nil {
				return nil, err
			}
			names, ok := b["Name"].([]string)
			if !ok {
				return nil, bindError(first, first.Pos, "MissingMandatoryParameter", "Cannot process command because of one or more missing mandatory parameters: Name.")
			}
			pl.modules = append(pl.modules, names...)
			continue
		}
		def := lookupCmdlet(first.Name)
		if def == nil {
			return nil, &cmdletError{cmdlet: first.Name, target: first.Name, id: "CommandNotFoundException", category: "ObjectNotFound",
				typ: "CommandNotFoundException", pos: first.Pos,
				msg: fmt.Sprintf("The term '%s' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.", first.Name)}
		}
		if pl.cmdlet != nil {
			return nil, notEmulated(st.Pos, "A second cmdlet pipeline in one script is not emulated; send one cmdlet per script.")
		}
		b, err := bind(first, def.params)
		if err != nil {
			return nil, err
		}
		pl.cmdlet, pl.cmd, pl.params = def, first, b
		for i, c := range st.Pipeline[1:] {
			if !strings.EqualFold(c.Name, "ConvertTo-Json") {
				if lookupCmdlet(c.Name) == nil && !knownPSCommand(c.Name) {
					return nil, &cmdletError{cmdlet: c.Name, target: c.Name, id: "CommandNotFoundException", category: "ObjectNotFound",
						typ: "CommandNotFoundException", pos: c.Pos,
						msg: fmt.Sprintf("The term '%s' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.", c.Name)}
				}
				return nil, notEmulated(c.Pos, "Piping into %s is not emulated; only a final ConvertTo-Json is.", c.Name)
			}
			if i != len(st.Pipeline)-2 {
				return nil, notEmulated(c.Pos, "ConvertTo-Json must be the last command of the pipeline.")
			}
			jb, err := bind(c, []paramSpec{
				{name: "Depth", kind: pInt, position: -1},
				{name: "Compress", kind: pSwitch, position: -1},
				{name: "InputObject", kind: pString, position: 0, notEmulated: true},
			})
			if err != nil {
				return nil, err
			}
			o := &jsonOptions{depth: 2}
			if d, ok := jb["Depth"].(int64); ok {
				if d < 1 || d > 100 {
					return nil, bindError(c, c.Pos, "ParameterArgumentValidationError", "Cannot validate argument on parameter 'Depth'. The %d argument is outside the range 1 to 100.", d)
				}
				o.depth = int(d)
			}
			o.compress = jb.flag("Compress")
			pl.json = o
		}
	}
	return pl, nil
}

// knownPSCommand lists common commands that exist in PowerShell but that the
// simulator refuses in a pipeline (so the error says "not emulated" rather
// than "not recognized").
func knownPSCommand(name string) bool {
	switch strings.ToLower(name) {
	case "select-object", "where-object", "foreach-object", "sort-object", "out-string", "out-null",
		"format-list", "format-table", "convertto-csv", "out-file", "tee-object", "measure-object":
		return true
	}
	return false
}
