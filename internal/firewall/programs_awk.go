package firewall

import (
	"fmt"
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
	depth := 0
	printDepth, getlineDepth := -1, -1
	operand := false // the previous token ends an operand (a '/' divides)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i += 2
			continue
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		case c == '\n' || c == ';' || c == '{' || c == '}':
			if depth == printDepth || depth < printDepth {
				printDepth = -1
			}
			if depth <= getlineDepth {
				getlineDepth = -1
			}
			operand = c == '}'
			i++
			continue
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return "unterminated string"
			}
			i = j + 1
			operand = true
			continue
		case c == '/' && !operand:
			j := i + 1
			inBracket := false
			for j < len(s) && (s[j] != '/' || inBracket) {
				switch s[j] {
				case '\\':
					j++
				case '[':
					inBracket = true
				case ']':
					inBracket = false
				case '\n':
					return "unterminated regular expression"
				}
				j++
			}
			if j >= len(s) {
				return "unterminated regular expression"
			}
			i = j + 1
			operand = true
			continue
		case c == '@':
			return "gawk @ directives and indirect calls are not supported"
		case c == '|':
			if i+1 < len(s) && s[i+1] == '|' {
				i += 2
				operand = false
				continue
			}
			return "a pipe to or from a command runs it"
		case c == '(' || c == '[':
			depth++
			operand = false
			i++
			continue
		case c == ')' || c == ']':
			depth--
			operand = true
			i++
			continue
		case c == '>':
			if printDepth >= 0 && depth == printDepth {
				return "print or printf redirected to a file"
			}
			i++
			if i < len(s) && (s[i] == '=' || s[i] == '>') {
				i++
			}
			operand = false
			continue
		case c == '<':
			if getlineDepth >= 0 && depth == getlineDepth {
				return "getline reads a file"
			}
			i++
			operand = false
			continue
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			id := s[i:j]
			i = j
			operand = true
			switch id {
			case "system":
				return "system() runs a shell command"
			case "print", "printf":
				printDepth = depth
				operand = false
			case "getline":
				getlineDepth = depth
			case "in", "return", "case", "do", "else":
				operand = false
			}
			continue
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == 'x' || s[i] == 'X' || s[i] >= 'a' && s[i] <= 'f' || s[i] >= 'A' && s[i] <= 'F') {
				i++
			}
			operand = true
			continue
		case c == '$':
			i++
			operand = false
			continue
		case c == '+' || c == '-':
			if i+1 < len(s) && s[i+1] == c { // ++ and -- keep what was before
				i += 2
				continue
			}
			i++
			operand = false
			continue
		default:
			i++
			operand = false
			continue
		}
	}
	if depth != 0 {
		return fmt.Sprintf("unbalanced parentheses or brackets (%d)", depth)
	}
	return ""
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentByte(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
