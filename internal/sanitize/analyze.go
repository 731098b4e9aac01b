package sanitize

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// token is one word of the normalised text (or a stop, a boundary or a
// special literal), located in the original text.
type token struct {
	s          string // folded word, stopToken, boundaryToken or a special literal
	h          uint32 // tokHash(s)
	start, end int32  // byte range in the original text
	lex        int32  // index of its lexicon entry, -1 if none
	cls        cset
}

// doc is one text prepared for judging.
type doc struct {
	folded  string
	toks    []token
	events  []event // obfuscation signals (original offsets)
	stats   normStats
	flood   bool // one token repeated to fill the text
	textLen int  // length of the original text
	n       normalizer
	// Scratch space reused between checks.
	votes  []uint32
	ms     []match
	starts []int
}

// analyze normalises text and derives every view the rules and the model read.
func analyze(text string) *doc {
	d := &doc{}
	d.analyze(text)
	return d
}

func (d *doc) analyze(text string) {
	d.textLen = len(text)
	d.n.run(text)
	// The folded text aliases the normalizer's buffer: it and the tokens
	// cut from it are valid until the next analyze with this doc, and
	// nothing of them outlives a check.
	d.folded = unsafe.String(unsafe.SliceData(d.n.out), len(d.n.out))
	d.stats = d.n.st
	d.events = append(d.events[:0], d.n.events...)
	d.toks = d.toks[:0]
	est := len(text)/5 + 8
	if cap(d.toks) < est {
		d.toks = make([]token, 0, est)
	}
	fl := flood{hs: d.votes[:0]}
	nNorm := len(d.events)
	d.tokenize(d.folded, d.n.cps, nil, &fl)
	// Normalisation events belong to the token that holds their offset.
	main := len(d.toks)
	for i := range d.events[:nNorm] {
		off := d.events[i].off
		d.events[i].tok = int32(sort.Search(main, func(k int) bool { return d.toks[k].end > off }))
	}
	// Probes run on the text before case folding (base64 is case sensitive).
	for _, p := range decodeProbes(text, d.n.runs) {
		kind := uint8(evBase64)
		if p.kind == "hex" {
			kind = evHex
		}
		d.events = append(d.events, event{kind: kind, off: int32(p.start), tok: int32(len(d.toks))})
		d.toks = append(d.toks, token{s: boundaryToken, h: tokHash(boundaryToken), start: int32(p.start), end: int32(p.end), lex: -1})
		var n normalizer
		n.run(p.text)
		d.tokenize(string(n.out), nil, &p, nil)
	}
	d.flood = len(text) >= 64 && fl.is()
	d.votes = fl.hs
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

// tokenizer appends the tokens of one normalised text to a doc. Token
// offsets are offsets into the normalised text until tokenize maps them
// back to the original.
type tokenizer struct {
	d         *doc
	f         string
	fl        *flood
	sentStart bool
	single    []byte  // pending run of single-letter tokens
	singleAt  []int32 // their offsets
	base      int     // index of the first token of this text in d.toks
}

// tokenize appends the tokens of f (normalised text) to d.toks. cps maps f
// back to the original text; for a decoded probe, p gives the original range
// instead. fl, if not nil, receives the words for the flood vote.
func (d *doc) tokenize(f string, cps []checkpoint, p *probe, fl *flood) {
	tk := tokenizer{d: d, f: f, fl: fl, sentStart: true, base: len(d.toks)}
	tk.run()
	toks := d.toks[tk.base:]
	switch {
	case p != nil:
		for i := range toks {
			toks[i].start, toks[i].end = int32(p.start), int32(p.end)
		}
	default:
		// Inside a normalised segment ("⒀" became "(13)") offsets are
		// approximate: keep them within the original text and in order.
		cur := 0
		for i := range toks {
			s := min(max(origOffset(cps, int(toks[i].start), &cur), 0), d.textLen)
			e := min(max(origOffset(cps, int(toks[i].end), &cur), s), d.textLen)
			toks[i].start, toks[i].end = int32(s), int32(e)
		}
		// Events recorded by the tokenizer carry folded offsets too.
		for i := range d.events {
			if ev := &d.events[i]; int(ev.tok) >= tk.base && (ev.kind == evSpaced || ev.kind == evLeet) {
				ev.off = toks[int(ev.tok)-tk.base].start
			}
		}
	}
}

func (tk *tokenizer) emit(t token, vote bool) {
	if tk.sentStart {
		t.cls.add(kSentStart)
	}
	tk.sentStart = false
	tk.d.toks = append(tk.d.toks, t)
	if tk.fl != nil && vote {
		tk.fl.vote(t.h)
	}
}

func (tk *tokenizer) word(w string, i, j int) {
	f := tk.f
	h := tokHash(w)
	t := token{s: w, h: h, start: int32(i), end: int32(j), lex: -1}
	t.cls, t.lex = lookup(w, h)
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
	tk.emit(t, true)
}

func (tk *tokenizer) flushSingle() {
	single := tk.single
	if len(single) == 0 {
		return
	}
	d := tk.d
	if len(single) >= 4 {
		var pieces [][2]int
		run := string(single)
		pieces, hits := segment(run, pieces)
		start, end := tk.singleAt[0], tk.singleAt[len(single)-1]+1
		if hits > 0 {
			d.events = append(d.events, event{kind: evSpaced, off: start, tok: int32(len(d.toks))})
		}
		// The pieces of a spaced run share its range.
		for _, pc := range pieces {
			w := run[pc[0]:pc[1]]
			t := token{s: w, h: tokHash(w), start: start, end: end}
			t.cls, t.lex = lookup(w, t.h)
			tk.emit(t, false)
		}
		if tk.fl != nil {
			for _, c := range single {
				tk.fl.vote(letterHashes[c-'a'])
			}
		}
	} else {
		for k, c := range single {
			t := token{s: letterTokens[c-'a'], h: letterHashes[c-'a'], start: tk.singleAt[k], end: tk.singleAt[k] + 1}
			t.cls, t.lex = lookup(t.s, t.h)
			tk.emit(t, true)
		}
	}
	tk.single, tk.singleAt = single[:0], tk.singleAt[:0]
}

func (tk *tokenizer) stop(c byte, i int) {
	cls := stopClasses[c]
	if sentenceEnd[c] {
		tk.sentStart = true
	}
	d := tk.d
	if n := len(d.toks); n > tk.base && d.toks[n-1].lex == lexStop {
		d.toks[n-1].cls = d.toks[n-1].cls.or(cls)
		return
	}
	if len(d.toks) == 0 {
		return
	}
	d.toks = append(d.toks, token{s: stopToken, h: stopHash, start: int32(i), end: int32(i + 1), cls: cls, lex: lexStop})
}

// lexStop marks a stop token in token.lex (it has no lexicon entry).
const lexStop = -2

// stopClasses are the classes of the stop token of each punctuation byte;
// sentenceEnd marks the bytes after which a sentence starts.
var (
	stopClasses [256]cset
	sentenceEnd [256]bool
)

func init() {
	for c := range stopClasses {
		stopClasses[c].add(kStop)
	}
	stopClasses[':'].add(kColon)
	stopClasses['"'].add(kQuote)
	for _, c := range ".!?:;\n" {
		sentenceEnd[c] = true
	}
}

func (tk *tokenizer) run() {
	f := tk.f
	d := tk.d
	i := 0
	for i < len(f) {
		c := f[i]
		if c == ' ' {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			if wordByte[c] == 0 {
				if c == '<' || c == '[' || c == '#' {
					if lit, cls, ok := matchSpecial(f[i:]); ok {
						tk.flushSingle()
						t := token{s: lit, h: tokHash(lit), start: int32(i), end: int32(i + len(lit)), lex: -1}
						t.cls.add(cls)
						tk.emit(t, true)
						i += len(lit)
						continue
					}
				}
				if c == '\n' || c == '\r' {
					tk.sentStart = true
				}
				if isStop(c) && len(tk.single) == 0 {
					tk.stop(c, i)
				}
				i++
				continue
			}
		} else {
			r, n := utf8.DecodeRuneInString(f[i:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				// Fullwidth and CJK punctuation end sentences too.
				if r == '。' || r == '！' || r == '？' || r == '、' || r == '，' || r == '「' || r == '」' || r == '“' || r == '”' {
					if len(tk.single) == 0 {
						tk.stop('.', i)
					}
				}
				i += n
				continue
			}
			if sc := cjkScript(r); sc != 0 {
				tk.flushSingle()
				j := i
				for j < len(f) {
					r2, n2 := utf8.DecodeRuneInString(f[j:])
					if cjkScript(r2) != sc {
						break
					}
					j += n2
				}
				if sc == scriptKatakana {
					tk.word(f[i:j], i, j)
				} else {
					segmentCJK(f, i, j, tk.word)
				}
				i = j
				continue
			}
		}
		if c == 'h' || c == 'w' {
			// A web address is one token: "http://...", "https://...",
			// "www.example.org/...".
			if e := urlEnd(f, i); e > i {
				if len(tk.single) > 0 {
					tk.flushSingle()
				}
				t := token{s: urlToken, h: urlHash, start: int32(i), end: int32(e), lex: -1}
				t.cls.add(kURL)
				tk.emit(t, true)
				i = e
				continue
			}
		}
		j := i
		plain := true // ASCII letters only
		h := uint32(fnvOffset ^ 0x9e3779b9)
		for j < len(f) {
			c := f[j]
			if c < utf8.RuneSelf {
				wc := wordByte[c]
				if wc == 0 {
					break
				}
				plain = plain && wc == 2
				h = (h ^ uint32(c)) * fnvPrime
				j++
				continue
			}
			r, n := utf8.DecodeRuneInString(f[j:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) || cjkScript(r) != 0 {
				break
			}
			plain = false
			j += n
		}
		tok := f[i:j]
		if len(tok) == 1 {
			c := tok[0]
			if l := leet(c); l != 0 && !isASCIILetter(c) {
				c = l
			}
			if isASCIILetter(c) {
				tk.single = append(tk.single, c|0x20)
				tk.singleAt = append(tk.singleAt, int32(i))
				i = j
				continue
			}
		}
		if len(tk.single) > 0 {
			tk.flushSingle()
		}
		if plain {
			// The common case, inlined: a word of ASCII letters.
			if tk.sentStart || j < len(f) && (f[j] == '>' || f[j] == ']') {
				tk.word(tok, i, j)
			} else {
				d.toks = append(d.toks, token{s: tok, h: h, start: int32(i), end: int32(j)})
				t := &d.toks[len(d.toks)-1]
				t.cls, t.lex = lookup(tok, h)
				if tk.fl != nil {
					tk.fl.vote(h)
				}
			}
			i = j
			continue
		}
		w, leeted := unleet(tok)
		if leeted {
			d.events = append(d.events, event{kind: evLeet, off: int32(i), tok: int32(len(d.toks))})
		}
		// A mail address is one token: name@example.org.
		if at := strings.IndexByte(w, '@'); at > 0 && at < len(w)-1 {
			for j < len(f) && (wordByte[f[j]&0x7f] != 0 && f[j] < utf8.RuneSelf || (f[j] == '.' || f[j] == '-') && j+1 < len(f) && wordByte[f[j+1]&0x7f] != 0) {
				j++
			}
			t := token{s: emailToken, h: emailHash, start: int32(i), end: int32(j), lex: -1}
			t.cls.add(kEmail)
			tk.emit(t, true)
			i = j
			continue
		}
		tk.word(w, i, j)
		i = j
	}
	tk.flushSingle()
	if n := len(d.toks); n > tk.base && d.toks[n-1].s != stopToken && d.toks[n-1].s != boundaryToken {
		var cls cset
		cls.add(kStop)
		d.toks = append(d.toks, token{s: stopToken, h: stopHash, start: int32(len(f)), end: int32(len(f)), cls: cls, lex: lexStop})
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
func segmentCJK(f string, i, j int, word func(w string, i, j int)) {
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
		for n := 4; n >= 1; n-- {
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

// urlEnd returns the end of the web address starting at f[i], or i.
func urlEnd(f string, i int) int {
	rest := f[i:]
	switch {
	case strings.HasPrefix(rest, "http://"), strings.HasPrefix(rest, "https://"), strings.HasPrefix(rest, "www."):
	default:
		return i
	}
	j := i
	for j < len(f) {
		c := f[j]
		if c <= ' ' || c >= utf8.RuneSelf || c == '"' || c == '\'' || c == '<' || c == '>' || c == ')' || c == ']' || c == '`' {
			break
		}
		j++
	}
	// A sentence's full stop or comma is not part of the address.
	for j > i && (f[j-1] == '.' || f[j-1] == ',' || f[j-1] == ';' || f[j-1] == ':') {
		j--
	}
	return j
}

// Web and mail addresses become these tokens.
const (
	urlToken   = "\x03url"
	emailToken = "\x03email"
)

var (
	urlHash      = tokHash(urlToken)
	emailHash    = tokHash(emailToken)
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

// wordByte is 2 for ASCII letters, 1 for the other word bytes (digits, '@',
// '$'), 0 otherwise.
var wordByte = func() (t [128]uint8) {
	for c := byte(0); c < 128; c++ {
		switch {
		case isASCIILetter(c):
			t[c] = 2
		case '0' <= c && c <= '9' || c == '@' || c == '$':
			t[c] = 1
		}
	}
	return t
}()

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
