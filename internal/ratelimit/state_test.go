package ratelimit

import (
	"math"
	"testing"
)

func FuzzDecodeState(f *testing.F) {
	f.Add(state{req: 5, tok: 100, last: 1_700_000_000_000_000_000}.encode())
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0})
	f.Add(state{req: math.Inf(1)}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := decodeState(b)
		if !ok {
			return
		}
		if math.IsNaN(s.req) || math.IsInf(s.tok, 0) {
			t.Fatalf("decoded a non-finite state %+v", s)
		}
		if s2, ok := decodeState(s.encode()); !ok || s2 != s {
			t.Fatalf("round trip %+v -> %+v", s, s2)
		}
	})
}
