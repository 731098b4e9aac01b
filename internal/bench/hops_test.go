package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
)

// TestHopLatencies reports, for sequential turns, the mean time between
// consecutive events of a turn as the stream stored them: how long each
// stage takes, queueing excluded. It is a measurement, not a check: run it
// with AGENTBUS_HOPS=1 go test -run HopLatencies -v ./internal/bench
// (AGENTBUS_BENCH_SYNC=FULL|NORMAL picks the SQLite durability).
func TestHopLatencies(t *testing.T) {
	if os.Getenv("AGENTBUS_HOPS") == "" {
		t.Skip("measurement; set AGENTBUS_HOPS=1")
	}
	o := app.DefaultOptions()
	o.DataDir = t.TempDir()
	o.Stages = []string{app.StageGuard, app.StageLLM, app.StageToolexec, app.StagePersist}
	o.Pipeline.Embedded.Listen = "127.0.0.1:-1"
	o.Limits = app.LimitsFrom(0, 0, 0)
	o.Auth = false
	o.Tools.Remote = false
	o.SQLite.Synchronous = os.Getenv("AGENTBUS_BENCH_SYNC")
	sys, err := app.Start(context.Background(), o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	nc, err := sys.Connect("agentbus-bench")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(context.Background(), messages.StreamTurns)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := newWaiter(nc, messages.EventFilter(messages.EventCompleted), lastToken)
	const n = 300
	for _, text := range []string{"hello there", "What is 17*23?"} {
		f := pipelineTurn(w, js, text)
		info, _ := testutil.StreamInfo(js, messages.StreamTurns)
		first := info.State.LastSeq + 1
		for range n {
			if err := f(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		sums := map[string]time.Duration{}
		var turns time.Duration // a count, typed for the division below
		var prev time.Time
		for seq := first + 50*6; ; seq++ { // skip warm-up
			m, err := stream.GetMsg(context.Background(), seq)
			if err != nil {
				break
			}
			ev, _, _ := messages.ParseSubject(m.Subject)
			if ev != messages.EventReceived {
				sums[ev] += m.Time.Sub(prev)
			} else {
				turns++
			}
			prev = m.Time
		}
		for _, ev := range []string{messages.EventAdmitted, messages.EventToolCalls, messages.EventTooled, messages.EventGenerated, messages.EventCompleted} {
			if d, ok := sums[ev]; ok {
				t.Logf("%-16q %-10s %v", text, ev, d/turns)
			}
		}
	}
}
