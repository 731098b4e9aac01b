package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

func TestHopsDebug(t *testing.T) {
	if os.Getenv("HOPS") == "" {
		t.Skip()
	}
	o := app.DefaultOptions()
	o.DataDir = t.TempDir()
	o.Stages = []string{app.StageGuard, app.StageLLM, app.StageToolexec, app.StagePersist}
	o.Pipeline.Embedded.Listen = "127.0.0.1:-1"
	o.Limits = app.LimitsFrom(0, 0, 0)
	o.Tools.Remote = false
	o.SQLite.Synchronous = os.Getenv("AGENTBUS_BENCH_SYNC")
	sys, err := app.Start(context.Background(), o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	nc, _ := nats.Connect(sys.Runtime.URL())
	js, _ := nc.JetStream()
	w, _ := newWaiter(nc, messages.EventFilter(messages.EventCompleted), lastToken)
	f := pipelineTurn(w, js, "hello there")
	for i := 0; i < 300; i++ {
		_ = f(context.Background())
	}
	sums := map[string]time.Duration{}
	var prev time.Time
	n := 0
	info, _ := js.StreamInfo(messages.StreamTurns)
	for seq := info.State.LastSeq - 4*100 + 1; seq <= info.State.LastSeq; seq++ {
		m, err := js.GetMsg(messages.StreamTurns, seq)
		if err != nil {
			continue
		}
		ev, _, _ := messages.ParseSubject(m.Subject)
		if ev != messages.EventReceived {
			sums[ev] += m.Time.Sub(prev)
		} else {
			n++
		}
		prev = m.Time
	}
	for k, v := range sums {
		fmt.Printf("%-10s %v\n", k, v/time.Duration(n))
	}
}
