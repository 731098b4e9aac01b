package kvstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/cache"
	"github.com/agentbus/agentbus/internal/cache/kvstore"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
)

func js(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc := testutil.Conn(t, testutil.NATSServer(t))
	j, err := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func small() kvstore.Config {
	c := kvstore.DefaultConfig()
	c.MaxEntries, c.MaxEntryBytes = 3, 4096
	return c
}

func TestStoreRoundTripAndBounds(t *testing.T) {
	ctx := context.Background()
	j := js(t)
	st, err := kvstore.Open(j, small(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("miss then hit", func(t *testing.T) {
		if _, err := st.Get(ctx, "k0"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("get of a missing key: %v", err)
		}
		if err := st.Put(ctx, "k0", []byte("v0")); err != nil {
			t.Fatal(err)
		}
		if b, err := st.Get(ctx, "k0"); err != nil || string(b) != "v0" {
			t.Fatalf("get = %q, %v", b, err)
		}
	})
	t.Run("an entry above the limit is refused", func(t *testing.T) {
		if err := st.Put(ctx, "big", []byte(strings.Repeat("x", 4096))); !errors.Is(err, cache.ErrTooLarge) {
			t.Fatalf("put of 4 KiB under a 4 KiB limit: %v", err)
		}
	})
	t.Run("a full bucket drops its oldest entries", func(t *testing.T) {
		for i := 1; i <= 5; i++ {
			if err := st.Put(ctx, "k"+strconv.Itoa(i), []byte("v")); err != nil {
				t.Fatalf("put %d into a full cache: %v", i, err)
			}
		}
		for _, k := range []string{"k0", "k1", "k2"} {
			if _, err := st.Get(ctx, k); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("%s still cached beyond 3 entries: %v", k, err)
			}
		}
		for _, k := range []string{"k3", "k4", "k5"} {
			if _, err := st.Get(ctx, k); err != nil {
				t.Errorf("%s: %v", k, err)
			}
		}
	})
	t.Run("reopening applies new limits", func(t *testing.T) {
		c := small()
		c.MaxEntries, c.TTL = 10, 2*time.Hour
		if _, err := kvstore.Open(j, c, nil); err != nil {
			t.Fatal(err)
		}
		stream, err := j.Stream(ctx, "KV_"+kvstore.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		if info := stream.CachedInfo(); info.Config.MaxMsgs != 10 || info.Config.MaxAge != 2*time.Hour || info.Config.Discard != jetstream.DiscardOld {
			t.Fatalf("bucket config %+v", info.Config)
		}
	})
}

func TestEntriesExpire(t *testing.T) {
	ctx := context.Background()
	c := small()
	c.TTL = time.Second
	st, err := kvstore.Open(js(t), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := st.Get(ctx, "k")
		if errors.Is(err, cache.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry still there 10s after a 1s TTL: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling for the expiry, not waiting a fixed time
	}
}

// A cache whose bucket is gone is a miss, and writes to it fail quietly:
// the provider answers.
func TestOutageIsAMiss(t *testing.T) {
	ctx := context.Background()
	j := js(t)
	st, err := kvstore.Open(j, small(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(st, cache.Config{}, testutil.Logger(t))
	resp := provider.Response{Message: messages.Message{Role: messages.RoleAssistant, Content: "42"}, FinishReason: "stop"}
	c.Put(ctx, "k", resp)
	if got, ok := c.Get(ctx, "k"); !ok || got.Message.Content != "42" {
		t.Fatalf("get = %+v %v", got, ok)
	}
	if err := j.DeleteKeyValue(ctx, kvstore.Bucket); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(ctx, "k"); ok {
		t.Fatal("a hit from a deleted bucket")
	}
	c.Put(ctx, "k", resp) // logged, not returned, no panic
}
