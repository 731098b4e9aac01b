package memory

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzCanonicalJSONFast checks appendCanonical against the definition of
// the canonical form: where it takes an input it must give exactly what
// decodeCanonical gives, and it must take every canonical output (the
// form stored metas are read back in) whose keys have no escapes.
func FuzzCanonicalJSONFast(f *testing.F) {
	for _, s := range []string{
		`null`, `{"b":1,"a":2}`, `[1.50, 1e3, -0, 2E+7, 0.5e-3]`, `"\u00e9<>&"`, `"\u003c\u003e\u0026\u2028\u2029\u001f\u0000"`,
		`"\b\f\n\r\t\"\\\/"`, `"\u000a"`, `"\u003C"`, `"\ud83d\ude00"`, "\"\xff\"", "\"\u2028\"", `{"a":`, `1 2`, `{} }`, `[] ]`,
		`{"a":{"c":[],"b":{}}}`, `{"a":1,"a":2}`, `{"b":1,"a":2,"b":3}`, `{"\u0061":1}`, `{"a!":1,"a":2}`, ` {"é":1, "e":2} `,
		`01`, `-`, `1.`, `1e`, `.5`, `tru`, `nul`, `{"a" 1}`, `[1,]`, `{,}`, "\xc2\xa0{}", `[[[[[[[[[[]]]]]]]]]]`,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(strings.Repeat("[", maxCanonicalDepth+1) + strings.Repeat("]", maxCanonicalDepth+1)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, ok := appendCanonical(nil, raw)
		ref, err := decodeCanonical(raw)
		if ok && (err != nil || !bytes.Equal(fast, ref)) {
			t.Fatalf("appendCanonical(%q) = %q; decodeCanonical: %q, %v", raw, fast, ref, err)
		}
		if err != nil {
			return
		}
		again, ok := appendCanonical(nil, ref)
		switch {
		case ok && !bytes.Equal(again, ref):
			t.Fatalf("appendCanonical(%q) = %q, not itself", ref, again)
		case !ok && !escapedKey(ref) && nesting(ref) <= maxCanonicalDepth:
			t.Fatalf("appendCanonical does not take canonical %q", ref)
		}
	})
}

// escapedKey reports whether compact JSON has an object key with an
// escape.
func escapedKey(compact []byte) bool {
	inStr, escaped := false, false
	for i := 0; i < len(compact); i++ {
		switch b := compact[i]; {
		case inStr && b == '\\':
			escaped = true
			i++
		case inStr && b == '"':
			inStr = false
			if escaped && i+1 < len(compact) && compact[i+1] == ':' {
				return true
			}
		case !inStr && b == '"':
			inStr, escaped = true, false
		}
	}
	return false
}

// nesting is the deepest nesting of arrays and objects in compact JSON.
func nesting(compact []byte) int {
	inStr, depth, deepest := false, 0, 0
	for i := 0; i < len(compact); i++ {
		switch b := compact[i]; {
		case inStr && b == '\\':
			i++
		case b == '"':
			inStr = !inStr
		case inStr:
		case b == '[' || b == '{':
			depth++
			deepest = max(deepest, depth)
		case b == ']' || b == '}':
			depth--
		}
	}
	return deepest
}

func TestCanonicalJSONHelpers(t *testing.T) {
	for _, c := range []struct {
		json    string
		escaped bool
		nesting int
	}{
		{`{"a":"\\\"b:"}`, false, 1},
		{`{"a\\":1}`, true, 1},
		{`[{"a":[[]]},"[[[[["]`, false, 4},
		{`1`, false, 0},
	} {
		if got := escapedKey([]byte(c.json)); got != c.escaped {
			t.Errorf("escapedKey(%s) = %v", c.json, got)
		}
		if got := nesting([]byte(c.json)); got != c.nesting {
			t.Errorf("nesting(%s) = %d, want %d", c.json, got, c.nesting)
		}
	}
}

// TestCanonicalJSONFastPathTakesMetas checks that what persist stores as
// meta (json.Marshal of the completed event) takes the fast path.
func TestCanonicalJSONFastPathTakesMetas(t *testing.T) {
	rec, err := benchTurn("r1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	for _, meta := range [][]byte{rec.Meta, goldenTurns(t)[0].Meta} {
		if _, ok := appendCanonical(nil, meta); !ok {
			t.Errorf("appendCanonical does not take %s", meta)
		}
	}
}

// BenchmarkCanonicalJSON canonicalises the meta persist stores for a turn
// (benchTurn's), by the fast path and by decoding.
func BenchmarkCanonicalJSON(b *testing.B) {
	rec, err := benchTurn("r1", "c1")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    func([]byte) ([]byte, error)
	}{
		{"canonicalJSON", func(m []byte) ([]byte, error) { return canonicalJSON(m) }},
		{"decodeCanonical", func(m []byte) ([]byte, error) { return decodeCanonical(m) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(rec.Meta)))
			for b.Loop() {
				if _, err := c.f(rec.Meta); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
