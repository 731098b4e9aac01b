package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

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

func newBreaker(t *testing.T, cfg Config, c Clock) *Breaker {
	t.Helper()
	b, err := New("p", cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAllow(t *testing.T, b *Breaker) Ticket {
	t.Helper()
	tk, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v (state %s)", err, b.State())
	}
	return tk
}

func mustReject(t *testing.T, b *Breaker, wantRetry time.Duration) {
	t.Helper()
	_, err := b.Allow()
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow: got %v, want *OpenError wrapping ErrOpen", err)
	}
	if oe.RetryAfter != wantRetry {
		t.Fatalf("RetryAfter = %s, want %s", oe.RetryAfter, wantRetry)
	}
	if oe.Name != "p" {
		t.Fatalf("Name = %q", oe.Name)
	}
}

type step struct {
	name string
	do   func(t *testing.T, b *Breaker, c *fakeClock)
	want Metrics // State, Generation, Transitions, Requests, Rejections, Successes, Failures, Ignored, ConsecutiveFailures
}

func check(t *testing.T, got, want Metrics) {
	t.Helper()
	type key struct {
		State                              State
		Gen, Tr, Req, Rej, Succ, Fail, Ign uint64
		Consec                             int
	}
	g := key{got.State, got.Generation, got.Transitions, got.Requests, got.Rejections, got.Successes, got.Failures, got.Ignored, got.ConsecutiveFailures}
	w := key{want.State, want.Generation, want.Transitions, want.Requests, want.Rejections, want.Successes, want.Failures, want.Ignored, want.ConsecutiveFailures}
	if g != w {
		t.Fatalf("metrics\n got  %+v\n want %+v", g, w)
	}
}

func TestStateMachine(t *testing.T) {
	cfg := Config{FailureThreshold: 3, SuccessThreshold: 2, OpenTimeout: 10 * time.Second, HalfOpenMaxProbes: 1, CallTimeout: 5 * time.Second}
	c := newClock()
	b := newBreaker(t, cfg, c)
	fail := func(t *testing.T, b *Breaker, _ *fakeClock) { b.Done(mustAllow(t, b), true) }
	ok := func(t *testing.T, b *Breaker, _ *fakeClock) { b.Done(mustAllow(t, b), false) }
	steps := []step{
		{"success", ok, Metrics{State: Closed, Requests: 1, Successes: 1}},
		{"fail1", fail, Metrics{State: Closed, Requests: 2, Successes: 1, Failures: 1, ConsecutiveFailures: 1}},
		{"fail2", fail, Metrics{State: Closed, Requests: 3, Successes: 1, Failures: 2, ConsecutiveFailures: 2}},
		{"success resets", ok, Metrics{State: Closed, Requests: 4, Successes: 2, Failures: 2}},
		{"fail", fail, Metrics{State: Closed, Requests: 5, Successes: 2, Failures: 3, ConsecutiveFailures: 1}},
		{"fail", fail, Metrics{State: Closed, Requests: 6, Successes: 2, Failures: 4, ConsecutiveFailures: 2}},
		{"fail opens", fail, Metrics{State: Open, Generation: 1, Transitions: 1, Requests: 7, Successes: 2, Failures: 5}},
		{"rejected while open", func(t *testing.T, b *Breaker, c *fakeClock) {
			mustReject(t, b, 10*time.Second)
			c.Advance(4 * time.Second)
			mustReject(t, b, 6*time.Second)
		}, Metrics{State: Open, Generation: 1, Transitions: 1, Requests: 9, Rejections: 2, Successes: 2, Failures: 5}},
		{"half-open after timeout, probe fails", func(t *testing.T, b *Breaker, c *fakeClock) {
			c.Advance(6 * time.Second)
			tk := mustAllow(t, b)
			mustReject(t, b, 5*time.Second) // one probe at a time
			b.Done(tk, true)
		}, Metrics{State: Open, Generation: 3, Transitions: 3, Requests: 11, Rejections: 3, Successes: 2, Failures: 6}},
		{"probe succeeds twice closes", func(t *testing.T, b *Breaker, c *fakeClock) {
			c.Advance(10 * time.Second)
			b.Done(mustAllow(t, b), false)
			if s := b.State(); s != HalfOpen {
				t.Fatalf("after 1 success: %s", s)
			}
			b.Done(mustAllow(t, b), false)
		}, Metrics{State: Closed, Generation: 5, Transitions: 5, Requests: 13, Rejections: 3, Successes: 4, Failures: 6}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t, b, c)
			check(t, b.Snapshot(), s.want)
		})
	}
}

func TestStaleGenerationIgnored(t *testing.T) {
	c := newClock()
	b := newBreaker(t, Config{FailureThreshold: 1, SuccessThreshold: 1, OpenTimeout: time.Second}, c)
	slowOK := mustAllow(t, b)   // gen 0
	slowFail := mustAllow(t, b) // gen 0
	b.Done(mustAllow(t, b), true)
	if b.State() != Open {
		t.Fatal("want open")
	}
	b.Done(slowOK, false) // stale: must not count toward closing
	m := b.Snapshot()
	if m.State != Open || m.Ignored != 1 || m.Successes != 0 {
		t.Fatalf("stale success changed state: %+v", m)
	}
	c.Advance(time.Second)
	probe := mustAllow(t, b)
	b.Done(probe, false) // closes (SuccessThreshold 1), gen 2
	if b.State() != Closed {
		t.Fatalf("want closed, got %s", b.State())
	}
	b.Done(slowFail, true) // stale failure from gen 0 must not re-open
	m = b.Snapshot()
	if m.State != Closed || m.Failures != 1 || m.Ignored != 2 || m.ConsecutiveFailures != 0 {
		t.Fatalf("stale failure changed state: %+v", m)
	}
	b.Done(probe, true) // reported twice: ignored
	if m = b.Snapshot(); m.State != Closed || m.Ignored != 3 {
		t.Fatalf("double report counted: %+v", m)
	}
}

func TestHalfOpenProbesBounded(t *testing.T) {
	for _, probes := range []int{1, 3} {
		t.Run(fmt.Sprint(probes), func(t *testing.T) {
			c := newClock()
			b := newBreaker(t, Config{FailureThreshold: 1, SuccessThreshold: 10, OpenTimeout: time.Second, HalfOpenMaxProbes: probes, CallTimeout: 4 * time.Second}, c)
			b.Done(mustAllow(t, b), true)
			c.Advance(time.Second)
			var tickets []Ticket
			for range probes {
				tickets = append(tickets, mustAllow(t, b))
			}
			mustReject(t, b, 4*time.Second)
			b.Release(tickets[0]) // frees one slot without a verdict
			tickets[0] = mustAllow(t, b)
			mustReject(t, b, 4*time.Second)
			c.Advance(4 * time.Second) // all probes outlived CallTimeout: slots freed
			for range probes {
				mustAllow(t, b)
			}
			mustReject(t, b, 4*time.Second)
			b.Done(tickets[1%probes], true) // expired ticket: ignored
			if s := b.State(); s != HalfOpen {
				t.Fatalf("expired probe result changed state to %s", s)
			}
		})
	}
}

func TestExecute(t *testing.T) {
	c := newClock()
	b := newBreaker(t, Config{FailureThreshold: 2, CallTimeout: 20 * time.Millisecond}, c)
	errBad := errors.New("bad request")
	errDown := errors.New("down")
	isFailure := func(err error) bool { return errors.Is(err, errDown) }

	if err := b.Execute(context.Background(), isFailure, func(context.Context) error { return errBad }); !errors.Is(err, errBad) {
		t.Fatal(err)
	}
	if m := b.Snapshot(); m.Successes != 1 || m.Failures != 0 {
		t.Fatalf("non-failure error counted: %+v", m)
	}
	// Client cancellation is not counted.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Execute(ctx, nil, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if m := b.Snapshot(); m.Failures != 0 || m.Ignored != 1 {
		t.Fatalf("cancellation counted: %+v", m)
	}
	// CallTimeout applies and counts as a failure even if isFailure says no.
	start := time.Now()
	err = b.Execute(context.Background(), func(error) bool { return false }, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("timeout: %v after %s", err, time.Since(start))
	}
	if err := b.Execute(context.Background(), isFailure, func(context.Context) error { return errDown }); !errors.Is(err, errDown) {
		t.Fatal(err)
	}
	called := false
	err = b.Execute(context.Background(), isFailure, func(context.Context) error { called = true; return nil })
	if !errors.Is(err, ErrOpen) || called {
		t.Fatalf("open breaker: err %v, called %v", err, called)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr int // number of joined errors
	}{
		{"zero is defaults", Config{}, 0},
		{"one negative", Config{FailureThreshold: -1}, 1},
		{"all negative", Config{-1, -1, -1, -1, -1, nil}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			n := 0
			if err != nil {
				n = len(err.(interface{ Unwrap() []error }).Unwrap())
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatal("does not wrap ErrInvalidConfig")
				}
				if _, nerr := New("x", tt.cfg, nil); nerr == nil {
					t.Fatal("New accepted invalid config")
				}
			}
			if n != tt.wantErr {
				t.Fatalf("got %d errors (%v), want %d", n, err, tt.wantErr)
			}
		})
	}
	d := Config{}.WithDefaults()
	if d.FailureThreshold != 5 || d.SuccessThreshold != 2 || d.OpenTimeout != 60*time.Second || d.HalfOpenMaxProbes != 1 || d.CallTimeout != 30*time.Second {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestOnStateChange(t *testing.T) {
	c := newClock()
	var got []string
	var b *Breaker
	b = newBreaker(t, Config{FailureThreshold: 1, SuccessThreshold: 1, OpenTimeout: time.Second, OnStateChange: func(name string, from, to State) {
		_ = b.Snapshot() // must not deadlock
		got = append(got, name+":"+from.String()+">"+to.String())
	}}, c)
	b.Done(mustAllow(t, b), true)
	c.Advance(time.Second)
	b.Done(mustAllow(t, b), false)
	want := "[p:closed>open p:open>half-open p:half-open>closed]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

// TestConcurrentExactTotals runs 10 goroutines x 10,000 calls through a
// breaker whose clock advances while failures and successes interleave, and
// checks the counters add up exactly.
func TestConcurrentExactTotals(t *testing.T) {
	const G, N = 10, 10_000
	c := newClock()
	b := newBreaker(t, Config{FailureThreshold: 3, SuccessThreshold: 2, OpenTimeout: time.Millisecond, HalfOpenMaxProbes: 2}, c)
	var admitted, rejected, fails, oks atomic.Uint64
	var wg sync.WaitGroup
	for g := range G {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range N {
				if i%50 == 0 {
					c.Advance(time.Millisecond)
				}
				tk, err := b.Allow()
				if err != nil {
					rejected.Add(1)
					continue
				}
				admitted.Add(1)
				if (g+i/5)%4 == 0 { // bursts of 5 failures
					fails.Add(1)
					b.Done(tk, true)
				} else {
					oks.Add(1)
					b.Done(tk, false)
				}
			}
		}()
	}
	wg.Wait()
	m := b.Snapshot()
	if m.Requests != G*N {
		t.Fatalf("Requests = %d, want %d", m.Requests, G*N)
	}
	if m.Rejections != rejected.Load() || admitted.Load()+rejected.Load() != G*N {
		t.Fatalf("Rejections = %d, counted %d", m.Rejections, rejected.Load())
	}
	if got := m.Successes + m.Failures + m.Ignored; got != admitted.Load() || m.InFlight != 0 {
		t.Fatalf("S+F+I = %d (in flight %d), admitted %d", got, m.InFlight, admitted.Load())
	}
	if m.Failures > fails.Load() || m.Successes > oks.Load() {
		t.Fatalf("applied more results than reported: %+v", m)
	}
	if m.Transitions == 0 || m.Generation != m.Transitions {
		t.Fatalf("transitions %d generation %d", m.Transitions, m.Generation)
	}
	t.Logf("%+v", m)
}

func BenchmarkAllowDone(b *testing.B) {
	br, _ := New("p", Config{}, nil)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, err := br.Allow()
			if err == nil {
				br.Done(t, false)
			}
		}
	})
}

func ExampleBreaker_Execute() {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	b, _ := New("openai", Config{FailureThreshold: 2}, ClockFunc(func() time.Time { return now }))
	down := errors.New("503 service unavailable")
	for range 3 {
		err := b.Execute(context.Background(), nil, func(context.Context) error { return down })
		fmt.Println(err)
	}
	fmt.Println(b.State())
	now = now.Add(time.Minute) // OpenTimeout passed: one probe may go
	fmt.Println(b.State(), b.Execute(context.Background(), nil, func(context.Context) error { return nil }))
	// Output:
	// 503 service unavailable
	// 503 service unavailable
	// circuit breaker "openai" open: retry after 1m0s
	// open
	// half-open <nil>
}
