package sanitize

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// doc is one text prepared for judging.
type doc struct {
	folded  string   // Normalize(text)
	toks    []string // words of folded and of decoded probes, leet and spacing undone
	classes []uint64 // lexicon classes of each token
	stats   normStats
	probes  []string // kinds of decoded probes ("base64", "hex")
	leet    int      // tokens that became lexicon words after undoing leetspeak
	spaced  int      // lexicon words recovered from spaced-out letters
	flood   bool     // one token repeated to fill the text
}

// analyze normalises text and derives every view the rules and the model read.
func analyze(text string) *doc {
	d := &doc{}
	d.folded = normalize(text, &d.stats)
	d.tokenize(d.folded)
	// Probes run on the text before case folding (base64 is case sensitive).
	for _, p := range decodeProbes(text) {
		var st normStats
		d.probes = append(d.probes, p.kind)
		d.toks = append(d.toks, "\x00") // boundary: no rule spans a probe
		d.tokenize(normalize(p.text, &st))
	}
	d.classes = make([]uint64, len(d.toks))
	for i, t := range d.toks {
		d.classes[i] = lexicon[t]
	}
	d.flood = isFlood(text)
	return d
}

// tokenize appends the words of s (already normalised) to d.toks.
func (d *doc) tokenize(s string) {
	var single []byte // pending run of single-letter tokens
	flushSingle := func() {
		if len(single) >= 4 {
			var hits int
			d.toks, hits = segment(string(single), d.toks)
			d.spaced += hits
		} else {
			for _, c := range single {
				d.toks = append(d.toks, string(rune(c)))
			}
		}
		single = single[:0]
	}
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if !isWordByte(c) {
				if isStop(c) && len(single) == 0 && len(d.toks) > 0 && d.toks[len(d.toks)-1] != stopToken {
					d.toks = append(d.toks, stopToken)
				}
				i++
				continue
			}
		} else {
			r, n := utf8.DecodeRuneInString(s[i:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				i += n
				continue
			}
		}
		j := i
		for j < len(s) {
			c := s[j]
			if c < utf8.RuneSelf {
				if !isWordByte(c) {
					break
				}
				j++
				continue
			}
			r, n := utf8.DecodeRuneInString(s[j:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) {
				break
			}
			j += n
		}
		tok := s[i:j]
		i = j
		if len(tok) == 1 {
			c := tok[0]
			if l := leet(c); l != 0 && !isASCIILetter(c) {
				c = l
			}
			if isASCIILetter(c) {
				single = append(single, c)
				continue
			}
		}
		flushSingle()
		d.toks = append(d.toks, d.unleet(tok))
	}
	flushSingle()
	if len(d.toks) > 0 && d.toks[len(d.toks)-1] != stopToken {
		d.toks = append(d.toks, stopToken)
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
// "ignore"), or tok with '@' and '$' trimmed when it spells none.
func (d *doc) unleet(tok string) string {
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
		b := []byte(tok)
		for i, c := range b {
			if l := leet(c); l != 0 {
				b[i] = l
			}
		}
		if _, ok := lexicon[string(b)]; ok {
			d.leet++
			return string(b)
		}
		// '1' and '|' also stand for 'l'.
		for i := 0; i < len(tok); i++ {
			if tok[i] == '1' || tok[i] == '|' {
				b[i] = 'l'
			}
		}
		if _, ok := lexicon[string(b)]; ok {
			d.leet++
			return string(b)
		}
	}
	if hasSym {
		if t := strings.Trim(tok, "@$"); t != "" {
			return t
		}
	}
	return tok
}

// isFlood reports a text that is mostly one short token repeated, a known
// way to push instructions out of a model's attention.
func isFlood(text string) bool {
	if len(text) < 64 {
		return false
	}
	// Boyer-Moore majority vote over whitespace-separated fields, then a
	// second pass to count the candidate. No allocation.
	var cand string
	votes, n := 0, 0
	forFields(text, func(f string) {
		n++
		switch {
		case votes == 0:
			cand, votes = f, 1
		case f == cand:
			votes++
		default:
			votes--
		}
	})
	if n < 32 {
		return false
	}
	count := 0
	forFields(text, func(f string) {
		if f == cand {
			count++
		}
	})
	return count*2 >= n
}

// forFields calls fn with every run of non-space bytes of s.
func forFields(s string, fn func(string)) {
	start := -1
	for i := 0; i < len(s); i++ {
		sp := s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'
		if sp && start >= 0 {
			fn(s[start:i])
			start = -1
		} else if !sp && start < 0 {
			start = i
		}
	}
	if start >= 0 {
		fn(s[start:])
	}
}

// match runs the rules over d and returns the fired rule ids (deduplicated,
// in rule order) and their noisy-OR score.
func (d *doc) match() (ids []string, score float64) {
	miss := 1.0
	fire := func(id string, w float64) {
		for _, x := range ids {
			if x == id {
				// Same rule id twice: count the stronger weight only once.
				return
			}
		}
		ids = append(ids, id)
		miss *= 1 - w
	}
	var present uint64
	for _, c := range d.classes {
		present |= c
	}
	for ri := range rules {
		r := &rules[ri]
		need := uint64(0)
		for _, st := range r.steps {
			// A step may accept several classes; require at least one present.
			if present&st.class == 0 {
				need = 1
				break
			}
		}
		if need != 0 {
			continue
		}
		if d.matchRule(r) {
			fire(r.id, r.weight)
		}
	}
	for _, l := range literals {
		if strings.Contains(d.folded, l.text) {
			fire(l.id, l.weight)
		}
	}
	if d.stats.invisible >= 3 {
		fire("obfuscation.invisible_chars", wInvisible)
	}
	if d.stats.bidi > 0 {
		fire("obfuscation.bidi_controls", wBidi)
	}
	if d.stats.tags > 0 {
		fire("obfuscation.tag_chars", wTags)
	}
	if d.stats.mixed > 0 {
		fire("obfuscation.mixed_script", wMixedScript)
	}
	for _, k := range d.probes {
		fire("obfuscation."+k, wEncoded)
	}
	if d.spaced > 0 {
		fire("obfuscation.spaced_letters", wSpaced)
	}
	if d.leet > 0 {
		fire("obfuscation.leetspeak", wLeet)
	}
	if d.flood {
		fire("obfuscation.token_flood", wFlood)
	}
	return ids, 1 - miss
}

// matchRule reports whether r's steps occur in order with their gaps.
func (d *doc) matchRule(r *rule) bool {
	first := r.steps[0].class
	for i, c := range d.classes {
		if c&first != 0 && d.matchFrom(r.steps[1:], i+1) {
			return true
		}
	}
	return false
}

func (d *doc) matchFrom(steps []step, pos int) bool {
	if len(steps) == 0 {
		return true
	}
	st := steps[0]
	for j := pos; j < len(d.classes) && j <= pos+st.gap; j++ {
		if d.classes[j]&st.class != 0 && d.matchFrom(steps[1:], j+1) {
			return true
		}
	}
	return false
}
