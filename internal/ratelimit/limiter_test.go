package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/ratelimit"
	"pgregory.net/rapid"
)

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// tb is what the helpers need of testing.TB and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

func newLimiter(t tb, cfg ratelimit.Config, store ratelimit.Store, clk ratelimit.Clock) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(cfg, store, clk)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func mustAllow(t tb, l *ratelimit.Limiter, r ratelimit.Request) ratelimit.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), r)
	if err != nil {
		t.Fatalf("Allow(%+v): %v", r, err)
	}
	return d
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  ratelimit.Config
		want []string // substrings of the error; none = valid
	}{
		{"zero is valid", ratelimit.Config{}, nil},
		{"typical", ratelimit.Config{
			Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(100)},
			User:   ratelimit.TierLimits{Requests: ratelimit.PerMinute(60), Tokens: ratelimit.PerMinute(90_000)},
			Users:  map[string]ratelimit.TierLimits{"vip": {Requests: ratelimit.PerMinute(600)}},
		}, nil},
		{"negative rate", ratelimit.Config{User: ratelimit.TierLimits{Requests: ratelimit.Limit{Rate: -1}}}, []string{"User.Requests.Rate"}},
		{"nan burst and negative per", ratelimit.Config{Global: ratelimit.TierLimits{Tokens: ratelimit.Limit{Rate: 1, Burst: nan(), Per: -time.Second}}}, []string{"Global.Tokens.Burst", "Global.Tokens.Per"}},
		{"burst without rate", ratelimit.Config{Endpoint: ratelimit.TierLimits{Requests: ratelimit.Limit{Burst: 3}}}, []string{"Endpoint.Requests: Burst"}},
		{"bad override", ratelimit.Config{Endpoints: map[string]ratelimit.TierLimits{"x": {Requests: ratelimit.Limit{Rate: -2}}}}, []string{`Endpoints["x"].Requests.Rate`}},
		{"bad counts and prefix", ratelimit.Config{MaxKeys: -1, MaxRetries: -1, KeyPrefix: "a.b"}, []string{"MaxKeys", "MaxRetries", "KeyPrefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !regexp.MustCompile(regexp.QuoteMeta(w)).MatchString(err.Error()) {
					t.Errorf("Validate() = %v, missing %q", err, w)
				}
			}
			if _, err := ratelimit.New(tt.cfg, nil, nil); !errors.Is(err, ratelimit.ErrInvalid) {
				t.Errorf("New() = %v, want ErrInvalid", err)
			}
		})
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestBurstThenRate(t *testing.T) {
	clk := newClock()
	l := newLimiter(t, ratelimit.Config{User: ratelimit.TierLimits{Requests: ratelimit.PerSecond(1).WithBurst(5)}}, nil, clk)
	r := ratelimit.Request{User: "alice"}
	for i := range 5 {
		if d := mustAllow(t, l, r); !d.Allowed {
			t.Fatalf("request %d rejected within burst: %+v", i, d)
		}
	}
	d := mustAllow(t, l, r)
	if d.Allowed || d.Tier != ratelimit.TierUser || d.Resource != ratelimit.ResourceRequests {
		t.Fatalf("6th request: %+v, want rejected by user requests", d)
	}
	if d.RetryAfter < 999*time.Millisecond || d.RetryAfter > time.Second+time.Millisecond {
		t.Errorf("RetryAfter = %s, want ~1s", d.RetryAfter)
	}
	var rl *ratelimit.RateLimitError
	if err := d.Err(); !errors.Is(err, ratelimit.ErrRateLimited) || !errors.As(err, &rl) || rl.Tier != ratelimit.TierUser {
		t.Errorf("Err() = %v", err)
	}
	clk.Advance(d.RetryAfter)
	if d := mustAllow(t, l, r); !d.Allowed {
		t.Fatalf("after RetryAfter: %+v", d)
	}
	if d := mustAllow(t, l, r); d.Allowed {
		t.Fatalf("admitted beyond rate: %+v", d)
	}
	// Another user has their own bucket.
	if d := mustAllow(t, l, ratelimit.Request{User: "bob"}); !d.Allowed {
		t.Fatalf("bob rejected: %+v", d)
	}
}

// Never admits more than burst + rate*t, and a rejected request fits once
// its RetryAfter has passed.
func TestPropertyNeverExceedsBurstPlusRate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rate := rapid.Float64Range(0.1, 100).Draw(t, "rate")
		per := rapid.SampledFrom([]time.Duration{time.Second, time.Minute}).Draw(t, "per")
		burst := float64(rapid.IntRange(1, 20).Draw(t, "burst"))
		clk := newClock()
		l := newLimiter(t, ratelimit.Config{User: ratelimit.TierLimits{Requests: ratelimit.Limit{Rate: rate, Per: per, Burst: burst}}}, nil, clk)
		var elapsed time.Duration
		admitted := 0.0
		steps := rapid.IntRange(1, 100).Draw(t, "steps")
		for range steps {
			dt := time.Duration(rapid.Int64Range(0, int64(per)).Draw(t, "dt"))
			cost := float64(rapid.IntRange(1, int(burst)).Draw(t, "cost"))
			clk.Advance(dt)
			elapsed += dt
			r := ratelimit.Request{User: "u", Cost: cost}
			d := mustAllow(t, l, r)
			if !d.Allowed {
				if d.TooLarge || d.RetryAfter <= 0 {
					t.Fatalf("rejected cost %g <= burst %g with %+v", cost, burst, d)
				}
				clk.Advance(d.RetryAfter)
				elapsed += d.RetryAfter
				if d2 := mustAllow(t, l, r); !d2.Allowed {
					t.Fatalf("still rejected after RetryAfter %s: %+v", d.RetryAfter, d2)
				}
			}
			admitted += cost
			if bound := burst + rate*elapsed.Seconds()/per.Seconds(); admitted > bound+1e-6 {
				t.Fatalf("admitted %g > burst + rate*t = %g after %s", admitted, bound, elapsed)
			}
		}
	})
}

func TestConcurrentCallersAdmitExactlyBurst(t *testing.T) {
	testConcurrent(t, ratelimit.NewMemoryStore(100))
}

func testConcurrent(t *testing.T, store ratelimit.Store) {
	t.Helper()
	clk := newClock() // frozen: no refill during the test
	l := newLimiter(t, ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(1000)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerMinute(5)},
	}, store, clk)
	var admitted, rejected atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 15 {
		wg.Go(func() {
			<-start
			d, err := l.Allow(context.Background(), ratelimit.Request{User: "carol"})
			switch {
			case err != nil:
				t.Errorf("Allow: %v", err)
			case d.Allowed:
				admitted.Add(1)
			default:
				rejected.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if admitted.Load() != 5 || rejected.Load() != 10 {
		t.Fatalf("admitted %d, rejected %d; want 5 and 10", admitted.Load(), rejected.Load())
	}
}

// The origin spent global tokens before the user check rejected. Here a
// rejected request spends nothing in any tier.
func TestRejectedMultiTierRequestSpendsNothing(t *testing.T) {
	clk := newClock()
	store := ratelimit.NewMemoryStore(100)
	l := newLimiter(t, ratelimit.Config{
		Global:   ratelimit.TierLimits{Requests: ratelimit.PerHour(3)},
		Endpoint: ratelimit.TierLimits{Requests: ratelimit.PerHour(100)},
		User:     ratelimit.TierLimits{Requests: ratelimit.PerHour(1)},
	}, store, clk)
	if d := mustAllow(t, l, ratelimit.Request{User: "a", Endpoint: "chat"}); !d.Allowed {
		t.Fatalf("first request rejected: %+v", d)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, k := range []string{l.KeyFor(ratelimit.TierGlobal, ""), l.KeyFor(ratelimit.TierEndpoint, "chat"), l.KeyFor(ratelimit.TierUser, "a")} {
			v, rev, err := store.Get(context.Background(), k)
			if err != nil {
				t.Fatalf("Get %s: %v", k, err)
			}
			m[k] = fmt.Sprintf("%x@%d", v, rev)
		}
		return m
	}
	before := snapshot()
	for range 10 {
		d := mustAllow(t, l, ratelimit.Request{User: "a", Endpoint: "chat"})
		if d.Allowed || d.Tier != ratelimit.TierUser {
			t.Fatalf("user a over limit: %+v, want rejected by user tier", d)
		}
	}
	if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("rejections wrote state:\nbefore %v\nafter  %v", before, after)
	}
	// The global bucket still has its 2 tokens: two other users get them.
	for _, u := range []string{"b", "c"} {
		if d := mustAllow(t, l, ratelimit.Request{User: u, Endpoint: "chat"}); !d.Allowed {
			t.Fatalf("user %s rejected: %+v", u, d)
		}
	}
	if d := mustAllow(t, l, ratelimit.Request{User: "d", Endpoint: "chat"}); d.Allowed || d.Tier != ratelimit.TierGlobal {
		t.Fatalf("4th user: %+v, want rejected by global tier", d)
	}
}

func TestTiers(t *testing.T) {
	cfg := ratelimit.Config{
		Endpoint:  ratelimit.TierLimits{Requests: ratelimit.PerMinute(100)},
		Endpoints: map[string]ratelimit.TierLimits{"embeddings": {Requests: ratelimit.PerMinute(2)}},
		User:      ratelimit.TierLimits{Requests: ratelimit.PerMinute(10), Tokens: ratelimit.PerMinute(1000)},
		Users:     map[string]ratelimit.TierLimits{"vip": {Requests: ratelimit.PerMinute(50)}},
	}
	tests := []struct {
		name     string
		req      ratelimit.Request
		admitted int // of 60 identical requests
		tier     string
		resource string
		tooLarge bool
	}{
		{"default user", ratelimit.Request{User: "u", Endpoint: "chat"}, 10, ratelimit.TierUser, ratelimit.ResourceRequests, false},
		{"user override", ratelimit.Request{User: "vip", Endpoint: "chat"}, 50, ratelimit.TierUser, ratelimit.ResourceRequests, false},
		{"endpoint override", ratelimit.Request{User: "vip", Endpoint: "embeddings"}, 2, ratelimit.TierEndpoint, ratelimit.ResourceRequests, false},
		{"custom cost", ratelimit.Request{User: "u", Endpoint: "chat", Cost: 2.5}, 4, ratelimit.TierUser, ratelimit.ResourceRequests, false},
		{"tokens per minute", ratelimit.Request{User: "u", Endpoint: "chat", Tokens: 300}, 3, ratelimit.TierUser, ratelimit.ResourceTokens, false},
		{"too large", ratelimit.Request{User: "u", Endpoint: "chat", Tokens: 1001}, 0, ratelimit.TierUser, ratelimit.ResourceTokens, true},
		{"key override", ratelimit.Request{User: "vip", Endpoint: "chat", KeyID: "k1", Overrides: &ratelimit.KeyLimits{RPM: 3}}, 3, ratelimit.TierKey, ratelimit.ResourceRequests, false},
		{"key tpm", ratelimit.Request{User: "u", Endpoint: "chat", KeyID: "k1", Tokens: 40, Overrides: &ratelimit.KeyLimits{TPM: 100}}, 2, ratelimit.TierKey, ratelimit.ResourceTokens, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, cfg, nil, newClock())
			n := 0
			var last ratelimit.Decision
			for range 60 {
				last = mustAllow(t, l, tt.req)
				if last.Allowed {
					n++
				}
			}
			if n != tt.admitted {
				t.Errorf("admitted %d, want %d", n, tt.admitted)
			}
			if last.Tier != tt.tier || last.Resource != tt.resource || last.TooLarge != tt.tooLarge {
				t.Errorf("rejection %+v, want tier %s resource %s tooLarge %v", last, tt.tier, tt.resource, tt.tooLarge)
			}
			if tt.tooLarge && last.RetryAfter != 0 {
				t.Errorf("TooLarge with RetryAfter %s", last.RetryAfter)
			}
		})
	}
}

func TestInvalidRequests(t *testing.T) {
	l := newLimiter(t, ratelimit.Config{User: ratelimit.TierLimits{Requests: ratelimit.PerMinute(5)}}, nil, newClock())
	for _, r := range []ratelimit.Request{
		{User: "u", Cost: -1},
		{User: "u", Tokens: nan()},
		{User: "u", Overrides: &ratelimit.KeyLimits{RPM: 1}},
	} {
		if _, err := l.Allow(context.Background(), r); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("Allow(%+v) = %v, want ErrInvalid", r, err)
		}
	}
}

func TestHeaders(t *testing.T) {
	clk := newClock()
	l := newLimiter(t, ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerMinute(1000), Tokens: ratelimit.PerMinute(10_000)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerMinute(60), Tokens: ratelimit.PerMinute(600)},
	}, nil, clk)
	d := mustAllow(t, l, ratelimit.Request{User: "u", Tokens: 100})
	want := map[string]string{
		"x-ratelimit-limit-requests":     "60",
		"x-ratelimit-remaining-requests": "59",
		"x-ratelimit-reset-requests":     "1s",
		"x-ratelimit-limit-tokens":       "600",
		"x-ratelimit-remaining-tokens":   "500",
		"x-ratelimit-reset-tokens":       "10s",
	}
	if got := d.Headers(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Headers() = %v\nwant %v", got, want)
	}
	d = mustAllow(t, l, ratelimit.Request{User: "u", Tokens: 550})
	if d.Allowed {
		t.Fatalf("over TPM admitted: %+v", d)
	}
	h := d.Headers()
	if h["retry-after"] != "5" || h["retry-after-ms"] != "5000" || h["x-ratelimit-remaining-tokens"] != "500" {
		t.Errorf("rejected Headers() = %v, want retry-after 5 (s), 5000 (ms), 500 tokens left", h)
	}
}

func TestReconcile(t *testing.T) {
	clk := newClock()
	l := newLimiter(t, ratelimit.Config{User: ratelimit.TierLimits{Tokens: ratelimit.PerHour(100)}}, nil, clk)
	ctx := context.Background()
	r := ratelimit.Request{User: "u", Tokens: 50}
	if d := mustAllow(t, l, r); !d.Allowed || d.Tokens.Remaining != 50 {
		t.Fatalf("first: %+v", d)
	}
	if err := l.Reconcile(ctx, r, 90); err != nil { // used 40 more than estimated
		t.Fatal(err)
	}
	if d := mustAllow(t, l, ratelimit.Request{User: "u", Tokens: 20}); d.Allowed || d.Remaining > 10.001 {
		t.Fatalf("after charging 40 more: %+v, want rejected with 10 left", d)
	}
	if err := l.Reconcile(ctx, r, 0); err != nil { // refund 50
		t.Fatal(err)
	}
	if d := mustAllow(t, l, ratelimit.Request{User: "u", Tokens: 20}); !d.Allowed || d.Tokens.Remaining > 40.001 {
		t.Fatalf("after refund: %+v, want allowed with 40 left", d)
	}
	// A large overrun is a debt of at most one burst.
	if err := l.Reconcile(ctx, ratelimit.Request{User: "u"}, 1e6); err != nil {
		t.Fatal(err)
	}
	d := mustAllow(t, l, ratelimit.Request{User: "u"})
	if d.Allowed || d.Remaining != -100 {
		t.Fatalf("in debt: %+v, want rejected with -100", d)
	}
	if err := l.Reconcile(ctx, r, -1); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("negative actual: %v", err)
	}
}

// failStore fails every call with err.
type failStore struct{ err error }

func (f failStore) Get(context.Context, string) ([]byte, uint64, error) { return nil, 0, f.err }
func (f failStore) Create(context.Context, string, []byte) (uint64, error) {
	return 0, f.err
}
func (f failStore) Update(context.Context, string, []byte, uint64) (uint64, error) {
	return 0, f.err
}

// conflictStore wraps a Store and fails writes to one key with ErrConflict
// a number of times.
type conflictStore struct {
	ratelimit.Store
	key      string
	failures atomic.Int32
}

func (c *conflictStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if key == c.key && c.failures.Add(-1) >= 0 {
		return 0, ratelimit.ErrConflict
	}
	return c.Store.Update(ctx, key, v, rev)
}

func (c *conflictStore) Create(ctx context.Context, key string, v []byte) (uint64, error) {
	if key == c.key && c.failures.Add(-1) >= 0 {
		return 0, ratelimit.ErrConflict
	}
	return c.Store.Create(ctx, key, v)
}

func TestStoreFailures(t *testing.T) {
	cfg := ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerHour(10)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerHour(10)},
	}
	down := failStore{errors.New("connection refused")}
	t.Run("fail closed", func(t *testing.T) {
		l := newLimiter(t, cfg, down, newClock())
		d, err := l.Allow(context.Background(), ratelimit.Request{User: "u"})
		if !errors.Is(err, ratelimit.ErrUnavailable) || d.Allowed {
			t.Fatalf("Allow = %+v, %v; want ErrUnavailable", d, err)
		}
	})
	t.Run("fail open", func(t *testing.T) {
		cfg := cfg
		cfg.FailOpen = true
		l := newLimiter(t, cfg, down, newClock())
		d, err := l.Allow(context.Background(), ratelimit.Request{User: "u"})
		if err != nil || !d.Allowed || !errors.Is(d.Degraded, ratelimit.ErrUnavailable) {
			t.Fatalf("Allow = %+v, %v; want allowed, degraded", d, err)
		}
	})
	t.Run("cancelled context is not failed open", func(t *testing.T) {
		cfg := cfg
		cfg.FailOpen = true
		l := newLimiter(t, cfg, ratelimit.NewMemoryStore(10), newClock())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if d, err := l.Allow(ctx, ratelimit.Request{User: "u"}); !errors.Is(err, context.Canceled) || d.Allowed {
			t.Fatalf("Allow = %+v, %v; want context.Canceled", d, err)
		}
	})
	// Allow writes the user's bucket before the global one, so a conflict
	// on the global key leaves a charged user bucket that must be refunded.
	t.Run("endless conflicts", func(t *testing.T) {
		mem := ratelimit.NewMemoryStore(10)
		cfg := cfg
		cfg.MaxRetries = 3
		l := newLimiter(t, cfg, nil, newClock())
		cs := &conflictStore{Store: mem, key: l.KeyFor(ratelimit.TierGlobal, "")}
		cs.failures.Store(1 << 30)
		l = newLimiter(t, cfg, cs, newClock())
		_, err := l.Allow(context.Background(), ratelimit.Request{User: "u"})
		if !errors.Is(err, ratelimit.ErrContention) || !errors.Is(err, ratelimit.ErrUnavailable) {
			t.Fatalf("Allow = %v, want ErrContention", err)
		}
		if v, _, _ := mem.Get(context.Background(), l.KeyFor(ratelimit.TierUser, "u")); v == nil {
			t.Fatal("user bucket never written: the refund path was not exercised")
		}
		userOnly := ratelimit.Config{User: cfg.User}
		if d := mustAllow(t, newLimiter(t, userOnly, mem, newClock()), ratelimit.Request{User: "u"}); d.Remaining != 9 {
			t.Fatalf("after refunds: %+v, want 9 left in u's bucket", d.Requests)
		}
	})
	t.Run("conflict then success charges once", func(t *testing.T) {
		mem := ratelimit.NewMemoryStore(10)
		clk := newClock()
		l := newLimiter(t, cfg, mem, clk)
		cs := &conflictStore{Store: mem, key: l.KeyFor(ratelimit.TierGlobal, "")}
		cs.failures.Store(2)
		l = newLimiter(t, cfg, cs, clk)
		if d := mustAllow(t, l, ratelimit.Request{User: "u"}); !d.Allowed {
			t.Fatalf("rejected: %+v", d)
		}
		if cs.failures.Load() >= 0 {
			t.Fatalf("conflicts not all injected (%d left)", cs.failures.Load()+1)
		}
		// u's bucket had 10; charged three times, refunded twice: 9; the
		// global bucket was charged once: 9.
		for _, c := range []ratelimit.Config{{User: cfg.User}, {Global: cfg.Global}} {
			if d := mustAllow(t, newLimiter(t, c, mem, clk), ratelimit.Request{User: "u"}); d.Remaining != 8 {
				t.Fatalf("%+v after two conflicts: %+v, want 9 left before this request", c, d.Requests)
			}
		}
	})
}

func TestMemoryStoreIsBounded(t *testing.T) {
	store := ratelimit.NewMemoryStore(50)
	l := newLimiter(t, ratelimit.Config{User: ratelimit.TierLimits{Requests: ratelimit.PerMinute(5)}}, store, newClock())
	for i := range 1000 {
		mustAllow(t, l, ratelimit.Request{User: "user" + strconv.Itoa(i)})
	}
	if n := store.Len(); n != 50 {
		t.Fatalf("store holds %d keys, want the bound 50", n)
	}
}

func TestStateTTL(t *testing.T) {
	l := newLimiter(t, ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(100)},
		Users:  map[string]ratelimit.TierLimits{"slow": {Tokens: ratelimit.PerHour(10)}},
	}, nil, nil)
	if got := l.StateTTL(); got != 2*time.Hour {
		t.Fatalf("StateTTL = %s, want 2h (refill from -burst to burst at 10/h)", got)
	}
}

var kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func FuzzKeyFor(f *testing.F) {
	for _, s := range []string{"", "alice", "a.b.c", "*", ">", "用户", "x y\n", "../../etc"} {
		f.Add(s)
	}
	l := newLimiter(f, ratelimit.Config{}, nil, nil)
	f.Fuzz(func(t *testing.T, name string) {
		for _, tier := range []string{ratelimit.TierGlobal, ratelimit.TierEndpoint, ratelimit.TierUser, ratelimit.TierKey} {
			k := l.KeyFor(tier, name)
			if !kvKey.MatchString(k) || k[0] == '.' || k[len(k)-1] == '.' {
				t.Fatalf("KeyFor(%s, %q) = %q is not a NATS KV key", tier, name, k)
			}
		}
		if name != "x" && l.KeyFor(ratelimit.TierUser, name) == l.KeyFor(ratelimit.TierUser, "x") {
			t.Fatalf("%q and %q share a key", name, "x")
		}
	})
}

func Example() {
	lim, err := ratelimit.New(ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(100)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerMinute(2), Tokens: ratelimit.PerMinute(10_000)},
	}, nil, nil) // nil Store: in memory; nil Clock: real time
	if err != nil {
		panic(err)
	}
	for range 3 {
		d, err := lim.Allow(context.Background(), ratelimit.Request{User: "alice", Endpoint: "chat", Tokens: 500})
		if err != nil {
			panic(err) // the Store is unreachable
		}
		if !d.Allowed {
			fmt.Printf("rejected by %s %s, retry in about %s\n", d.Tier, d.Resource, d.RetryAfter.Round(time.Second))
			continue
		}
		fmt.Println("allowed, requests left:", d.Headers()["x-ratelimit-remaining-requests"])
	}
	// Output:
	// allowed, requests left: 1
	// allowed, requests left: 0
	// rejected by user requests, retry in about 30s
}

func BenchmarkAllowLocal(b *testing.B) {
	l := newLimiter(b, ratelimit.Config{
		Global:   ratelimit.TierLimits{Requests: ratelimit.PerSecond(1e9)},
		Endpoint: ratelimit.TierLimits{Requests: ratelimit.PerSecond(1e9)},
		User:     ratelimit.TierLimits{Requests: ratelimit.PerSecond(1e9), Tokens: ratelimit.PerSecond(1e12)},
	}, nil, nil)
	users := make([]string, 1000)
	for i := range users {
		users[i] = "user-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d, err := l.Allow(ctx, ratelimit.Request{User: users[i%len(users)], Endpoint: "chat", Tokens: 100})
		if err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
		i++
	}
}

// blockingStore blocks every Get until release is closed.
type blockingStore struct {
	ratelimit.Store
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.Store.Get(ctx, key)
}

// A caller queued behind a slow Store call on the same key gives up at its
// deadline instead of waiting for the store.
func TestQueuedCallerHonoursDeadline(t *testing.T) {
	bs := &blockingStore{Store: ratelimit.NewMemoryStore(10), entered: make(chan struct{}, 10), release: make(chan struct{})}
	l := newLimiter(t, ratelimit.Config{User: ratelimit.TierLimits{Requests: ratelimit.PerMinute(5)}}, bs, newClock())
	done := make(chan error, 1)
	go func() {
		_, err := l.Allow(context.Background(), ratelimit.Request{User: "u"})
		done <- err
	}()
	<-bs.entered // the first caller holds u's key
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := l.Allow(ctx, ratelimit.Request{User: "u"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued caller: %v, want DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("queued caller waited %s", waited)
	}
	close(bs.release)
	if err := <-done; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	// The lock was released: another call on the same key proceeds.
	if d := mustAllow(t, l, ratelimit.Request{User: "u"}); !d.Allowed {
		t.Fatalf("after release: %+v", d)
	}
}
