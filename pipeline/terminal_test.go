package pipeline

import (
	"context"
	"testing"

	"github.com/agentbus/agentbus/messages"
)

// One terminal outcome per turn, across replicas; and a replica that
// claimed or read an outcome answers again from memory, without a KV
// round trip (persist's claim before its commit and the publishing
// middleware's claim for the completed event are one write).
func TestTerminalsOneOutcomeAndRememberIt(t *testing.T) {
	js := stepJS(t)
	ctx := context.Background()
	a, err := OpenTerminals(js, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenTerminals(js, 1)
	if err != nil {
		t.Fatal(err)
	}
	sent := func() uint64 { return js.Conn().Stats().OutMsgs }

	out, created, err := a.ClaimNew(ctx, "r1", messages.EventCompleted)
	if err != nil || out != messages.EventCompleted || !created {
		t.Fatalf("first claim = %q, %v, %v; want completed, created", out, created, err)
	}
	// Another replica's claim loses to the recorded outcome.
	if out, created, err := b.ClaimNew(ctx, "r1", messages.EventFailed); err != nil || out != messages.EventCompleted || created {
		t.Fatalf("other replica's claim = %q, %v, %v; want completed, not created", out, created, err)
	}
	if ev, found, err := b.Outcome(ctx, "r1"); err != nil || !found || ev != messages.EventCompleted {
		t.Fatalf("outcome = %q, %v, %v", ev, found, err)
	}
	if ev, found, err := b.Outcome(ctx, "r2"); err != nil || found {
		t.Fatalf("unclaimed outcome = %q, %v, %v; want not found", ev, found, err)
	}

	// The same replica again: the same answer, and nothing sent.
	before := sent()
	for _, ev := range []string{messages.EventCompleted, messages.EventFailed} {
		if out, created, err := a.ClaimNew(ctx, "r1", ev); err != nil || out != messages.EventCompleted || created {
			t.Fatalf("repeated claim (%s) = %q, %v, %v; want completed, not created", ev, out, created, err)
		}
	}
	if ev, found, err := a.Outcome(ctx, "r1"); err != nil || !found || ev != messages.EventCompleted {
		t.Fatalf("outcome = %q, %v, %v", ev, found, err)
	}
	if n := sent() - before; n != 0 {
		t.Errorf("repeated claims sent %d messages to the server, want 0", n)
	}
}
