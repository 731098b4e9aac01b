package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func stepJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// two runners (replicas) on one bucket.
func twoRunners(t *testing.T) (a, b *StepCache) {
	t.Helper()
	js := stepJS(t)
	a, err := NewStepCache(js, "steps_test", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err = NewStepCache(js, "steps_test", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	a.id, b.id = "a", "b"
	return a, b
}

type result struct{ Answer string }

func shortLeases(t *testing.T) {
	old := leaseTTL
	leaseTTL = 300 * time.Millisecond
	t.Cleanup(func() { leaseTTL = old })
}

func TestStepRunsOnceAndIsReused(t *testing.T) {
	ctx := context.Background()
	a, b := twoRunners(t)
	var r result
	cl, found, err := a.Begin(ctx, "req1.0", time.Minute, &r)
	if err != nil || found || cl == nil {
		t.Fatalf("first Begin: claim %v found %v err %v", cl, found, err)
	}
	if _, _, err := b.Begin(ctx, "req1.0", time.Minute, &r); !errors.Is(err, ErrStepBusy) {
		t.Fatalf("Begin while another runner holds the step: %v", err)
	}
	if err := cl.Put(ctx, result{"42"}); err != nil {
		t.Fatal(err)
	}
	cl.Release() // after Put: nothing
	for _, c := range []*StepCache{a, b} {
		var got result
		cl, found, err := c.Begin(ctx, "req1.0", time.Minute, &got)
		if err != nil || !found || cl != nil || got.Answer != "42" {
			t.Fatalf("Begin after Put (%s): claim %v found %v err %v got %+v", c.id, cl, found, err, got)
		}
	}
}

func TestReleasedStepRunsAgainAtOnce(t *testing.T) {
	ctx := context.Background()
	a, b := twoRunners(t)
	var r result
	cl, _, err := a.Begin(ctx, "req2.0", time.Minute, &r)
	if err != nil {
		t.Fatal(err)
	}
	cl.Release()
	cl2, found, err := b.Begin(ctx, "req2.0", time.Minute, &r)
	if err != nil || found || cl2 == nil {
		t.Fatalf("Begin after Release: claim %v found %v err %v", cl2, found, err)
	}
	cl2.Release()
}

// A holder that died (no renewal) loses the step when its lease runs out;
// a live holder keeps it past the lease time by renewing.
func TestLeaseExpiryAndRenewal(t *testing.T) {
	shortLeases(t)
	ctx := context.Background()
	a, b := twoRunners(t)
	var r result
	live, _, err := a.Begin(ctx, "req3.0", time.Minute, &r)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release()
	dead, _, err := a.Begin(ctx, "req4.0", time.Minute, &r)
	if err != nil {
		t.Fatal(err)
	}
	dead.stopRenewing() // its process was killed

	end := time.Now().Add(4 * leaseTTL)
	tookOver := false
	for time.Now().Before(end) {
		if _, _, err := b.Begin(ctx, "req3.0", time.Minute, &r); !errors.Is(err, ErrStepBusy) {
			t.Fatalf("a renewed lease was taken over after %s: %v", time.Since(end.Add(-4*leaseTTL)), err)
		}
		if !tookOver {
			cl, _, err := b.Begin(ctx, "req4.0", time.Minute, &r)
			switch {
			case err == nil:
				tookOver = true
				if err := cl.Put(ctx, result{"from b"}); err != nil {
					t.Fatal(err)
				}
			case !errors.Is(err, ErrStepBusy):
				t.Fatal(err)
			}
		}
		time.Sleep(leaseTTL / 10) // polling the lease states over time
	}
	if !tookOver {
		t.Fatal("a dead holder's step was never taken over")
	}
	// The dead holder comes back and records its own result: the last
	// record decides (both published the same message id).
	if err := dead.Put(ctx, result{"from a"}); err != nil {
		t.Fatalf("Put of a lost claim: %v", err)
	}
	var got result
	if _, found, err := b.Begin(ctx, "req4.0", time.Minute, &got); err != nil || !found || got.Answer != "from a" {
		t.Fatalf("found %v err %v got %+v", found, err, got)
	}
}

func TestStepTooLarge(t *testing.T) {
	ctx := context.Background()
	a, _ := twoRunners(t)
	var r result
	cl, _, err := a.Begin(ctx, "req5.0", time.Minute, &r)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Put(ctx, result{strings.Repeat("x", MaxPayload)}); !errors.Is(err, ErrStepTooLarge) {
		t.Fatalf("Put of a result above the bus limit: %v", err)
	}
	if _, found, err := a.Begin(ctx, "req5.0", time.Minute, &r); !found || !errors.Is(err, ErrStepTooLarge) {
		t.Fatalf("Begin after a too-large result: found %v err %v", found, err)
	}
}

// A result recorded by an older agentbus (plain JSON at the step's key) is
// found; a lease of this one is not JSON, so an older reader fails (and
// retries) instead of taking it for a result.
func TestStepRecordsOfOtherVersions(t *testing.T) {
	ctx := context.Background()
	a, _ := twoRunners(t)
	if _, err := a.kv.Put(context.Background(), "req6.0", []byte(`{"Answer":"old"}`)); err != nil {
		t.Fatal(err)
	}
	var got result
	if _, found, err := a.Begin(ctx, "req6.0", time.Minute, &got); err != nil || !found || got.Answer != "old" {
		t.Fatalf("found %v err %v got %+v", found, err, got)
	}
	cl, _, err := a.Begin(ctx, "req7.0", time.Minute, &got)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Release()
	e, err := a.kv.Get(context.Background(), "req7.0")
	if err != nil {
		t.Fatal(err)
	}
	var old result
	if err := json.Unmarshal(e.Value(), &old); err == nil {
		t.Fatalf("a lease decodes as a result: %q", e.Value())
	}
}
