package sanitize

import (
	"encoding/base64"
	"encoding/hex"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalize returns the text the detector judges: NFKC-normalised, case
// folded, with zero-width, bidi-control and variation-selector characters
// removed, Unicode tag characters (U+E0000 block, "ASCII smuggling") decoded
// to the ASCII they hide, terminal formatting undone (backspace overstrike
// as in man pages, ANSI CSI escape sequences), and Cyrillic/Greek look-alikes
// folded to Latin in words that mix them with Latin letters or consist of
// look-alikes only (genuine Russian or Greek words are kept). It does not
// decode base64/hex probes, leetspeak or spaced-out letters: those are views
// [Sanitizer.Check] derives from the normalised text.
//
// Normalize never fails; invalid UTF-8 is replaced by U+FFFD.
func Normalize(s string) string {
	var n normalizer
	n.run(s)
	return string(n.out)
}

// normStats counts what normalisation removed or folded.
type normStats struct {
	invisible int // zero-width characters between Latin letters
	bidi      int // bidi embedding/override/isolate controls
	tags      int // Unicode tag characters
	mixed     int // words mixing Latin with Cyrillic/Greek letters
}

// Obfuscation signals found by normalisation and tokenisation, in the order
// their rule ids are reported.
const (
	evInvisible = iota
	evBidi
	evTags
	evMixed
	evBase64
	evHex
	evSpaced
	evLeet
	numEvents
)

var eventRules = [numEvents]struct {
	id     string
	weight float64
	min    int // occurrences in a passage needed to fire
}{
	evInvisible: {"obfuscation.invisible_chars", wInvisible, 3},
	evBidi:      {"obfuscation.bidi_controls", wBidi, 1},
	evTags:      {"obfuscation.tag_chars", wTags, 1},
	evMixed:     {"obfuscation.mixed_script", wMixedScript, 1},
	evBase64:    {"obfuscation.base64", wEncoded, 1},
	evHex:       {"obfuscation.hex", wEncoded, 1},
	evSpaced:    {"obfuscation.spaced_letters", wSpaced, 1},
	evLeet:      {"obfuscation.leetspeak", wLeet, 1},
}

// ruleFlood is the document-level token-flood signal.
const ruleFlood = "obfuscation.token_flood"

type event struct {
	kind uint8
	off  int32 // byte offset in the original text
	tok  int32 // index of the token it belongs to (set by analyze)
}

// checkpoint maps folded offsets back to the original text: a folded offset
// o >= fo (up to the next checkpoint) came from orig + (o - fo).
type checkpoint struct{ fo, orig int32 }

// normalizer builds the folded text, the offset map, the events and the
// base64/hex runs worth decoding.
type normalizer struct {
	out    []byte
	cps    []checkpoint
	delta  int32 // orig - folded at the end of out
	st     normStats
	events []event
	runs   [][2]int // base64/hex runs of at least minProbe bytes (original offsets)

	// The current word (a run of letters, digits and marks) that holds a
	// non-ASCII letter; words of ASCII letters only are not tracked.
	wStart, wOrig int // offsets in out and in the original; wStart < 0: none
	wFlags        uint8
	wEndOrig      int // original offset just after the word's last rune

	prevGenuine bool // the previous word was genuine Cyrillic or Greek
	src         string
	exact       bool
	pendInv     []int // invisible characters after a Latin letter, awaiting the next one

	tag     []byte
	tagRun  int
	tagOrig int
}

// Word flags.
const (
	wLatin   = 1 << iota // has Latin letters
	wOther               // has Cyrillic or Greek letters
	wGenuine             // has Cyrillic or Greek letters that are not look-alikes
	wConfuse             // has look-alikes
)

func (n *normalizer) reset(size int) {
	n.out = n.out[:0]
	if cap(n.out) < size {
		n.out = make([]byte, 0, size)
	}
	n.cps = n.cps[:0]
	n.delta = 0
	n.st = normStats{}
	n.events = n.events[:0]
	n.runs = n.runs[:0]
	n.wStart = -1
	n.prevGenuine = false
	n.pendInv = n.pendInv[:0]
	n.tag = n.tag[:0]
	n.tagRun = 0
}

// sync records a checkpoint if output appended now comes from orig.
func (n *normalizer) sync(orig int) {
	if d := int32(orig) - int32(len(n.out)); d != n.delta {
		if k := len(n.cps); k > 0 && int(n.cps[k-1].fo) == len(n.out) {
			n.cps[k-1].orig = int32(orig)
		} else {
			n.cps = append(n.cps, checkpoint{int32(len(n.out)), int32(orig)})
		}
		n.delta = d
	}
}

// run normalises s into n.out.
func (n *normalizer) run(s string) {
	n.reset(len(s))
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || c == '\b' || c == 0x1b {
			ascii = false
			break
		}
	}
	if ascii {
		// Fast path: printable ASCII needs only lower-casing.
		out := n.out
		for i := 0; i < len(s); i++ {
			out = append(out, lowerASCII[s[i]])
		}
		n.out = out
		n.runs = findRuns(s, n.runs)
		return
	}
	for i := 0; i < len(s); {
		e := i + norm.NFKC.QuickSpanString(s[i:])
		n.fold(s, i, e, 0, true)
		if e >= len(s) {
			break
		}
		j := e + norm.NFKC.NextBoundaryInString(s[e:], true)
		if j <= e {
			_, sz := utf8.DecodeRuneInString(s[e:])
			j = e + sz
		}
		n.fold(norm.NFKC.String(s[e:j]), 0, -1, e, false)
		i = j
	}
	n.endWord(-1)
	n.flushTags()
	n.runs = findRuns(s, n.runs)
}

// findRuns appends the base64/hex runs of at least minProbe bytes of s (at
// most 4*maxProbes) to runs. The loop has no branch that depends on the
// text but the rare end of a long run.
func findRuns(s string, runs [][2]int) [][2]int {
	n := 0
	for i := 0; i < len(s); i++ {
		next := (n + 1) & b64Mask[s[i]]
		if n >= minProbe && next == 0 {
			if len(runs) >= 4*maxProbes {
				return runs
			}
			runs = append(runs, [2]int{i - n, i})
		}
		n = next
	}
	if n >= minProbe && len(runs) < 4*maxProbes {
		runs = append(runs, [2]int{len(s) - n, len(s)})
	}
	return runs
}

// b64Mask is all ones for the bytes of base64 and hex runs, 0 otherwise.
var b64Mask = func() (t [256]int) {
	for c := range t {
		if b64Byte[c] {
			t[c] = -1
		}
	}
	return t
}()

// fold appends the folded runes of src[from:to] (to < 0: all of src). With
// exact, src is the original text; otherwise it is a normalised segment
// that came from the original offset base.
func (n *normalizer) fold(src string, from, to, base int, exact bool) {
	if to < 0 {
		to = len(src)
	}
	n.src, n.exact = src, exact
	for k := from; k < to; {
		c := src[k]
		if c < utf8.RuneSelf && c != '\b' && c != 0x1b && n.tagRun == 0 && !(c == '_' && k+1 < to && src[k+1] == '\b') {
			// A run of plain ASCII: one checkpoint, then byte by byte, with
			// the state in locals.
			if exact {
				n.sync(k)
			} else {
				n.sync(base)
			}
			out := n.out
			wOpen := n.wStart >= 0
			pend := len(n.pendInv) > 0
			for ; k < to; k++ {
				c := src[k]
				info := asciiInfo[c]
				if info&infoSpecial != 0 && (c != '_' || k+1 < to && src[k+1] == '\b') {
					break
				}
				cc := info & infoClass
				if cc == 0 {
					if wOpen {
						n.out = out
						n.endWord(k)
						out = n.out
						wOpen = false
					}
					if pend {
						n.pendInv = n.pendInv[:0]
						pend = false
					}
				} else if wOpen || pend {
					if cc == 2 && pend {
						n.latinLetter()
						pend = false
					}
					if wOpen {
						if cc == 2 {
							n.wFlags |= wLatin
						}
						n.wEndOrig = k + 1
						if !exact {
							n.wEndOrig = base
						}
					}
				}
				out = append(out, lowerASCII[c])
			}
			n.out = out
			continue
		}
		o := base
		if exact {
			o = k
		}
		if c < utf8.RuneSelf {
			switch {
			case c == '_':
				// Underline overstrike "_\bX": keep X only ("_\b_" is
				// an underlined underscore).
				if k+2 < to && src[k+2] != '_' {
					k += 2
					continue
				}
				k += 2
			case c == '\b':
				// Bold overstrike "X\bX": drop the repeat; any other
				// backspace separates words.
				if k > 0 {
					_, psz := utf8.DecodeLastRuneInString(src[:k])
					if k+1+psz <= to && src[k-psz:k] == src[k+1:k+1+psz] {
						k += 1 + psz
						continue
					}
				}
				c = ' '
			case c == 0x1b:
				k = skipCSI(src, k)
				continue
			}
			if n.tagRun > 0 {
				n.flushTags()
			}
			if c == '_' || c == ' ' {
				if n.wStart >= 0 {
					n.endWord(k)
				}
				n.pendInv = n.pendInv[:0]
			}
			n.sync(o)
			n.out = append(n.out, lowerASCII[c])
			k++
			continue
		}
		r, size := utf8.DecodeRuneInString(src[k:])
		k += size
		if r >= 0xE0000 && r <= 0xE007F {
			if n.tagRun == 0 {
				n.tagOrig = o
			}
			n.tagRun++
			if r >= 0xE0020 && r <= 0xE007E {
				n.tag = append(n.tag, byte(r-0xE0000))
			}
			continue
		}
		if n.tagRun > 0 {
			n.flushTags()
		}
		if isInvisible(r) {
			if isZeroWidth(r) && n.lastLatin() {
				n.pendInv = append(n.pendInv, o)
			}
			continue
		}
		if isBidi(r) {
			if r != 0x200E && r != 0x200F {
				n.st.bidi++
				n.events = append(n.events, event{kind: evBidi, off: int32(o)})
			}
			continue
		}
		r = unicode.ToLower(r)
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) {
			if n.wStart < 0 {
				n.startWord(o)
			}
			if _, ok := confusable(r); ok {
				n.wFlags |= wConfuse
				// 'μ' is the micro sign after NFKC ("10µs"): folded, but
				// not a second script.
				if r != 'μ' && unicode.In(r, unicode.Cyrillic, unicode.Greek) {
					n.wFlags |= wOther
				}
				n.latinLetter()
			} else if unicode.Is(unicode.Latin, r) {
				n.wFlags |= wLatin
				n.latinLetter()
			} else {
				if unicode.In(r, unicode.Cyrillic, unicode.Greek) {
					n.wFlags |= wOther | wGenuine
				}
				n.pendInv = n.pendInv[:0]
			}
			n.sync(o)
			n.out = utf8.AppendRune(n.out, r)
			n.wEndOrig = k
			if !exact {
				n.wEndOrig = base
			}
			continue
		}
		n.endWord(k - size)
		n.pendInv = n.pendInv[:0]
		n.sync(o)
		n.out = utf8.AppendRune(n.out, r)
	}
}

// lastLatin reports whether the last rune of the output is a Latin letter
// (or a look-alike folded to one).
func (n *normalizer) lastLatin() bool {
	if len(n.out) == 0 {
		return false
	}
	r, _ := utf8.DecodeLastRune(n.out)
	if r < utf8.RuneSelf {
		return asciiClass[r] == 2
	}
	_, conf := confusable(r)
	return conf || unicode.Is(unicode.Latin, r)
}

// latinLetter commits the invisible characters seen since the previous Latin
// letter: they sat between two letters.
func (n *normalizer) latinLetter() {
	for _, o := range n.pendInv {
		n.st.invisible++
		n.events = append(n.events, event{kind: evInvisible, off: int32(o)})
	}
	n.pendInv = n.pendInv[:0]
}

// startWord starts tracking a word at the non-ASCII letter about to be
// appended: the word began with the ASCII letters and digits before it.
func (n *normalizer) startWord(orig int) {
	i := len(n.out)
	var f uint8
	for i > 0 && asciiClass[n.out[i-1]&0x7f] != 0 && n.out[i-1] < utf8.RuneSelf {
		i--
		if asciiClass[n.out[i]] == 2 {
			f = wLatin
		}
	}
	n.wStart, n.wFlags = i, f
	n.wOrig = orig - (len(n.out) - i)
	if i < len(n.out) {
		// The ASCII part maps through the checkpoints.
		cur := sort.Search(len(n.cps), func(k int) bool { return int(n.cps[k].fo) > i }) - 1
		if cur >= 0 {
			n.wOrig = int(n.cps[cur].orig) + i - int(n.cps[cur].fo)
		} else {
			n.wOrig = i
		}
	}
}

// endWord folds look-alikes in the word just finished if it has Latin
// letters, or consists of look-alikes only and is not next to a genuine
// Cyrillic or Greek word ("не" in a Russian sentence stays Cyrillic), and
// records mixed scripts. next is the offset in n.src after the word (-1:
// unknown).
func (n *normalizer) endWord(next int) {
	if n.wStart < 0 {
		n.prevGenuine = false
		return
	}
	f := n.wFlags
	start := n.wStart
	n.wStart = -1
	prevGenuine := n.prevGenuine
	n.prevGenuine = f&wGenuine != 0
	if f&wLatin != 0 && f&wOther != 0 {
		n.st.mixed++
		n.events = append(n.events, event{kind: evMixed, off: int32(n.wOrig)})
	}
	if f&wConfuse == 0 || f&wGenuine != 0 && f&wLatin == 0 {
		return
	}
	if f&wLatin == 0 && f&wOther != 0 && (prevGenuine || next >= 0 && n.exact && genuineNext(n.src, next)) {
		n.prevGenuine = true
		return
	}
	// Rewrite the word with look-alikes folded. Offsets inside the word
	// become approximate: drop its inner checkpoints, map its start and
	// its end.
	word := string(n.out[start:])
	n.out = n.out[:start]
	for len(n.cps) > 0 && int(n.cps[len(n.cps)-1].fo) >= start {
		n.cps = n.cps[:len(n.cps)-1]
	}
	n.delta = 0
	if k := len(n.cps); k > 0 {
		n.delta = n.cps[k-1].orig - n.cps[k-1].fo
	}
	n.sync(n.wOrig)
	for _, r := range word {
		if c, ok := confusable(r); ok {
			r = c
		}
		n.out = utf8.AppendRune(n.out, r)
	}
	n.sync(n.wEndOrig)
}

// genuineNext reports whether the word after offset i of s (past a few
// spaces and punctuation) has Cyrillic or Greek letters that are not
// look-alikes.
func genuineNext(s string, i int) bool {
	for skip := 0; i < len(s) && skip < 4; skip++ {
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsLetter(r) {
			break
		}
		i += size
	}
	for end := min(len(s), i+48); i < end; {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) {
			return false
		}
		r = unicode.ToLower(r)
		if _, ok := confusable(r); !ok && unicode.In(r, unicode.Cyrillic, unicode.Greek) {
			return true
		}
		i += size
	}
	return false
}

func (n *normalizer) flushTags() {
	// Tag sequences of up to 7 characters follow U+1F3F4 in subdivision
	// flags; longer runs hide text.
	if n.tagRun > 7 {
		n.endWord(-1)
		n.st.tags += n.tagRun
		n.events = append(n.events, event{kind: evTags, off: int32(n.tagOrig)})
		n.sync(n.tagOrig)
		n.out = append(n.out, ' ')
		for _, c := range n.tag {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			n.out = append(n.out, c)
		}
		n.out = append(n.out, ' ')
	}
	n.tag = n.tag[:0]
	n.tagRun = 0
}

// skipCSI returns the offset after the ANSI escape sequence at s[i] (ESC),
// or i+1 for a lone ESC.
func skipCSI(s string, i int) int {
	if j, ok := csiEnd(s, i); ok {
		return j
	}
	return i + 1
}

// csiEnd reports whether s[i:] starts with a complete CSI sequence (ESC '['
// parameter bytes, intermediate bytes, a final byte) and where it ends.
func csiEnd(s string, i int) (int, bool) {
	if i+1 >= len(s) || s[i] != 0x1b || s[i+1] != '[' {
		return 0, false
	}
	j := i + 2
	for j < len(s) && s[j] >= 0x30 && s[j] <= 0x3f {
		j++
	}
	for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2f {
		j++
	}
	if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e && j-i <= 32 {
		return j + 1, true
	}
	return 0, false
}

// origOffset maps a folded offset to the original text with the checkpoints
// (cursor: index of the checkpoint to start from, advanced for monotone
// calls).
func origOffset(cps []checkpoint, fo int, cursor *int) int {
	i := *cursor
	for i+1 < len(cps) && int(cps[i+1].fo) <= fo {
		i++
	}
	*cursor = i
	if i >= len(cps) || int(cps[i].fo) > fo {
		return fo
	}
	return int(cps[i].orig) + fo - int(cps[i].fo)
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

// isZeroWidth reports the invisible characters used to split words (soft
// hyphens and variation selectors have ordinary uses and are not counted).
func isZeroWidth(r rune) bool {
	return r >= 0x200B && r <= 0x200D || r >= 0x2060 && r <= 0x2064 || r == 0xFEFF || r == 0x180E || r == 0x034F
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

// confusableTab is confusables as a table (all its keys are below 0x600).
var confusableTab = func() (t [0x600]rune) {
	for k, v := range confusables {
		if k >= 0x600 {
			panic("sanitize: confusable beyond the table")
		}
		t[k] = v
	}
	return t
}()

// confusable returns the Latin letter r looks like.
func confusable(r rune) (rune, bool) {
	if r < 0 || r >= 0x600 || confusableTab[r] == 0 {
		return 0, false
	}
	return confusableTab[r], true
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// lowerASCII lower-cases ASCII letters.
var lowerASCII = func() (t [256]byte) {
	for c := range t {
		t[c] = byte(c)
		if 'A' <= c && c <= 'Z' {
			t[c] = byte(c + 'a' - 'A')
		}
	}
	return t
}()

// asciiClass is 2 for ASCII letters, 1 for digits, 0 otherwise.
var asciiClass = func() (t [128]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = 2, 2
	}
	return t
}()

// asciiInfo packs asciiClass (infoClass) and the bytes that leave the plain
// ASCII loop (infoSpecial: non-ASCII, backspace, escape, and '_', which
// may start an underline) for every byte.
var asciiInfo = func() (t [256]uint8) {
	for c := range t {
		if c < 128 {
			t[c] = asciiClass[c]
		}
		if c >= 128 || c == '\b' || c == 0x1b || c == '_' {
			t[c] |= infoSpecial
		}
	}
	return t
}()

const (
	infoClass   = 3
	infoSpecial = 4
)

// b64Byte reports the bytes of base64 and hex runs.
var b64Byte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = isASCIILetter(b) || '0' <= b && b <= '9' || b == '+' || b == '/' || b == '=' || b == '-' || b == '_'
	}
	return t
}()

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

// decodeProbes returns the decoded text of the base64 and hex runs the
// normalizer found in s that decode to printable text, each tagged with its
// kind and the byte range of the run.
func decodeProbes(s string, runs [][2]int) (out []probe) {
	for _, r := range runs {
		if len(out) >= maxProbes {
			break
		}
		run := s[r[0]:r[1]]
		if len(run) < minProbe || len(run) > maxProbe {
			continue
		}
		if isHexRun(run) {
			if len(run)%2 == 0 {
				if d, err := hex.DecodeString(run); err == nil && printable(d) {
					out = append(out, probe{kind: "hex", text: string(d), start: r[0], end: r[1]})
				}
			}
			continue
		}
		if d, ok := decodeB64(run); ok && printable(d) {
			out = append(out, probe{kind: "base64", text: string(d), start: r[0], end: r[1]})
		}
	}
	return out
}

// findProbes decodes the probes of s (normalising it to find the runs).
func findProbes(s string) []probe {
	var n normalizer
	n.run(s)
	return decodeProbes(s, n.runs)
}

type probe struct {
	kind, text string
	start, end int
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
