package sanitize

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// token is one word of the normalised text (or a stop, a boundary or a
// special literal), located in the original text.
type token struct {
	s          string // folded word, stopToken, boundaryToken or a special literal
	h          uint32 // tokHash(s)
	start, end int32  // byte range in the original text
	cls        cset
}

// doc is one text prepared for judging.
type doc struct {
	folded string
	toks   []token
	events []event // obfuscation signals (original offsets)
	stats  normStats
	flood  bool // one token repeated to fill the text
	n      normalizer
}

// analyze normalises text and derives every view the rules and the model read.
func analyze(text string) *doc {
	d := &doc{}
	d.analyze(text)
	return d
}

func (d *doc) analyze(text string) {
	d.n.run(text)
	d.folded = string(d.n.out)
	d.stats = d.n.st
	d.events = append(d.events[:0], d.n.events...)
	d.toks = d.toks[:0]
	est := len(text)/5 + 8
	if cap(d.toks) < est {
		d.toks = make([]token, 0, est)
	}
	var fl flood
	nNorm := len(d.events)
	d.tokenize(d.folded, d.n.cps, nil, &fl)
	// Normalisation events belong to the token that holds their offset.
	main := len(d.toks)
	for i := range d.events[:nNorm] {
		off := d.events[i].off
		d.events[i].tok = int32(sort.Search(main, func(k int) bool { return d.toks[k].end > off }))
	}
	// Probes run on the text before case folding (base64 is case sensitive).
	for _, p := range decodeProbes(text) {
		kind := uint8(evBase64)
		if p.kind == "hex" {
			kind = evHex
		}
		d.events = append(d.events, event{kind: kind, off: int32(p.start), tok: int32(len(d.toks))})
		d.toks = append(d.toks, token{s: boundaryToken, h: tokHash(boundaryToken), start: int32(p.start), end: int32(p.end)})
		var n normalizer
		n.run(p.text)
		d.tokenize(string(n.out), nil, &p, nil)
	}
	d.flood = len(text) >= 64 && fl.is()
}

// flood finds a text that is mostly one token repeated, a known way to push
// instructions out of a model's attention: a majority vote over the words
// (and the letters of spaced-out runs), then a count of the candidate.
type flood struct {
	cand  uint32
	votes int
	hs    []uint32
}

func (f *flood) vote(h uint32) {
	f.hs = append(f.hs, h)
	switch {
	case f.votes == 0:
		f.cand, f.votes = h, 1
	case h == f.cand:
		f.votes++
	default:
		f.votes--
	}
}

func (f *flood) is() bool {
	if len(f.hs) < 32 || f.votes == 0 {
		return false
	}
	n := 0
	for _, h := range f.hs {
		if h == f.cand {
			n++
		}
	}
	return 2*n >= len(f.hs)
}

// tokenize appends the tokens of f (normalised text) to d.toks. cps maps f
// back to the original text; for a decoded probe, p gives the original range
// instead. fl, if not nil, receives the words for the flood vote.
func (d *doc) tokenize(f string, cps []checkpoint, p *probe, fl *flood) {
	cursor := 0
	orig := func(fo int) int32 {
		if p != nil {
			return int32(p.start)
		}
		return int32(origOffset(cps, fo, &cursor))
	}
	origEnd := func(fo int) int32 {
		if p != nil {
			return int32(p.end)
		}
		return int32(origOffset(cps, fo, &cursor))
	}
	sentStart := true
	var single []byte // pending run of single-letter tokens
	singleStart, singleEnd := 0, 0
	emit := func(t token, vote bool) {
		if sentStart {
			t.cls.add(kSentStart)
		}
		sentStart = false
		d.toks = append(d.toks, t)
		if fl != nil && vote {
			fl.vote(t.h)
		}
	}
	word := func(w string, i, j int) {
		t := token{s: w, h: tokHash(w), start: orig(i), end: origEnd(j)}
		t.cls = lookup(w, t.h)
		// <system>, [system], </document>: a fake chat turn or delimiter.
		if i > 0 && j < len(f) && (f[j] == '>' || f[j] == ']') {
			switch {
			case f[i-1] == '<' || f[i-1] == '[':
				if openRoles[w] {
					t.cls.add(kBracketed)
				}
			case f[i-1] == '/' && i > 1 && f[i-2] == '<':
				if closeRoles[w] {
					t.cls.add(kBracketed)
				}
			}
		}
		emit(t, true)
	}
	flushSingle := func() {
		if len(single) == 0 {
			return
		}
		if len(single) >= 4 {
			var pieces [][2]int
			run := string(single)
			pieces, hits := segment(run, pieces)
			if hits > 0 {
				d.events = append(d.events, event{kind: evSpaced, off: orig(singleStart), tok: int32(len(d.toks))})
			}
			// The pieces of a spaced run share its range.
			start, end := orig(singleStart), origEnd(singleEnd)
			for _, pc := range pieces {
				w := run[pc[0]:pc[1]]
				t := token{s: w, h: tokHash(w), start: start, end: end}
				t.cls = lookup(w, t.h)
				emit(t, false)
			}
			if fl != nil {
				for _, c := range single {
					fl.vote(letterHashes[c-'a'])
				}
			}
		} else {
			for k, c := range single {
				w := letterTokens[c-'a']
				// Single letters sit two bytes apart ("i g n").
				t := token{s: w, h: letterHashes[c-'a'], start: orig(singleStart + 2*k), end: orig(singleStart+2*k) + 1}
				t.cls = lookup(w, t.h)
				emit(t, true)
			}
		}
		single = single[:0]
	}
	stop := func(c byte, i int) {
		var cls cset
		cls.add(kStop)
		switch c {
		case ':':
			cls.add(kColon)
		case '"':
			cls.add(kQuote)
		}
		if c == '.' || c == '!' || c == '?' || c == ':' || c == ';' || c == '\n' {
			sentStart = true
		}
		if n := len(d.toks); n > 0 && d.toks[n-1].s == stopToken {
			d.toks[n-1].cls = d.toks[n-1].cls.or(cls)
			return
		}
		if len(d.toks) == 0 {
			return
		}
		o := orig(i)
		d.toks = append(d.toks, token{s: stopToken, h: stopHash, start: o, end: o + 1, cls: cls})
	}
	i := 0
	for i < len(f) {
		c := f[i]
		if c < utf8.RuneSelf {
			if !isWordByte(c) {
				if c == '<' || c == '[' || c == '#' {
					if lit, cls, ok := matchSpecial(f[i:]); ok {
						flushSingle()
						t := token{s: lit, h: tokHash(lit), start: orig(i), end: origEnd(i + len(lit))}
						t.cls.add(cls)
						emit(t, true)
						i += len(lit)
						continue
					}
				}
				if c == '\n' || c == '\r' {
					sentStart = true
				}
				if isStop(c) && len(single) == 0 {
					stop(c, i)
				}
				i++
				continue
			}
		} else {
			r, n := utf8.DecodeRuneInString(f[i:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				// Fullwidth and CJK punctuation end sentences too.
				if r == '。' || r == '！' || r == '？' || r == '、' || r == '，' || r == '「' || r == '」' || r == '“' || r == '”' {
					if len(single) == 0 {
						stop('.', i)
					}
				}
				i += n
				continue
			}
			if sc := cjkScript(r); sc != 0 {
				flushSingle()
				j := i
				for j < len(f) {
					r2, n2 := utf8.DecodeRuneInString(f[j:])
					if cjkScript(r2) != sc {
						break
					}
					j += n2
				}
				if sc == scriptKatakana {
					word(f[i:j], i, j)
				} else {
					d.segmentCJK(f, i, j, word)
				}
				i = j
				continue
			}
		}
		j := i
		for j < len(f) {
			c := f[j]
			if c < utf8.RuneSelf {
				if !isWordByte(c) {
					break
				}
				j++
				continue
			}
			r, n := utf8.DecodeRuneInString(f[j:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) || cjkScript(r) != 0 {
				break
			}
			j += n
		}
		tok := f[i:j]
		if len(tok) == 1 {
			c := tok[0]
			if l := leet(c); l != 0 && !isASCIILetter(c) {
				c = l
			}
			if isASCIILetter(c) {
				if len(single) == 0 {
					singleStart = i
				}
				singleEnd = j
				single = append(single, c|0x20)
				i = j
				continue
			}
		}
		flushSingle()
		w, leeted := unleet(tok)
		if leeted {
			d.events = append(d.events, event{kind: evLeet, off: orig(i), tok: int32(len(d.toks))})
		}
		// An address in a word: a.b@c.d.
		if strings.IndexByte(w, '@') > 0 && strings.IndexByte(w, '@') < len(w)-1 {
			t := token{s: w, h: tokHash(w), start: orig(i), end: origEnd(j)}
			t.cls.add(kEmail)
			emit(t, true)
			i = j
			continue
		}
		word(w, i, j)
		i = j
	}
	flushSingle()
	if n := len(d.toks); n > 0 && d.toks[n-1].s != stopToken && d.toks[n-1].s != boundaryToken {
		o := origEnd(len(f))
		var cls cset
		cls.add(kStop)
		d.toks = append(d.toks, token{s: stopToken, h: stopHash, start: o, end: o, cls: cls})
	}
}

// Scripts written without spaces.
const (
	scriptNone = iota
	scriptHan  // Han and Hiragana: segmented with the lexicon
	scriptKatakana
)

func cjkScript(r rune) int {
	if r < 0x3040 {
		return scriptNone
	}
	switch {
	case unicode.Is(unicode.Han, r), unicode.Is(unicode.Hiragana, r):
		return scriptHan
	case unicode.Is(unicode.Katakana, r), r == 0x30FC:
		return scriptKatakana
	}
	return scriptNone
}

// segmentCJK splits a Han/Hiragana run f[i:j] into lexicon words (longest
// first, up to four characters); the characters between them are grouped
// into one token per stretch.
func (d *doc) segmentCJK(f string, i, j int, word func(w string, i, j int)) {
	unknown := -1
	for k := i; k < j; {
		best := 0
		// Try 4, 3 and 2 characters.
		ends := [5]int{}
		e := k
		for n := 1; n <= 4 && e < j; n++ {
			_, sz := utf8.DecodeRuneInString(f[e:])
			e += sz
			ends[n] = e
		}
		for n := 4; n >= 2; n-- {
			if ends[n] > 0 && inLexicon(f[k:ends[n]]) {
				best = ends[n]
				break
			}
		}
		if best == 0 {
			if unknown < 0 {
				unknown = k
			}
			k = ends[1]
			continue
		}
		if unknown >= 0 {
			word(f[unknown:k], unknown, k)
			unknown = -1
		}
		word(f[k:best], k, best)
		k = best
	}
	if unknown >= 0 {
		word(f[unknown:j], unknown, j)
	}
}

// matchSpecial reports a chat-template token or header at the start of s.
func matchSpecial(s string) (string, int, bool) {
	for _, sp := range specials {
		if strings.HasPrefix(s, sp.text) {
			return sp.text, sp.class, true
		}
	}
	return "", 0, false
}

// Bracketed words that fake a chat turn (<system>, [assistant]) or close
// the document the model was given (</document>, </context>).
var (
	openRoles  = map[string]bool{"system": true, "assistant": true, "instructions": true, "instruction": true, "sys": true, "admin": true}
	closeRoles = map[string]bool{"document": true, "context": true, "user": true, "system": true, "input": true, "data": true, "instructions": true}
)

var (
	letterTokens [26]string
	letterHashes [26]uint32
	stopHash     = tokHash(stopToken)
)

func init() {
	for i := range letterTokens {
		letterTokens[i] = string(rune('a' + i))
		letterHashes[i] = tokHash(letterTokens[i])
	}
}

// isStop reports sentence punctuation, kept as a boundary token.
func isStop(c byte) bool {
	return c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?' || c == '\n' || c == '"' || c == '-'
}

// isWordByte reports ASCII bytes that belong to words; '@' and '$' are kept
// for leetspeak.
func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '@' || c == '$'
}

// unleet returns the lexicon word tok spells in leetspeak ("1gn0r3" ->
// "ignore") and true, or tok with '@' and '$' trimmed when it spells none.
func unleet(tok string) (string, bool) {
	hasLetter, hasLeet, hasSym := false, false, false
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if isASCIILetter(c) {
			hasLetter = true
		} else if leet(c) != 0 {
			hasLeet = true
			hasSym = hasSym || c == '@' || c == '$'
		}
	}
	if hasLetter && hasLeet {
		var buf [32]byte
		if len(tok) <= len(buf) {
			b := buf[:len(tok)]
			copy(b, tok)
			for i, c := range b {
				if l := leet(c); l != 0 {
					b[i] = l
				}
			}
			if inLexicon(string(b)) {
				return string(b), true
			}
			// '1' and '|' also stand for 'l'.
			for i := 0; i < len(tok); i++ {
				if tok[i] == '1' || tok[i] == '|' {
					b[i] = 'l'
				}
			}
			if inLexicon(string(b)) {
				return string(b), true
			}
		}
	}
	if hasSym {
		if t := strings.Trim(tok, "@$"); t != "" {
			return t, false
		}
	}
	return tok, false
}
