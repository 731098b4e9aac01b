package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Verdicts.
const (
	Allow = "allow"
	Block = "block"
)

// Rules named in verdicts. Every block names one; see the package
// documentation for what each means.
const (
	RuleAllowed         = "tool.allowed"
	RuleBadName         = "tool.bad_name"
	RuleDenied          = "tool.denied"
	RuleUnknown         = "tool.unknown"
	RulePolicyRequired  = "policy.required"
	RuleArgsTooLarge    = "args.too_large"
	RuleArgsInvalidJSON = "args.invalid_json"
	RuleArgsEncoding    = "args.encoding"
	RuleArgsNotObject   = "args.not_object"
	RuleDuplicateKey    = "args.duplicate_key"
	RuleKeyCase         = "args.key_case"
	RuleArgsSchema      = "args.schema"
	RuleUndeclared      = "args.undeclared"
	RuleArgType         = "args.type"
	RuleTooComplex      = "args.too_complex"
	RuleMaxCalls        = "limit.max_calls"
	RuleMaxRounds       = "limit.max_rounds"
	RuleBadInput        = "input.bad_json"
)

// Call is one tool call as the model produced it.
type Call struct {
	Name string `json:"name"`
	// Arguments is the raw JSON object the model produced (OpenAI's
	// function.arguments string). Empty means {}.
	Arguments string `json:"arguments"`
}

// Verdict is the firewall's decision on one call.
type Verdict struct {
	// Verdict is Allow or Block.
	Verdict string `json:"verdict"`
	// Rule names the rule that decided ("tool.allowed" when allowed).
	Rule string `json:"rule"`
	// Reason explains a block for logs and for the model.
	Reason string `json:"reason,omitempty"`
	// Arguments, when allowed, are the canonical arguments: the exact
	// bytes the firewall checked, which are what the tool must receive
	// (compact JSON, keys in their original order, numbers as written).
	Arguments string `json:"-"`
}

// Allowed reports whether the verdict allows the call.
func (v Verdict) Allowed() bool { return v.Verdict == Allow }

// String renders a verdict for logs: "block shell.program: reason".
func (v Verdict) String() string {
	if v.Reason == "" {
		return fmt.Sprintf("%s %s", v.Verdict, v.Rule)
	}
	return fmt.Sprintf("%s %s: %s", v.Verdict, v.Rule, v.Reason)
}

func block(rule, format string, a ...any) Verdict {
	return Verdict{Verdict: Block, Rule: rule, Reason: fmt.Sprintf(format, a...)}
}

// finding is a rule that refused a call, with the reason.
type finding struct {
	rule   string
	reason string
}

func (f *finding) verdict() Verdict { return Verdict{Verdict: Block, Rule: f.rule, Reason: f.reason} }

// Firewall decides whether tool calls may run. It is immutable after New
// and safe for concurrent use.
type Firewall struct {
	cfg         Config
	allow       map[string]bool // skeletons
	deny        map[string]bool // skeletons
	defaultDeny bool            // deny is DefaultDeny: it spares declared tools
	denyTokens  [][]string
	tools       map[string]*tool              // declared tools by NormalizeName
	schemas     map[string]*jsonschema.Schema // published schemas by NormalizeName (nil: none)
	names       map[string]toolName           // precomputed for known names
}

// tool is a declared tool, compiled.
type tool struct {
	name   string
	schema *jsonschema.Schema // pinned schema, or nil
	args   map[string]*argPolicy
	order  []string // argument names, sorted
}

// New builds a firewall from cfg and the schemas the tools publish
// (schemas maps tool names to their parameters' JSON Schema; nil or empty:
// no schema for that tool). An invalid configuration, policy or schema is
// an error wrapping ErrInvalidConfig or ErrSchema.
func New(cfg Config, schemas map[string]json.RawMessage) (*Firewall, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f := &Firewall{
		cfg:     cfg,
		allow:   map[string]bool{},
		deny:    map[string]bool{},
		tools:   map[string]*tool{},
		schemas: map[string]*jsonschema.Schema{},
	}
	deny := cfg.Deny
	if deny == nil {
		deny, f.defaultDeny = DefaultDeny(), true
	}
	for _, n := range cfg.Allow {
		f.allow[skeleton(n)] = true
	}
	for _, n := range deny {
		f.deny[skeleton(n)] = true
		if toks := nameTokens(n); len(toks) > 1 || execWords[skeleton(n)] {
			f.denyTokens = append(f.denyTokens, toks)
		}
	}
	var errs []error
	for _, name := range sortedKeys(cfg.Tools) {
		t, err := compileTool(name, cfg.Tools[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.tools[NormalizeName(name)] = t
	}
	for _, name := range sortedKeys(schemas) {
		key := NormalizeName(name)
		if key == "" {
			errs = append(errs, fmt.Errorf("%w: tool name %q is empty after normalisation", ErrInvalidConfig, name))
			continue
		}
		if _, dup := f.schemas[key]; dup {
			errs = append(errs, fmt.Errorf("%w: two schemas for tool %q", ErrInvalidConfig, key))
			continue
		}
		raw := strings.TrimSpace(string(schemas[name]))
		if raw == "" || raw == "null" {
			f.schemas[key] = nil
			continue
		}
		s, err := compileSchema([]byte(raw))
		if err != nil {
			errs = append(errs, fmt.Errorf("tool %q: %w", name, err))
			continue
		}
		f.schemas[key] = s
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	f.names = map[string]toolName{}
	for _, l := range [][]string{sortedKeys(schemas), cfg.Allow, sortedKeys(cfg.Tools)} {
		for _, name := range l {
			f.names[name] = f.nameInfo(name)
		}
	}
	return f, nil
}

func compileTool(name string, tp ToolPolicy) (*tool, error) {
	t := &tool{name: name, args: map[string]*argPolicy{}, order: sortedKeys(tp.Arguments)}
	var errs []error
	if tp.Schema != nil {
		raw, err := json.Marshal(tp.Schema)
		if err == nil {
			t.schema, err = compileSchema(raw)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tools.%s.schema: %w", name, err))
		}
	}
	for _, arg := range t.order {
		ap, err := compileArg(tp.Arguments[arg])
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: tools.%s.arguments.%s: %v", ErrInvalidConfig, name, arg, err))
			continue
		}
		t.args[arg] = ap
	}
	return t, errors.Join(errs...)
}

// Config returns the effective configuration (defaults filled in).
func (f *Firewall) Config() Config { return f.cfg }

// Check decides one call. Deny wins: the name is checked first, then the
// arguments are decoded strictly, their keys compared with the declared
// ones, validated against the tool's schemas, and each checked against
// its policy. An allowed verdict carries the canonical arguments.
func (f *Firewall) Check(c Call) Verdict {
	if len(c.Name) > 256 {
		return block(RuleBadName, "tool name is empty or too long")
	}
	ni, ok := f.names[c.Name]
	if !ok {
		ni = f.nameInfo(c.Name)
	}
	if ni.skeleton == "" {
		return block(RuleBadName, "tool name is empty or too long")
	}
	t := f.tools[ni.key]
	if f.deny[ni.skeleton] && (t == nil || !f.defaultDeny) {
		return block(RuleDenied, "tool %q is denied", ni.key)
	}
	schema, hasSchema := f.schemas[ni.key]
	explicit := t != nil || f.allow[ni.skeleton]
	switch f.cfg.Mode {
	case ModeAllowlist:
		if !explicit && !(len(f.allow) == 0 && hasSchema) {
			if ni.deniedWord {
				return block(RuleDenied, "tool %q is denied", ni.key)
			}
			return block(RuleUnknown, "tool %q is not declared or allowed", ni.key)
		}
	case ModeBlocklist:
		if !explicit && ni.deniedWord {
			return block(RuleDenied, "tool %q is denied", ni.key)
		}
	}
	if len(c.Arguments) > f.cfg.MaxArgBytes {
		return block(RuleArgsTooLarge, "arguments are %d bytes, limit %d", len(c.Arguments), f.cfg.MaxArgBytes)
	}
	v, canon, fd := decodeArgs(c.Arguments)
	if fd != nil {
		return fd.verdict()
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return block(RuleArgsNotObject, "arguments must be a JSON object, got %s", typeName(v))
	}
	var schemas []*jsonschema.Schema
	for _, s := range []*jsonschema.Schema{schema, t.pinned()} {
		if s != nil {
			schemas = append(schemas, s)
		}
	}
	var declared []string
	if t != nil {
		declared = t.order
	}
	if fd := checkKeyCase(obj, schemas, declared, "", 0); fd != nil {
		return fd.verdict()
	}
	for _, s := range schemas {
		if err := s.Validate(obj); err != nil {
			return block(RuleArgsSchema, "arguments do not match the schema: %s", schemaError(err))
		}
	}
	if t != nil {
		fd = t.check(obj)
	} else {
		fd = needsPolicy(ni, obj)
	}
	if fd != nil {
		return fd.verdict()
	}
	return Verdict{Verdict: Allow, Rule: RuleAllowed, Arguments: canon}
}

func (t *tool) pinned() *jsonschema.Schema {
	if t == nil {
		return nil
	}
	return t.schema
}

// check applies the declared policy to every argument.
func (t *tool) check(obj map[string]any) *finding {
	for _, k := range sortedKeys(obj) {
		ap, ok := t.args[k]
		if !ok {
			return &finding{RuleUndeclared, fmt.Sprintf("argument %q is not declared for tool %q", k, t.name)}
		}
		if fd := ap.check(k, obj[k]); fd != nil {
			return fd
		}
	}
	return nil
}

// CheckTurn decides every call of one model response in round round
// (counting from 0). All calls are blocked with "limit.max_rounds" when
// round >= MaxRounds and with "limit.max_calls" when there are more than
// MaxCallsPerTurn of them; otherwise each gets Check's verdict.
func (f *Firewall) CheckTurn(calls []Call, round int) []Verdict {
	out := make([]Verdict, len(calls))
	for i, c := range calls {
		switch {
		case round >= f.cfg.MaxRounds:
			out[i] = block(RuleMaxRounds, "round %d reaches the limit of %d tool rounds", round, f.cfg.MaxRounds)
		case len(calls) > f.cfg.MaxCallsPerTurn:
			out[i] = block(RuleMaxCalls, "%d tool calls in one response, limit %d", len(calls), f.cfg.MaxCallsPerTurn)
		default:
			out[i] = f.Check(c)
		}
	}
	return out
}

// toolName is what Check needs to know about a tool name; New computes it
// for the names it knows, Check for others.
type toolName struct {
	key, skeleton string
	deniedWord    bool // a deny entry occurs among its words
	runsCode      bool // its words say it runs commands, code or SQL
}

func (f *Firewall) nameInfo(name string) toolName {
	ni := toolName{key: NormalizeName(name), skeleton: skeleton(name)}
	toks := nameTokens(name)
	for _, d := range f.denyTokens {
		if containsSeq(toks, d) {
			ni.deniedWord = true
			break
		}
	}
	for _, t := range toks {
		ni.runsCode = ni.runsCode || codeToolWords[t]
	}
	return ni
}

// execWords are the single-word Deny entries that also deny a longer name
// containing them as a word ("execute_python", "BashTool"). Other single
// words ("system", "cmd", "terminal") only deny the exact name, so
// "system_status" stays usable.
var execWords = set("exec", "execute", "eval", "shell", "bash", "sh", "zsh", "powershell", "pwsh", "subprocess", "popen", "spawn")

// codeToolWords and codeArgKeys say that a tool runs commands, code or
// SQL. Such a tool must be declared with a policy: without one it is
// refused ("policy.required"). These lists only ever refuse.
var (
	codeToolWords = set("shell", "terminal", "console", "bash", "sh", "zsh", "ssh", "exec", "execute", "powershell",
		"pwsh", "cmd", "command", "subprocess", "sql", "sqlite", "postgres", "postgresql", "psql", "mysql", "mariadb",
		"python", "repl", "eval", "script", "interpreter", "jupyter", "notebook")
	codeArgKeys = set("command", "commands", "cmd", "cmds", "cmdline", "commandline", "shell", "script", "bash", "sh",
		"powershell", "exec", "argv", "code", "source", "sourcecode", "snippet", "python", "javascript", "sql",
		"statement", "statements", "stmt", "rawsql", "sqlquery")
)

// needsPolicy refuses a call to a tool that has no policy but whose name
// or arguments say it runs commands, code or SQL.
func needsPolicy(ni toolName, obj map[string]any) *finding {
	if ni.runsCode {
		return &finding{RulePolicyRequired, fmt.Sprintf("tool %q looks like it runs commands, code or SQL and has no policy: declare it in the tools file", ni.key)}
	}
	if k := codeKey(obj, 0); k != "" {
		return &finding{RulePolicyRequired, fmt.Sprintf("argument %q of tool %q looks like a command, code or SQL and the tool has no policy: declare it in the tools file", k, ni.key)}
	}
	return nil
}

func codeKey(v any, depth int) string {
	if depth > maxJSONDepth {
		return ""
	}
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			norm := strings.Map(func(r rune) rune {
				if r == '_' || r == '-' || r == ' ' || r == '.' {
					return -1
				}
				return r
			}, strings.ToLower(k))
			if codeArgKeys[norm] {
				switch x[k].(type) {
				case string, []any:
					return k
				}
			}
			if inner := codeKey(x[k], depth+1); inner != "" {
				return inner
			}
		}
	case []any:
		for _, e := range x {
			if inner := codeKey(e, depth+1); inner != "" {
				return inner
			}
		}
	}
	return ""
}

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// WithClientTools returns a firewall that also knows a request's
// client-side tools (the tools a client declares in its request and runs
// itself): same configuration, deny rules and policies; each client tool
// is checked against the JSON Schema the client sent (no schema: the
// checks a tool without a policy gets) and against any policy the operator
// declared for its name. A client tool may not take the name of a server
// tool. The receiver is unchanged.
func (f *Firewall) WithClientTools(schemas map[string]json.RawMessage) (*Firewall, error) {
	g := *f
	g.schemas = maps.Clone(f.schemas)
	g.names = maps.Clone(f.names)
	var errs []error
	for _, name := range sortedKeys(schemas) {
		key := NormalizeName(name)
		if key == "" {
			errs = append(errs, fmt.Errorf("%w: client tool name %q is empty after normalisation", ErrInvalidConfig, name))
			continue
		}
		if _, dup := g.schemas[key]; dup {
			errs = append(errs, fmt.Errorf("%w: client tool %q has the name of a server tool", ErrInvalidConfig, name))
			continue
		}
		raw := strings.TrimSpace(string(schemas[name]))
		if raw == "" || raw == "null" {
			g.schemas[key] = nil
		} else {
			s, err := compileSchema([]byte(raw))
			if err != nil {
				errs = append(errs, fmt.Errorf("client tool %q: %w", name, err))
				continue
			}
			g.schemas[key] = s
		}
		g.names[name] = g.nameInfo(name)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &g, nil
}
