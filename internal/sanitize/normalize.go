package sanitize

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalize returns the text the detector judges: NFKC-normalised, case
// folded, with zero-width, bidi-control and variation-selector characters
// removed, Unicode tag characters (U+E0000 block, "ASCII smuggling") decoded to
// the ASCII they hide, and common Cyrillic/Greek look-alikes folded to Latin.
// It does not decode base64/hex probes, leetspeak or spaced-out letters: those
// are views [Sanitizer.Check] derives from the normalised text.
//
// Normalize never fails; invalid UTF-8 is replaced by U+FFFD.
func Normalize(s string) string {
	var st normStats
	return normalize(s, &st)
}

// normStats counts what normalisation removed or folded; the obfuscation
// rules read it.
type normStats struct {
	invisible int // zero-width and variation selectors between letters
	bidi      int // bidi embedding/override/isolate controls
	tags      int // Unicode tag characters
	confused  int // look-alike letters folded to Latin
	mixed     int // words mixing Latin with Cyrillic/Greek letters
}

// isInvisible reports format characters that render as nothing and are
// stripped before matching.
func isInvisible(r rune) bool {
	switch {
	case r == 0x00AD, r == 0x034F, r == 0x061C, r == 0x115F, r == 0x1160, r == 0x17B4, r == 0x17B5, r == 0x180E:
		return true
	case r >= 0x200B && r <= 0x200D, r == 0x2060, r == 0x2061, r == 0x2062, r == 0x2063, r == 0x2064, r == 0xFEFF:
		return true
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF: // variation selectors
		return true
	case r == 0x3164, r == 0xFFA0:
		return true
	}
	return false
}

func isBidi(r rune) bool {
	return r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// confusables folds look-alike letters (lower case, after NFKC) to Latin.
var confusables = map[rune]rune{
	// Cyrillic
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't',
	'у': 'y', 'х': 'x', 'ѕ': 's', 'і': 'i', 'ї': 'i', 'ј': 'j', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'һ': 'h', 'ɡ': 'g',
	'ӏ': 'l', 'ү': 'y', 'ց': 'g', 'ո': 'n', 'ս': 'u', 'օ': 'o',
	// Greek
	'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u',
	'χ': 'x', 'ω': 'w', 'ϲ': 'c', 'ϳ': 'j', 'γ': 'y', 'μ': 'u',
	// Latin extensions and symbols that NFKC keeps
	'ı': 'i', 'ȷ': 'j', 'ł': 'l', 'ø': 'o', 'ß': 's', 'ſ': 's', 'ǀ': 'l', 'ɑ': 'a', 'ɩ': 'i', 'ʟ': 'l',
}

// normalize implements Normalize and records statistics in st.
func normalize(s string, st *normStats) string {
	// Fast path: printable ASCII needs only lower-casing.
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	var tag strings.Builder
	tagRun := 0
	flushTags := func() {
		if tagRun > 0 {
			// Tag sequences of up to 7 characters follow U+1F3F4 in
			// subdivision flags; longer runs hide text.
			if tagRun > 7 {
				st.tags += tagRun
				b.WriteByte(' ')
				b.WriteString(tag.String())
				b.WriteByte(' ')
			}
			tag.Reset()
			tagRun = 0
		}
	}
	for _, r := range s {
		if r >= 0xE0000 && r <= 0xE007F {
			tagRun++
			if r >= 0xE0020 && r <= 0xE007E {
				tag.WriteRune(r - 0xE0000)
			}
			continue
		}
		flushTags()
		switch {
		case isInvisible(r):
			st.invisible++
			continue
		case isBidi(r):
			st.bidi++
			continue
		}
		b.WriteRune(r)
	}
	flushTags()
	t := norm.NFKC.String(b.String())
	b.Reset()
	b.Grow(len(t))
	// Lower-case, fold confusables and count words that mix scripts.
	latin, other := false, false
	for _, r := range t {
		if r < utf8.RuneSelf {
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			if isASCIILetter(byte(r)) {
				latin = true
			} else {
				if latin && other {
					st.mixed++
				}
				latin, other = false, false
			}
			b.WriteByte(byte(r))
			continue
		}
		r = unicode.ToLower(r)
		if c, ok := confusables[r]; ok {
			st.confused++
			if unicode.In(r, unicode.Cyrillic, unicode.Greek) {
				other = true
			}
			r = c
		} else if unicode.IsLetter(r) {
			if unicode.Is(unicode.Latin, r) {
				latin = true
			} else if unicode.In(r, unicode.Cyrillic, unicode.Greek) {
				other = true
			}
		} else {
			if latin && other {
				st.mixed++
			}
			latin, other = false, false
		}
		b.WriteRune(r)
	}
	if latin && other {
		st.mixed++
	}
	return b.String()
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// leet maps leetspeak digits and symbols to the letters they stand for.
func leet(c byte) byte {
	switch c {
	case '0':
		return 'o'
	case '1', '!', '|':
		return 'i'
	case '3':
		return 'e'
	case '4', '@':
		return 'a'
	case '5', '$':
		return 's'
	case '7', '+':
		return 't'
	case '8':
		return 'b'
	}
	return 0
}

// Probe limits: encoded runs shorter than minProbe are words or ids, longer
// than maxProbe are files; at most maxProbes are decoded per text.
const (
	minProbe  = 16
	maxProbe  = 8 << 10
	maxProbes = 8
)

// decodeProbes finds base64 and hex runs in s that decode to printable text
// and returns the decoded texts, each tagged with its kind.
func decodeProbes(s string) (out []probe) {
	i := 0
	for i < len(s) && len(out) < maxProbes {
		c := s[i]
		if !isB64(c) {
			i++
			continue
		}
		j := i
		for j < len(s) && isB64(s[j]) {
			j++
		}
		run := s[i:j]
		i = j
		if len(run) < minProbe || len(run) > maxProbe {
			continue
		}
		if isHexRun(run) {
			if len(run)%2 == 0 {
				if d, err := hex.DecodeString(run); err == nil && printable(d) {
					out = append(out, probe{kind: "hex", text: string(d)})
				}
			}
			continue
		}
		if d, ok := decodeB64(run); ok && printable(d) {
			out = append(out, probe{kind: "base64", text: string(d)})
		}
	}
	return out
}

type probe struct{ kind, text string }

func isB64(c byte) bool {
	return isASCIILetter(c) || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-' || c == '_'
}

func isHexRun(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func decodeB64(run string) ([]byte, bool) {
	// A base64 run of real text mixes cases; plain words do not.
	var lower, upper bool
	for i := 0; i < len(run); i++ {
		c := run[i]
		lower = lower || 'a' <= c && c <= 'z'
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if !lower || !upper {
		return nil, false
	}
	trimmed := strings.TrimRight(run, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(trimmed, "-_") {
		enc = base64.RawURLEncoding
	}
	// Drop a trailing partial quantum rather than fail.
	if len(trimmed)%4 == 1 {
		trimmed = trimmed[:len(trimmed)-1]
	}
	d, err := enc.DecodeString(trimmed)
	return d, err == nil
}

// printable reports whether d is UTF-8 text: at least 90% printable runes and
// some letters and a space (decoded words, not binary noise).
func printable(d []byte) bool {
	if len(d) < 8 || !utf8.Valid(d) {
		return false
	}
	var n, good, letters, spaces int
	for _, r := range string(d) {
		n++
		switch {
		case r == ' ':
			spaces++
			good++
		case unicode.IsLetter(r):
			letters++
			good++
		case unicode.IsPrint(r) || r == '\n' || r == '\t':
			good++
		}
	}
	return good*10 >= n*9 && letters*2 >= n && spaces > 0
}
