package firewall

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// word is a shell word after quote removal, as the program receives it
// when the shell does not expand it.
type word struct {
	// text is the value after quote removal (glob characters kept).
	text string
	// pattern is text with quoted glob characters escaped, for path.Match.
	pattern string
	// globAt is the index in text of the first unquoted glob character
	// (*, ?, or [ with a closing ]), or -1.
	globAt int
}

func literalWord(s string) word { return word{text: s, pattern: escapeGlob(s), globAt: -1} }

func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// word resolves a parsed word to its literal value. Anything the shell
// would expand is refused: parameter expansion, command and process
// substitution, arithmetic, tilde, ANSI-C and locale quoting, brace
// expansion and extended globs; in the program name (first) also plain
// globs. Globs in arguments are allowed as the policy says.
func (c *shellCheck) word(w *syntax.Word, first bool) (word, *finding) {
	wd, f := resolveWord(w)
	if f != nil {
		return wd, f
	}
	if wd.globAt < 0 {
		return wd, nil
	}
	switch {
	case first:
		return wd, &finding{RuleShellGlob, "the program name " + wd.text + " holds a glob, so the shell decides which program runs"}
	case c.p.globs == "none":
		return wd, &finding{RuleShellGlob, "the argument " + wd.text + " holds a glob, which the policy does not allow"}
	case c.p.globs == "any":
		return wd, nil
	}
	// anchored: the expansion cannot start with "-" unless the word is a
	// flag whose name is literal ("--include=*.go").
	if wd.globAt == 0 || (strings.HasPrefix(wd.text, "-") && !strings.Contains(wd.text[:wd.globAt], "=")) {
		return wd, &finding{RuleShellGlob, "the glob " + wd.text + " can expand to a file named like a flag; anchor it (./" + strings.TrimPrefix(wd.text, "./") + ")"}
	}
	return wd, nil
}

func resolveWord(w *syntax.Word) (word, *finding) {
	if hasBraceExpansion(w) {
		return word{}, &finding{RuleShellGlob, "brace expansion builds words at run time"}
	}
	var text, pat strings.Builder
	globAt := -1
	unquoted := func(s string, atStart bool) {
		for i := 0; i < len(s); i++ {
			ch := s[i]
			if ch == '\\' {
				if i+1 < len(s) {
					i++
					text.WriteByte(s[i])
					pat.WriteString(escapeGlob(s[i : i+1]))
				} else {
					text.WriteByte('\\')
					pat.WriteString(`\\`)
				}
				continue
			}
			glob := ch == '*' || ch == '?' || (ch == '[' && strings.IndexByte(s[i+1:], ']') >= 0)
			if glob && globAt < 0 {
				globAt = text.Len()
			}
			text.WriteByte(ch)
			pat.WriteByte(ch)
		}
	}
	for i, part := range w.Parts {
		switch x := part.(type) {
		case *syntax.Lit:
			if tildeExpands(x.Value, i == 0) {
				return word{}, &finding{RuleShellExpansion, "tilde expansion (~) names a home directory at run time"}
			}
			unquoted(x.Value, i == 0)
		case *syntax.SglQuoted:
			if x.Dollar {
				return word{}, &finding{RuleShellExpansion, "ANSI-C quoting ($'...') decodes escapes at run time"}
			}
			text.WriteString(x.Value)
			pat.WriteString(escapeGlob(x.Value))
		case *syntax.DblQuoted:
			if x.Dollar {
				return word{}, &finding{RuleShellExpansion, "locale quoting ($\"...\") is translated at run time"}
			}
			for _, inner := range x.Parts {
				lit, ok := inner.(*syntax.Lit)
				if !ok {
					return word{}, expansionFinding(inner)
				}
				v := unescapeDouble(lit.Value)
				text.WriteString(v)
				pat.WriteString(escapeGlob(v))
			}
		case *syntax.ExtGlob:
			return word{}, &finding{RuleShellGlob, "extended glob " + x.Op.String() + "(...) matches file names at run time"}
		case *syntax.BraceExp:
			return word{}, &finding{RuleShellGlob, "brace expansion builds words at run time"}
		default:
			return word{}, expansionFinding(part)
		}
	}
	return word{text: text.String(), pattern: pat.String(), globAt: globAt}, nil
}

// tildeExpands reports whether bash expands a tilde in an unquoted literal:
// at the start of a word, or after an unquoted '=' or ':' (bash expands
// "--prefix=~/x" and "a:~/b").
func tildeExpands(lit string, wordStart bool) bool {
	for i := 0; i < len(lit); i++ {
		switch lit[i] {
		case '\\':
			i++
		case '~':
			if (i == 0 && wordStart) || (i > 0 && (lit[i-1] == '=' || lit[i-1] == ':')) {
				return true
			}
		}
	}
	return false
}

func unescapeDouble(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
			i++
			if s[i] != '\n' {
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func expansionFinding(part syntax.WordPart) *finding {
	what := "an expansion"
	switch x := part.(type) {
	case *syntax.ParamExp:
		what = "parameter expansion ($" + paramName(x) + ")"
	case *syntax.CmdSubst:
		what = "command substitution"
	case *syntax.ArithmExp:
		what = "arithmetic expansion"
	case *syntax.ProcSubst:
		what = "process substitution"
	}
	return &finding{RuleShellExpansion, what + " decides the value at run time"}
}

func paramName(p *syntax.ParamExp) string {
	if p.Param != nil {
		return p.Param.Value
	}
	return "..."
}

// noExpansion refuses any expansion in a word that is matched or fed as
// data (case patterns, here-documents), where globs are harmless.
func noExpansion(w *syntax.Word) *finding {
	for _, part := range w.Parts {
		switch x := part.(type) {
		case *syntax.Lit, *syntax.SglQuoted, *syntax.ExtGlob:
			if q, ok := x.(*syntax.SglQuoted); ok && q.Dollar {
				return &finding{RuleShellExpansion, "ANSI-C quoting ($'...') decodes escapes at run time"}
			}
		case *syntax.DblQuoted:
			for _, inner := range x.Parts {
				if _, ok := inner.(*syntax.Lit); !ok {
					return expansionFinding(inner)
				}
			}
		default:
			return expansionFinding(part)
		}
	}
	return nil
}

// hasBraceExpansion reports whether bash expands braces in w: a list
// ({a,b}) or a sequence ({1..3}); "{}" and "{a}" stay as they are.
func hasBraceExpansion(w *syntax.Word) bool {
	cp := &syntax.Word{Parts: append([]syntax.WordPart(nil), w.Parts...)}
	if !syntax.SplitBraces(cp) {
		return false
	}
	var walk func(parts []syntax.WordPart) bool
	walk = func(parts []syntax.WordPart) bool {
		for _, p := range parts {
			if b, ok := p.(*syntax.BraceExp); ok {
				if b.Sequence || len(b.Elems) > 1 {
					return true
				}
				for _, e := range b.Elems {
					if walk(e.Parts) {
						return true
					}
				}
			}
		}
		return false
	}
	return walk(cp.Parts)
}
