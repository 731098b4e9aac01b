package firewall

import (
	"fmt"
	"path"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// This file checks command lines. A line is parsed with mvdan.cc/sh (the
// parser of shfmt) as bash, and walked: every statement, operator,
// redirection and simple command must be allowed by the policy; anything
// the parser cannot parse, and any construct the walk does not know, is
// refused. Simple commands are checked in shell_command.go, words in
// shell_words.go, paths in shell_paths.go, flags in shell_flags.go, and
// what each known program does with its arguments in programs*.go.

// Shell rules.
const (
	RuleShellSyntax     = "shell.syntax"     // unparseable, control characters
	RuleShellExpansion  = "shell.expansion"  // $x, $(...), `...`, $((...)), <(...), ~, $'...'
	RuleShellGlob       = "shell.glob"       // *, ?, [...], {a,b}, @(...) where not allowed
	RuleShellConstruct  = "shell.construct"  // functions, arithmetic, [[ ]], declarations, coproc
	RuleShellOperator   = "shell.operator"   // a control operator not allowed
	RuleShellProgram    = "shell.program"    // a program not allowed
	RuleShellSubcommand = "shell.subcommand" // a subcommand not allowed
	RuleShellFlag       = "shell.flag"       // a flag denied, not allowed, or known to run code
	RuleShellEnv        = "shell.env"        // a variable assignment not allowed
	RuleShellPath       = "shell.path"       // a path outside the roots, "..", a denied path
	RuleShellRedirect   = "shell.redirect"   // a redirection not allowed
	RuleShellCode       = "shell.code"       // code the firewall cannot see or that runs commands
	RuleShellMode       = "shell.mode"       // a chmod mode that opens permissions
	RuleShellSignal     = "shell.signal"     // kill of every process or a group
	RuleShellMount      = "shell.mount"      // a container bind mount outside the roots
	RuleShellOption     = "shell.option"     // an ssh option that runs commands or loads code
)

// Limits of the analysis: past them a call is blocked (args.too_complex),
// never waved through.
const (
	maxShellDepth  = 8    // nested command lines (sh -c "...", find -exec, ssh host '...')
	maxShellBudget = 4096 // statements and commands analysed per call
)

// maxShellNesting bounds the nesting of parentheses and braces outside
// quotes, checked before parsing (the parser recurses on each level).
const maxShellNesting = 128

// shellNesting returns the deepest nesting of ( and { outside quotes.
func shellNesting(s string) int {
	depth, max := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && quote != '\'':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(' || c == '{':
			if depth++; depth > max {
				max = depth
			}
		case c == ')' || c == '}':
			depth--
		}
	}
	return max
}

// defaultOperators are allowed when ShellPolicy.Operators is empty.
var defaultOperators = []string{"|", "&&", "||", ";"}

// trustedBinDirs are where a program named by its bare name may also be
// named by an absolute path.
var trustedBinDirs = set("/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin")

type shellPolicy struct {
	programs  map[string]*programPolicy
	roots     []string
	denyComps [][]string
	denyAbs   []string
	ops       map[string]bool
	env       map[string]bool
	globs     string
	redirects bool
	python    *pythonPolicy
}

type programPolicy struct {
	name      string
	subs      map[string]bool
	denySubs  map[string]bool
	flags     []string
	denyFlags []string
	model     *model
}

func compileShell(s *ShellPolicy) (*shellPolicy, error) {
	p := &shellPolicy{
		programs:  map[string]*programPolicy{},
		roots:     s.Roots,
		ops:       set(s.Operators...),
		env:       set(s.Env...),
		globs:     s.Globs,
		redirects: s.Redirects == nil || *s.Redirects,
	}
	if len(s.Operators) == 0 {
		p.ops = set(defaultOperators...)
	}
	if p.globs == "" {
		p.globs = "anchored"
	}
	for _, d := range s.DenyPaths {
		if path.IsAbs(d) {
			p.denyAbs = append(p.denyAbs, d)
		} else {
			p.denyComps = append(p.denyComps, strings.Split(path.Clean(d), "/"))
		}
	}
	for name, pp := range s.Programs {
		p.programs[name] = &programPolicy{
			name:      name,
			subs:      set(pp.Subcommands...),
			denySubs:  set(pp.DenySubcommands...),
			flags:     pp.Flags,
			denyFlags: pp.DenyFlags,
			model:     models[path.Base(name)],
		}
	}
	if s.Python != nil {
		p.python = compilePython(s.Python)
	}
	return p, nil
}

// shellCheck is the state of one call's analysis.
type shellCheck struct {
	p      *shellPolicy
	budget int
	depth  int
	parser *syntax.Parser
}

func newShellCheck(p *shellPolicy) *shellCheck {
	return &shellCheck{p: p, budget: maxShellBudget}
}

func (c *shellCheck) spend() *finding {
	if c.budget--; c.budget < 0 {
		return &finding{RuleTooComplex, "the command line exceeds the analysis limit"}
	}
	return nil
}

// line checks a command line.
func (c *shellCheck) line(s string) *finding {
	if c.depth > maxShellDepth {
		return &finding{RuleTooComplex, "command lines nested deeper than the analysis limit"}
	}
	if f := c.spend(); f != nil {
		return f
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < 0x20 && b != '\t' && b != '\n') || b == 0x7f {
			return &finding{RuleShellSyntax, fmt.Sprintf("the command line holds the control character %q, which shells and parsers treat differently", b)}
		}
	}
	if shellNesting(s) > maxShellNesting {
		return &finding{RuleTooComplex, fmt.Sprintf("the command line nests parentheses or braces deeper than %d", maxShellNesting)}
	}
	if c.parser == nil {
		c.parser = syntax.NewParser(syntax.Variant(syntax.LangBash), syntax.KeepComments(false))
	}
	file, err := c.parser.Parse(strings.NewReader(s), "")
	if err != nil {
		return &finding{RuleShellSyntax, "the command line does not parse: " + err.Error()}
	}
	return c.stmts(file.Stmts)
}

// nested checks a command line found inside another (sh -c, ssh host cmd).
func (c *shellCheck) nested(s string) *finding {
	c.depth++
	defer func() { c.depth-- }()
	return c.line(s)
}

func (c *shellCheck) stmts(list []*syntax.Stmt) *finding {
	if len(list) > 1 && !c.p.ops[";"] {
		return &finding{RuleShellOperator, "runs several commands in sequence (';' or a newline), which the policy does not allow"}
	}
	for _, st := range list {
		if f := c.stmt(st); f != nil {
			return f
		}
	}
	return nil
}

func (c *shellCheck) stmt(st *syntax.Stmt) *finding {
	if f := c.spend(); f != nil {
		return f
	}
	switch {
	case st.Background && !c.p.ops["&"]:
		return &finding{RuleShellOperator, "runs a command in the background ('&'), which the policy does not allow"}
	case st.Coprocess || st.Disown:
		return &finding{RuleShellConstruct, "coprocesses and disowned jobs are not supported"}
	}
	if st.Cmd != nil {
		if f := c.command(st.Cmd); f != nil {
			return f
		}
	}
	for _, r := range st.Redirs {
		if f := c.redirect(r); f != nil {
			return f
		}
	}
	return nil
}

func (c *shellCheck) command(cmd syntax.Command) *finding {
	switch x := cmd.(type) {
	case *syntax.CallExpr:
		return c.call(x)
	case *syntax.BinaryCmd:
		op := map[syntax.BinCmdOperator]string{syntax.AndStmt: "&&", syntax.OrStmt: "||", syntax.Pipe: "|", syntax.PipeAll: "|"}[x.Op]
		if op == "" || !c.p.ops[op] {
			return &finding{RuleShellOperator, fmt.Sprintf("the operator %q is not allowed", x.Op.String())}
		}
		if f := c.stmt(x.X); f != nil {
			return f
		}
		return c.stmt(x.Y)
	case *syntax.Subshell:
		return c.stmts(x.Stmts)
	case *syntax.Block:
		return c.stmts(x.Stmts)
	case *syntax.IfClause:
		for ic := x; ic != nil; ic = ic.Else {
			if f := c.stmts(ic.Cond); f != nil {
				return f
			}
			if f := c.stmts(ic.Then); f != nil {
				return f
			}
		}
		return nil
	case *syntax.WhileClause:
		if f := c.stmts(x.Cond); f != nil {
			return f
		}
		return c.stmts(x.Do)
	case *syntax.ForClause:
		wi, ok := x.Loop.(*syntax.WordIter)
		if !ok {
			return &finding{RuleShellConstruct, "C-style for loops evaluate arithmetic, which is not supported"}
		}
		if wi.Name != nil && !c.p.env[wi.Name.Value] {
			// the loop assigns the variable, which may be exported (PATH)
			return &finding{RuleShellEnv, fmt.Sprintf("the loop sets the variable %s, which the policy does not allow (it can change what programs run or load)", wi.Name.Value)}
		}
		for _, w := range wi.Items {
			if _, f := c.word(w, false); f != nil {
				return f
			}
		}
		return c.stmts(x.Do)
	case *syntax.CaseClause:
		if _, f := c.word(x.Word, false); f != nil {
			return f
		}
		for _, item := range x.Items {
			for _, pat := range item.Patterns {
				if f := noExpansion(pat); f != nil {
					return f
				}
			}
			if f := c.stmts(item.Stmts); f != nil {
				return f
			}
		}
		return nil
	case *syntax.TimeClause:
		if x.Stmt == nil {
			return nil
		}
		return c.stmt(x.Stmt)
	case *syntax.FuncDecl:
		return &finding{RuleShellConstruct, "defines a shell function, which could shadow an allowed program"}
	case *syntax.ArithmCmd, *syntax.LetClause:
		return &finding{RuleShellConstruct, "arithmetic evaluation can run command substitutions and is not supported"}
	case *syntax.TestClause:
		return &finding{RuleShellConstruct, "[[ ]] evaluates operands as arithmetic, which can run commands; use test or ["}
	case *syntax.DeclClause:
		return &finding{RuleShellConstruct, "declarations (" + x.Variant.Value + ") change variables and are not supported"}
	}
	return &finding{RuleShellConstruct, fmt.Sprintf("the construct %T is not supported", cmd)}
}

// call checks a simple command: its assignments and its words.
func (c *shellCheck) call(x *syntax.CallExpr) *finding {
	for _, a := range x.Assigns {
		if f := c.assign(a); f != nil {
			return f
		}
	}
	if len(x.Args) == 0 {
		return nil
	}
	argv := make([]word, len(x.Args))
	for i, w := range x.Args {
		wd, f := c.word(w, i == 0)
		if f != nil {
			return f
		}
		argv[i] = wd
	}
	return c.simple(argv)
}

func (c *shellCheck) assign(a *syntax.Assign) *finding {
	if a.Name == nil || a.Array != nil || a.Index != nil || a.Naked {
		return &finding{RuleShellConstruct, "array and indexed assignments are not supported"}
	}
	if !c.p.env[a.Name.Value] {
		return &finding{RuleShellEnv, fmt.Sprintf("sets the variable %s, which the policy does not allow (it can change what programs run or load)", a.Name.Value)}
	}
	if a.Value != nil {
		if _, f := c.word(a.Value, false); f != nil {
			return f
		}
	}
	return nil
}

// devFiles are the special files a redirection may always name.
var devFiles = set("/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr")

func (c *shellCheck) redirect(r *syntax.Redirect) *finding {
	if r.N != nil && !isDigits(r.N.Value) {
		return &finding{RuleShellConstruct, "redirections to a named descriptor ({var}>) are not supported"}
	}
	switch r.Op {
	case syntax.Hdoc, syntax.DashHdoc:
		if r.Hdoc != nil {
			if f := noExpansion(r.Hdoc); f != nil {
				return f
			}
		}
		return nil
	case syntax.WordHdoc:
		_, f := c.word(r.Word, false)
		return f
	}
	w, f := c.word(r.Word, false)
	if f != nil {
		return f
	}
	if w.globAt >= 0 {
		return &finding{RuleShellGlob, "a redirection target with a glob"}
	}
	if (r.Op == syntax.DplIn || r.Op == syntax.DplOut) && (isDigits(w.text) || w.text == "-") {
		return nil // descriptor duplication or closing
	}
	if devFiles[w.text] {
		return nil
	}
	if !c.p.redirects {
		return &finding{RuleShellRedirect, "redirects to or from the file " + w.text + ", which the policy does not allow"}
	}
	if why := c.pathProblem(w); why != "" {
		return &finding{RuleShellRedirect, "redirects to or from " + w.text + ": " + why}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// argv checks an argument vector run without a shell: its words are taken
// literally (nothing is expanded).
func (c *shellCheck) argv(args []string) *finding {
	for _, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return &finding{RuleShellSyntax, "an argument holds a NUL byte, which truncates it"}
		}
	}
	words := make([]word, len(args))
	for i, a := range args {
		words[i] = literalWord(a)
	}
	return c.simple(words)
}
