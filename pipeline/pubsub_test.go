package pipeline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pubSubConsumer is the runtime's consumer configuration with clocks short
// enough for the suite: messages a closed subscriber had received but not
// acked come back after AckWait (see TestPubSubCloseRedeliversAfterAckWait).
func pubSubConsumer() pipeline.ConsumerConfig {
	cc := pipeline.DefaultConfig().Consumer
	cc.AckWait = 3 * time.Second
	cc.HandlerTimeout = 500 * time.Millisecond
	cc.Retries = 2
	cc.NakDelay = 50 * time.Millisecond
	return cc
}

type pubSubEnv struct {
	srv *server.Server
	nc  *nats.Conn
	cfg pipeline.PubSubConfig
}

func newPubSubEnv(t *testing.T, perTopic bool, cc pipeline.ConsumerConfig) *pubSubEnv {
	t.Helper()
	srv := testutil.NATSServer(t)
	nc := testutil.Conn(t, srv)
	streams := pipeline.DefaultConfig().Streams
	if !perTopic {
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if err := pipeline.EnsureStreams(js, streams, nil); err != nil {
			t.Fatal(err)
		}
	}
	return &pubSubEnv{srv: srv, nc: nc, cfg: pipeline.PubSubConfig{
		URL: srv.ClientURL(), Consumer: cc, Streams: streams, StreamPerTopic: perTopic, Logger: testutil.Logger(t),
	}}
}

func (e *pubSubEnv) group(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	cfg := e.cfg
	cfg.Group = group
	pub, sub, err := pipeline.NewPubSub(e.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pub, sub
}

// TestPubSubUniversal runs Watermill's universal Pub/Sub suite against the
// runtime's configuration. The plain constructor is one stage ("wmtest"):
// every subscriber of a topic shares its durable consumer, as replicas of
// a stage do; the consumer-group constructor is one stage per group.
//
// Topics get a stream each (StreamPerTopic): the suite publishes the same
// message id to several topics, which one shared stream's duplicate window
// would store once (TestPubSubDuplicateWindowIsPerStream).
//
// Message counts are the suite's full ones (5000 and 10000 messages in
// some tests), or its short ones with -short.
func TestPubSubUniversal(t *testing.T) {
	env := newPubSubEnv(t, true, pubSubConsumer())
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups: true,
		// At-least-once: redeliveries happen (NAK, AckWait, Close).
		ExactlyOnceDelivery: false,
		// cc.Concurrency queue subscriptions per subscriber share the
		// deliver group, and a NAK redelivers after a delay.
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: false,
		Persistent:                          true,
		RequireSingleInstance:               false,
		// A new subscriber of the same group resumes the group's durable
		// consumer: it does not get what the group already acked. A new
		// group gets everything (DeliverAll): TestPubSubNewGroupGetsOldMessages.
		NewSubscriberReceivesOldMessages: false,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return env.group(t, "wmtest")
	}, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return env.group(t, group)
	})
}

func publishN(t *testing.T, pub message.Publisher, topic string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = watermill.NewUUID()
		if err := pub.Publish(topic, message.NewMessage(ids[i], []byte(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// receive acks messages from ch until want distinct ids arrived or wait
// passed, and returns the distinct ids seen.
func receive(ch <-chan *message.Message, want int, wait time.Duration) map[string]bool {
	got := map[string]bool{}
	timeout := time.After(wait)
	for len(got) < want {
		select {
		case m, ok := <-ch:
			if !ok {
				return got
			}
			got[m.UUID] = true
			m.Ack()
		case <-timeout:
			return got
		}
	}
	return got
}

func missing(ids []string, got map[string]bool) []string {
	var out []string
	for _, id := range ids {
		if !got[id] {
			out = append(out, id)
		}
	}
	return out
}

// TestPubSubNewGroupGetsOldMessages: what NewSubscriberReceivesOldMessages
// means for us. A group created after messages were published gets all of
// them (DeliverAll: a new stage can replay the stream); a new subscriber of
// an existing group resumes where the group stopped.
func TestPubSubNewGroupGetsOldMessages(t *testing.T) {
	for _, perTopic := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream_per_topic=%v", perTopic), func(t *testing.T) {
			env := newPubSubEnv(t, perTopic, pubSubConsumer())
			topic := "old_messages-" + watermill.NewUUID()
			pub, sub := env.group(t, "first")
			defer pub.Close()
			if err := sub.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
				t.Fatal(err)
			}
			ids := publishN(t, pub, topic, 20)
			ch, err := sub.Subscribe(context.Background(), topic)
			if err != nil {
				t.Fatal(err)
			}
			if m := missing(ids, receive(ch, len(ids), 10*time.Second)); len(m) > 0 {
				t.Fatalf("group first missed %d of %d", len(m), len(ids))
			}
			if err := sub.Close(); err != nil {
				t.Fatal(err)
			}

			// A new subscriber of the same group: nothing left.
			_, again := env.group(t, "first")
			defer again.Close()
			ch, err = again.Subscribe(context.Background(), topic)
			if err != nil {
				t.Fatal(err)
			}
			if got := receive(ch, 1, time.Second); len(got) != 0 {
				t.Fatalf("resumed group got %d already-acked messages", len(got))
			}

			// Two groups created now get all 20.
			for _, g := range []string{"late_1", "late_2"} {
				_, late := env.group(t, g)
				ch, err := late.Subscribe(context.Background(), topic)
				if err != nil {
					t.Fatal(err)
				}
				if m := missing(ids, receive(ch, len(ids), 10*time.Second)); len(m) > 0 {
					t.Fatalf("new group %s missed %d of %d old messages", g, len(m), len(ids))
				}
				if err := late.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestPubSubDuplicateWindowIsPerStream: with the runtime's single turn
// stream, a message id published on two topics within the duplicate
// window is stored once and the second topic never sees it; with a stream
// per topic both do. Our producers derive ids from (request, event, round),
// so ids differ across events, but a handler that re-publishes one
// message to two subjects loses the second copy silently.
func TestPubSubDuplicateWindowIsPerStream(t *testing.T) {
	for _, perTopic := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream_per_topic=%v", perTopic), func(t *testing.T) {
			env := newPubSubEnv(t, perTopic, pubSubConsumer())
			pub, sub := env.group(t, "dup")
			defer pub.Close()
			defer sub.Close()
			topics := []string{"dup-a", "dup-b"}
			for _, tp := range topics {
				if err := sub.(message.SubscribeInitializer).SubscribeInitialize(tp); err != nil {
					t.Fatal(err)
				}
			}
			id := watermill.NewUUID()
			for _, tp := range topics {
				if err := pub.Publish(tp, message.NewMessage(id, []byte(tp))); err != nil {
					t.Fatal(err)
				}
			}
			received := 0
			for _, tp := range topics {
				ch, err := sub.Subscribe(context.Background(), tp)
				if err != nil {
					t.Fatal(err)
				}
				received += len(receive(ch, 1, 2*time.Second))
			}
			want := 1
			if perTopic {
				want = 2
			}
			if received != want {
				t.Fatalf("same id on two topics: %d topics received it, want %d", received, want)
			}
		})
	}
}

// TestPubSubCloseLosesNothing: Close loses no message. Messages the
// subscriber had not handed out are NAKed back to the group; a message the
// caller holds, neither acked nor nacked, comes back only when the
// consumer's AckWait (90s by default) has passed since its delivery, and
// Close waits for its callback (at most AckWait) before closing.
func TestPubSubCloseLosesNothing(t *testing.T) {
	cc := pubSubConsumer()
	env := newPubSubEnv(t, false, cc)
	topic := "close-" + watermill.NewUUID()
	pub, first := env.group(t, "close")
	defer pub.Close()
	if err := first.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	ids := publishN(t, pub, topic, 20)
	ch, err := first.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var held *message.Message
	select {
	case held = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	deliveredAt := time.Now()
	closeStart := time.Now()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	closeTook := time.Since(closeStart)
	_, second := env.group(t, "close")
	defer second.Close()
	ch, err = second.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Duration{}
	timeout := time.After(cc.AckWait + 10*time.Second)
	for len(got) < len(ids) {
		select {
		case m := <-ch:
			if _, dup := got[m.UUID]; !dup {
				got[m.UUID] = time.Since(deliveredAt)
			}
			m.Ack()
		case <-timeout:
			t.Fatalf("after Close the group got %d of %d messages", len(got), len(ids))
		}
	}
	if d := got[held.UUID]; d < cc.AckWait-500*time.Millisecond {
		t.Fatalf("held message redelivered %s after delivery, before AckWait %s: update this test and the docs", d, cc.AckWait)
	}
	t.Logf("Close took %s; held message back after %s (AckWait %s)", closeTook.Round(time.Millisecond), got[held.UUID].Round(time.Millisecond), cc.AckWait)
}

// TestPubSubCancelNaksBuffered: cancelling Subscribe's context hands
// messages not yet taken by the caller back to the group at once (NAK),
// not after AckWait.
func TestPubSubCancelNaksBuffered(t *testing.T) {
	cc := pubSubConsumer()
	env := newPubSubEnv(t, false, cc)
	topic := "cancel-" + watermill.NewUUID()
	pub, sub := env.group(t, "cancel")
	defer pub.Close()
	defer sub.Close()
	if err := sub.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	ids := publishN(t, pub, topic, 50)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	// Let the consumer push to the subscription, take nothing, cancel.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	for range ch {
		t.Error("message handed out after cancel")
	}
	ch, err = sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	got := receive(ch, len(ids), cc.AckWait/2)
	took := time.Since(start)
	if m := missing(ids, got); len(m) > 0 || took >= cc.AckWait/2 {
		t.Fatalf("%d of %d messages back %s after the cancel; want all within AckWait/2 (%s)", len(got), len(ids), took, cc.AckWait/2)
	}
	t.Logf("all %d back %s after the cancel", len(ids), took.Round(time.Millisecond))
}

func TestTopicEvent(t *testing.T) {
	seen := map[string]string{}
	for _, topic := range []string{"topic-1", "topic_1", "topic.1", "topic*1", "topic>1", "topic 1", "", "ü", "cg_" + watermill.NewUUID(), string(make([]byte, 100))} {
		ev := pipeline.TopicEvent(topic)
		if ev == "" {
			t.Fatalf("%q: empty event", topic)
		}
		for _, r := range ev {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				t.Fatalf("%q -> %q: invalid character %q", topic, ev, r)
			}
		}
		if prev, ok := seen[ev]; ok {
			t.Fatalf("%q and %q both map to %q", prev, topic, ev)
		}
		seen[ev] = topic
		if pipeline.TopicSubject(topic) != messages.Subject(ev, "m") {
			t.Fatalf("subject of %q: %s", topic, pipeline.TopicSubject(topic))
		}
	}
	if got := pipeline.TopicEvent("topic-1"); got != "topic-1" {
		t.Fatalf("valid topic changed: %q", got)
	}
}
