package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func testConfig(url string) pipeline.Config {
	cfg := pipeline.DefaultConfig()
	cfg.NATSURL = url
	cfg.Consumer.AckWait = 5 * time.Second
	cfg.Consumer.HandlerTimeout = time.Second
	cfg.Consumer.Retries = 1
	cfg.Consumer.RetryInterval = 5 * time.Millisecond
	cfg.Consumer.NakDelay = 20 * time.Millisecond
	cfg.Consumer.MaxDeliveries = 3
	cfg.Consumer.Concurrency = 4
	return cfg
}

// startRuntime runs a runtime with one "echo" stage that completes every
// received turn, panics on "panic" and sleeps on "slow"; it stops at
// cleanup.
func startRuntime(t *testing.T, url string, calls *atomic.Int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRuntimeCtx(t, url, calls, ctx)
	t.Cleanup(func() { cancel(); <-done })
}

func publish(t *testing.T, js jetstream.JetStream, rid string, payload []byte) {
	t.Helper()
	m := nats.NewMsg(messages.Subject(messages.EventReceived, rid))
	m.Data = payload
	m.Header.Set(nats.MsgIdHdr, messages.MsgID(rid, messages.EventReceived, 0))
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func turnJSON(rid, text string) []byte {
	b, _ := json.Marshal(messages.Turn{RequestID: rid, ConversationID: "c1", User: "u", Messages: []messages.Message{{Role: "user", Content: text}}})
	return b
}

func dlqEntries(t *testing.T, js jetstream.JetStream, stage string) []messages.DeadLetter {
	t.Helper()
	ctx := context.Background()
	var out []messages.DeadLetter
	stream, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info := stream.CachedInfo()
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if raw.Subject != messages.DLQSubject(stage) {
			continue
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestRuntimeDeliversAndDeadLetters(t *testing.T) {
	srv := testutil.NATSServer(t)
	var calls atomic.Int64
	startRuntime(t, srv.ClientURL(), &calls)
	nc := testutil.Conn(t, srv)
	js, _ := jetstream.New(nc)

	// A good turn completes; its events are seen on the request's filter.
	sub, _ := nc.SubscribeSync(messages.ReplyFilter("r1"))
	publish(t, js, "r1", turnJSON("r1", "hi"))
	seen := map[string]*nats.Msg{}
	for len(seen) < 2 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d events: %v", len(seen), err)
		}
		seen[m.Subject] = m
	}
	m, ok := seen[messages.Subject(messages.EventCompleted, "r1")]
	if !ok || seen[messages.Subject(messages.EventReceived, "r1")] == nil {
		t.Fatalf("events %v", seen)
	}
	var c messages.Completed
	_ = json.Unmarshal(m.Data, &c)
	if c.Message.Content != "echo: hi" {
		t.Fatalf("got %+v", c)
	}
	if got := m.Header.Get(messages.HeaderCorrelationID); got != "" && got != "r1" {
		t.Fatalf("correlation id %q", got)
	}

	// A re-publish with the same id is dropped by the duplicate window.
	publish(t, js, "r1", turnJSON("r1", "hi"))

	t.Run("malformed payload goes to the DLQ at once", func(t *testing.T) {
		publish(t, js, "bad1", []byte("{not json"))
		waitFor(t, 5*time.Second, "dead letter", func() bool { return len(dlqEntries(t, js, "echo")) >= 1 })
		dl := dlqEntries(t, js, "echo")[0]
		if dl.Subject != messages.Subject(messages.EventReceived, "bad1") || string(dl.Payload) != "{not json" || dl.Stage != "echo" || dl.Attempts != 1 {
			t.Fatalf("dead letter %+v", dl)
		}
	})
	t.Run("panic is retried then dead-lettered while other turns flow", func(t *testing.T) {
		before := calls.Load()
		publish(t, js, "p1", turnJSON("p1", "panic"))
		for i := range 5 {
			rid := fmt.Sprintf("ok%d", i)
			s, _ := nc.SubscribeSync(messages.Subject(messages.EventCompleted, rid))
			publish(t, js, rid, turnJSON(rid, "x"))
			if _, err := s.NextMsg(5 * time.Second); err != nil {
				t.Fatalf("turn %s did not complete while a poison message was retried: %v", rid, err)
			}
		}
		waitFor(t, 10*time.Second, "panic dead letter", func() bool { return len(dlqEntries(t, js, "echo")) >= 2 })
		dl := dlqEntries(t, js, "echo")[1]
		// MaxDeliveries 3 x (Retries 1 + 1) handler runs.
		if dl.Deliveries != 3 || dl.Attempts != 2 || dl.Reason == "" {
			t.Fatalf("dead letter %+v", dl)
		}
		if n := calls.Load() - before; n < 6+5 {
			t.Fatalf("handler ran %d times", n)
		}
	})
}

func TestGracefulShutdownLosesNothing(t *testing.T) {
	srv := testutil.NATSServer(t)
	nc := testutil.Conn(t, srv)
	js, _ := jetstream.New(nc)
	var calls atomic.Int64
	// First runtime: takes load, then shuts down while slow turns run.
	ctx1, cancel1 := context.WithCancel(context.Background())
	var logs testutil.Buffer
	rt1 := startRuntimeLog(t, srv.ClientURL(), &calls, ctx1, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	completed := make(map[string]bool)
	var mu sync.Mutex
	csub, _ := nc.Subscribe(messages.EventFilter(messages.EventCompleted), func(m *nats.Msg) {
		_, rid, _ := messages.ParseSubject(m.Subject)
		mu.Lock()
		completed[rid] = true
		mu.Unlock()
	})
	defer csub.Unsubscribe()
	const n = 40
	for i := range n {
		text := "x"
		if i%4 == 0 {
			text = "slow"
		}
		publish(t, js, fmt.Sprintf("g%d", i), turnJSON(fmt.Sprintf("g%d", i), text))
	}
	time.Sleep(50 * time.Millisecond)
	cancel1()
	<-rt1
	// A graceful drain is not an error: nothing it does logs at ERROR.
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("graceful shutdown logged an error: %s", line)
		}
	}
	if !strings.Contains(logs.String(), "shutdown complete") {
		t.Fatal("the shutdown was not logged at all")
	}
	// Second runtime picks up whatever the first did not finish.
	var calls2 atomic.Int64
	startRuntime(t, srv.ClientURL(), &calls2)
	waitFor(t, 20*time.Second, "all turns completed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(completed) == n
	})
	if d := dlqEntries(t, js, "echo"); len(d) != 0 {
		t.Fatalf("dead letters after shutdown: %+v", d)
	}
}

func startRuntimeCtx(t *testing.T, url string, calls *atomic.Int64, ctx context.Context) chan struct{} {
	t.Helper()
	return startRuntimeLog(t, url, calls, ctx, testutil.Logger(t))
}

func startRuntimeLog(t *testing.T, url string, calls *atomic.Int64, ctx context.Context, log *slog.Logger) chan struct{} {
	t.Helper()
	rt, err := pipeline.New(context.Background(), testConfig(url), log)
	if err != nil {
		t.Fatal(err)
	}
	h := func(msg *message.Message) ([]*message.Message, error) {
		calls.Add(1)
		turn, err := pipeline.Decode[messages.Turn](msg)
		if err != nil {
			return nil, err
		}
		switch turn.Messages[0].Content {
		case "panic":
			panic("boom")
		case "slow":
			time.Sleep(300 * time.Millisecond)
		}
		out, err := pipeline.NewEvent(messages.EventCompleted, turn.RequestID, 0, messages.Completed{RequestID: turn.RequestID, Message: messages.Message{Role: "assistant", Content: "echo: " + turn.Messages[0].Content}})
		return []*message.Message{out}, err
	}
	if _, err := rt.AddStage(pipeline.Stage{Contract: pipeline.Contract{Stage: "echo", Consumes: []string{messages.EventReceived}}, Handlers: map[string]message.HandlerFunc{messages.EventReceived: h}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = rt.Run(ctx) }()
	select {
	case <-rt.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
	return done
}

// A stage that starts with a backlog spreads it over its concurrency (it
// pulls as many messages as it has free handler slots).
func TestBacklogIsSpreadOverConcurrency(t *testing.T) {
	srv := testutil.NATSServer(t)
	nc := testutil.Conn(t, srv)
	js, _ := jetstream.New(nc)
	cfg := testConfig(srv.ClientURL())
	cfg.Consumer.Concurrency = 4
	// Provision the stream, then queue a backlog while no stage instance
	// runs.
	if err := pipeline.EnsureStreams(js, cfg.Streams, nil); err != nil {
		t.Fatal(err)
	}
	const n = 16
	for i := range n {
		rid := fmt.Sprintf("b%02d", i)
		publish(t, js, rid, turnJSON(rid, "x"))
	}
	var inFlight, peak atomic.Int64
	var done sync.WaitGroup
	done.Add(n)
	rt, err := pipeline.New(context.Background(), cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	h := func(msg *message.Message) ([]*message.Message, error) {
		defer done.Done()
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		return nil, nil
	}
	if _, err := rt.AddStage(pipeline.Stage{Contract: pipeline.Contract{Stage: "slow", Consumes: []string{messages.EventReceived}}, Handlers: map[string]message.HandlerFunc{messages.EventReceived: h}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = rt.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	start := time.Now()
	done.Wait()
	if p := peak.Load(); p < 3 {
		t.Fatalf("at most %d handlers ran at once on a backlog of %d with concurrency 4 (took %s)", p, n, time.Since(start))
	}
}

// A push consumer left by an older agentbus is replaced by a pull consumer
// that starts after its acknowledged floor: nothing acked is handled again,
// nothing unacked is lost.
func TestPushConsumerIsReplacedAfterItsAckFloor(t *testing.T) {
	srv := testutil.NATSServer(t)
	nc := testutil.Conn(t, srv)
	js, _ := jetstream.New(nc)
	cfg := testConfig(srv.ClientURL())
	if err := pipeline.EnsureStreams(js, cfg.Streams, nil); err != nil {
		t.Fatal(err)
	}
	if err := pipeline.EnsureConsumer(js, "old", messages.EventReceived, cfg.Consumer); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rid := fmt.Sprintf("p%d", i)
		publish(t, js, rid, turnJSON(rid, "x"))
	}
	// The old push consumer handled (and acked) the first two.
	durable := pipeline.DurableName("old", messages.EventReceived)
	pc, err := js.PushConsumer(context.Background(), messages.StreamTurns, durable)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	acked := make(chan error, 2)
	consuming, err := pc.Consume(func(m jetstream.Msg) {
		if n.Add(1) <= 2 { // the rest stay delivered, unacked
			acked <- m.DoubleAck(context.Background())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-acked:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the push consumer delivered nothing")
		}
	}
	consuming.Stop()

	rt, err := pipeline.New(context.Background(), cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	h := func(msg *message.Message) ([]*message.Message, error) {
		_, rid, _ := messages.ParseSubject(msg.Metadata.Get(pipeline.MetaSubject))
		mu.Lock()
		got = append(got, rid)
		mu.Unlock()
		return nil, nil
	}
	if _, err := rt.AddStage(pipeline.Stage{Contract: pipeline.Contract{Stage: "old", Consumes: []string{messages.EventReceived}}, Handlers: map[string]message.HandlerFunc{messages.EventReceived: h}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = rt.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	if strings.Join(got, ",") != "p2,p3,p4" {
		t.Fatalf("handled %v, want p2,p3,p4", got)
	}
}
