package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The Watermill subscriber configuration (subscriberConfig) is the one
// place agentbus still uses the legacy nats.JetStreamContext API
// (nats.SubOpt, nats.ManualAck, nats.BindStream): watermill-nats/v2
// subscribes through it and has no nats.go/jetstream equivalent. Stages
// consume with their own pull consumers and every publish (subjectPublisher)
// uses the jetstream package, like provisioning.
//
// The runtime's Watermill configuration as a message.Publisher and a
// message.Subscriber (newPubSub), so that Watermill's universal pub/sub
// suite runs against exactly what the stages use (pubsub_test.go). Only
// tests call newPubSub; stages go through Runtime.AddStage.

// subscriberConfig is the watermill-nats subscriber configuration of a
// stage's durable consumer (the one AddStage builds): our unmarshaler,
// cc.Concurrency queue subscriptions in the consumer's deliver group,
// ManualAck bound to stream, asynchronous acks, NAK with exponential delay,
// and both ack clocks at cc.AckWait. The consumer itself must exist
// (ensurePushConsumer): the subscriber only attaches to it, so Unsubscribe and
// Close never delete it.
func subscriberConfig(stream, durable string, cc ConsumerConfig) wmnats.SubscriberSubscriptionConfig {
	return wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      &unmarshaler{},
		SubscribersCount: cc.Concurrency,
		AckWaitTimeout:   cc.AckWait,
		CloseTimeout:     cc.AckWait,
		SubscribeTimeout: 10 * time.Second,
		SubjectCalculator: func(_, topic string) *wmnats.SubjectDetail {
			return &wmnats.SubjectDetail{Primary: topic, QueueGroup: durable}
		},
		NakDelay: expDelay{cc.NakDelay},
		// watermill-nats/v2 subscribes through the legacy JetStreamContext:
		// its options are legacy nats.SubOpt values.
		JetStream: wmnats.JetStreamConfig{
			// ManualAck: without it nats.go acks when the callback
			// returns, which acks messages Watermill gave up on.
			SubscribeOptions:  []nats.SubOpt{nats.ManualAck(), nats.BindStream(stream)},
			AckAsync:          true,
			DurableCalculator: func(string, string) string { return durable },
		},
	}
}

// pubSubConfig configures newPubSub.
type pubSubConfig struct {
	// URL is the NATS server. Every Subscribe opens its own connection
	// (a watermill-nats subscriber drains its connection on Close), as
	// AddStage does for every consumer.
	URL string
	// Group plays the role of a stage name: it names the durable
	// consumers. Subscribers of one group split a topic's messages (like
	// replicas of a stage); every group gets every message.
	Group string
	// Consumer configures consumers and subscribers as for a stage.
	Consumer ConsumerConfig
	// StreamPerTopic provisions one stream per topic (topicStream) with
	// the turn stream's settings (Streams), instead of using the turn
	// stream StreamTurns (which EnsureStreams must have created). The
	// duplicate window is per stream: in StreamTurns a message id
	// published on two topics is stored once.
	StreamPerTopic bool
	// Streams configures per-topic streams.
	Streams StreamConfig
	// Logger for Watermill and connection events; nil discards.
	Logger *slog.Logger
}

// topicEvent maps a Watermill topic to the event token of its subjects
// and durable names: characters outside [A-Za-z0-9_-] (which includes the
// '.', '*', '>' and whitespace NATS forbids in names) become '_', and a
// changed or long topic gets a hash suffix so different topics never
// collide.
func topicEvent(topic string) string {
	var b strings.Builder
	changed := topic == ""
	for _, r := range topic {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
			changed = true
		}
	}
	s := b.String()
	if len(s) > 64 {
		s, changed = s[:64], true
	}
	if changed {
		sum := sha256.Sum256([]byte(topic))
		s += "-" + hex.EncodeToString(sum[:6])
	}
	return s
}

// topicSubject is the subject a message published to topic is stored on
// (one turn-like subject per topic: agentbus.turn.<event>.m).
func topicSubject(topic string) string { return messages.Subject(topicEvent(topic), "m") }

// topicStream is the stream of topic when pubSubConfig.StreamPerTopic.
func topicStream(topic string) string { return "AGENTBUS_WM_" + topicEvent(topic) }

// newPubSub returns a Watermill publisher and subscriber configured as the
// runtime's (publisherConfig, subscriberConfig, consumerConfig), for
// topics mapped onto turn subjects (topicSubject). Subscribe provisions
// the topic's durable consumer for cfg.Group first (and, with
// StreamPerTopic, its stream), as AddStage does at start. The publisher
// publishes on nc and leaves it open on Close; the subscriber closes the
// connections it opened.
func newPubSub(nc *nats.Conn, cfg pubSubConfig) (message.Publisher, message.Subscriber, error) {
	if cfg.Group == "" {
		return nil, nil, errors.New("pubsub: group is required")
	}
	if strings.ContainsAny(cfg.Group, ".*> \t\r\n") {
		return nil, nil, fmt.Errorf("pubsub: group %q may not contain '.', '*', '>' or whitespace", cfg.Group)
	}
	if cfg.URL == "" {
		cfg.URL = nc.ConnectedUrl()
	}
	if err := (Config{NATSURL: cfg.URL, Streams: cfg.Streams, Consumer: cfg.Consumer}).Validate(); err != nil {
		return nil, nil, fmt.Errorf("pubsub: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	wlog := WatermillLogger(cfg.Logger)
	prov := &provisioner{js: js, cfg: cfg}
	pub := &topicPublisher{pub: subjectPublisher{js}, prov: prov}
	sub := &topicSubscriber{prov: prov, cfg: cfg, wlog: wlog}
	return pub, sub, nil
}

type provisioner struct {
	js  jetstream.JetStream
	cfg pubSubConfig
}

func (p *provisioner) stream(topic string) string {
	if p.cfg.StreamPerTopic {
		return topicStream(topic)
	}
	return messages.StreamTurns
}

// ensureStream creates the topic's stream (StreamPerTopic) with the turn
// stream's settings, or checks that the turn stream exists.
func (p *provisioner) ensureStream(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := p.stream(topic)
	if !p.cfg.StreamPerTopic {
		if _, err := p.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		return nil
	}
	storage := jetstream.FileStorage
	if p.cfg.Streams.Memory {
		storage = jetstream.MemoryStorage
	}
	sc := jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{messages.EventFilter(topicEvent(topic))},
		Storage:    storage,
		Replicas:   p.cfg.Streams.Replicas,
		MaxAge:     p.cfg.Streams.MaxAge,
		Duplicates: p.cfg.Streams.Duplicates,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	}
	if _, err := p.js.Stream(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	// A concurrent creation with the same configuration succeeds too.
	if _, err := p.js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return nil
}

// ensureConsumer provisions the group's durable consumer of topic with the
// configuration of a stage's consumer (consumerConfig); only the stream
// differs with StreamPerTopic.
func (p *provisioner) ensureConsumer(topic string) (stream, durable string, err error) {
	if err := p.ensureStream(topic); err != nil {
		return "", "", err
	}
	event := topicEvent(topic)
	stream = p.stream(topic)
	if err := ensurePushConsumer(p.js, stream, p.cfg.Group, event, p.cfg.Consumer); err != nil {
		return "", "", err
	}
	return stream, DurableName(p.cfg.Group, event), nil
}

// topicPublisher publishes a topic's messages on its subject through the
// runtime's publisher.
type topicPublisher struct {
	pub    subjectPublisher
	prov   *provisioner
	mu     sync.RWMutex
	closed bool
}

func (p *topicPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errors.New("publisher closed")
	}
	return p.pub.Publish(topicSubject(topic), msgs...)
}

// Close stops publishing; the connection belongs to the caller. Publish
// is synchronous (it waits for the stream's ack), so nothing is pending.
func (p *topicPublisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}

// topicSubscriber attaches one watermill-nats subscriber, on its own
// connection, per Subscribe, after provisioning the consumer.
//
// It stops a subscription the way Runtime.Shutdown stops a stage: drain
// the connection first (messages not yet handed out are NAKed so the group
// gets them at once; a message the caller holds keeps its ack until it is
// acked, nacked or AckWait passes), and only then let watermill-nats close
// its output. watermill-nats v2.1.3 closes its output channel right after
// Unsubscribe, which does not wait for a running callback that may still
// send on it: cancelling Subscribe's context or calling Close while
// messages arrive is a data race (and can panic with "send on closed
// channel"). The drain is the barrier: nats.go reports the connection
// closed only after every callback has returned.
type topicSubscriber struct {
	prov   *provisioner
	cfg    pubSubConfig
	wlog   watermill.LoggerAdapter
	mu     sync.Mutex
	closed bool
	subs   []*attached
}

type attached struct {
	sub         *wmnats.Subscriber
	conn        *nats.Conn
	connClosed  chan struct{}
	stop        chan struct{} // closed by Close
	stopOnce    sync.Once
	cancelInner context.CancelFunc
	drainOnce   sync.Once
	done        chan struct{} // closed once the output is closed
}

// SubscribeInitialize provisions the topic's stream and the group's
// consumer before anything is published.
func (s *topicSubscriber) SubscribeInitialize(topic string) error {
	_, _, err := s.prov.ensureConsumer(topic)
	return err
}

func (s *topicSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("subscriber closed")
	}
	stream, durable, err := s.prov.ensureConsumer(topic)
	if err != nil {
		return nil, err
	}
	a := &attached{connClosed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	log := s.cfg.Logger.With("durable", durable)
	// A drain waits for callbacks. Per queue subscription the caller
	// holds at most one message (its callback waits at most AckWait for
	// the ack) and forward NAKs the rest at once, so the drain ends
	// within AckWait; if nats.go's DrainTimeout cut it short, callbacks
	// could still run when watermill-nats closes its output.
	a.conn, err = Connect(s.cfg.URL, durable, log,
		nats.DrainTimeout(s.cfg.Consumer.AckWait+10*time.Second),
		nats.ClosedHandler(func(*nats.Conn) { close(a.connClosed) }))
	if err != nil {
		return nil, err
	}
	a.sub, err = wmnats.NewSubscriberWithNatsConn(a.conn, subscriberConfig(stream, durable, s.cfg.Consumer), s.wlog)
	if err != nil {
		a.conn.Close()
		return nil, err
	}
	inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancelInner = cancel
	in, err := a.sub.Subscribe(inner, messages.EventFilter(topicEvent(topic)))
	if err != nil {
		cancel()
		a.conn.Close()
		return nil, fmt.Errorf("subscribe %s: %w", durable, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		a.drain()
		for m := range in {
			m.Nack()
		}
		return nil, errors.New("subscriber closed")
	}
	s.subs = append(s.subs, a)
	s.mu.Unlock()
	out := make(chan *message.Message)
	go a.forward(ctx, in, out)
	return out, nil
}

// forward hands messages to the caller until ctx is done or Close, then
// drains the connection and NAKs what still arrives.
func (a *attached) forward(ctx context.Context, in <-chan *message.Message, out chan<- *message.Message) {
	defer close(a.done)
	defer close(out)
	for stopping := false; !stopping; {
		select {
		case m, ok := <-in:
			if !ok {
				return
			}
			select {
			case out <- m:
				continue
			case <-ctx.Done():
			case <-a.stop:
			}
			m.Nack()
			stopping = true
		case <-ctx.Done():
			stopping = true
		case <-a.stop:
			stopping = true
		}
	}
	go a.drain()
	for m := range in {
		m.Nack()
	}
}

// drain drains the connection, waits until it is closed (every callback
// has returned), then lets watermill-nats unsubscribe and close its output.
func (a *attached) drain() {
	a.drainOnce.Do(func() {
		if err := a.conn.Drain(); err != nil {
			a.conn.Close()
		}
		<-a.connClosed
		a.cancelInner()
	})
}

// Close stops every subscription as described on topicSubscriber and
// returns once all their outputs are closed.
func (s *topicSubscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := s.subs
	s.mu.Unlock()
	errc := make(chan error, len(subs))
	var wg sync.WaitGroup
	for _, a := range subs {
		wg.Add(1)
		go func(a *attached) {
			defer wg.Done()
			a.stopOnce.Do(func() { close(a.stop) })
			<-a.done
			// The connection is closed by now: watermill-nats' own
			// drain of it can only report that.
			if err := a.sub.Close(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				errc <- err
			}
		}(a)
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
