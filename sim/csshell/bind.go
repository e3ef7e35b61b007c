package csshell

import (
	"fmt"
	"strconv"
	"strings"
)

// paramKind is how a parameter binds its argument.
type paramKind int

const (
	pString       paramKind = iota // one string (a bareword or number converts)
	pSwitch                        // present, or -Name:$true/$false
	pInt                           // an integer
	pStrings                       // one string or a list of strings
	pListModifier                  // PSListModifier: $null, a list, or @{Add=…;Remove=…;Replace=…}
)

func (k paramKind) typeName() string {
	switch k {
	case pSwitch:
		return "System.Management.Automation.SwitchParameter"
	case pInt:
		return "System.Int32"
	case pStrings:
		return "System.String[]"
	case pListModifier:
		return "System.Management.Automation.PSListModifier"
	}
	return "System.String"
}

type paramSpec struct {
	name string
	kind paramKind
	// enum lists the accepted values of an enum parameter (canonical case).
	enum []string
	// position is the positional index, or -1.
	position int
	// notEmulated parameters exist on the real cmdlet but the simulator
	// refuses them rather than ignoring them.
	notEmulated bool
}

// listModifier is a bound PSListModifier.
type listModifier struct {
	clear                bool
	add, remove, replace []string
	hasReplace           bool
}

// bound holds a command's bound parameters by canonical name: string,
// bool (switch), int64, []string or listModifier.
type bound map[string]any

func (b bound) str(name string) (string, bool) {
	v, ok := b[name].(string)
	return v, ok
}

func (b bound) has(name string) bool { _, ok := b[name]; return ok }

func (b bound) flag(name string) bool { v, _ := b[name].(bool); return v }

// cmdletError is a terminating error of a cmdlet, rendered like
// PowerShell's ErrorRecord.
type cmdletError struct {
	cmdlet   string
	msg      string
	category string // e.g. InvalidArgument
	target   string
	id       string // FullyQualifiedErrorId prefix, e.g. IdentityNotFound
	typ      string // exception type
	pos      int
}

func (e *cmdletError) Error() string { return e.msg }

func bindError(cmd Command, pos int, id, format string, a ...any) *cmdletError {
	return &cmdletError{cmdlet: cmd.Name, msg: fmt.Sprintf(format, a...), category: "InvalidArgument",
		id: id, typ: "ParameterBindingException", pos: pos}
}

// bind binds cmd's elements to specs the way PowerShell's parameter binder
// does for the subset: full parameter names (case-insensitive; no
// abbreviations), switches, positional arguments in order.
func bind(cmd Command, specs []paramSpec) (bound, error) {
	out := bound{}
	find := func(name string) *paramSpec {
		for i := range specs {
			if strings.EqualFold(specs[i].name, name) {
				return &specs[i]
			}
		}
		return nil
	}
	nextPos := 0
	els := cmd.Elements
	for i := 0; i < len(els); i++ {
		el := els[i]
		var spec *paramSpec
		var arg *Value
		if el.Param != "" {
			spec = find(el.Param)
			if spec == nil {
				return nil, bindError(cmd, el.Pos, "NamedParameterNotFound", "A parameter cannot be found that matches parameter name '%s'.", el.Param)
			}
			if spec.notEmulated {
				return nil, bindError(cmd, el.Pos, "NotEmulated", "The parameter '%s' of %s is not emulated by the chatdr Management Shell simulator.", spec.name, cmd.Name)
			}
			if _, dup := out[spec.name]; dup {
				return nil, bindError(cmd, el.Pos, "ParameterAlreadyBound", "Cannot bind parameter because parameter '%s' is specified more than once. To provide multiple values to parameters that can accept multiple values, use the array syntax. For example, \"-parameter value1,value2,value3\".", spec.name)
			}
			if spec.kind == pSwitch {
				if !el.Colon {
					out[spec.name] = true
					continue
				}
				if el.Value.Kind != VBool {
					return nil, bindError(cmd, el.Pos, "ParameterArgumentTransformationError", "Cannot process argument transformation on parameter '%s'. Cannot convert value \"%s\" to type \"System.Management.Automation.SwitchParameter\". Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0.", spec.name, el.Value.text())
				}
				out[spec.name] = el.Value.Bool
				continue
			}
			switch {
			case el.Colon:
				arg = el.Value
			case i+1 < len(els) && els[i+1].Param == "":
				i++
				arg = els[i].Value
			default:
				return nil, bindError(cmd, el.Pos, "MissingArgument", "Missing an argument for parameter '%s'. Specify a parameter of type '%s' and try again.", spec.name, spec.kind.typeName())
			}
		} else {
			arg = el.Value
			for j := range specs {
				if specs[j].position == nextPos && !specs[j].notEmulated {
					if _, taken := out[specs[j].name]; !taken {
						spec = &specs[j]
					}
				}
			}
			if spec == nil {
				return nil, bindError(cmd, el.Pos, "PositionalParameterNotFound", "A positional parameter cannot be found that accepts argument '%s'.", arg.text())
			}
			nextPos++
		}
		v, err := convert(cmd, spec, arg)
		if err != nil {
			return nil, err
		}
		out[spec.name] = v
	}
	return out, nil
}

func convert(cmd Command, spec *paramSpec, v *Value) (any, error) {
	switch spec.kind {
	case pString:
		switch v.Kind {
		case VNull:
			return nil, bindError(cmd, v.Pos, "ParameterArgumentValidationErrorNullNotAllowed", "Cannot bind argument to parameter '%s' because it is null.", spec.name)
		case VList, VHash:
			return nil, bindError(cmd, v.Pos, "CannotConvertArgument", "Cannot convert '%s' to the type 'System.String' required by parameter '%s'. Specified method is not supported.", v.text(), spec.name)
		}
		s := v.text()
		if spec.enum != nil {
			for _, e := range spec.enum {
				if strings.EqualFold(e, s) {
					return e, nil
				}
			}
			return nil, bindError(cmd, v.Pos, "CannotConvertArgumentNoMessage", "Cannot bind parameter '%s'. Cannot convert value \"%s\" to type \"%s\". Error: \"Unable to match the identifier name %s to a valid enumerator name. Specify one of the following enumerator names and try again: %s\"", spec.name, s, spec.name, s, strings.Join(spec.enum, ", "))
		}
		return s, nil
	case pInt:
		switch v.Kind {
		case VInt:
			return v.Int, nil
		case VString, VBare:
			if i, err := strconv.ParseInt(strings.TrimSpace(v.Str), 10, 32); err == nil {
				return i, nil
			}
		}
		return nil, bindError(cmd, v.Pos, "ParameterArgumentTransformationError", "Cannot process argument transformation on parameter '%s'. Cannot convert value \"%s\" to type \"System.Int32\".", spec.name, v.text())
	case pStrings:
		return stringsOf(cmd, spec, v)
	case pListModifier:
		switch v.Kind {
		case VNull:
			return listModifier{clear: true}, nil
		case VHash:
			m := listModifier{}
			for _, e := range v.Hash {
				items, err := stringsOf(cmd, spec, &e.Value)
				if err != nil {
					return nil, err
				}
				switch strings.ToLower(e.Key) {
				case "add":
					m.add = append(m.add, items...)
				case "remove":
					m.remove = append(m.remove, items...)
				case "replace":
					m.replace = append(m.replace, items...)
					m.hasReplace = true
				default:
					return nil, bindError(cmd, v.Pos, "ParameterArgumentTransformationError", "Cannot process argument transformation on parameter '%s'. The hash table key '%s' is not valid for a list modifier; use Add, Remove or Replace.", spec.name, e.Key)
				}
			}
			return m, nil
		default:
			items, err := stringsOf(cmd, spec, v)
			if err != nil {
				return nil, err
			}
			return listModifier{replace: items, hasReplace: true}, nil
		}
	}
	return nil, fmt.Errorf("parameter %s: kind %d", spec.name, spec.kind)
}

func stringsOf(cmd Command, spec *paramSpec, v *Value) ([]string, error) {
	switch v.Kind {
	case VNull:
		return nil, bindError(cmd, v.Pos, "ParameterArgumentValidationErrorNullNotAllowed", "Cannot bind argument to parameter '%s' because it is null.", spec.name)
	case VHash:
		return nil, bindError(cmd, v.Pos, "CannotConvertArgument", "Cannot convert 'System.Collections.Hashtable' to the type 'System.String[]' required by parameter '%s'.", spec.name)
	case VList:
		out := make([]string, 0, len(v.List))
		for _, it := range v.List {
			if it.Kind == VNull || it.Kind == VHash {
				return nil, bindError(cmd, it.Pos, "CannotConvertArgument", "Cannot convert '%s' to the type 'System.String' required by parameter '%s'.", it.text(), spec.name)
			}
			out = append(out, it.text())
		}
		return out, nil
	}
	return []string{v.text()}, nil
}
