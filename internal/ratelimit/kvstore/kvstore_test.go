package kvstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/ratelimit"
	"github.com/agentbus/agentbus/internal/ratelimit/kvstore"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startServer runs an embedded JetStream server for the test.
func startServer(t testing.TB) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(5*time.Second) || !s.JetStreamEnabled() {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// bucket opens (creating if needed) the KV bucket "RL" on a new connection
// whose requests time out after wait (default 5s).
func bucket(t testing.TB, s *server.Server, wait ...time.Duration) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	maxWait := 5 * time.Second
	if len(wait) > 0 {
		maxWait = wait[0]
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(maxWait))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, "RL")
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "RL", History: 1, Storage: jetstream.MemoryStorage, TTL: time.Hour})
	}
	if err != nil {
		t.Fatalf("kv bucket: %v", err)
	}
	return kv
}

type frozenClock struct{ t time.Time }

func (c frozenClock) Now() time.Time { return c.t }

var clock = frozenClock{time.Unix(1_700_000_000, 0)}

func TestErrorMapping(t *testing.T) {
	st := kvstore.New(bucket(t, startServer(t)))
	ctx := context.Background()
	if _, _, err := st.Get(ctx, "rl.u.missing"); !errors.Is(err, ratelimit.ErrNotFound) {
		t.Fatalf("Get missing = %v, want ErrNotFound", err)
	}
	rev, err := st.Create(ctx, "rl.u.x", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, "rl.u.x", []byte("b")); !errors.Is(err, ratelimit.ErrConflict) {
		t.Fatalf("second Create = %v, want ErrConflict", err)
	}
	rev2, err := st.Update(ctx, "rl.u.x", []byte("c"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(ctx, "rl.u.x", []byte("d"), rev); !errors.Is(err, ratelimit.ErrConflict) {
		t.Fatalf("stale Update = %v, want ErrConflict", err)
	}
	v, got, err := st.Get(ctx, "rl.u.x")
	if err != nil || got != rev2 || string(v) != "c" {
		t.Fatalf("Get = %q@%d, %v; want c@%d", v, got, err, rev2)
	}
	if _, _, err := st.Get(ctx, "bad key*"); err == nil || errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("invalid key = %v, want a non-unavailable error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := st.Get(cctx, "rl.u.x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get = %v", err)
	}
}

func userLimit() ratelimit.Config {
	return ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(1000)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerMinute(5)},
	}
}

// run sends n concurrent requests for user through the limiters
// (round robin) and counts admissions.
func run(t *testing.T, lims []*ratelimit.Limiter, n int, user string) (admitted, rejected int) {
	t.Helper()
	var a, r atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		l := lims[i%len(lims)]
		wg.Go(func() {
			<-start
			d, err := l.Allow(context.Background(), ratelimit.Request{User: user})
			switch {
			case err != nil:
				t.Errorf("Allow: %v", err)
			case d.Allowed:
				a.Add(1)
			default:
				r.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(a.Load()), int(r.Load())
}

func TestConcurrentCallersAdmitExactlyBurst(t *testing.T) {
	l, err := ratelimit.New(userLimit(), kvstore.New(bucket(t, startServer(t))), clock)
	if err != nil {
		t.Fatal(err)
	}
	if a, r := run(t, []*ratelimit.Limiter{l}, 15, "carol"); a != 5 || r != 10 {
		t.Fatalf("admitted %d rejected %d, want 5 and 10", a, r)
	}
}

// Three guard replicas on three connections share one user's limit.
func TestReplicasShareOneLimit(t *testing.T) {
	s := startServer(t)
	var lims []*ratelimit.Limiter
	for range 3 {
		l, err := ratelimit.New(userLimit(), kvstore.New(bucket(t, s)), clock)
		if err != nil {
			t.Fatal(err)
		}
		lims = append(lims, l)
	}
	if a, r := run(t, lims, 30, "dave"); a != 5 || r != 25 {
		t.Fatalf("admitted %d rejected %d across 3 replicas, want 5 and 25", a, r)
	}
	// Conflicting replicas refunded every partial charge: the global bucket
	// (burst 1000) lost exactly the 5 admitted requests.
	g, err := ratelimit.New(ratelimit.Config{Global: userLimit().Global}, kvstore.New(bucket(t, s)), clock)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := g.Allow(context.Background(), ratelimit.Request{User: "erin"}); err != nil || d.Remaining != 994 {
		t.Fatalf("global bucket after the race: %+v, %v; want 994 left", d, err)
	}
}

// Many users on three replicas contend for one global bucket: exactly its
// burst is admitted and no caller runs out of retries.
func TestReplicasShareGlobalLimit(t *testing.T) {
	s := startServer(t)
	cfg := ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerHour(40)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerHour(3)},
	}
	var lims []*ratelimit.Limiter
	for range 3 {
		l, err := ratelimit.New(cfg, kvstore.New(bucket(t, s)), clock)
		if err != nil {
			t.Fatal(err)
		}
		lims = append(lims, l)
	}
	var admitted, byUser, byGlobal atomic.Int32
	var wg sync.WaitGroup
	for g := range 24 {
		l := lims[g%3]
		wg.Go(func() {
			for i := range 4 { // 24 users x 4 requests, 3 allowed per user, 40 globally
				d, err := l.Allow(context.Background(), ratelimit.Request{User: "user-" + strconv.Itoa(g)})
				switch {
				case err != nil:
					t.Errorf("request %d of user %d: %v", i, g, err)
				case d.Allowed:
					admitted.Add(1)
				case d.Tier == ratelimit.TierUser:
					byUser.Add(1)
				case d.Tier == ratelimit.TierGlobal:
					byGlobal.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 40 || byUser.Load()+byGlobal.Load() != 56 {
		t.Fatalf("admitted %d, rejected by user %d, by global %d; want 40 admitted", admitted.Load(), byUser.Load(), byGlobal.Load())
	}
}

func TestStoreDown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run("failOpen="+strconv.FormatBool(failOpen), func(t *testing.T) {
			s := startServer(t)
			cfg := userLimit()
			cfg.FailOpen = failOpen
			l, err := ratelimit.New(cfg, kvstore.New(bucket(t, s, 300*time.Millisecond)), clock)
			if err != nil {
				t.Fatal(err)
			}
			if d, err := l.Allow(context.Background(), ratelimit.Request{User: "u"}); err != nil || !d.Allowed {
				t.Fatalf("server up: %+v, %v", d, err)
			}
			s.Shutdown()
			s.WaitForShutdown()
			d, err := l.Allow(context.Background(), ratelimit.Request{User: "u"})
			if failOpen {
				if err != nil || !d.Allowed || !errors.Is(d.Degraded, ratelimit.ErrUnavailable) {
					t.Fatalf("fail open: %+v, %v; want allowed, degraded", d, err)
				}
				return
			}
			if !errors.Is(err, ratelimit.ErrUnavailable) || d.Allowed {
				t.Fatalf("fail closed: %+v, %v; want ErrUnavailable", d, err)
			}
		})
	}
}

func BenchmarkAllowKV(b *testing.B) {
	l, err := ratelimit.New(ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(1e9)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerSecond(1e9), Tokens: ratelimit.PerSecond(1e12)},
	}, kvstore.New(bucket(b, startServer(b))), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	i := 0
	for b.Loop() {
		d, err := l.Allow(ctx, ratelimit.Request{User: "user-" + strconv.Itoa(i%100), Tokens: 100})
		if err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
		i++
	}
}

// BenchmarkAllowKVParallel measures throughput when concurrent callers
// (different users) contend for the one global key.
func BenchmarkAllowKVParallel(b *testing.B) {
	l, err := ratelimit.New(ratelimit.Config{
		Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(1e9)},
		User:   ratelimit.TierLimits{Requests: ratelimit.PerSecond(1e9)},
	}, kvstore.New(bucket(b, startServer(b))), nil)
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		user := "user-" + strconv.FormatInt(n.Add(1), 10)
		for pb.Next() {
			if d, err := l.Allow(context.Background(), ratelimit.Request{User: user}); err != nil || !d.Allowed {
				b.Error(d, err)
				return
			}
		}
	})
}
