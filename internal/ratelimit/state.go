package ratelimit

import (
	"encoding/binary"
	"math"
)

// state is the stored value of one tier's bucket pair: the tokens left in
// the requests and tokens buckets at time last (Unix nanoseconds).
//
// Encoding (25 bytes, big endian): version byte 1, float64 req, float64
// tok, int64 last.
type state struct {
	req, tok float64
	last     int64
}

const (
	stateVersion = 1
	stateLen     = 25
)

func fresh(t tierSpec, now int64) state {
	return state{req: t.req.capacity, tok: t.tok.capacity, last: now}
}

// advance refills the buckets up to now. A clock behind last (another
// replica's clock ran ahead) refills nothing and keeps last.
func (s *state) advance(t tierSpec, now int64) {
	var dt float64
	if now > s.last {
		dt = float64(now - s.last)
		s.last = now
	}
	s.req = refill(s.req, t.req, dt)
	s.tok = refill(s.tok, t.tok, dt)
}

func refill(have float64, s spec, dt float64) float64 {
	if !s.enabled() {
		return 0
	}
	return math.Min(have+dt*s.perNano, s.capacity)
}

func (s *state) take(t tierSpec, cost, tokens float64) {
	if t.req.enabled() {
		s.req -= cost
	}
	if t.tok.enabled() {
		s.tok -= tokens
	}
}

func (s *state) give(t tierSpec, cost, tokens float64) {
	if t.req.enabled() {
		s.req = math.Min(s.req+cost, t.req.capacity)
	}
	if t.tok.enabled() {
		s.tok = math.Min(s.tok+tokens, t.tok.capacity)
	}
}

func (s state) encode() []byte {
	b := make([]byte, stateLen)
	b[0] = stateVersion
	binary.BigEndian.PutUint64(b[1:], math.Float64bits(s.req))
	binary.BigEndian.PutUint64(b[9:], math.Float64bits(s.tok))
	binary.BigEndian.PutUint64(b[17:], uint64(s.last))
	return b
}

// decodeState parses a stored value; false for anything it did not write.
func decodeState(b []byte) (state, bool) {
	if len(b) != stateLen || b[0] != stateVersion {
		return state{}, false
	}
	s := state{
		req:  math.Float64frombits(binary.BigEndian.Uint64(b[1:])),
		tok:  math.Float64frombits(binary.BigEndian.Uint64(b[9:])),
		last: int64(binary.BigEndian.Uint64(b[17:])),
	}
	if math.IsNaN(s.req) || math.IsInf(s.req, 0) || math.IsNaN(s.tok) || math.IsInf(s.tok, 0) {
		return state{}, false
	}
	return s, true
}
