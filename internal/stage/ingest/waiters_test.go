package ingest

import (
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// Deltas reach the stream of their own request, through the instance's one
// subscription; another instance's deltas, an unknown request's and a
// finished stream's go nowhere.
func TestWaitersRouteDeltas(t *testing.T) {
	s := testutil.NATSServer(t)
	a, err := newWaiters(testutil.Conn(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	b, err := newWaiters(testutil.Conn(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	if a.streamTo(true) == b.streamTo(true) || !messages.ValidID(a.streamTo(true)) || a.streamTo(false) != "" {
		t.Fatalf("receiver ids %q and %q: want two distinct valid ids", a.streamTo(true), b.streamTo(true))
	}
	d1, done1 := a.stream("r1")
	d2, done2 := a.stream("r2")
	defer done2()
	other, doneOther := b.stream("r1") // the same request id on another instance
	defer doneOther()

	// settle returns once w has routed everything published so far: a
	// round trip on w's connection (the server sent all before its
	// answer), then the delivery goroutines catch up.
	settle := func(w *waiters) {
		t.Helper()
		if err := w.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		w.caughtUp(5 * time.Second)
	}
	pub := testutil.Conn(t, s)
	send := func(to, rid, content string) {
		t.Helper()
		if err := pub.Publish(messages.StreamSubjectTo(to, rid), []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	send(a.inst, "r1", "one")
	send(a.inst, "r2", "two")
	send(a.inst, "r3", "nobody waits")
	send(a.inst, "r1", "one again")
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	settle(a)
	got := func(ch chan *nats.Msg) []string {
		var out []string
		for {
			select {
			case m := <-ch:
				out = append(out, string(m.Data))
			default:
				return out
			}
		}
	}
	if g := got(d1); len(g) != 2 || g[0] != "one" || g[1] != "one again" {
		t.Errorf("r1 got %q", g)
	}
	if g := got(d2); len(g) != 1 || g[0] != "two" {
		t.Errorf("r2 got %q", g)
	}
	settle(b)
	if g := got(other); len(g) != 0 {
		t.Errorf("the other instance got %q", g)
	}
	done1()
	send(a.inst, "r1", "after the end")
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	settle(a)
	if g := got(d1); len(g) != 0 {
		t.Errorf("a finished stream got %q", g)
	}
}
