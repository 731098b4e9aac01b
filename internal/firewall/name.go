package firewall

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// NormalizeName returns the canonical form of a tool name, the form every
// comparison in this package uses: Unicode NFKC (so fullwidth "ｅｘｅｃ" becomes
// "exec"), invisible format characters removed (zero-width spaces and
// joiners, bidi controls, tag characters, soft hyphens, variation
// selectors), common Cyrillic and Greek look-alikes folded to Latin, case
// folded, and surrounding space trimmed. "Exec", "ｅｘｅｃ", "e\u200bxec" and
// "еxес" (Cyrillic) all normalise to "exec".
//
// The tools package uses it too, so a registry and a firewall agree on what
// "the same name" means.
func NormalizeName(s string) string {
	if printableASCII(s) { // fast path: NFKC and folding are ToLower here
		return strings.ToLower(strings.TrimSpace(s))
	}
	return cases.Fold().String(foldVisible(s))
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// foldVisible applies NFKC, strips invisible characters and folds
// confusables, but keeps case (name tokenisation needs camelCase).
func foldVisible(s string) string {
	if printableASCII(s) {
		return strings.TrimSpace(s)
	}
	s = norm.NFKC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if invisible(r) {
			continue
		}
		if c, ok := confusables[r]; ok {
			r = c
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// invisible reports whether r renders as nothing and can be used to hide a
// word from a naive comparison.
func invisible(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true
	case unicode.Is(unicode.Cf, r): // ZWSP, ZWJ, ZWNJ, bidi controls, tags, soft hyphen, BOM
		return true
	case r == 0x034F, r == 0x115F, r == 0x1160, r == 0x3164, r == 0xFFA0: // CGJ, Hangul fillers
		return true
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF: // variation selectors
		return true
	case unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r':
		return true
	}
	return false
}

// confusables maps the Cyrillic and Greek letters that look like Latin ones
// (upper and lower case) to their Latin twin. It is deliberately small: the
// letters an attacker can use to spell command and tool names.
var confusables = map[rune]rune{
	'а': 'a', 'А': 'A', 'в': 'b', 'В': 'B', 'е': 'e', 'Е': 'E', 'ё': 'e', 'к': 'k', 'К': 'K',
	'м': 'm', 'М': 'M', 'н': 'h', 'Н': 'H', 'о': 'o', 'О': 'O', 'р': 'p', 'Р': 'P',
	'с': 'c', 'С': 'C', 'т': 't', 'Т': 'T', 'у': 'y', 'У': 'Y', 'х': 'x', 'Х': 'X',
	'і': 'i', 'І': 'I', 'ј': 'j', 'Ј': 'J', 'ѕ': 's', 'Ѕ': 'S', 'ԁ': 'd', 'һ': 'h',
	'ӏ': 'l', 'Ӏ': 'I', 'ԛ': 'q', 'ԝ': 'w', 'ɡ': 'g', 'ɑ': 'a',
	'α': 'a', 'Α': 'A', 'β': 'b', 'Β': 'B', 'ε': 'e', 'Ε': 'E', 'η': 'n', 'Η': 'H',
	'ι': 'i', 'Ι': 'I', 'κ': 'k', 'Κ': 'K', 'Μ': 'M', 'ν': 'v', 'Ν': 'N', 'ο': 'o',
	'Ο': 'O', 'ρ': 'p', 'Ρ': 'P', 'τ': 't', 'Τ': 'T', 'υ': 'u', 'Υ': 'Y', 'χ': 'x',
	'Χ': 'X', 'Ζ': 'Z', 'ѡ': 'w',
}

// skeleton is the normalised name without separators, so "run_command",
// "run-command", "Run Command" and "RunCommand" compare equal.
func skeleton(name string) string {
	n := NormalizeName(name)
	return strings.Map(func(r rune) rune {
		if isNameSep(r) {
			return -1
		}
		return r
	}, n)
}

func isNameSep(r rune) bool {
	return !unicode.IsLetter(r) && !unicode.IsDigit(r)
}

// nameTokens splits a name into folded words at separators and camelCase
// boundaries: "runShellCommand" and "run_shell-command" both give
// [run shell command].
func nameTokens(name string) []string {
	s := foldVisible(name)
	var toks []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			toks = append(toks, NormalizeName(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(s)
	for i, r := range rs {
		if isNameSep(r) {
			flush()
			continue
		}
		if unicode.IsUpper(r) && len(cur) > 0 {
			prevLower := unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1])
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if prevLower || (unicode.IsUpper(rs[i-1]) && nextLower) {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return toks
}

// containsSeq reports whether hay contains needle as a contiguous run.
func containsSeq(hay, needle []string) bool {
	if len(needle) == 0 || len(needle) > len(hay) {
		return false
	}
outer:
	for i := 0; i+len(needle) <= len(hay); i++ {
		for j := range needle {
			if hay[i+j] != needle[j] {
				continue outer
			}
		}
		return true
	}
	return false
}
