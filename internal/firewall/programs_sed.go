package firewall

import (
	"fmt"
	"strings"
)

// sed: the script is parsed the way GNU sed parses it. The e command and
// the e flag of s run shell commands; r, R, w, W and the w flag of s read
// and write files named in the script. These are refused, as is any
// command or flag the parser does not know. A script file (-f) is refused:
// the firewall cannot see it.

func init() {
	register(&model{
		values:     flags("-e --expression -f --file -l --line-length -s --separate"),
		text:       flags("-e --expression -l --line-length -f --file"),
		textOps:    1,
		textUnless: flags("-e --expression -f --file"),
		aliases:    aliasMap("-e --expression -f --file -i --in-place -n --quiet -E --regexp-extended -r --regexp-extended -s --separate -z --null-data -u --unbuffered"),
		check:      checkSed,
	}, "sed", "gsed")
}

func checkSed(c *shellCheck, inv *invocation) *finding {
	if inv.has("-f") || inv.has("--file") {
		return &finding{RuleShellCode, "sed -f runs a script file the firewall cannot see"}
	}
	scripts := inv.values("-e", "--expression")
	if len(scripts) == 0 && len(inv.operands) > 0 {
		scripts = append(scripts, inv.operand(0))
	}
	for _, s := range scripts {
		if why := sedProblem(s.text); why != "" {
			return &finding{RuleShellCode, "sed script " + quoteShort(s.text) + ": " + why}
		}
	}
	return nil
}

// sedProblem parses a sed script and says what it refuses, or "".
func sedProblem(s string) string {
	p := &sedParser{s: s}
	return p.script()
}

type sedParser struct {
	s string
	i int
}

func (p *sedParser) eof() bool { return p.i >= len(p.s) }
func (p *sedParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *sedParser) skipSpace() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sedParser) script() string {
	for {
		for !p.eof() && strings.IndexByte(" \t\n;", p.s[p.i]) >= 0 {
			p.i++
		}
		if p.eof() {
			return ""
		}
		if p.peek() == '#' {
			for !p.eof() && p.s[p.i] != '\n' {
				p.i++
			}
			continue
		}
		if why := p.command(); why != "" {
			return why
		}
	}
}

func (p *sedParser) command() string {
	if why := p.address(); why != "" {
		return why
	}
	p.skipSpace()
	if p.peek() == ',' {
		p.i++
		p.skipSpace()
		if p.peek() == '+' || p.peek() == '~' {
			p.i++
		}
		if why := p.address(); why != "" {
			return why
		}
	}
	p.skipSpace()
	for p.peek() == '!' {
		p.i++
		p.skipSpace()
	}
	if p.eof() {
		return "a command is missing"
	}
	c := p.s[p.i]
	p.i++
	switch c {
	case '{':
		return "" // a block: its commands follow
	case '}', '=', 'd', 'D', 'g', 'G', 'h', 'H', 'n', 'N', 'p', 'P', 'x', 'z', 'F':
		return p.end()
	case 'l', 'L', 'q', 'Q':
		p.skipSpace()
		for !p.eof() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		return p.end()
	case ':':
		p.skipSpace()
		if p.eof() || p.s[p.i] == ';' || p.s[p.i] == '\n' {
			return "a label is missing"
		}
		p.toLineEndOrSemicolon()
		return ""
	case 'b', 't', 'T':
		p.toLineEndOrSemicolon()
		return ""
	case 'v':
		p.toLineEndOrSemicolon()
		return ""
	case 'a', 'i', 'c':
		p.text()
		return ""
	case 's':
		return p.substitute()
	case 'y':
		delim, ok := p.delim()
		if !ok {
			return "y needs a delimiter"
		}
		for k := 0; k < 2; k++ {
			if !p.until(delim, false) {
				return "unterminated y command"
			}
		}
		return p.end()
	case 'e':
		return "the e command runs a shell command"
	case 'r', 'R':
		return fmt.Sprintf("the %c command reads the file named in the script", c)
	case 'w', 'W':
		return fmt.Sprintf("the %c command writes the file named in the script", c)
	}
	return fmt.Sprintf("unknown sed command %q", c)
}

// address parses an optional address: a line number, first~step, $,
// /regex/ or \cregexc, with the I and M flags.
func (p *sedParser) address() string {
	switch c := p.peek(); {
	case c >= '0' && c <= '9':
		for !p.eof() && (p.s[p.i] >= '0' && p.s[p.i] <= '9' || p.s[p.i] == '~') {
			p.i++
		}
	case c == '$':
		p.i++
	case c == '/' || c == '\\':
		delim := byte('/')
		p.i++
		if c == '\\' {
			if p.eof() || p.s[p.i] == '\n' {
				return "bad regex delimiter"
			}
			delim = p.s[p.i]
			p.i++
		}
		if !p.until(delim, true) {
			return "unterminated address regex"
		}
		for !p.eof() && (p.s[p.i] == 'I' || p.s[p.i] == 'M') {
			p.i++
		}
	}
	return ""
}

func (p *sedParser) substitute() string {
	delim, ok := p.delim()
	if !ok {
		return "s needs a delimiter"
	}
	if !p.until(delim, true) || !p.until(delim, false) {
		return "unterminated s command"
	}
	for !p.eof() {
		switch c := p.s[p.i]; {
		case c == 'g' || c == 'p' || c == 'i' || c == 'I' || c == 'm' || c == 'M' || c >= '0' && c <= '9':
			p.i++
		case c == 'e':
			return "the e flag of s runs the pattern space as a shell command"
		case c == 'w':
			return "the w flag of s writes the file named in the script"
		default:
			return p.end()
		}
	}
	return ""
}

func (p *sedParser) delim() (byte, bool) {
	if p.eof() || p.s[p.i] == '\n' || p.s[p.i] == '\\' {
		return 0, false
	}
	d := p.s[p.i]
	p.i++
	return d, true
}

// until consumes up to and including the next unescaped delim; in a regex
// a bracket expression may hold the delimiter unescaped.
func (p *sedParser) until(delim byte, regex bool) bool {
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c == '\\':
			p.i += 2
			continue
		case c == delim:
			p.i++
			return true
		case regex && c == '[':
			p.bracket()
			continue
		case c == '\n' && !regex:
			// a newline in a replacement must be escaped
			return false
		}
		p.i++
	}
	return false
}

// bracket skips a bracket expression: "[...]", "[]...]", "[^]...]", with
// "[:class:]", "[=e=]" and "[.c.]" inside.
func (p *sedParser) bracket() {
	start := p.i
	p.i++ // [
	if p.peek() == '^' {
		p.i++
	}
	if p.peek() == ']' {
		p.i++
	}
	for !p.eof() {
		c := p.s[p.i]
		if c == '[' && p.i+1 < len(p.s) && strings.IndexByte(":=.", p.s[p.i+1]) >= 0 {
			end := strings.Index(p.s[p.i+2:], string(p.s[p.i+1])+"]")
			if end < 0 {
				break
			}
			p.i += 2 + end + 2
			continue
		}
		if c == ']' {
			p.i++
			return
		}
		if c == '\n' {
			break
		}
		p.i++
	}
	// no closing bracket: the '[' is an ordinary character
	p.i = start + 1
}

// end requires the end of a command: spaces, then ';', newline, '}', '#'
// or the end of the script.
func (p *sedParser) end() string {
	p.skipSpace()
	if p.eof() {
		return ""
	}
	switch p.s[p.i] {
	case ';', '\n':
		p.i++
		return ""
	case '}', '#':
		return ""
	}
	return fmt.Sprintf("unexpected %q after a command", p.s[p.i])
}

func (p *sedParser) toLineEndOrSemicolon() {
	for !p.eof() && p.s[p.i] != '\n' && p.s[p.i] != ';' {
		p.i++
	}
}

// text consumes the text of a, i or c: to the end of the line, with
// backslash-newline continuing it.
func (p *sedParser) text() {
	for !p.eof() {
		c := p.s[p.i]
		if c == '\\' {
			p.i += 2
			continue
		}
		if c == '\n' {
			return
		}
		p.i++
	}
}

func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}
