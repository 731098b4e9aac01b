package firewall

import (
	"encoding/json"
	"path"
	"regexp"
	"strings"
)

// ToolPolicy declares one tool: what each of its arguments may be.
type ToolPolicy struct {
	// Remote marks a tool served over NATS by a remote tool service: the
	// operator allows it to be offered to the model when it is discovered
	// (Config.RemoteTools). Default false.
	Remote bool `json:"remote,omitempty" yaml:"remote,omitempty"`
	// Schema pins the JSON Schema of the arguments (a JSON or YAML value).
	// It is checked in addition to the schema the tool publishes, so a
	// table of calls can be checked offline against the same constraints.
	// Default: none.
	Schema any `json:"schema,omitempty" yaml:"schema,omitempty"`
	// Arguments maps each top-level argument (exact name) to its policy. An
	// argument that is not declared is refused ("args.undeclared"), and so
	// is a key that differs from a declared one only in case
	// ("args.key_case"). Default: none, every argument is refused.
	Arguments map[string]ArgPolicy `json:"arguments,omitempty" yaml:"arguments,omitempty"`
}

// ArgPolicy is the policy of one argument: exactly one kind. The string
// kinds (shell, sql, python, path, url) accept a string or an array of
// strings, each checked; argv takes an array of strings; data takes any
// JSON value.
type ArgPolicy struct {
	// Shell: a command line, run by a POSIX shell (bash).
	Shell *ShellPolicy `json:"shell,omitempty" yaml:"shell,omitempty"`
	// Argv: an argument vector run without a shell (["git", "status"]).
	Argv *ShellPolicy `json:"argv,omitempty" yaml:"argv,omitempty"`
	// SQL: one SQL statement.
	SQL *SQLPolicy `json:"sql,omitempty" yaml:"sql,omitempty"`
	// Python: Python 3 source code.
	Python *PythonPolicy `json:"python,omitempty" yaml:"python,omitempty"`
	// Path: a file system path.
	Path *PathPolicy `json:"path,omitempty" yaml:"path,omitempty"`
	// URL: an absolute URL.
	URL *URLPolicy `json:"url,omitempty" yaml:"url,omitempty"`
	// Data: any JSON value the tool does not run or resolve (a query for a
	// search engine, a count, a message). Only the schema constrains it.
	Data *DataPolicy `json:"data,omitempty" yaml:"data,omitempty"`
}

// DataPolicy is the policy of an argument that is plain data.
type DataPolicy struct{}

// ShellPolicy is the policy of a command line (kind shell) or of an
// argument vector (kind argv).
type ShellPolicy struct {
	// Programs maps each program the tool may run to its rules. The key is
	// the program's name as written in the command ("git"), which also
	// matches the program in /bin, /usr/bin, /usr/local/bin, /sbin and
	// /usr/sbin ("/usr/bin/git"), or an absolute path matched exactly.
	// Names are compared exactly (case-sensitive). Programs that run other
	// programs in ways the firewall does not model (sudo, busybox, eval,
	// source, ...) cannot be listed. Required.
	Programs map[string]ProgramPolicy `json:"programs" yaml:"programs"`
	// Roots are the absolute directories that absolute paths in arguments
	// and redirections must stay under. Relative paths stay under the
	// tool's working directory because ".." is refused everywhere.
	// Default: none, only relative paths and /dev/null are allowed.
	Roots []string `json:"roots,omitempty" yaml:"roots,omitempty"`
	// DenyPaths are path components or component sequences refused in
	// every path (".git", ".ssh", "config/secrets"), or absolute
	// directories refused with everything under them. Default: none.
	DenyPaths []string `json:"deny_paths,omitempty" yaml:"deny_paths,omitempty"`
	// Operators are the control operators allowed between commands: "|"
	// (also "|&"), "&&", "||", ";" (also a newline) and "&" (background).
	// Default: "|", "&&", "||", ";".
	Operators []string `json:"operators,omitempty" yaml:"operators,omitempty"`
	// Env names the variables a command may set (NAME=value before a
	// command, as an argument of env, or as a make variable). Default:
	// none.
	Env []string `json:"env,omitempty" yaml:"env,omitempty"`
	// Globs says where unquoted *, ? and [...] may appear in arguments
	// (never in the program name): "anchored" (default: the word starts
	// with a literal character other than "-", or is a flag whose name is
	// literal, "--include=*.go", so no expansion can turn into a flag),
	// "none", or "any".
	Globs string `json:"globs,omitempty" yaml:"globs,omitempty"`
	// Redirects allows file redirections (targets are checked like paths).
	// Default true; false allows only /dev/null and descriptor duplication.
	Redirects *bool `json:"redirects,omitempty" yaml:"redirects,omitempty"`
	// Python checks the code of "python3 -c CODE" when a python program is
	// listed. Default: none, inline Python is refused.
	Python *PythonPolicy `json:"python,omitempty" yaml:"python,omitempty"`
}

// ProgramPolicy restricts one program. Deny wins over allow.
type ProgramPolicy struct {
	// Subcommands, when set, are the only subcommands the program may run:
	// its first operand (git status, go test, make build), or the module
	// of "python -m". Subcommands the firewall knows to run arbitrary
	// commands (git config, go run, ...) must be listed to be allowed.
	// Default: any, except those.
	Subcommands []string `json:"subcommands,omitempty" yaml:"subcommands,omitempty"`
	// DenySubcommands are refused.
	DenySubcommands []string `json:"deny_subcommands,omitempty" yaml:"deny_subcommands,omitempty"`
	// Flags, when set, are the only flags the program may get ("-n",
	// "--count"). A long flag also matches its unambiguous abbreviations
	// and a bundle of short flags is allowed when each letter is. Flags the
	// firewall knows to run commands, load code or leave the roots
	// (find -delete, sort --compress-program, git -c, ...) must be listed
	// here to be allowed. Default: any flag that is not denied, except
	// those.
	Flags []string `json:"flags,omitempty" yaml:"flags,omitempty"`
	// DenyFlags are refused in every spelling: "-r" also inside a bundle
	// ("-vrf"), "--recursive" also abbreviated ("--recursiv", "--rec") and
	// with a value ("--recursive=yes").
	DenyFlags []string `json:"deny_flags,omitempty" yaml:"deny_flags,omitempty"`
}

// SQLPolicy is the policy of an SQL statement.
type SQLPolicy struct {
	// Dialect is how the database lexes SQL: "postgres", "mysql", "sqlite",
	// or "" (default: any, and what dialects read differently, such as a
	// backslash in a string, "#", nested comments or dollar quotes, is
	// refused).
	Dialect string `json:"dialect,omitempty" yaml:"dialect,omitempty"`
	// Statements are the statement kinds allowed: select (SELECT, WITH ...
	// SELECT, VALUES, TABLE), insert, update, delete, explain (the
	// explained statement must be allowed too), show, and the kinds that
	// are only recognised by their keyword: create, alter, drop, truncate,
	// grant, revoke, set, ... Default: select.
	Statements []string `json:"statements,omitempty" yaml:"statements,omitempty"`
	// Tables, when set, are the only tables a statement may name (compared
	// case-insensitively; "public.orders" must be listed as such to be
	// used qualified). Default: any.
	Tables []string `json:"tables,omitempty" yaml:"tables,omitempty"`
	// Functions are allowed in addition to the built-in set of side-effect
	// free functions (aggregates, string, number, date and JSON
	// functions). Default: none.
	Functions []string `json:"functions,omitempty" yaml:"functions,omitempty"`
	// Keys are the columns an UPDATE or DELETE must match against literal
	// values (WHERE id = 7, WHERE id IN (1, 2)) in a top-level conjunct,
	// without a top-level OR. Default: any column.
	Keys []string `json:"keys,omitempty" yaml:"keys,omitempty"`
}

// PythonPolicy is the policy of Python source code.
type PythonPolicy struct {
	// Imports are the modules the code may import: "json" allows
	// "import json", "import json.decoder" and "from json import loads".
	// Default: none.
	Imports []string `json:"imports,omitempty" yaml:"imports,omitempty"`
	// Builtins are allowed in addition to the built-in set of functions
	// that do not run code, open files or reach the interpreter ("open",
	// "input", ...). Default: none.
	Builtins []string `json:"builtins,omitempty" yaml:"builtins,omitempty"`
}

// PathPolicy is the policy of a file system path.
type PathPolicy struct {
	// Roots are the absolute directories the path must stay under, after
	// cleaning. ".." is refused anywhere. Required.
	Roots []string `json:"roots" yaml:"roots"`
	// Deny are absolute directories refused with everything under them.
	Deny []string `json:"deny,omitempty" yaml:"deny,omitempty"`
	// Base is the directory a relative path is relative to: the tool's
	// working directory. Default: none, relative paths are refused.
	Base string `json:"base,omitempty" yaml:"base,omitempty"`
	// Resolve resolves symbolic links on this machine before the check
	// (the longest existing prefix of the path, and the roots), for tools
	// that run where the firewall runs. Default false: the check is
	// lexical.
	Resolve bool `json:"resolve,omitempty" yaml:"resolve,omitempty"`
}

// URLPolicy is the policy of an absolute URL.
type URLPolicy struct {
	// Schemes allowed. Default: https.
	Schemes []string `json:"schemes,omitempty" yaml:"schemes,omitempty"`
	// Hosts allowed: "example.com" (that host), "*.example.com" (its
	// subdomains, not itself), or an IP literal as written. Names are
	// ASCII (punycode for international names). Required.
	Hosts []string `json:"hosts" yaml:"hosts"`
	// Ports allowed. Default: the scheme's default port (443 for https,
	// 80 for http), written or not.
	Ports []int `json:"ports,omitempty" yaml:"ports,omitempty"`
	// Paths, when set, are the path prefixes allowed ("/docs/"). Default:
	// any path.
	Paths []string `json:"paths,omitempty" yaml:"paths,omitempty"`
}

// --- validation

func (t ToolPolicy) validate(p *problems, at string) {
	if t.Schema != nil {
		if _, err := json.Marshal(t.Schema); err != nil {
			p.at(at+".schema", "not a JSON value: %v", err)
		}
	}
	for _, name := range sortedKeys(t.Arguments) {
		if name == "" {
			p.at(at+".arguments", "an argument name is empty")
			continue
		}
		t.Arguments[name].validate(p, at+".arguments."+name)
	}
}

func (a ArgPolicy) validate(p *problems, at string) {
	n := 0
	for _, set := range []bool{a.Shell != nil, a.Argv != nil, a.SQL != nil, a.Python != nil, a.Path != nil, a.URL != nil, a.Data != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		p.at(at, "want exactly one of shell, argv, sql, python, path, url, data; got %d", n)
		return
	}
	switch {
	case a.Shell != nil:
		a.Shell.validate(p, at+".shell")
	case a.Argv != nil:
		a.Argv.validate(p, at+".argv")
	case a.SQL != nil:
		a.SQL.validate(p, at+".sql")
	case a.Python != nil:
		a.Python.validate(p, at+".python")
	case a.Path != nil:
		a.Path.validate(p, at+".path")
	case a.URL != nil:
		a.URL.validate(p, at+".url")
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (s *ShellPolicy) validate(p *problems, at string) {
	if len(s.Programs) == 0 {
		p.at(at+".programs", "at least one program is required")
	}
	for _, name := range sortedKeys(s.Programs) {
		field := at + ".programs." + name
		switch {
		case name == "" || strings.ContainsAny(name, " \t\n\x00"):
			p.at(field, "not a program name")
		case strings.Contains(name, "/") && !path.IsAbs(name):
			p.at(field, "a program with a slash must be an absolute path")
		case path.IsAbs(name) && path.Clean(name) != name:
			p.at(field, "the path is not clean")
		}
		if why, ok := unlisted[path.Base(name)]; ok {
			p.at(field, "cannot be allowed: %s", why)
		}
		s.Programs[name].validate(p, field)
	}
	validateRoots(p, at+".roots", s.Roots, false)
	for i, d := range s.DenyPaths {
		if d == "" || strings.Contains(d, "..") || (path.IsAbs(d) && path.Clean(d) != d) {
			p.at(at+".deny_paths["+itoa(i)+"]", "%q: want a clean relative component sequence or an absolute directory", d)
		}
	}
	for i, op := range s.Operators {
		switch op {
		case "|", "&&", "||", ";", "&":
		default:
			p.at(at+".operators["+itoa(i)+"]", "%q: want |, &&, ||, ; or &", op)
		}
	}
	for i, e := range s.Env {
		if !envName.MatchString(e) {
			p.at(at+".env["+itoa(i)+"]", "%q is not a variable name", e)
		}
	}
	switch s.Globs {
	case "", "anchored", "none", "any":
	default:
		p.at(at+".globs", "%q: want anchored, none or any", s.Globs)
	}
	if s.Python != nil {
		s.Python.validate(p, at+".python")
	}
}

func (pp ProgramPolicy) validate(p *problems, at string) {
	for _, l := range []struct {
		field string
		flags []string
	}{{"flags", pp.Flags}, {"deny_flags", pp.DenyFlags}} {
		for i, f := range l.flags {
			if len(f) < 2 || f[0] != '-' || f == "--" || strings.ContainsAny(f, " =\t") {
				p.at(at+"."+l.field+"["+itoa(i)+"]", "%q is not a flag (\"-x\", \"--name\")", f)
			}
		}
	}
	for _, l := range []struct {
		field string
		subs  []string
	}{{"subcommands", pp.Subcommands}, {"deny_subcommands", pp.DenySubcommands}} {
		for i, s := range l.subs {
			if s == "" || strings.HasPrefix(s, "-") || strings.ContainsAny(s, " \t") {
				p.at(at+"."+l.field+"["+itoa(i)+"]", "%q is not a subcommand", s)
			}
		}
	}
}

func (s *SQLPolicy) validate(p *problems, at string) {
	switch s.Dialect {
	case "", dialectPostgres, dialectMySQL, dialectSQLite:
	default:
		p.at(at+".dialect", "%q: want postgres, mysql, sqlite or empty", s.Dialect)
	}
	for i, k := range s.Statements {
		if !sqlKinds[strings.ToLower(k)] {
			p.at(at+".statements["+itoa(i)+"]", "unknown statement kind %q", k)
		}
	}
	for i, t := range s.Tables {
		if !sqlIdentPath.MatchString(t) {
			p.at(at+".tables["+itoa(i)+"]", "%q is not a table name", t)
		}
	}
	for i, f := range s.Functions {
		if !sqlIdentPath.MatchString(f) {
			p.at(at+".functions["+itoa(i)+"]", "%q is not a function name", f)
		}
	}
	for i, k := range s.Keys {
		if !sqlIdentPath.MatchString(k) {
			p.at(at+".keys["+itoa(i)+"]", "%q is not a column name", k)
		}
	}
}

var (
	sqlIdentPath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$`)
	pyModule     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	pyIdent      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (s *PythonPolicy) validate(p *problems, at string) {
	for i, m := range s.Imports {
		if !pyModule.MatchString(m) {
			p.at(at+".imports["+itoa(i)+"]", "%q is not a module name", m)
		}
	}
	for i, b := range s.Builtins {
		if !pyIdent.MatchString(b) {
			p.at(at+".builtins["+itoa(i)+"]", "%q is not a name", b)
		}
	}
}

func (s *PathPolicy) validate(p *problems, at string) {
	validateRoots(p, at+".roots", s.Roots, true)
	validateRoots(p, at+".deny", s.Deny, false)
	if s.Base != "" && (!path.IsAbs(s.Base) || path.Clean(s.Base) != s.Base) {
		p.at(at+".base", "%q: want a clean absolute directory", s.Base)
	}
}

func validateRoots(p *problems, at string, roots []string, required bool) {
	if required && len(roots) == 0 {
		p.at(at, "at least one absolute directory is required")
	}
	for i, r := range roots {
		if !path.IsAbs(r) || path.Clean(r) != r {
			p.at(at+"["+itoa(i)+"]", "%q: want a clean absolute directory", r)
		}
	}
}

func (s *URLPolicy) validate(p *problems, at string) {
	if len(s.Hosts) == 0 {
		p.at(at+".hosts", "at least one host is required")
	}
	for i, h := range s.Hosts {
		if _, ok := parseHostPattern(h); !ok {
			p.at(at+".hosts["+itoa(i)+"]", "%q: want a lower-case ASCII host name, *.name, * or an IP literal", h)
		}
	}
	for i, sc := range s.Schemes {
		if !urlScheme.MatchString(sc) {
			p.at(at+".schemes["+itoa(i)+"]", "%q is not a lower-case scheme", sc)
		}
	}
	for i, port := range s.Ports {
		if port < 1 || port > 65535 {
			p.at(at+".ports["+itoa(i)+"]", "%d: want 1 to 65535", port)
		}
	}
	for i, pre := range s.Paths {
		if !strings.HasPrefix(pre, "/") || strings.Contains(pre, "..") {
			p.at(at+".paths["+itoa(i)+"]", "%q: want an absolute path prefix without ..", pre)
		}
	}
}

var urlScheme = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
