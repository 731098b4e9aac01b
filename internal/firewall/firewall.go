package firewall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// Verdicts.
const (
	Allow = "allow"
	Block = "block"
)

// Rules named in verdicts.
const (
	RuleAllowed         = "tool.allowed"
	RuleBadName         = "tool.bad_name"
	RuleDenied          = "tool.denied"
	RuleUnknown         = "tool.unknown"
	RuleArgsTooLarge    = "args.too_large"
	RuleArgsInvalidJSON = "args.invalid_json"
	RuleArgsNotObject   = "args.not_object"
	RuleArgsSchema      = "args.schema"
	RuleMaxCalls        = "limit.max_calls"
	RuleMaxRounds       = "limit.max_rounds"
	RuleBadInput        = "input.bad_json"
	RuleTooComplex      = "args.too_complex"
	// Shell and SQL rules: shell.rm_recursive, shell.pipe_to_shell,
	// shell.sudo, shell.chmod, shell.mkfs, shell.dd_device,
	// shell.device_write, shell.fork_bomb, shell.chain, shell.substitution,
	// shell.reverse_shell, shell.shutdown, shell.encoded_command, sql.drop,
	// sql.truncate, sql.delete_all, sql.update_all, sql.alter_drop,
	// sql.command_exec.
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
}

// Allowed reports whether the verdict allows the call.
func (v Verdict) Allowed() bool { return v.Verdict == Allow }

func block(rule, format string, a ...any) Verdict {
	return Verdict{Verdict: Block, Rule: rule, Reason: fmt.Sprintf(format, a...)}
}

// Firewall decides whether tool calls may run. It is immutable after New
// and safe for concurrent use.
type Firewall struct {
	cfg        Config
	allow      map[string]bool // skeletons
	deny       map[string]bool // skeletons
	denyTokens [][]string
	shellTools map[string]bool
	sqlTools   map[string]bool
	schemas    map[string]*schema  // by NormalizeName
	names      map[string]toolName // precomputed for the names in Allow and schemas
}

// New builds a firewall. schemas maps tool names to their parameters' JSON
// Schema (nil or empty: no schema check for that tool); a schema that uses
// a keyword outside the supported subset is an error wrapping ErrSchema.
func New(cfg Config, schemas map[string]json.RawMessage) (*Firewall, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f := &Firewall{
		cfg:        cfg,
		allow:      map[string]bool{},
		deny:       map[string]bool{},
		shellTools: map[string]bool{},
		sqlTools:   map[string]bool{},
		schemas:    map[string]*schema{},
	}
	for _, n := range cfg.Allow {
		f.allow[skeleton(n)] = true
	}
	for _, n := range cfg.Deny {
		f.deny[skeleton(n)] = true
		if toks := nameTokens(n); len(toks) > 1 || execWords[skeleton(n)] {
			f.denyTokens = append(f.denyTokens, toks)
		}
	}
	for _, n := range cfg.ShellTools {
		f.shellTools[skeleton(n)] = true
	}
	for _, n := range cfg.SQLTools {
		f.sqlTools[skeleton(n)] = true
	}
	var errs []error
	for name, raw := range schemas {
		key := NormalizeName(name)
		if key == "" {
			errs = append(errs, fmt.Errorf("%w: tool name %q is empty after normalisation", ErrInvalidConfig, name))
			continue
		}
		if _, dup := f.schemas[key]; dup {
			errs = append(errs, fmt.Errorf("%w: two schemas for tool %q", ErrInvalidConfig, key))
			continue
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
			f.schemas[key] = nil
			continue
		}
		s, err := compileSchema(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("tool %q: %w", name, err))
			continue
		}
		f.schemas[key] = s
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	f.names = make(map[string]toolName, len(schemas)+len(cfg.Allow))
	for name := range schemas {
		f.names[name] = f.nameInfo(name)
	}
	for _, name := range cfg.Allow {
		f.names[name] = f.nameInfo(name)
	}
	return f, nil
}

// Config returns the effective configuration (defaults filled in).
func (f *Firewall) Config() Config { return f.cfg }

// Check decides one call. Deny wins: the name is checked first, then the
// size, JSON syntax and schema of the arguments, then every string in them
// against the shell and SQL rules.
func (f *Firewall) Check(c Call) Verdict {
	if len(c.Name) > 256 {
		return block(RuleBadName, "tool name is empty or too long")
	}
	ni, ok := f.names[c.Name]
	if !ok {
		ni = f.nameInfo(c.Name)
	}
	key, sk := ni.key, ni.skeleton
	if sk == "" {
		return block(RuleBadName, "tool name is empty or too long")
	}
	if f.deny[sk] {
		return block(RuleDenied, "tool %q is denied", key)
	}
	_, hasSchema := f.schemas[key]
	explicit := f.allow[sk]
	switch f.cfg.Mode {
	case ModeAllowlist:
		if !explicit && !(len(f.allow) == 0 && hasSchema) {
			if ni.deniedWord {
				return block(RuleDenied, "tool %q is denied", key)
			}
			return block(RuleUnknown, "tool %q is not on the allowlist", key)
		}
	case ModeBlocklist:
		if !explicit && ni.deniedWord {
			return block(RuleDenied, "tool %q is denied", key)
		}
	}
	if len(c.Arguments) > f.cfg.MaxArgBytes {
		return block(RuleArgsTooLarge, "arguments are %d bytes, limit %d", len(c.Arguments), f.cfg.MaxArgBytes)
	}
	args := strings.TrimSpace(c.Arguments)
	if args == "" {
		args = "{}"
	}
	d := json.NewDecoder(strings.NewReader(args))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return block(RuleArgsInvalidJSON, "arguments are not valid JSON: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return block(RuleArgsInvalidJSON, "arguments have trailing data after the JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return block(RuleArgsNotObject, "arguments must be a JSON object, got %s", typeName(v))
	}
	if s := f.schemas[key]; s != nil {
		if err := s.validate(obj, "", 0); err != nil {
			return block(RuleArgsSchema, "arguments do not match the schema: %v", strings.TrimPrefix(err.Error(), ": "))
		}
	}
	w := walker{ck: &checker{budget: maxReparse, allowChain: f.cfg.AllowChaining}, toolShell: ni.shell, toolSQL: ni.sql}
	if fd := w.value(obj, "", 0); fd != nil {
		return Verdict{Verdict: Block, Rule: fd.rule, Reason: fd.reason}
	}
	return Verdict{Verdict: Allow, Rule: RuleAllowed}
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
	shell, sql    bool // shell or SQL tool
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
	ni.shell, ni.sql = f.shellTools[ni.skeleton], f.sqlTools[ni.skeleton]
	for _, t := range toks {
		ni.shell = ni.shell || shellToolWords[t]
		ni.sql = ni.sql || sqlToolWords[t]
	}
	return ni
}

// execWords are the single-word Deny entries that also deny a longer name
// containing them as a word ("execute_python", "BashTool"). Other single
// words ("system", "cmd", "terminal") only deny the exact name, so
// "system_status" stays usable.
var execWords = set("exec", "execute", "eval", "shell", "bash", "sh", "zsh", "powershell", "pwsh", "subprocess", "popen", "spawn")

var shellToolWords = set("shell", "terminal", "console", "command", "cmd", "bash", "sh", "zsh", "ssh", "exec",
	"execute", "powershell", "pwsh", "cli", "subprocess", "system")
var sqlToolWords = set("sql", "sqlite", "sqlite3", "postgres", "postgresql", "psql", "mysql", "mariadb", "mssql",
	"database", "db", "tsql", "plsql", "duckdb", "clickhouse", "snowflake", "bigquery")

// Argument-key classes (keys compared lower-case without separators).
var (
	commandKeys = set("command", "commands", "cmd", "cmds", "script", "shell", "args", "argv", "commandline",
		"cmdline", "exec", "run", "bash", "sh", "powershell", "shellcommand", "program", "entrypoint")
	codeKeys  = set("code", "source", "sourcecode", "snippet", "python", "js", "javascript", "expression_code")
	proseKeys = set("query", "q", "text", "message", "messages", "prompt", "content", "body", "title", "description",
		"question", "search", "searchquery", "searchterm", "subject", "note", "notes", "comment", "comments", "summary",
		"answer", "reply", "caption", "label", "name", "topic", "keywords", "instructions", "input_text", "inputtext",
		"url", "uri", "link", "href", "email")
	sqlKeys = set("query", "sql", "statement", "statements", "stmt", "sqlquery", "querystring", "rawsql")
)

func keyClass(key string) string {
	k := strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r == ' ' || r == '.' {
			return -1
		}
		return r
	}, strings.ToLower(key))
	switch {
	case commandKeys[k]:
		return "command"
	case codeKeys[k]:
		return "code"
	case proseKeys[k]:
		return "prose"
	}
	return ""
}

// argvKeys hold an argument vector when their value is an array of
// strings; other command keys (commands, script, run) hold command lines.
var argvKeys = set("args", "argv", "command", "cmd", "cmdline", "commandline", "entrypoint", "program", "arguments")

func isArgvKey(key string) bool {
	k := strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(key), "_", ""), "-", "")
	return argvKeys[k]
}

func isSQLKey(key string) bool {
	k := strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(key), "_", ""), "-", "")
	return sqlKeys[k]
}

// walker applies the argument rules to every string of a parsed value.
type walker struct {
	ck        *checker
	toolShell bool
	toolSQL   bool
	// codeIsShell: a sibling "language" says the code is a shell script.
	codeIsShell bool
}

// languageOf returns the command name of an object's language field
// ({"language": "bash", "code": "..."}), or "".
func languageOf(m map[string]any) string {
	for _, k := range []string{"language", "lang", "runtime", "interpreter", "kernel", "shell_type"} {
		if s, ok := m[k].(string); ok {
			return cmdName(strings.TrimSpace(s))
		}
	}
	return ""
}

// maxEmbeddedJSON bounds how deep JSON strings inside JSON are unpacked.
const maxEmbeddedJSON = 3

func (w *walker) value(v any, key string, depth int) *finding {
	switch x := v.(type) {
	case map[string]any:
		if lang := languageOf(x); lang != "" {
			inner := *w
			inner.codeIsShell = shellCmds[lang]
			w = &inner
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if f := w.value(x[k], k, depth); f != nil {
				return f
			}
		}
	case []any:
		// an argv array: ["rm", "-rf", "/"]. Its elements are single
		// arguments, not command lines, so they are only checked as a whole.
		if isArgvKey(key) || w.toolShell || keyClass(key) == "command" {
			argv := make([]string, 0, len(x))
			for _, e := range x {
				if s, ok := e.(string); ok {
					argv = append(argv, norm.NFKC.String(stripInvisible(s)))
				}
			}
			if len(argv) == len(x) && len(argv) > 0 {
				ws := make([]word, len(argv))
				for i, a := range argv {
					ws[i] = word{text: a, quoted: true}
				}
				if f := devSocket(argv); f != nil {
					return f
				}
				if f := w.ck.checkCmd(argv, ws, modeShell, 0); f != nil {
					return f
				}
				if isArgvKey(key) {
					return nil
				}
			}
		}
		for _, e := range x {
			if f := w.value(e, key, depth); f != nil {
				return f
			}
		}
	case string:
		return w.str(x, key, depth)
	}
	return nil
}

func (w *walker) str(s, key string, depth int) *finding {
	s = norm.NFKC.String(stripInvisible(s))
	// JSON inside a string: {"input": "{\"command\": \"rm -rf /\"}"}
	if t := strings.TrimSpace(s); depth < maxEmbeddedJSON && len(t) > 1 && (t[0] == '{' || t[0] == '[') {
		d := json.NewDecoder(strings.NewReader(t))
		d.UseNumber()
		var inner any
		if d.Decode(&inner) == nil {
			if f := w.value(inner, key, depth+1); f != nil {
				return f
			}
		}
	}
	class := keyClass(key)
	// SQL is checked as SQL only; shell rules do not apply to it.
	switch {
	case w.toolSQL && class != "command" && class != "code":
		return checkSQL(s, false)
	case isSQLKey(key) && looksLikeSQL(s):
		return checkSQL(s, true)
	}
	switch {
	case w.toolShell || class == "command" || (class == "code" && w.codeIsShell):
		return w.ck.checkLine(s, modeShell, 0)
	case class == "code":
		return w.ck.checkLine(s, modeCode, 0)
	case class == "prose":
		return nil
	default:
		return w.ck.checkLine(s, modeInferred, 0)
	}
}

func stripInvisible(s string) string {
	for _, r := range s {
		if invisible(r) {
			return strings.Map(func(r rune) rune {
				if invisible(r) {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}
