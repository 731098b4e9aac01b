package firewall

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// This file decodes a call's arguments once, strictly, and produces the
// canonical bytes the tool receives.
//
// Parsers disagree on JSON that is not plain: which of two duplicate keys
// wins (Go and Python take the last, some take the first), whether "PATH"
// fills a field named "path" (Go's encoding/json folds case), what a lone
// UTF-16 surrogate or an invalid UTF-8 byte becomes (U+FFFD in Go, kept in
// Python, an error elsewhere). The decoder refuses all of these, so every
// parser reads the same values from the canonical text, and the canonical
// text (compact, keys in their original order, numbers as written, strings
// re-escaped) is what the executor passes to the tool.

// maxJSONDepth bounds the nesting of arguments.
const maxJSONDepth = 64

type jsonDecoder struct {
	s     string
	i     int
	out   strings.Builder
	fold  strings.Builder // scratch for foldKey
	depth int
}

// decodeArgs decodes raw (empty means {}) and returns the value and its
// canonical encoding, or a finding.
func decodeArgs(raw string) (any, string, *finding) {
	if strings.TrimSpace(raw) == "" {
		raw = "{}"
	}
	if !utf8.ValidString(raw) {
		return nil, "", &finding{RuleArgsEncoding, "arguments are not valid UTF-8"}
	}
	d := &jsonDecoder{s: raw}
	d.out.Grow(len(raw))
	d.space()
	v, f := d.value()
	if f != nil {
		return nil, "", f
	}
	d.space()
	if d.i != len(d.s) {
		return nil, "", d.bad("trailing data after the JSON value")
	}
	return v, d.out.String(), nil
}

func (d *jsonDecoder) bad(why string) *finding {
	return &finding{RuleArgsInvalidJSON, "arguments are not valid JSON: " + why + " at offset " + strconv.Itoa(d.i)}
}

func (d *jsonDecoder) space() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value() (any, *finding) {
	if d.i >= len(d.s) {
		return nil, d.bad("unexpected end")
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		s, f := d.str()
		if f != nil {
			return nil, f
		}
		writeJSONString(&d.out, s)
		return s, nil
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	case strings.HasPrefix(d.s[d.i:], "true"):
		d.i += 4
		d.out.WriteString("true")
		return true, nil
	case strings.HasPrefix(d.s[d.i:], "false"):
		d.i += 5
		d.out.WriteString("false")
		return false, nil
	case strings.HasPrefix(d.s[d.i:], "null"):
		d.i += 4
		d.out.WriteString("null")
		return nil, nil
	}
	return nil, d.bad("unexpected character")
}

func (d *jsonDecoder) object() (any, *finding) {
	if d.depth++; d.depth > maxJSONDepth {
		return nil, &finding{RuleTooComplex, "arguments are nested deeper than " + strconv.Itoa(maxJSONDepth)}
	}
	d.i++ // {
	d.out.WriteByte('{')
	m := map[string]any{}
	folded := map[string]string{}
	d.space()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		d.out.WriteByte('}')
		d.depth--
		return m, nil
	}
	for {
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, d.bad("want an object key")
		}
		k, f := d.str()
		if f != nil {
			return nil, f
		}
		if _, dup := m[k]; dup {
			return nil, &finding{RuleDuplicateKey, "key " + strconv.Quote(k) + " appears twice"}
		}
		fk := d.foldKey(k)
		if prev, dup := folded[fk]; dup {
			return nil, &finding{RuleDuplicateKey, "keys " + strconv.Quote(prev) + " and " + strconv.Quote(k) + " differ only in case"}
		}
		folded[fk] = k
		if len(m) > 0 {
			d.out.WriteByte(',')
		}
		writeJSONString(&d.out, k)
		d.out.WriteByte(':')
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, d.bad("want ':'")
		}
		d.i++
		d.space()
		v, f := d.value()
		if f != nil {
			return nil, f
		}
		m[k] = v
		d.space()
		if d.i >= len(d.s) {
			return nil, d.bad("unexpected end")
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			d.out.WriteByte('}')
			d.depth--
			return m, nil
		default:
			return nil, d.bad("want ',' or '}'")
		}
	}
}

func (d *jsonDecoder) array() (any, *finding) {
	if d.depth++; d.depth > maxJSONDepth {
		return nil, &finding{RuleTooComplex, "arguments are nested deeper than " + strconv.Itoa(maxJSONDepth)}
	}
	d.i++ // [
	d.out.WriteByte('[')
	a := []any{}
	d.space()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		d.out.WriteByte(']')
		d.depth--
		return a, nil
	}
	for {
		if len(a) > 0 {
			d.out.WriteByte(',')
		}
		d.space()
		v, f := d.value()
		if f != nil {
			return nil, f
		}
		a = append(a, v)
		d.space()
		if d.i >= len(d.s) {
			return nil, d.bad("unexpected end")
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			d.out.WriteByte(']')
			d.depth--
			return a, nil
		default:
			return nil, d.bad("want ',' or ']'")
		}
	}
}

// maxNumberLen bounds a number literal.
const maxNumberLen = 256

func (d *jsonDecoder) number() (any, *finding) {
	start := d.i
	if d.s[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case digits() == 0:
		return nil, d.bad("bad number")
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return nil, d.bad("bad number")
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return nil, d.bad("bad number")
		}
	}
	lit := d.s[start:d.i]
	if len(lit) > maxNumberLen {
		return nil, d.bad("number longer than " + strconv.Itoa(maxNumberLen) + " characters")
	}
	if _, err := strconv.ParseFloat(lit, 64); err != nil {
		// Python reads it as inf, Go refuses it, JavaScript gets Infinity
		return nil, &finding{RuleArgsEncoding, "the number " + lit + " overflows a 64-bit float, which languages read differently"}
	}
	d.out.WriteString(lit)
	return json.Number(lit), nil
}

// str decodes the string at d.i (after validating every escape).
func (d *jsonDecoder) str() (string, *finding) {
	d.i++ // opening quote
	start := d.i
	// fast path: no escapes
	for d.i < len(d.s) {
		c := d.s[d.i]
		if c == '"' {
			s := d.s[start:d.i]
			d.i++
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", d.bad("control character in a string")
		}
		d.i++
	}
	var b strings.Builder
	b.WriteString(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return b.String(), nil
		case c < 0x20:
			return "", d.bad("control character in a string")
		case c != '\\':
			b.WriteByte(c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			break
		}
		e := d.s[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.bad("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				lo := rune(-1)
				if r < 0xdc00 && strings.HasPrefix(d.s[d.i:], `\u`) {
					d.i += 2
					lo, ok = d.hex4()
					if !ok {
						return "", d.bad("bad \\u escape")
					}
				}
				r = utf16.DecodeRune(r, lo)
				if r == utf8.RuneError {
					return "", &finding{RuleArgsEncoding, "a string holds a lone UTF-16 surrogate, which parsers decode differently"}
				}
			}
			b.WriteRune(r)
		default:
			return "", d.bad("bad escape")
		}
	}
	return "", d.bad("unterminated string")
}

func (d *jsonDecoder) hex4() (rune, bool) {
	if d.i+4 > len(d.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(d.s[d.i:d.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(v), true
}

// foldKey maps a key to a representative of its case-folding class: two
// keys get the same result exactly when strings.EqualFold reports them
// equal, which is how encoding/json matches keys to struct fields.
func (d *jsonDecoder) foldKey(k string) string {
	ascii := true
	for i := 0; i < len(k); i++ {
		if k[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii { // the smallest rune of an ASCII letter's orbit is its upper case
		return strings.ToUpper(k)
	}
	d.fold.Reset()
	for _, r := range k {
		d.fold.WriteRune(foldRune(r))
	}
	return d.fold.String()
}

// foldRune returns the smallest rune of r's simple case-folding orbit.
func foldRune(r rune) rune {
	min := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < min {
			min = f
		}
	}
	return min
}

// writeJSONString writes s as a JSON string, escaping only what JSON
// requires.
func writeJSONString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
