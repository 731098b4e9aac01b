package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/breaker"
	"github.com/agentbus/agentbus/messages"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// scripted is a Provider whose answers come from a function.
type scripted struct {
	name  string
	calls atomic.Int64
	fn    func(ctx context.Context, n int, onDelta func(string)) (Response, error)
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) Complete(ctx context.Context, req Request, onDelta func(string)) (Response, error) {
	n := int(s.calls.Add(1))
	return s.fn(ctx, n, onDelta)
}

func okProvider(name string) *scripted {
	return &scripted{name: name, fn: func(_ context.Context, _ int, onDelta func(string)) (Response, error) {
		if onDelta != nil {
			onDelta("hello ")
			onDelta("from " + name)
		}
		return Response{Message: messages.Message{Role: "assistant", Content: "hello from " + name}, FinishReason: "stop"}, nil
	}}
}

func failing(name string, err error) *scripted {
	return &scripted{name: name, fn: func(context.Context, int, func(string)) (Response, error) { return Response{}, err }}
}

func errStatus(status int, kind error, retry time.Duration) error {
	return &Error{Provider: "x", Status: status, RetryAfter: retry, kind: kind}
}

type harness struct {
	clock  *fakeClock
	sleeps []time.Duration
	f      *Failover
	brs    []*breaker.Breaker
}

func newHarness(t *testing.T, bc breaker.Config, retry RetryConfig, ps ...Provider) *harness {
	t.Helper()
	h := &harness{clock: &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}
	var entries []Entry
	for _, p := range ps {
		br, err := breaker.New(p.Name(), bc, h.clock)
		if err != nil {
			t.Fatal(err)
		}
		h.brs = append(h.brs, br)
		entries = append(entries, Entry{Provider: p, Breaker: br})
	}
	var mu sync.Mutex
	f, err := NewFailover(entries, FailoverConfig{
		Retry: retry,
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			h.sleeps = append(h.sleeps, d)
			mu.Unlock()
			return ctx.Err()
		},
		Rand: func() float64 { return 0.5 },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.f = f
	return h
}

var userReq = Request{Messages: []messages.Message{{Role: "user", Content: "hi"}}}

func TestFailoverOnServerError(t *testing.T) {
	primary := failing("primary", errStatus(500, ErrUnavailable, 0))
	secondary := okProvider("secondary")
	h := newHarness(t, breaker.Config{}, RetryConfig{}, primary, secondary)
	resp, err := h.f.Complete(context.Background(), userReq, nil)
	if err != nil || resp.Provider != "secondary" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
	if primary.calls.Load() != 2 || secondary.calls.Load() != 1 {
		t.Fatalf("calls primary %d secondary %d", primary.calls.Load(), secondary.calls.Load())
	}
	if fmt.Sprint(h.sleeps) != "[100ms]" { // 0.5 * 200ms: one backoff between the 2 attempts
		t.Fatalf("sleeps %v", h.sleeps)
	}
	if m := h.brs[0].Snapshot(); m.Failures != 2 || m.ConsecutiveFailures != 2 {
		t.Fatalf("primary breaker %+v", m)
	}
	if m := h.brs[1].Snapshot(); m.Successes != 1 {
		t.Fatalf("secondary breaker %+v", m)
	}
}

func TestFailoverAllOpenFailsFast(t *testing.T) {
	a := failing("a", errStatus(503, ErrUnavailable, 0))
	b := failing("b", errStatus(500, ErrUnavailable, 0))
	h := newHarness(t, breaker.Config{FailureThreshold: 1, OpenTimeout: 30 * time.Second}, RetryConfig{MaxAttempts: 1}, a, b)
	if _, err := h.f.Complete(context.Background(), userReq, nil); !errors.Is(err, ErrAllProvidersUnavailable) {
		t.Fatal(err)
	}
	if h.f.Available() {
		t.Fatal("Available with every breaker open")
	}
	h.clock.Advance(10 * time.Second)
	calls := a.calls.Load() + b.calls.Load()
	start := time.Now()
	_, err := h.f.Complete(context.Background(), userReq, nil)
	elapsed := time.Since(start)
	var fe *FailoverError
	if !errors.As(err, &fe) || !errors.Is(err, ErrUnavailable) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("err %v", err)
	}
	if fe.RetryAfter != 20*time.Second || len(fe.Errors) != 2 {
		t.Fatalf("FailoverError %+v", fe)
	}
	if a.calls.Load()+b.calls.Load() != calls || elapsed > 500*time.Millisecond {
		t.Fatalf("called a provider or waited: %s", elapsed)
	}
	if s, code := Classify(err); s != 503 || code != messages.CodeProviderUnavailable {
		t.Fatalf("Classify %d %s", s, code)
	}
	if d, _ := RetryAfter(err); d != 20*time.Second {
		t.Fatalf("RetryAfter %s", d)
	}
}

func TestFailoverRecoversThroughHalfOpen(t *testing.T) {
	var healthy atomic.Bool
	primary := &scripted{name: "primary", fn: func(context.Context, int, func(string)) (Response, error) {
		if healthy.Load() {
			return Response{Message: messages.Message{Role: "assistant", Content: "ok"}}, nil
		}
		return Response{}, errStatus(500, ErrUnavailable, 0)
	}}
	secondary := okProvider("secondary")
	h := newHarness(t, breaker.Config{FailureThreshold: 2, SuccessThreshold: 2, OpenTimeout: time.Minute}, RetryConfig{MaxAttempts: 1}, primary, secondary)
	for i, want := range []string{"secondary", "secondary", "secondary"} {
		resp, err := h.f.Complete(context.Background(), userReq, nil)
		if err != nil || resp.Provider != want {
			t.Fatalf("call %d: %+v %v", i, resp, err)
		}
	}
	if primary.calls.Load() != 2 || h.brs[0].State() != breaker.Open {
		t.Fatalf("primary calls %d state %s", primary.calls.Load(), h.brs[0].State())
	}
	healthy.Store(true)
	h.clock.Advance(time.Minute)
	for i := range 2 {
		resp, err := h.f.Complete(context.Background(), userReq, nil)
		if err != nil || resp.Provider != "primary" {
			t.Fatalf("probe %d: %+v %v", i, resp, err)
		}
	}
	if s := h.brs[0].State(); s != breaker.Closed {
		t.Fatalf("state %s", s)
	}
	snap := h.f.Snapshot()
	if len(snap) != 2 || snap[0].Name != "primary" || snap[0].Breaker.Transitions != 3 || snap[1].Breaker.Successes != 3 {
		t.Fatalf("snapshot %+v", snap)
	}
}

func TestFailoverCallTimeout(t *testing.T) {
	var f *fakeOpenAI
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, n int) { f.hang(w, r) })
	slow := newOpenAI(t, f.URL, func(c *OpenAIConfig) { c.Name = "slow" })
	clock := &fakeClock{now: time.Now()}
	br, _ := breaker.New("slow", breaker.Config{}, clock)
	fo, err := NewFailover([]Entry{{Provider: slow, Breaker: br, Timeout: 50 * time.Millisecond}, {Provider: okProvider("fast")}}, FailoverConfig{Retry: RetryConfig{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := fo.Complete(context.Background(), userReq, nil)
	if err != nil || resp.Provider != "fast" || time.Since(start) > 2*time.Second {
		t.Fatalf("resp %+v err %v after %s", resp, err, time.Since(start))
	}
	if m := br.Snapshot(); m.Failures != 1 {
		t.Fatalf("timeout not counted: %+v", m)
	}
	// Alone, the timeout is ErrUnavailable (503), not the caller's deadline.
	fo, _ = NewFailover([]Entry{{Provider: slow, Timeout: 50 * time.Millisecond}}, FailoverConfig{Retry: RetryConfig{MaxAttempts: 1}})
	_, err = fo.Complete(context.Background(), userReq, nil)
	if s, _ := Classify(err); !errors.Is(err, ErrAllProvidersUnavailable) || s != 503 {
		t.Fatalf("err %v status %d", err, s)
	}
}

func TestFailoverRateLimited(t *testing.T) {
	t.Run("fails over", func(t *testing.T) {
		limited := failing("limited", errStatus(429, ErrRateLimited, 3*time.Second))
		h := newHarness(t, breaker.Config{}, RetryConfig{}, limited, okProvider("other"))
		resp, err := h.f.Complete(context.Background(), userReq, nil)
		if err != nil || resp.Provider != "other" || limited.calls.Load() != 1 || len(h.sleeps) != 0 {
			t.Fatalf("resp %+v err %v calls %d sleeps %v", resp, err, limited.calls.Load(), h.sleeps)
		}
		if m := h.brs[0].Snapshot(); m.Failures != 0 || m.Ignored != 1 {
			t.Fatalf("429 counted: %+v", m)
		}
	})
	t.Run("alone carries retry-after", func(t *testing.T) {
		limited := failing("limited", errStatus(429, ErrRateLimited, 3*time.Second))
		h := newHarness(t, breaker.Config{}, RetryConfig{}, limited)
		_, err := h.f.Complete(context.Background(), userReq, nil)
		var fe *FailoverError
		if !errors.As(err, &fe) || fe.RetryAfter != 3*time.Second || !errors.Is(err, ErrRateLimited) {
			t.Fatalf("err %v", err)
		}
		if s, code := Classify(err); s != 429 || code != messages.CodeRateLimited {
			t.Fatalf("Classify %d %s", s, code)
		}
	})
}

func TestFailoverBadRequestNotCounted(t *testing.T) {
	for _, kind := range []error{ErrBadRequest, ErrContextLength} {
		t.Run(kind.Error(), func(t *testing.T) {
			bad := failing("p", errStatus(400, kind, 0))
			other := okProvider("other")
			h := newHarness(t, breaker.Config{}, RetryConfig{}, bad, other)
			_, err := h.f.Complete(context.Background(), userReq, nil)
			if !errors.Is(err, kind) || other.calls.Load() != 0 || bad.calls.Load() != 1 {
				t.Fatalf("err %v, calls %d/%d", err, bad.calls.Load(), other.calls.Load())
			}
			if m := h.brs[0].Snapshot(); m.Failures != 0 || m.Successes != 0 || m.Ignored != 1 {
				t.Fatalf("breaker %+v", m)
			}
		})
	}
}

func TestFailoverCallerCancelNotCounted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &scripted{name: "p", fn: func(ctx context.Context, _ int, _ func(string)) (Response, error) {
		cancel()
		return Response{}, ctx.Err()
	}}
	other := okProvider("other")
	h := newHarness(t, breaker.Config{}, RetryConfig{}, p, other)
	_, err := h.f.Complete(ctx, userReq, nil)
	if !errors.Is(err, context.Canceled) || other.calls.Load() != 0 {
		t.Fatalf("err %v", err)
	}
	if m := h.brs[0].Snapshot(); m.Failures != 0 {
		t.Fatalf("breaker %+v", m)
	}
}

func TestFailoverStreaming(t *testing.T) {
	t.Run("no failover after a delta", func(t *testing.T) {
		broken := &scripted{name: "broken", fn: func(_ context.Context, _ int, onDelta func(string)) (Response, error) {
			onDelta("partial ")
			return Response{}, fmt.Errorf("%w: stream ended before [DONE]", ErrUnavailable)
		}}
		other := okProvider("other")
		h := newHarness(t, breaker.Config{}, RetryConfig{}, broken, other)
		var got string
		_, err := h.f.Complete(context.Background(), userReq, func(d string) { got += d })
		if !errors.Is(err, ErrUnavailable) || got != "partial " || other.calls.Load() != 0 || broken.calls.Load() != 1 {
			t.Fatalf("err %v got %q calls %d/%d", err, got, broken.calls.Load(), other.calls.Load())
		}
		if m := h.brs[0].Snapshot(); m.Failures != 1 {
			t.Fatalf("breaker %+v", m)
		}
	})
	t.Run("failover before any delta", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.WriteHeader(500)
			io.WriteString(w, `{"error":{"message":"down"}}`)
		})
		down := newOpenAI(t, f.URL, func(c *OpenAIConfig) { c.Name = "down" })
		h := newHarness(t, breaker.Config{}, RetryConfig{MaxAttempts: 1}, down, okProvider("other"))
		var got string
		resp, err := h.f.Complete(context.Background(), userReq, func(d string) { got += d })
		if err != nil || got != "hello from other" || resp.Provider != "other" || f.count() != 1 {
			t.Fatalf("resp %+v err %v got %q", resp, err, got)
		}
	})
	t.Run("attempt timeout bounds only the first delta", func(t *testing.T) {
		slowStream := &scripted{name: "s", fn: func(ctx context.Context, _ int, onDelta func(string)) (Response, error) {
			onDelta("a")
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return Response{}, ctx.Err()
			}
			onDelta("b")
			return Response{Message: messages.Message{Content: "ab"}}, nil
		}}
		fo, _ := NewFailover([]Entry{{Provider: slowStream, Timeout: 30 * time.Millisecond}}, FailoverConfig{})
		resp, err := fo.Complete(context.Background(), userReq, func(string) {})
		if err != nil || resp.Message.Content != "ab" {
			t.Fatalf("resp %+v err %v", resp, err)
		}
	})
}

func TestFailoverModels(t *testing.T) {
	a, b := okProvider("a"), okProvider("b")
	fo, err := NewFailover([]Entry{{Provider: a, Models: []string{"small"}}, {Provider: b, Models: []string{"large"}}}, FailoverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]string{"small": "a", "large": "b", "": "a"} {
		resp, err := fo.Complete(context.Background(), Request{Model: model}, nil)
		if err != nil || resp.Provider != want {
			t.Fatalf("model %q: %+v %v", model, resp, err)
		}
	}
	_, err = fo.Complete(context.Background(), Request{Model: "huge"}, nil)
	if s, code := Classify(err); !errors.Is(err, ErrModelNotFound) || !errors.Is(err, ErrBadRequest) || s != 404 || code != "model_not_found" ||
		!strings.Contains(err.Error(), "Models served: small, large") {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		fo, _ := NewFailover([]Entry{{Provider: NewOffline()}}, FailoverConfig{Rand: func() float64 { return r }})
		for attempt := 1; attempt <= 10; attempt++ {
			ceil := min(DefaultBaseDelay<<(attempt-1), DefaultMaxDelay)
			got := fo.Backoff(attempt)
			if want := time.Duration(r * float64(ceil)); got != want || got < 0 || got > DefaultMaxDelay {
				t.Fatalf("rand %v attempt %d: %s, want %s", r, attempt, got, want)
			}
		}
	}
}

func TestNewFailoverValidates(t *testing.T) {
	_, err := NewFailover(nil, FailoverConfig{Retry: RetryConfig{MaxAttempts: -1, BaseDelay: time.Second, MaxDelay: time.Millisecond}})
	if err == nil || len(err.(interface{ Unwrap() []error }).Unwrap()) != 3 {
		t.Fatalf("err %v", err)
	}
	_, err = NewFailover([]Entry{{Provider: NewOffline()}, {Provider: NewOffline()}}, FailoverConfig{})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("duplicate names: %v", err)
	}
}

func TestFailoverConcurrent(t *testing.T) {
	var n atomic.Int64
	flaky := &scripted{name: "flaky", fn: func(context.Context, int, func(string)) (Response, error) {
		if n.Add(1)%3 == 0 {
			return Response{}, errStatus(502, ErrUnavailable, 0)
		}
		return Response{Message: messages.Message{Content: "ok"}}, nil
	}}
	h := newHarness(t, breaker.Config{FailureThreshold: 3}, RetryConfig{MaxAttempts: 2}, flaky, NewOffline())
	var wg sync.WaitGroup
	var fails atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if _, err := h.f.Complete(context.Background(), userReq, nil); err != nil {
					fails.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if fails.Load() != 0 {
		t.Fatalf("%d calls failed despite the offline fallback", fails.Load())
	}
	m := h.brs[0].Snapshot()
	if m.Successes+m.Failures+m.Ignored+uint64(m.InFlight)+m.Rejections != m.Requests {
		t.Fatalf("breaker totals do not add up: %+v", m)
	}
}

func BenchmarkFailoverOffline(b *testing.B) {
	br, _ := breaker.New(OfflineName, breaker.Config{}, nil)
	fo, _ := NewFailover([]Entry{{Provider: NewOffline(), Breaker: br}}, FailoverConfig{})
	req := Request{Messages: []messages.Message{{Role: "system", Content: "You are helpful."}, {Role: "user", Content: "What is 17*23?"}}, Tools: []ToolSpec{calcTool}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fo.Complete(ctx, req, nil); err != nil {
			b.Fatal(err)
		}
	}
}
