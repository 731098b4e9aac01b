package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// One fetched batch where one message's handler keeps failing: every
// other message of the batch runs once and is acked, only the failing one
// is redelivered (until it is dead-lettered), and nothing waits for it.
func TestABatchWithOneFailureRedeliversOnlyThatOne(t *testing.T) {
	srv := testutil.NATSServer(t)
	nc := testutil.Conn(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(srv.ClientURL())
	cfg.Consumer.Concurrency = 16 // the whole backlog comes in one fetch

	var mu sync.Mutex
	runs := map[string]int{}
	h := func(msg *message.Message) ([]*message.Message, error) {
		turn, err := pipeline.Decode[messages.Turn](msg)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		runs[turn.RequestID]++
		mu.Unlock()
		if turn.Messages[0].Content == "fail" {
			return nil, errors.New("a transient failure that never clears")
		}
		out, err := pipeline.NewEvent(messages.EventCompleted, turn.RequestID, 0, messages.Completed{RequestID: turn.RequestID})
		return []*message.Message{out}, err
	}
	newRuntime := func() *pipeline.Runtime {
		rt, err := pipeline.New(context.Background(), cfg, testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.AddStage(pipeline.Stage{
			Contract: pipeline.Contract{Stage: "batch", Consumes: []string{messages.EventReceived}, Produces: []string{messages.EventCompleted}},
			Handlers: map[string]message.HandlerFunc{messages.EventReceived: h},
		}); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	// Provision the stream and the consumer, then stop: the backlog is
	// published while nothing consumes.
	newRuntime().Close()

	const n = 12
	done, _ := nc.SubscribeSync(messages.EventFilter(messages.EventCompleted))
	for i := range n {
		rid, text := fmt.Sprintf("b%02d", i), "fine"
		if i == n/2 {
			text = "fail"
		}
		m := nats.NewMsg(messages.Subject(messages.EventReceived, rid))
		m.Data = turnJSON(rid, text)
		m.Header.Set(nats.MsgIdHdr, messages.MsgID(rid, messages.EventReceived, 0))
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	rt := newRuntime()
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = rt.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })

	for range n - 1 {
		if _, err := done.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("the good messages of the batch did not all complete: %v", err)
		}
	}
	failing := fmt.Sprintf("b%02d", n/2)
	waitFor(t, 15*time.Second, "the failing message's dead letter", func() bool {
		for _, dl := range dlqEntries(t, js, "batch") {
			if dl.Subject == messages.Subject(messages.EventReceived, failing) {
				return true
			}
		}
		return false
	})
	cons, err := js.Consumer(context.Background(), messages.StreamTurns, pipeline.DurableName("batch", messages.EventReceived))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every message acked", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})

	mu.Lock()
	defer mu.Unlock()
	// MaxDeliveries 3 x (Retries 1 + 1) runs for the failing one; one run
	// for each of the others.
	for rid, got := range runs {
		want := 1
		if rid == failing {
			want = cfg.Consumer.MaxDeliveries * (cfg.Consumer.Retries + 1)
		}
		if got != want {
			t.Errorf("%s ran %d times, want %d", rid, got, want)
		}
	}
	if len(runs) != n {
		t.Fatalf("%d of %d messages ran", len(runs), n)
	}
}
