package quota_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/quota"
	"github.com/agentbus/agentbus/internal/ratelimit"
	"github.com/agentbus/agentbus/internal/ratelimit/kvstore"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

// kvStores returns n stores on n connections to one KV bucket: n replicas.
func kvStores(t *testing.T, n int) []ratelimit.Store {
	t.Helper()
	srv := testutil.NATSServer(t)
	var out []ratelimit.Store
	for i := range n {
		nc := testutil.Conn(t, srv)
		js, _ := jetstream.New(nc)
		kv, err := js.KeyValue(context.Background(), "quota_test")
		if i == 0 && errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "quota_test", History: 1})
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kvstore.New(kv))
	}
	return out
}

func TestSharedQuotaHoldsAcrossReplicas(t *testing.T) {
	stores := kvStores(t, 3)
	cfg := quota.Config{PerUserRequests: 4}
	var replicas []*quota.Shared
	for _, st := range stores {
		q, err := quota.NewShared(cfg, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, q)
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 15 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := replicas[i%3].Admit(context.Background(), "ann", "gpt-x")
			switch {
			case err == nil:
				admitted.Add(1)
			case !errors.Is(err, quota.ErrQuotaExceeded):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 4 {
		t.Fatalf("admitted %d across 3 replicas, want 4", admitted.Load())
	}
	var ex *quota.ExceededError
	if err := replicas[0].Admit(context.Background(), "ann", "gpt-x"); !errors.As(err, &ex) || ex.Limit != quota.UserRequests || ex.Used != 4 {
		t.Fatalf("%v", err)
	}
	if !replicas[0].Degraded() {
		t.Fatal("a user at 100% of the quota is not degraded")
	}
	if err := replicas[1].Admit(context.Background(), "bob", "gpt-x"); err != nil {
		t.Fatalf("another user: %v", err)
	}
}

func TestSharedQuotaWindowsAndRefund(t *testing.T) {
	store := ratelimit.NewMemoryStore(1000)
	now := time.Date(2026, 11, 29, 23, 59, 0, 0, time.UTC)
	q, err := quota.NewShared(quota.Config{PerUserTokens: 100, PerModelRequests: 2}, store, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name  string
		user  string
		limit quota.Limit // "" = admitted
		then  func()
	}{
		{"first", "u1", "", func() { _ = q.AddTokens(ctx, "u1", "m", 100) }},
		{"user tokens used up", "u1", quota.UserTokens, nil},
		{"other user", "u2", "", nil},
		{"model requests used up; u3 not charged", "u3", quota.ModelRequests, nil},
		{"next day resets", "u1", "", func() {}},
	}
	for _, tc := range tests {
		if tc.name == "next day resets" {
			now = now.Add(2 * time.Minute)
		}
		err := q.Admit(ctx, tc.user, "m")
		var ex *quota.ExceededError
		switch {
		case tc.limit == "" && err != nil:
			t.Fatalf("%s: %v", tc.name, err)
		case tc.limit != "" && (!errors.As(err, &ex) || ex.Limit != tc.limit):
			t.Fatalf("%s: got %v, want %s", tc.name, err, tc.limit)
		}
		if tc.then != nil {
			tc.then()
		}
	}
	// u3's refused request was taken back from its user counter: with the
	// model limit raised it is admitted as its first request.
	q2, _ := quota.NewShared(quota.Config{PerUserRequests: 1}, store, func() time.Time { return now.Add(-2 * time.Minute) })
	if err := q2.Admit(ctx, "u3", "other-model"); err != nil {
		t.Fatalf("u3 was charged for a refused request: %v", err)
	}
}
