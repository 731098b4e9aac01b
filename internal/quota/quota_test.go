package quota

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func newQuota(t *testing.T, cfg Config) (*Quota, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 10, 23, 0, 0, 0, time.UTC)}
	q, err := New(cfg, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return q, c
}

func wantExceeded(t *testing.T, err error, limit Limit, key string, used, max int64) *ExceededError {
	t.Helper()
	var qe *ExceededError
	if !errors.As(err, &qe) || !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("err = %v, want *ExceededError", err)
	}
	if qe.Limit != limit || qe.Key != key || qe.Used != used || qe.Max != max {
		t.Fatalf("got %+v, want %s %q %d/%d", qe, limit, key, used, max)
	}
	return qe
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		do    func(q *Quota)
		limit Limit
		key   string
		used  int64
		max   int64
	}{
		{"user requests", Config{PerUserRequests: 3}, func(q *Quota) {
			for range 3 {
				q.Record("alice", "m", 1)
			}
		}, UserRequests, "alice", 3, 3},
		{"user tokens", Config{PerUserTokens: 100}, func(q *Quota) { q.Record("alice", "m", 60); q.Record("alice", "m", 40) }, UserTokens, "alice", 100, 100},
		{"model requests across users", Config{PerModelRequests: 2}, func(q *Quota) { q.Record("bob", "m", 0); q.Record("carol", "m", 0) }, ModelRequests, "m", 2, 2},
		{"model tokens", Config{PerModelTokens: 10}, func(q *Quota) { q.Record("bob", "m", 25) }, ModelTokens, "m", 25, 10},
		{"user checked before model", Config{PerUserRequests: 1, PerModelRequests: 1}, func(q *Quota) { q.Record("alice", "m", 0) }, UserRequests, "alice", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, c := newQuota(t, tt.cfg)
			if err := q.Check("alice", "m"); err != nil {
				t.Fatal(err)
			}
			tt.do(q)
			qe := wantExceeded(t, q.Check("alice", "m"), tt.limit, tt.key, tt.used, tt.max)
			if want := time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC); !qe.Reset.Equal(want) || qe.RetryAfter != time.Hour {
				t.Fatalf("reset %s retry %s", qe.Reset, qe.RetryAfter)
			}
			if err := q.Admit("alice", "m"); !errors.Is(err, ErrQuotaExceeded) {
				t.Fatalf("Admit: %v", err)
			}
			// Other users and models are unaffected by per-user / per-model limits.
			if tt.limit == UserRequests || tt.limit == UserTokens {
				if err := q.Check("dave", "other"); err != nil {
					t.Fatal(err)
				}
			} else if err := q.Check("alice", "other"); err != nil {
				t.Fatal(err)
			}
			// The window really resets at the UTC day boundary.
			c.set(time.Date(2025, 3, 10, 23, 59, 59, 0, time.UTC))
			if q.Check("alice", "m") == nil {
				t.Fatal("reset a second early")
			}
			c.set(time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC))
			if err := q.Check("alice", "m"); err != nil {
				t.Fatalf("not reset at midnight: %v", err)
			}
			if u := q.Usage(); len(u) != 0 {
				t.Fatalf("yesterday still in Usage: %+v", u)
			}
		})
	}
}

func TestUnlimited(t *testing.T) {
	q, _ := newQuota(t, Config{})
	for range 1000 {
		q.Record("u", "m", 1<<40)
	}
	if err := q.Check("u", "m"); err != nil || q.Degraded() {
		t.Fatalf("err %v degraded %v", err, q.Degraded())
	}
}

func TestUsageAndDegraded(t *testing.T) {
	q, c := newQuota(t, Config{PerUserRequests: 10, PerModelTokens: 1000})
	q.Record("bob", "gpt", 100)
	q.Record("alice", "gpt", 200)
	q.Record("alice", "llama", -5) // negative tokens count as 0
	got := fmt.Sprint(q.Usage())
	reset := "2025-03-11 00:00:00 +0000 UTC"
	want := "[{model gpt 2 300 0 1000 " + reset + "} {model llama 1 0 0 1000 " + reset + "} {user alice 2 200 10 0 " + reset + "} {user bob 1 100 10 0 " + reset + "}]"
	if got != want {
		t.Fatalf("Usage\n got %s\nwant %s", got, want)
	}
	if q.Degraded() {
		t.Fatal("degraded at 30%")
	}
	for range 6 {
		q.Record("alice", "llama", 0) // alice: 8 of 10 requests = 80%
	}
	if !q.Degraded() {
		t.Fatal("not degraded at 80%")
	}
	c.set(c.now().Add(time.Hour)) // next day
	if q.Degraded() {
		t.Fatal("degraded after reset")
	}
	q.Record("carol", "gpt", 800) // model gpt at 80% of tokens
	if !q.Degraded() {
		t.Fatal("model tokens at 80% not degraded")
	}
}

func TestBoundedUsers(t *testing.T) {
	q, _ := newQuota(t, Config{PerUserRequests: 1, MaxUsers: 100, MaxModels: 2})
	for i := range 1000 {
		q.Record(fmt.Sprint("user", i), fmt.Sprint("model", i%5), 1)
	}
	users, models := 0, 0
	for _, e := range q.Usage() {
		if e.Scope == ScopeUser {
			users++
		} else {
			models++
		}
	}
	if users != 100 || models != 2 {
		t.Fatalf("tracked %d users, %d models", users, models)
	}
	if q.Check("user999", "x") == nil {
		t.Fatal("most recent user forgotten")
	}
	if err := q.Check("user0", "x"); err != nil {
		t.Fatalf("evicted user still limited: %v", err)
	}
}

func TestAdmitConcurrentExact(t *testing.T) {
	const limit = 1000
	q, _ := newQuota(t, Config{PerModelRequests: limit})
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				if err := q.Admit(fmt.Sprint("u", g), "m"); err != nil {
					refused.Add(1)
					continue
				}
				admitted.Add(1)
				q.AddTokens(fmt.Sprint("u", g), "m", 2)
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != limit || refused.Load() != 3000-limit {
		t.Fatalf("admitted %d refused %d", admitted.Load(), refused.Load())
	}
	u := q.Usage()
	if u[0].Key != "m" || u[0].Requests != limit || u[0].Tokens != 2*limit {
		t.Fatalf("usage %+v", u[0])
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{PerUserRequests: -1, PerModelTokens: -1, MaxUsers: -1, DegradedRatio: 1.5}.Validate()
	if !errors.Is(err, ErrInvalidConfig) || len(err.(interface{ Unwrap() []error }).Unwrap()) != 4 {
		t.Fatalf("err %v", err)
	}
	if _, err := New(Config{PerUserTokens: -1}, nil); err == nil {
		t.Fatal("New accepted a negative limit")
	}
	if err := (Config{PerUserRequests: 5}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDayOfBeforeEpoch(t *testing.T) {
	for _, tt := range []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(86399, 0), 0},
		{time.Unix(86400, 0), 1},
		{time.Unix(-1, 0), -1},
		{time.Unix(-86400, 0), -1},
		{time.Unix(-86401, 0), -2},
		{time.Date(2025, 3, 10, 23, 0, 0, 0, time.FixedZone("x", -5*3600)), dayOf(time.Date(2025, 3, 11, 4, 0, 0, 0, time.UTC))},
	} {
		if got := dayOf(tt.t); got != tt.want {
			t.Errorf("dayOf(%s) = %d, want %d", tt.t, got, tt.want)
		}
	}
}

// FuzzQuota drives a Quota with random operations and compares it with a
// plain map model (no eviction: MaxUsers is large enough).
func FuzzQuota(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 10, 11})
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 255, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		c := &clock{t: time.Date(2025, 1, 1, 20, 0, 0, 0, time.UTC)}
		cfg := Config{PerUserRequests: 4, PerUserTokens: 50, PerModelRequests: 6, PerModelTokens: 80}
		q, _ := New(cfg, c.now)
		type key struct {
			day int64
			k   string
		}
		reqs, toks := map[key]int64{}, map[key]int64{}
		for _, op := range ops {
			user, model := fmt.Sprint("u", op%3), fmt.Sprint("m", (op/3)%2)
			day := dayOf(c.now())
			uk, mk := key{day, "u:" + user}, key{day, "m:" + model}
			allowed := !(reqs[uk] >= 4 || toks[uk] >= 50 || reqs[mk] >= 6 || toks[mk] >= 80)
			switch op % 4 {
			case 0: // time passes
				c.set(c.now().Add(time.Duration(op) * time.Minute * 3))
			case 1:
				if got := q.Check(user, model) == nil; got != allowed {
					t.Fatalf("Check(%s,%s) = %v, model says %v", user, model, got, allowed)
				}
			case 2:
				if got := q.Admit(user, model) == nil; got != allowed {
					t.Fatalf("Admit = %v, model says %v", got, allowed)
				}
				if allowed {
					reqs[uk]++
					reqs[mk]++
				}
			case 3:
				n := int64(op % 17)
				q.Record(user, model, n)
				reqs[uk]++
				reqs[mk]++
				toks[uk] += n
				toks[mk] += n
			}
		}
		day := dayOf(c.now())
		for _, e := range q.Usage() {
			k := key{day, e.Scope[:1] + ":" + e.Key}
			if e.Requests != reqs[k] || e.Tokens != toks[k] {
				t.Fatalf("%+v, model %d/%d", e, reqs[k], toks[k])
			}
		}
	})
}

func BenchmarkAdmit(b *testing.B) {
	q, _ := New(Config{PerUserRequests: 1 << 40, PerModelTokens: 1 << 40}, nil)
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprint("user", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		u := users[i%len(users)]
		i++
		if err := q.Admit(u, "gpt-4o-mini"); err != nil {
			b.Fatal(err)
		}
		q.AddTokens(u, "gpt-4o-mini", 100)
	}
}

func ExampleQuota() {
	now := time.Date(2025, 3, 10, 18, 0, 0, 0, time.UTC)
	q, _ := New(Config{PerUserRequests: 2}, func() time.Time { return now })
	for range 3 {
		fmt.Println(q.Admit("alice", "gpt-4o-mini"))
	}
	now = now.Add(6 * time.Hour) // midnight UTC: a new window
	fmt.Println(q.Admit("alice", "gpt-4o-mini"))
	// Output:
	// <nil>
	// <nil>
	// quota exceeded: user_requests "alice" used 2 of 2 today (resets 2025-03-11T00:00:00Z)
	// <nil>
}
