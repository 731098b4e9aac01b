package kvstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	"github.com/agentbus/agentbus/internal/apikey/kvstore"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func startServer(t *testing.T) *server.Server {
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

// open returns a Store on bucket APIKEYS over a new connection whose
// requests time out after wait (default 5s).
func open(t *testing.T, s *server.Server, wait ...time.Duration) *kvstore.Store {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
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
	kv, err := js.KeyValue(ctx, "APIKEYS")
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "APIKEYS", History: 5, Storage: jetstream.MemoryStorage})
	}
	if err != nil {
		t.Fatalf("kv bucket: %v", err)
	}
	return kvstore.New(kv)
}

func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	st := open(t, startServer(t))
	if list, err := st.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("empty List = %v, %v", list, err)
	}
	key, a, err := apikey.Issue(ctx, st, "alice", 60, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, a); !errors.Is(err, apikey.ErrExists) {
		t.Fatalf("duplicate Put = %v, want ErrExists", err)
	}
	if err := st.Put(ctx, apikey.Record{ID: "bad"}); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("invalid Put = %v", err)
	}
	got, err := st.Get(ctx, a.ID)
	if err != nil || got.User != "alice" || got.RPM != 60 || got.TPM != 1000 || !got.Matches(key) || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	for _, id := range []string{"zzzzzzzz", "*", "a.b", ""} {
		if _, err := st.Get(ctx, id); !errors.Is(err, apikey.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if err := st.Revoke(ctx, "zzzzzzzz"); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Revoke missing = %v", err)
	}
	if _, _, err := apikey.Issue(ctx, st, "bob", 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Revoke(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	list, err := st.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	for _, r := range list {
		if want := r.ID == a.ID; r.Revoked != want || (r.RevokedAt != nil) != want {
			t.Errorf("listed %+v, revoked should be %v", r, want)
		}
	}
}

// A key revoked through one connection is refused by a Verifier on another
// connection within a second; a new key is accepted at once.
func TestRevokeVisibleFromSecondConnection(t *testing.T) {
	ctx := context.Background()
	s := startServer(t)
	admin, replica := open(t, s), open(t, s)
	v, err := apikey.NewVerifier(replica, apikey.VerifierConfig{CacheTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key, rec, err := apikey.Issue(ctx, admin, "alice", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(ctx, "Bearer "+key); err != nil || got.User != "alice" {
		t.Fatalf("new key on the other connection: %+v, %v", got, err)
	}
	if err := admin.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := replica.Get(ctx, rec.ID); err != nil || !got.Revoked {
		t.Fatalf("store on the other connection: %+v, %v; want revoked", got, err)
	}
	revokedAt := time.Now()
	for {
		_, err := v.Verify(ctx, "Bearer "+key)
		if errors.Is(err, apikey.ErrRevoked) {
			break
		}
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if time.Since(revokedAt) > time.Second+100*time.Millisecond {
			t.Fatal("revoked key still accepted after more than 1s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConcurrentRevokes(t *testing.T) {
	ctx := context.Background()
	s := startServer(t)
	stores := []*kvstore.Store{open(t, s), open(t, s), open(t, s)}
	_, rec, err := apikey.Issue(ctx, stores[0], "alice", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 9 {
		wg.Go(func() {
			if err := stores[i%3].Revoke(ctx, rec.ID); err != nil {
				t.Errorf("Revoke: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := stores[1].Get(ctx, rec.ID)
	if err != nil || !got.Revoked || got.RevokedAt == nil {
		t.Fatalf("after concurrent revokes: %+v, %v", got, err)
	}
}

func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	s := startServer(t)
	st := open(t, s, 300*time.Millisecond)
	key, _, err := apikey.Issue(ctx, st, "alice", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	v, _ := apikey.NewVerifier(st, apikey.VerifierConfig{})
	if _, err := v.Verify(ctx, "Bearer "+key); !errors.Is(err, apikey.ErrUnavailable) {
		t.Fatalf("Verify with NATS down = %v, want ErrUnavailable", err)
	}
}
