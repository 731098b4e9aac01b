package memory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// canonicalJSON re-encodes JSON with sorted object keys, no insignificant
// space and numbers kept verbatim; empty input gives null.
//
// The canonical form is defined by decodeCanonical (decode into any with
// UseNumber, then json.Marshal): the content hashes of existing chains
// were computed with it. appendCanonical produces the same bytes without
// building a value tree, for the JSON it knows to be encoded the way
// json.Marshal encodes it (which is what persist's metas are: json.Marshal
// of the completed event); anything else goes to decodeCanonical.
// FuzzCanonicalJSONFast checks that the two agree.
func canonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null"), nil
	}
	if out, ok := appendCanonical(make([]byte, 0, len(raw)), raw); ok {
		return out, nil
	}
	return decodeCanonical(raw)
}

// decodeCanonical is the definition of canonicalJSON.
func decodeCanonical(raw json.RawMessage) (json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	if d.More() {
		return nil, errors.New("meta: trailing data after JSON value")
	}
	return json.Marshal(v)
}

// maxCanonicalDepth bounds the nesting appendCanonical handles (the
// decoder's own limit is 10000).
const maxCanonicalDepth = 1000

// appendCanonical appends the canonical form of in to dst. ok is false if
// in is anything but one JSON value between JSON white space whose strings
// are escaped exactly as json.Marshal escapes them and whose object keys
// have no escapes and are unique; the caller then falls back to
// decodeCanonical, which handles (or refuses) every input.
func appendCanonical(dst, in []byte) (out []byte, ok bool) {
	c := canonicalizer{in: in, out: dst}
	c.space()
	if !c.value(0) {
		return nil, false
	}
	c.space()
	if c.pos != len(c.in) {
		return nil, false
	}
	return c.out, true
}

type canonicalizer struct {
	in  []byte
	pos int
	out []byte
	// members is a stack of the members of the objects being read; tmp is
	// scratch space for reordering them.
	members []member
	tmp     []byte
}

// member is one object member written to out: out[start:end] is
// `"key":value`, out[start+1:keyEnd] the key.
type member struct{ start, keyEnd, end int }

func (c *canonicalizer) space() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *canonicalizer) value(depth int) bool {
	if c.pos >= len(c.in) {
		return false
	}
	switch b := c.in[c.pos]; {
	case b == '{':
		return depth < maxCanonicalDepth && c.object(depth+1)
	case b == '[':
		return depth < maxCanonicalDepth && c.array(depth+1)
	case b == '"':
		_, ok := c.str()
		return ok
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	case b == '-' || '0' <= b && b <= '9':
		return c.number()
	}
	return false
}

func (c *canonicalizer) literal(lit string) bool {
	if !bytes.HasPrefix(c.in[c.pos:], []byte(lit)) {
		return false
	}
	c.out = append(c.out, lit...)
	c.pos += len(lit)
	return true
}

// number copies a JSON number (kept verbatim by the canonical form).
func (c *canonicalizer) number() bool {
	start, in := c.pos, c.in
	i := start
	digits := func() bool {
		n := i
		for i < len(in) && '0' <= in[i] && in[i] <= '9' {
			i++
		}
		return i > n
	}
	if in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(in) && in[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	c.out = append(c.out, in[start:i]...)
	c.pos = i
	return true
}

// str copies a string that json.Marshal would write exactly as it is:
// valid UTF-8 except U+2028 and U+2029, no raw control characters, '<',
// '>' or '&', and only the escapes json.Marshal writes. escaped says
// whether it has any escape.
func (c *canonicalizer) str() (escaped, ok bool) {
	in := c.in
	i := c.pos + 1
	for i < len(in) {
		for i < len(in) && plainASCII[in[i]] {
			i++
		}
		if i == len(in) {
			break
		}
		b := in[i]
		switch {
		case b == '"':
			c.out = append(c.out, in[c.pos:i+1]...)
			c.pos = i + 1
			return escaped, true
		case b == '\\':
			escaped = true
			if i+1 >= len(in) {
				return false, false
			}
			switch in[i+1] {
			case '"', '\\', 'b', 'f', 'n', 'r', 't':
				i += 2
				continue
			case 'u':
				if i+6 > len(in) || !marshalsAsUEscape(in[i+2:i+6]) {
					return false, false
				}
				i += 6
				continue
			}
			return false, false
		case b < utf8.RuneSelf: // a control character, '<', '>' or '&'
			return false, false
		default:
			r, size := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
				return false, false
			}
			i += size
		}
	}
	return false, false
}

// plainASCII are the bytes json.Marshal writes as they are in a string.
var plainASCII = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// marshalsAsUEscape reports whether the four hex digits h of a \u escape
// are exactly what json.Marshal writes for the character they encode:
// lower-case hex, for a control character without a short escape, '<',
// '>', '&', U+2028 or U+2029.
func marshalsAsUEscape(h []byte) bool {
	var v rune
	for _, d := range h {
		switch {
		case '0' <= d && d <= '9':
			v = v<<4 | rune(d-'0')
		case 'a' <= d && d <= 'f':
			v = v<<4 | rune(d-'a'+10)
		default:
			return false
		}
	}
	switch v {
	case '\b', '\f', '\n', '\r', '\t':
		return false
	case '<', '>', '&', '\u2028', '\u2029':
		return true
	}
	return v < 0x20
}

func (c *canonicalizer) array(depth int) bool {
	c.pos++
	c.out = append(c.out, '[')
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.pos++
		c.out = append(c.out, ']')
		return true
	}
	for {
		if !c.value(depth) {
			return false
		}
		c.space()
		if c.pos >= len(c.in) {
			return false
		}
		switch c.in[c.pos] {
		case ',':
			c.pos++
			c.out = append(c.out, ',')
			c.space()
		case ']':
			c.pos++
			c.out = append(c.out, ']')
			return true
		default:
			return false
		}
	}
}

func (c *canonicalizer) object(depth int) bool {
	c.pos++
	c.out = append(c.out, '{')
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		c.out = append(c.out, '}')
		return true
	}
	body, base := len(c.out), len(c.members)
	for {
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return false
		}
		start := len(c.out)
		// A key's order is that of its decoded text; without escapes that
		// is its bytes.
		if escaped, ok := c.str(); !ok || escaped {
			return false
		}
		keyEnd := len(c.out) - 1
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return false
		}
		c.pos++
		c.out = append(c.out, ':')
		c.space()
		if !c.value(depth) {
			return false
		}
		c.members = append(c.members, member{start, keyEnd, len(c.out)})
		c.space()
		if c.pos >= len(c.in) {
			return false
		}
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		if c.in[c.pos] != ',' {
			return false
		}
		c.pos++
		c.out = append(c.out, ',')
		c.space()
	}
	ms := c.members[base:]
	c.members = c.members[:base]
	key := func(m member) []byte { return c.out[m.start+1 : m.keyEnd] }
	sorted := true
	for i := 1; i < len(ms); i++ {
		switch bytes.Compare(key(ms[i-1]), key(ms[i])) {
		case 0:
			return false // a duplicate key: the decoder keeps the last
		case 1:
			sorted = false
		}
	}
	if !sorted {
		slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(key(a), key(b)) })
		for i := 1; i < len(ms); i++ {
			if bytes.Equal(key(ms[i-1]), key(ms[i])) {
				return false
			}
		}
		c.tmp = append(c.tmp[:0], c.out[body:]...)
		c.out = c.out[:body]
		for i, m := range ms {
			if i > 0 {
				c.out = append(c.out, ',')
			}
			c.out = append(c.out, c.tmp[m.start-body:m.end-body]...)
		}
	}
	c.out = append(c.out, '}')
	return true
}
