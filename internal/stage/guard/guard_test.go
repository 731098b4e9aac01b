package guard_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/stage/guard"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/agentbus/agentbus/pipeline/pipelinetest"
)

// The guard's unit tests: the handler is built with in-memory fakes of its
// Deps and called directly on messages built the way the runtime delivers
// them. No NATS.

var clock = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// fakeSanitizer returns a fixed judgement and records what it judged.
type fakeSanitizer struct {
	j      guard.Judgement
	mu     sync.Mutex
	judged [][]messages.Message
}

func (s *fakeSanitizer) Check(msgs []messages.Message) guard.Judgement {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.judged = append(s.judged, msgs)
	return s.j
}

func (s *fakeSanitizer) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.judged)
}

// fakeLimiter admits or refuses every turn and records the estimates it
// was charged and the turns it reconciled.
type fakeLimiter struct {
	refuse     bool
	retryAfter time.Duration
	tier       string
	headers    map[string]string
	err        error // Allow's error: the shared state is unreachable
	reconErr   error

	mu         sync.Mutex
	charged    []int
	reconciled []string
}

func (l *fakeLimiter) Allow(_ context.Context, _ *messages.Turn, est int) (bool, time.Duration, string, map[string]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.charged = append(l.charged, est)
	if l.err != nil {
		return false, 0, "", nil, l.err
	}
	if l.refuse {
		return false, l.retryAfter, l.tier, l.headers, nil
	}
	return true, 0, "", nil, nil
}

func (l *fakeLimiter) Reconcile(_ context.Context, c *messages.Completed) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reconciled = append(l.reconciled, c.RequestID)
	return l.reconErr
}

func (l *fakeLimiter) calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.charged)
}

// fakeMetrics counts what the guard reports.
type fakeMetrics struct {
	mu       sync.Mutex
	verdicts []string
	limits   []string // kind/tier
}

func (m *fakeMetrics) GuardVerdict(verdict string, _ []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verdicts = append(m.verdicts, verdict)
}

func (m *fakeMetrics) LimitRejected(stage, kind, tier string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limits = append(m.limits, stage+"/"+kind+"/"+tier)
}

// newGuard builds the guard with deps and a fixed clock.
func newGuard(t *testing.T, cfg guard.Config, d guard.Deps) *guard.Handler {
	t.Helper()
	if d.Now == nil {
		d.Now = func() time.Time { return clock }
	}
	h, err := guard.New(cfg, d)
	if err != nil {
		t.Fatalf("guard.New: %v", err)
	}
	return h
}

// turn is a valid received turn of request rid.
func turn(rid string) messages.Turn {
	return messages.Turn{
		SchemaVersion:  messages.SchemaVersion,
		RequestID:      rid,
		ConversationID: "conv-1",
		User:           "alice",
		Messages:       []messages.Message{{Role: messages.RoleUser, Content: "What is the capital of France?"}},
	}
}

// deliver returns the event as the runtime hands it to a handler: what
// the publisher sent (pipeline.NewEvent: payload, the deterministic id,
// the event and correlation headers, the subject), plus what the consumer
// adds when it delivers it (pipeline's toMessage: the subject it was
// stored on, the delivery count, the stream sequence, the storage time)
// and the handler's context.
func deliver(t *testing.T, event, rid string, payload any) *message.Message {
	t.Helper()
	m, err := pipeline.NewEvent(event, rid, 0, payload)
	if err != nil {
		t.Fatal(err)
	}
	return delivered(t, m.UUID, m.Metadata.Get(pipeline.MetaSubject), m.Payload, m.Metadata, 1)
}

// delivered builds a consumed message from its parts (for payloads and
// subjects NewEvent would not produce).
func delivered(t *testing.T, id, subject string, payload []byte, headers message.Metadata, n int) *message.Message {
	t.Helper()
	m := message.NewMessage(id, append([]byte(nil), payload...))
	for k, v := range headers {
		m.Metadata.Set(k, v)
	}
	m.Metadata.Set(pipeline.MetaSubject, subject)
	m.Metadata.Set(pipeline.MetaDelivered, strconv.Itoa(n))
	m.Metadata.Set(pipeline.MetaStreamSeq, "7")
	m.Metadata.Set(pipeline.MetaTimestamp, clock.Format(time.RFC3339Nano))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m.SetContext(ctx)
	return m
}

// one returns the single event a handler produced, checking its routing:
// the event header, the subject of request rid, the correlation header
// and the deterministic message id.
func one(t *testing.T, out []*message.Message, err error, event, rid string) *message.Message {
	t.Helper()
	return pipelinetest.One(t, out, err, event, rid, 0)
}

func decode[T any](t *testing.T, m *message.Message) T {
	t.Helper()
	return pipelinetest.Decode[T](t, m)
}

func TestNew(t *testing.T) {
	cases := []struct {
		name    string
		cfg     guard.Config
		deps    guard.Deps
		wantErr bool
		// handlers are the events the stage consumes.
		handlers []string
	}{
		{name: "zero config and no deps", handlers: []string{messages.EventReceived}},
		{name: "negative handler timeout", cfg: guard.Config{HandlerTimeout: -time.Second}, wantErr: true},
		{name: "reconcile without a limiter consumes received only", cfg: guard.Config{Reconcile: true}, handlers: []string{messages.EventReceived}},
		{name: "limiter without reconcile consumes received only", deps: guard.Deps{Limiter: &fakeLimiter{}}, handlers: []string{messages.EventReceived}},
		{name: "reconcile with a limiter consumes completed too", cfg: guard.Config{Reconcile: true}, deps: guard.Deps{Limiter: &fakeLimiter{}},
			handlers: []string{messages.EventCompleted, messages.EventReceived}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := guard.New(tc.cfg, tc.deps)
			if tc.wantErr {
				if err == nil {
					t.Fatal("New accepted an invalid configuration")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			st := h.Stage()
			var got []string
			for ev, fn := range st.Handlers {
				if fn == nil {
					t.Errorf("handler of %s is nil", ev)
				}
				got = append(got, ev)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.handlers) {
				t.Errorf("handlers = %v, want %v", got, tc.handlers)
			}
			if st.Contract.Stage != guard.Stage {
				t.Errorf("contract stage = %q, want %q", st.Contract.Stage, guard.Stage)
			}
		})
	}
}

func TestHandleAdmits(t *testing.T) {
	cases := []struct {
		name       string
		sanitizer  *fakeSanitizer // nil: no sanitizer
		limiter    *fakeLimiter   // nil: no limiter
		edit       func(*messages.Turn)
		wantAction string
		wantRules  []string
		check      func(t *testing.T, a messages.Admitted)
	}{
		{name: "clean turn", sanitizer: &fakeSanitizer{j: guard.Judgement{Verdict: "allow"}}, limiter: &fakeLimiter{}, wantAction: "allow"},
		{name: "no sanitizer and no limiter", wantAction: "allow"},
		{
			name: "flagged turn is admitted with the deciding passage",
			sanitizer: &fakeSanitizer{j: guard.Judgement{Verdict: "flag", Score: 0.55, Rules: []string{"injection.role_play"},
				Passage: &messages.Passage{Message: 0, Start: 3, End: 9, Rule: "injection.role_play", Score: 0.55}}},
			limiter:    &fakeLimiter{},
			wantAction: "flag",
			wantRules:  []string{"injection.role_play"},
			check: func(t *testing.T, a messages.Admitted) {
				if a.Guard.Passage == nil || a.Guard.Passage.Start != 3 || a.Guard.Passage.End != 9 {
					t.Errorf("passage = %+v, want [3,9)", a.Guard.Passage)
				}
				if a.Guard.Score != 0.55 {
					t.Errorf("score = %v, want 0.55", a.Guard.Score)
				}
			},
		},
		{
			name: "defaults filled in for a client publishing straight to NATS",
			edit: func(tr *messages.Turn) { tr.SchemaVersion, tr.Endpoint, tr.CreatedAt = 0, "", time.Time{} },
			check: func(t *testing.T, a messages.Admitted) {
				if a.SchemaVersion != messages.SchemaVersion || a.Endpoint != "nats" || !a.CreatedAt.Equal(clock) {
					t.Errorf("schema_version, endpoint, created_at = %d, %q, %v; want %d, nats, %v",
						a.SchemaVersion, a.Endpoint, a.CreatedAt, messages.SchemaVersion, clock)
				}
			},
			wantAction: "allow",
		},
		{
			name:       "fields set by ingest are kept",
			edit:       func(tr *messages.Turn) { tr.Endpoint, tr.CreatedAt = "chat.completions", clock.Add(-time.Minute) },
			wantAction: "allow",
			check: func(t *testing.T, a messages.Admitted) {
				if a.Endpoint != "chat.completions" || !a.CreatedAt.Equal(clock.Add(-time.Minute)) {
					t.Errorf("endpoint, created_at = %q, %v; want ingest's", a.Endpoint, a.CreatedAt)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d guard.Deps
			if tc.sanitizer != nil {
				d.Sanitizer = tc.sanitizer
			}
			if tc.limiter != nil {
				d.Limiter = tc.limiter
			}
			h := newGuard(t, guard.Config{}, d)
			in := turn("req-ok")
			if tc.edit != nil {
				tc.edit(&in)
			}
			out, err := h.Stage().Handlers[messages.EventReceived](deliver(t, messages.EventReceived, in.RequestID, in))
			a := decode[messages.Admitted](t, one(t, out, err, messages.EventAdmitted, in.RequestID))
			if a.RequestID != in.RequestID || a.ConversationID != in.ConversationID || a.User != in.User {
				t.Errorf("admitted ids = %q %q %q, want the turn's", a.RequestID, a.ConversationID, a.User)
			}
			if len(a.Messages) != 1 || a.Messages[0].Content != in.Messages[0].Content {
				t.Errorf("admitted messages = %+v, want the turn's", a.Messages)
			}
			if a.Guard.Action != tc.wantAction {
				t.Errorf("guard action = %q, want %q", a.Guard.Action, tc.wantAction)
			}
			if !slices.Equal(a.Guard.Rules, tc.wantRules) {
				t.Errorf("guard rules = %v, want %v", a.Guard.Rules, tc.wantRules)
			}
			if want := in.EstimatedTokens(); a.Guard.EstimatedTokens != want {
				t.Errorf("estimated tokens = %d, want %d", a.Guard.EstimatedTokens, want)
			}
			if tc.limiter != nil && !slices.Equal(tc.limiter.charged, []int{in.EstimatedTokens()}) {
				t.Errorf("limiter charged %v, want [%d]", tc.limiter.charged, in.EstimatedTokens())
			}
			if tc.sanitizer != nil && tc.sanitizer.calls() != 1 {
				t.Errorf("sanitizer judged %d times, want 1", tc.sanitizer.calls())
			}
			if tc.check != nil {
				tc.check(t, a)
			}
		})
	}
}

func TestHandleRejects(t *testing.T) {
	injection := guard.Judgement{Verdict: "block", Score: 0.97, Rules: []string{"injection.ignore_previous"},
		Reason:  "the input looks like a prompt injection",
		Passage: &messages.Passage{Message: 0, Start: 0, End: 28, Rule: "injection.ignore_previous", Score: 0.97}}
	cases := []struct {
		name      string
		sanitizer *fakeSanitizer
		limiter   *fakeLimiter
		// msg builds the delivered message (default: the valid turn).
		msg        func(t *testing.T) *message.Message
		wantCode   string
		wantStatus int
		wantRules  []string
		// sanitized: whether the sanitizer must have judged the turn.
		sanitized bool
		check     func(t *testing.T, r messages.Rejected, m *fakeMetrics)
	}{
		{
			name:       "prompt injection",
			sanitizer:  &fakeSanitizer{j: injection},
			limiter:    &fakeLimiter{},
			wantCode:   messages.CodeInjectionDetected,
			wantStatus: http.StatusBadRequest,
			wantRules:  []string{"injection.ignore_previous"},
			sanitized:  true,
			check: func(t *testing.T, r messages.Rejected, m *fakeMetrics) {
				if r.Reason != injection.Reason {
					t.Errorf("reason = %q, want the sanitizer's", r.Reason)
				}
				if r.Passage == nil || r.Passage.End != 28 || r.Score != 0.97 {
					t.Errorf("passage, score = %+v, %v; want the sanitizer's", r.Passage, r.Score)
				}
				if !slices.Equal(m.verdicts, []string{"block"}) {
					t.Errorf("verdict metrics = %v, want [block]", m.verdicts)
				}
			},
		},
		{
			name:       "blocked by size and encoding rules only is an invalid request",
			sanitizer:  &fakeSanitizer{j: guard.Judgement{Verdict: "block", Rules: []string{"limit.content_bytes", "encoding.invalid_utf8"}, Reason: "too large"}},
			wantCode:   messages.CodeInvalidRequest,
			wantStatus: http.StatusBadRequest,
			wantRules:  []string{"limit.content_bytes", "encoding.invalid_utf8"},
			sanitized:  true,
		},
		{
			name:       "over the rate limit",
			sanitizer:  &fakeSanitizer{j: guard.Judgement{Verdict: "allow"}},
			limiter:    &fakeLimiter{refuse: true, retryAfter: 2500 * time.Millisecond, tier: "user", headers: map[string]string{"x-ratelimit-remaining-requests": "0"}},
			wantCode:   messages.CodeRateLimited,
			wantStatus: http.StatusTooManyRequests,
			wantRules:  []string{"ratelimit.user"},
			check: func(t *testing.T, r messages.Rejected, m *fakeMetrics) {
				if r.RetryAfterMS != 2500 {
					t.Errorf("retry_after_ms = %d, want 2500", r.RetryAfterMS)
				}
				if r.RateLimit["x-ratelimit-remaining-requests"] != "0" {
					t.Errorf("rate_limit = %v, want the limiter's headers", r.RateLimit)
				}
				if !slices.Equal(m.limits, []string{guard.Stage + "/rate/user"}) {
					t.Errorf("limit metrics = %v, want [%s/rate/user]", m.limits, guard.Stage)
				}
			},
		},
		{
			name:       "rate limiter unreachable",
			limiter:    &fakeLimiter{err: errors.New("kv: no responders")},
			wantCode:   messages.CodeUnavailable,
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name: "payload is not a turn",
			msg: func(t *testing.T) *message.Message {
				return delivered(t, messages.MsgID("req-bad", messages.EventReceived, 0), messages.Subject(messages.EventReceived, "req-bad"),
					[]byte(`{"request_id": 42`), nil, 1)
			},
			sanitizer:  &fakeSanitizer{},
			limiter:    &fakeLimiter{},
			wantCode:   messages.CodeInvalidRequest,
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "request id of the payload differs from the subject's",
			msg: func(t *testing.T) *message.Message {
				m := deliver(t, messages.EventReceived, "req-other", turn("req-other"))
				m.Metadata.Set(pipeline.MetaSubject, messages.Subject(messages.EventReceived, "req-bad"))
				return m
			},
			sanitizer:  &fakeSanitizer{},
			limiter:    &fakeLimiter{},
			wantCode:   messages.CodeInvalidRequest,
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "turn fails validation",
			msg: func(t *testing.T) *message.Message {
				tr := turn("req-bad")
				tr.User = ""
				return deliver(t, messages.EventReceived, tr.RequestID, tr)
			},
			sanitizer:  &fakeSanitizer{},
			limiter:    &fakeLimiter{},
			wantCode:   messages.CodeInvalidRequest,
			wantStatus: http.StatusBadRequest,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &fakeMetrics{}
			d := guard.Deps{Metrics: m}
			if tc.sanitizer != nil {
				d.Sanitizer = tc.sanitizer
			}
			if tc.limiter != nil {
				d.Limiter = tc.limiter
			}
			h := newGuard(t, guard.Config{}, d)
			var in *message.Message
			if tc.msg != nil {
				in = tc.msg(t)
			} else {
				in = deliver(t, messages.EventReceived, "req-bad", turn("req-bad"))
			}
			out, err := h.Stage().Handlers[messages.EventReceived](in)
			r := decode[messages.Rejected](t, one(t, out, err, messages.EventRejected, "req-bad"))
			if r.Code != tc.wantCode || r.Status != tc.wantStatus {
				t.Errorf("code, status = %q, %d; want %q, %d (reason %q)", r.Code, r.Status, tc.wantCode, tc.wantStatus, r.Reason)
			}
			if r.RequestID != "req-bad" || r.SchemaVersion != messages.SchemaVersion || !r.At.Equal(clock) {
				t.Errorf("request_id, schema_version, at = %q, %d, %v", r.RequestID, r.SchemaVersion, r.At)
			}
			if r.Reason == "" {
				t.Error("rejection without a reason")
			}
			if !slices.Equal(r.Rules, tc.wantRules) {
				t.Errorf("rules = %v, want %v", r.Rules, tc.wantRules)
			}
			if tc.sanitizer != nil {
				if got := tc.sanitizer.calls() == 1; got != tc.sanitized {
					t.Errorf("sanitizer judged the turn: %v, want %v", got, tc.sanitized)
				}
			}
			if tc.check != nil {
				tc.check(t, r, m)
			}
		})
	}
}

// TestHandleRejectedInjectionStillCounts: rate limits are taken before
// the sanitizer runs, so refused requests count against the limits too.
func TestHandleRejectedInjectionStillCounts(t *testing.T) {
	l := &fakeLimiter{}
	h := newGuard(t, guard.Config{}, guard.Deps{Limiter: l, Sanitizer: &fakeSanitizer{j: guard.Judgement{Verdict: "block", Rules: []string{"injection.x"}}}})
	tr := turn("req-1")
	out, err := h.Handle(deliver(t, messages.EventReceived, tr.RequestID, tr))
	one(t, out, err, messages.EventRejected, tr.RequestID)
	if l.calls() != 1 {
		t.Errorf("limiter charged %d times, want 1", l.calls())
	}
}

func TestHandleWithoutRequestID(t *testing.T) {
	for _, subject := range []string{"", "agentbus.turn.received", "agentbus.turn.received.bad id", "other.subject"} {
		t.Run(strconv.Quote(subject), func(t *testing.T) {
			h := newGuard(t, guard.Config{}, guard.Deps{})
			tr := turn("req-1")
			in := deliver(t, messages.EventReceived, tr.RequestID, tr)
			in.Metadata.Set(pipeline.MetaSubject, subject)
			out, err := h.Handle(in)
			if !errors.Is(err, pipeline.ErrPermanent) {
				t.Fatalf("error = %v, want a permanent error (dead letter)", err)
			}
			if len(out) != 0 {
				t.Errorf("produced %d events, want none", len(out))
			}
		})
	}
}

func TestHandleCompleted(t *testing.T) {
	cases := []struct {
		name     string
		payload  []byte // nil: a valid completed event
		reconErr error
		wantErr  func(error) bool
	}{
		{name: "reconciles the turn", wantErr: func(err error) bool { return err == nil }},
		{name: "limiter error is retried", reconErr: errors.New("kv timeout"),
			wantErr: func(err error) bool { return err != nil && !errors.Is(err, pipeline.ErrPermanent) }},
		{name: "undecodable event is permanent", payload: []byte("not json"),
			wantErr: func(err error) bool { return errors.Is(err, pipeline.ErrPermanent) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := &fakeLimiter{reconErr: tc.reconErr}
			h := newGuard(t, guard.Config{Reconcile: true}, guard.Deps{Limiter: l})
			c := messages.Completed{SchemaVersion: messages.SchemaVersion, RequestID: "req-1", ConversationID: "conv-1", User: "alice",
				Usage: messages.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}}
			in := deliver(t, messages.EventCompleted, c.RequestID, c)
			if tc.payload != nil {
				in.Payload = tc.payload
			}
			out, err := h.Stage().Handlers[messages.EventCompleted](in)
			if !tc.wantErr(err) {
				t.Fatalf("unexpected error %v", err)
			}
			if len(out) != 0 {
				t.Errorf("produced %d events, want none", len(out))
			}
			if tc.payload == nil && !slices.Equal(l.reconciled, []string{"req-1"}) {
				t.Errorf("reconciled %v, want [req-1]", l.reconciled)
			}
		})
	}
}
