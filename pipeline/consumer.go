package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// consumer runs one durable pull consumer of a stage: it fetches only as
// many messages as it has free handler slots (so a message is never left
// waiting in this process while its ack deadline runs), starts each at
// once, keeps it owned with in-progress acks while its handler runs, and
// acks it when the handler and its publishes succeeded (NAK with a growing
// delay otherwise).
//
// So the ack wait can be short (tens of seconds): a crashed replica's work
// moves to another replica in that time, and a slow handler is never
// redelivered to a second one while it still runs.
type consumer struct {
	durable string
	cons    jetstream.Consumer
	handle  message.NoPublishHandlerFunc
	cc      ConsumerConfig
	log     *slog.Logger
	// draining stops fetching; messages already fetched are NAKed.
	draining func() bool

	slots chan struct{} // one per running handler
	wg    sync.WaitGroup
	obs   *eventObs

	// running are the messages whose handlers run, with when each was
	// last marked in progress (beat).
	mu      sync.Mutex
	running map[jetstream.Msg]time.Time
}

// job is a fetched message on its way to a worker.
type job struct {
	m       jetstream.Msg
	fetched time.Time
}

// pollWait bounds one fetch request: the server holds it until messages
// arrive or it expires.
const pollWait = 2 * time.Second

// run fetches and dispatches until ctx ends, then waits for the running
// handlers.
func (c *consumer) run(ctx context.Context) {
	// Concurrency long-lived workers (their stacks stay grown; a
	// goroutine per message would grow a new one each time) take what the
	// fetch loop hands them; a slot is free for each message fetched, so
	// a worker is always free for it.
	c.running = map[jetstream.Msg]time.Time{}
	work := make(chan job)
	for range c.cc.Concurrency {
		go func() {
			for j := range work {
				c.dispatch(ctx, j.m, j.fetched)
				<-c.slots
				c.wg.Done()
			}
		}()
	}
	stopBeat := make(chan struct{})
	go c.beat(stopBeat)
	defer func() {
		close(work)
		c.wg.Wait()
		close(stopBeat)
	}()
	for ctx.Err() == nil && !c.draining() {
		// Wait for a free slot, then ask for as many messages as are free.
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
		for free < c.cc.Concurrency {
			select {
			case c.slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		batch, err := c.cons.Fetch(free, jetstream.FetchMaxWait(pollWait))
		if err != nil {
			c.release(free)
			if ctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) && c.draining() {
				return
			}
			c.log.Warn("fetch failed; retrying", "consumer", c.durable, "err", err)
			select {
			case <-time.After(pollWait / 4):
			case <-ctx.Done():
			}
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			c.wg.Add(1)
			work <- job{m: m, fetched: time.Now()}
		}
		c.release(free - got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && !c.draining() {
			c.log.Debug("fetch ended", "consumer", c.durable, "err", err)
		}
	}
}

// beat keeps the running handlers' messages owned: every message whose
// handler has run for a third of the ack wait since its last mark is
// marked in progress again (so at most half the ack wait passes between
// marks). One ticker per consumer, not one per message.
func (c *consumer) beat(stop <-chan struct{}) {
	every := max(c.cc.AckWait/3, time.Millisecond)
	t := time.NewTicker(max(c.cc.AckWait/6, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			// Marked under the lock: a handler that ends meanwhile acks
			// or NAKs after its mark, never before it (a mark after a
			// NAK would hold the message back for a whole ack wait).
			c.mu.Lock()
			for m, last := range c.running {
				if now.Sub(last) >= every {
					c.running[m] = now
					_ = m.InProgress() // a publish: buffered, never waits for the server
				}
			}
			c.mu.Unlock()
		}
	}
}

func (c *consumer) release(n int) {
	for range n {
		<-c.slots
	}
}

// dispatch runs one message through the stage's middleware and settles it.
func (c *consumer) dispatch(ctx context.Context, m jetstream.Msg, fetched time.Time) {
	if c.draining() {
		_ = m.Nak() // for another replica, at once
		return
	}
	md, err := m.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack.
		c.log.Error("message without JetStream metadata", "subject", m.Subject(), "err", err)
		return
	}
	// Handled only while owned: a message whose ack deadline passed before
	// its handler could start (a stalled process) belongs to whoever it
	// was redelivered to.
	if time.Since(fetched) > c.cc.AckWait*3/4 {
		return
	}
	msg := toMessage(m.Subject(), m.Data(), m.Headers(), md)
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if dl, ok := Deadline(msg); ok {
		// No work outlives the turn's deadline.
		hctx, cancel = context.WithDeadline(context.WithoutCancel(ctx), dl)
	}
	defer cancel()
	msg.SetContext(hctx)

	// Keep it owned while the handler runs (beat).
	c.mu.Lock()
	c.running[m] = time.Now()
	c.mu.Unlock()
	err = c.handle(msg)
	c.mu.Lock()
	delete(c.running, m)
	c.mu.Unlock()
	switch {
	case err == nil:
		if err := m.Ack(); err != nil {
			c.log.Debug("ack failed; the message will be redelivered and its effects deduplicated", "msg_id", msg.UUID, "err", err)
		}
	case errors.Is(err, errDraining):
		_ = m.Nak()
	case errors.Is(err, ErrStepBusy):
		var b *busyError
		wait := c.cc.NakDelay
		if errors.As(err, &b) {
			wait = b.Retry()
		}
		_ = m.NakWithDelay(wait)
	default:
		_ = m.NakWithDelay(expDelay{c.cc.NakDelay}.WaitTime(md.NumDelivered))
	}
}

// toMessage turns a stored JetStream message into a Watermill message for
// the handlers: the payload as is (a bad payload must reach the handler,
// and from there the dead-letter queue), its headers as metadata, the
// message id from Nats-Msg-Id (set by every publisher, in any language),
// and the subject, delivery count, stream sequence and storage time.
func toMessage(subject string, data []byte, hdr nats.Header, md *jetstream.MsgMetadata) *message.Message {
	id := hdr.Get(watermillUUIDHdr)
	if id == "" {
		id = hdr.Get(nats.MsgIdHdr)
	}
	meta := make(message.Metadata, len(hdr)+4)
	for k, v := range hdr {
		switch k {
		case watermillUUIDHdr, nats.MsgIdHdr, nats.ExpectedLastMsgIdHdr, nats.ExpectedStreamHdr, nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastSeqHdr:
			continue
		}
		if len(v) > 0 {
			meta.Set(k, v[len(v)-1])
		}
	}
	meta.Set(MetaSubject, subject)
	if md != nil {
		meta.Set(MetaDelivered, strconv.FormatUint(md.NumDelivered, 10))
		meta.Set(MetaStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
		meta.Set(MetaTimestamp, md.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	if id == "" {
		id = subject + "@" + meta.Get(MetaStreamSeq)
	}
	msg := message.NewMessage(id, data)
	msg.Metadata = meta
	return msg
}

// pullConsumerConfig is a stage's durable pull consumer of one event:
// explicit acks within AckWait (kept alive by in-progress acks while a
// handler runs), and no server-side delivery limit (the dead-letter
// middleware bounds deliveries, so a message that cannot even be
// dead-lettered is retried, never dropped by the server).
func pullConsumerConfig(stage, event string, cc ConsumerConfig) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       DurableName(stage, event),
		Description:   "agentbus " + stage + " stage, " + event + " events",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cc.AckWait,
		MaxDeliver:    -1,
		FilterSubject: messages.EventFilter(event),
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		MaxAckPending: cc.MaxAckPending,
		MaxWaiting:    512,
	}
}

// ensurePullConsumer creates the stage's pull consumer of event when it is
// missing and updates it only where it differs. A push consumer of the same
// name (agentbus before pull consumers) is replaced by a pull consumer that
// starts after its acknowledged floor, so no message is handled twice or
// skipped; replacing needs the right to delete it (the operator's, which
// `agentbus serve` has).
func ensurePullConsumer(ctx context.Context, js jetstream.JetStream, stage, event string, cc ConsumerConfig) (jetstream.Consumer, error) {
	want := pullConsumerConfig(stage, event, cc)
	err := retryProvisioning(ctx, func() error {
		c, err := js.Consumer(ctx, messages.StreamTurns, want.Durable)
		if errors.Is(err, jetstream.ErrNotPullConsumer) {
			return replacePushConsumer(ctx, js, want)
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			_, err = js.CreateConsumer(ctx, messages.StreamTurns, want)
			if errors.Is(err, jetstream.ErrConsumerExists) {
				return nil // another replica created it
			}
			return err
		}
		if err != nil {
			return err
		}
		have := c.CachedInfo()
		if have.Config.AckWait == want.AckWait && have.Config.MaxAckPending == want.MaxAckPending &&
			have.Config.FilterSubject == want.FilterSubject && have.Config.MaxDeliver == want.MaxDeliver && have.Config.MaxWaiting == want.MaxWaiting {
			return nil
		}
		w := want
		w.DeliverPolicy, w.OptStartSeq = have.Config.DeliverPolicy, have.Config.OptStartSeq
		_, err = js.UpdateConsumer(ctx, messages.StreamTurns, w)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", want.Durable, err)
	}
	return js.Consumer(ctx, messages.StreamTurns, want.Durable)
}

// replacePushConsumer replaces a push consumer (an older agentbus's) by
// the pull consumer want, starting right after the push consumer's
// acknowledged floor.
func replacePushConsumer(ctx context.Context, js jetstream.JetStream, want jetstream.ConsumerConfig) error {
	pc, err := js.PushConsumer(ctx, messages.StreamTurns, want.Durable)
	if err != nil {
		return err
	}
	next := pc.CachedInfo().AckFloor.Stream + 1
	if err := js.DeleteConsumer(ctx, messages.StreamTurns, want.Durable); err != nil {
		return permanentProvisioning(fmt.Errorf("consumer %s is a push consumer from an older agentbus and must be replaced by the operator (agentbus serve does it): %w", want.Durable, err))
	}
	w := want
	w.DeliverPolicy, w.OptStartSeq = jetstream.DeliverByStartSequencePolicy, next
	_, err = js.CreateConsumer(ctx, messages.StreamTurns, w)
	return err
}

type permanentProvisioningError struct{ error }

func (e permanentProvisioningError) Unwrap() error { return e.error }

func permanentProvisioning(err error) error { return permanentProvisioningError{err} }

// retryProvisioning runs f until it succeeds, fails for good, or ctx ends,
// backing off while a cluster forms (no leader yet, no responders,
// timeouts): all stages started at once against a fresh cluster come up.
func retryProvisioning(ctx context.Context, f func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var perm permanentProvisioningError
		if errors.As(err, &perm) || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// jsErrClusterNotAvailable is the server's "JetStream system temporarily
// unavailable" (no meta leader yet).
const jsErrClusterNotAvailable = 10008

// transient reports whether a JetStream API error may pass by itself (a
// cluster forming or electing a leader, a server restarting).
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsErrClusterNotAvailable, jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeStreamNotFound:
			return true
		}
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	// Errors of the legacy JetStreamContext API: Provision runs the
	// caller's function, which may still use it.
	var legacy *nats.APIError
	if errors.As(err, &legacy) {
		return legacy.Code == 503 || legacy.Code == 408 || legacy.ErrorCode == nats.JSErrCodeStreamNotFound
	}
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, nats.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrStreamNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}
