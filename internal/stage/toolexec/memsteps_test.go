package toolexec_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/pipeline"
)

// memSteps is an in-memory pipeline.StepStore with the semantics of the
// KV-backed StepCache: a recorded result is found (decoded into v); a step
// another runner holds is ErrStepBusy; otherwise the caller gets a claim
// and must Put or Release it. A result larger than limit is recorded as
// too large (Put and every later Begin report ErrStepTooLarge). Results go
// through JSON, as they do in the bucket.
//
// (A copy of this type lives in llm's tests: test files cannot share
// a helper package without one outside the stage directories.)
type memSteps struct {
	// limit is the largest result recorded; 0: no limit.
	limit int
	// beginErr, when set, is what every Begin returns (the bucket is
	// unreachable).
	beginErr error

	mu       sync.Mutex
	results  map[string][]byte // nil value: recorded as too large
	held     map[string]bool
	begins   int
	puts     int
	releases int
}

func newMemSteps(t *testing.T) *memSteps {
	t.Helper()
	s := &memSteps{results: map[string][]byte{}, held: map[string]bool{}}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for k := range s.held {
			t.Errorf("step %s still claimed at the end of the test: neither Put nor Released", k)
		}
	})
	return s
}

func (s *memSteps) Begin(_ context.Context, key string, max time.Duration, v any) (pipeline.StepClaim, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.begins++
	if s.beginErr != nil {
		return nil, false, s.beginErr
	}
	if max <= 0 {
		return nil, false, fmt.Errorf("step %s: lease of %s", key, max)
	}
	if b, ok := s.results[key]; ok {
		if b == nil {
			return nil, true, fmt.Errorf("step %s: %w", key, pipeline.ErrStepTooLarge)
		}
		return nil, true, json.Unmarshal(b, v)
	}
	if s.held[key] {
		return nil, false, fmt.Errorf("step %s: %w", key, pipeline.ErrStepBusy)
	}
	s.held[key] = true
	return &memClaim{s: s, key: key}, false, nil
}

// hold claims key as another runner would (a replica still running it).
func (s *memSteps) hold(key string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[key] = true
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.held, key)
	}
}

// recorded reports whether key has a recorded result.
func (s *memSteps) recorded(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.results[key]
	return ok
}

func (s *memSteps) counts() (begins, puts, releases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begins, s.puts, s.releases
}

type memClaim struct {
	s    *memSteps
	key  string
	done bool
}

func (c *memClaim) Put(_ context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.done {
		return fmt.Errorf("step %s: Put after the claim ended", c.key)
	}
	c.done = true
	c.s.puts++
	delete(c.s.held, c.key)
	if c.s.limit > 0 && len(b) > c.s.limit {
		c.s.results[c.key] = nil
		return fmt.Errorf("step %s is %d bytes: %w", c.key, len(b), pipeline.ErrStepTooLarge)
	}
	c.s.results[c.key] = b
	return nil
}

func (c *memClaim) Release() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	c.s.releases++
	delete(c.s.held, c.key)
}
