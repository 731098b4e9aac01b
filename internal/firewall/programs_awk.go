package firewall

import (
	"fmt"
	"strings"
)

// awk: the program is tokenised the way awk reads it (strings, regular
// expressions where an operand may start, comments) and refused when it
// can run commands or touch files of its choosing: system(), a pipe to or
// from a command ("cmd" | getline, print | "cmd", gawk's |&), output
// redirection of print and printf (> and >> outside parentheses), getline
// from a file, and gawk's @load/@include and indirect calls. Program files
// (-f, -E) and extensions (-l, -i) are refused: the firewall cannot see
// them.

func init() {
	register(&model{
		values:     flags("-F --field-separator -v --assign -f --file -e --source -i --include -l --load -E --exec -W"),
		text:       flags("-F --field-separator -v --assign -e --source -W -f --file -E --exec -i --include -l --load"),
		textOps:    1,
		textUnless: flags("-f --file -e --source -E --exec"),
		check:      checkAwk,
	}, "awk", "gawk", "mawk", "nawk")
}

func checkAwk(c *shellCheck, inv *invocation) *finding {
	for _, spec := range []string{"-f", "--file", "-E", "--exec", "-i", "--include", "-l", "--load"} {
		if inv.has(spec) {
			return &finding{RuleShellCode, "awk " + spec + " loads a program file or extension the firewall cannot see"}
		}
	}
	progs := inv.values("-e", "--source")
	if len(progs) == 0 && len(inv.operands) > 0 {
		progs = append(progs, inv.operand(0))
	}
	for _, p := range progs {
		if why := awkProblem(p.text); why != "" {
			return &finding{RuleShellCode, "awk program " + quoteShort(p.text) + ": " + why}
		}
	}
	return nil
}

// awkProblem scans an awk program and says what it refuses, or "".
func awkProblem(s string) string {
	a := &awkScanner{s: s, printDepth: -1, getlineDepth: -1}
	for a.i < len(s) {
		if why := a.next(); why != "" {
			return why
		}
	}
	if a.depth != 0 {
		return fmt.Sprintf("unbalanced parentheses or brackets (%d)", a.depth)
	}
	return ""
}

// awkScanner is the state of scanning one awk program.
type awkScanner struct {
	s                        string
	i                        int
	depth                    int  // parentheses and brackets
	printDepth, getlineDepth int  // depth of the print or getline in progress, or -1
	operand                  bool // the previous token ends an operand (so '/' divides)
}

// next scans one token and says what it refuses, or "".
func (a *awkScanner) next() string {
	s, c := a.s, a.s[a.i]
	switch {
	case c == ' ' || c == '\t' || c == '\r':
		a.i++
	case c == '\\' && a.i+1 < len(s) && s[a.i+1] == '\n':
		a.i += 2
	case c == '#':
		for a.i < len(s) && s[a.i] != '\n' {
			a.i++
		}
	case c == '\n' || c == ';' || c == '{' || c == '}':
		a.endStatement(c == '}')
	case c == '"':
		return a.quoted('"', "unterminated string")
	case c == '/' && !a.operand:
		return a.quoted('/', "unterminated regular expression")
	case c == '@':
		return "gawk @ directives and indirect calls are not supported"
	case c == '|':
		if !strings.HasPrefix(s[a.i:], "||") {
			return "a pipe to or from a command runs it"
		}
		a.i += 2
		a.operand = false
	case c == '>' || c == '<':
		return a.redirect(c)
	case isIdentStart(c):
		return a.identifier()
	default:
		a.punctuation(c)
	}
	return ""
}

func (a *awkScanner) endStatement(closingBrace bool) {
	if a.depth <= a.printDepth {
		a.printDepth = -1
	}
	if a.depth <= a.getlineDepth {
		a.getlineDepth = -1
	}
	a.operand = closingBrace
	a.i++
}

// quoted skips a string or a regular expression (where a bracket
// expression may hold the delimiter).
func (a *awkScanner) quoted(q byte, unterminated string) string {
	j, inBracket := a.i+1, false
	for ; j < len(a.s) && (a.s[j] != q || inBracket); j++ {
		switch a.s[j] {
		case '\\':
			j++
		case '[':
			inBracket = q == '/'
		case ']':
			inBracket = false
		case '\n':
			if q == '/' {
				return unterminated
			}
		}
	}
	if j >= len(a.s) {
		return unterminated
	}
	a.i, a.operand = j+1, true
	return ""
}

// redirect refuses print > file and getline < file; elsewhere > and < compare.
func (a *awkScanner) redirect(c byte) string {
	switch {
	case c == '>' && a.printDepth >= 0 && a.depth == a.printDepth:
		return "print or printf redirected to a file"
	case c == '<' && a.getlineDepth >= 0 && a.depth == a.getlineDepth:
		return "getline reads a file"
	}
	a.i++
	if a.i < len(a.s) && (a.s[a.i] == '=' || a.s[a.i] == '>') {
		a.i++
	}
	a.operand = false
	return ""
}

func (a *awkScanner) identifier() string {
	j := a.i
	for j < len(a.s) && isIdentByte(a.s[j]) {
		j++
	}
	id := a.s[a.i:j]
	a.i, a.operand = j, true
	switch id {
	case "system":
		return "system() runs a shell command"
	case "print", "printf":
		a.printDepth, a.operand = a.depth, false
	case "getline":
		a.getlineDepth = a.depth
	case "in", "return", "case", "do", "else":
		a.operand = false
	}
	return ""
}

func (a *awkScanner) punctuation(c byte) {
	s := a.s
	switch {
	case c == '(' || c == '[':
		a.depth++
		a.operand = false
	case c == ')' || c == ']':
		a.depth--
		a.operand = true
	case c >= '0' && c <= '9' || c == '.':
		for a.i+1 < len(s) && (isIdentByte(s[a.i+1]) || s[a.i+1] == '.') {
			a.i++
		}
		a.operand = true
	case (c == '+' || c == '-') && a.i+1 < len(s) && s[a.i+1] == c:
		a.i++ // ++ and -- keep what was before
	default:
		a.operand = false
	}
	a.i++
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentByte(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
