// Package pipelinetest helps test a stage's handlers without NATS: it
// builds messages as the runtime delivers them to a handler, and it has an
// in-memory pipeline.StepStore with the semantics of the KV-backed
// pipeline.StepCache.
//
//	steps := pipelinetest.NewSteps(t)
//	h, _ := mystage.New(mystage.Config{}, mystage.Deps{Steps: steps, ...})
//	in := pipelinetest.Deliver(t, messages.EventAdmitted, "req1", 0, admitted)
//	out, err := h.Handle(in)
//	// a redelivery must not run the step again:
//	out2, err := h.Handle(pipelinetest.Redeliver(t, in))
package pipelinetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
)

// Deliver returns event as the runtime hands it to a handler on its first
// delivery: what the publishing stage sent (pipeline.NewEvent: the JSON
// payload, the deterministic message id, the event and correlation
// headers, the subject) plus what the consumer adds (the subject it was
// stored on, the delivery count, a stream sequence, the storage time) and
// a handler context that ends with the test.
func Deliver(t testing.TB, event, requestID string, round int, payload any) *message.Message {
	t.Helper()
	m, err := pipeline.NewEvent(event, requestID, round, payload)
	if err != nil {
		t.Fatal(err)
	}
	m.Metadata.Set(pipeline.MetaDelivered, "1")
	m.Metadata.Set(pipeline.MetaStreamSeq, "1")
	m.Metadata.Set(pipeline.MetaTimestamp, time.Now().UTC().Format(time.RFC3339Nano))
	withContext(t, m)
	return m
}

// Redeliver is m delivered again (JetStream's next delivery of it, after
// a NAK, an ack timeout or a crash of the replica that had it).
func Redeliver(t testing.TB, m *message.Message) *message.Message {
	t.Helper()
	c := m.Copy()
	c.Metadata.Set(pipeline.MetaDelivered, strconv.FormatUint(pipeline.Delivered(m)+1, 10))
	withContext(t, c)
	return c
}

// One returns the single event a handler produced (failing the test on a
// handler error or another count) and checks how it is routed: its event
// header, the subject of request rid, the correlation header and the
// deterministic message id of (rid, event, round).
func One(t testing.TB, out []*message.Message, err error, event, rid string, round int) *message.Message {
	t.Helper()
	if err != nil {
		t.Fatalf("handler error: %v", err)
	}
	if len(out) != 1 {
		t.Fatalf("handler produced %d events, want 1", len(out))
	}
	m := out[0]
	if got := m.Metadata.Get(messages.HeaderEvent); got != event {
		t.Fatalf("event = %q, want %q (payload %s)", got, event, m.Payload)
	}
	if got, want := m.Metadata.Get(pipeline.MetaSubject), messages.Subject(event, rid); got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	if got := m.Metadata.Get(messages.HeaderCorrelationID); got != rid {
		t.Errorf("correlation id = %q, want %q", got, rid)
	}
	if want := messages.MsgID(rid, event, round); m.UUID != want {
		t.Errorf("message id = %q, want %q", m.UUID, want)
	}
	return m
}

// Decode decodes m's payload into T, failing the test when it cannot.
func Decode[T any](t testing.TB, m *message.Message) T {
	t.Helper()
	v, err := pipeline.Decode[T](m)
	if err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return v
}

func withContext(t testing.TB, m *message.Message) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m.SetContext(ctx)
}

// Steps is an in-memory pipeline.StepStore with the semantics of the
// KV-backed StepCache: a recorded result is found (decoded into v); a step
// another runner holds is ErrStepBusy; otherwise the caller gets a claim
// and must Put or Release it. A result larger than Limit is recorded as
// too large (Put and every later Begin report ErrStepTooLarge). Results go
// through JSON, as they do in the bucket. It is safe for concurrent use.
type Steps struct {
	// Limit is the largest result recorded; 0: no limit.
	Limit int
	// BeginErr, when set, is what every Begin returns (the bucket is
	// unreachable).
	BeginErr error

	mu       sync.Mutex
	results  map[string][]byte // nil value: recorded as too large
	held     map[string]bool
	begins   int
	puts     int
	releases int
}

// NewSteps returns an empty store. At the end of the test it fails the
// test for every step still claimed (neither Put nor Released): a handler
// that leaks a claim would block the step's redelivery until the lease
// ran out.
func NewSteps(t testing.TB) *Steps {
	t.Helper()
	s := &Steps{results: map[string][]byte{}, held: map[string]bool{}}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for k := range s.held {
			t.Errorf("step %s still claimed at the end of the test: neither Put nor Released", k)
		}
	})
	return s
}

func (s *Steps) Begin(_ context.Context, key string, max time.Duration, v any) (pipeline.StepClaim, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.begins++
	if s.BeginErr != nil {
		return nil, false, s.BeginErr
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
	return &claim{s: s, key: key}, false, nil
}

// Hold claims key as another runner would (a replica still running it).
func (s *Steps) Hold(key string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[key] = true
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.held, key)
	}
}

// Recorded reports whether key has a recorded result.
func (s *Steps) Recorded(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.results[key]
	return ok
}

// Counts reports how many Begin, Put and Release calls the store saw.
func (s *Steps) Counts() (begins, puts, releases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begins, s.puts, s.releases
}

type claim struct {
	s    *Steps
	key  string
	done bool
}

func (c *claim) Put(_ context.Context, v any) error {
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
	if c.s.Limit > 0 && len(b) > c.s.Limit {
		c.s.results[c.key] = nil
		return fmt.Errorf("step %s is %d bytes: %w", c.key, len(b), pipeline.ErrStepTooLarge)
	}
	c.s.results[c.key] = b
	return nil
}

func (c *claim) Release() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	c.s.releases++
	delete(c.s.held, c.key)
}

var _ pipeline.StepStore = (*Steps)(nil)
