package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentbus/agentbus/messages"
)

// ErrStop, returned by the callback of [Replay], ends the replay early
// without an error.
var ErrStop = errors.New("replay: stop")

// ErrInvalidOptions is wrapped by every error of [Options.Validate].
var ErrInvalidOptions = errors.New("replay: invalid options")

// Defaults of [Options].
const (
	DefaultBatch     = 1000
	DefaultIdleCheck = 2 * time.Second
)

// Options select what [Replay] reads. The zero value replays the whole
// stream messages.StreamTurns.
type Options struct {
	// Stream to read. Default messages.StreamTurns.
	Stream string
	// Conversation keeps only events of this conversation id (filtered on
	// the client: subjects carry the request id, not the conversation).
	// Default "" (every conversation).
	Conversation string
	// User keeps only events of this user (the payload's user): what a
	// user may see of the stream. Default "" (every user).
	User string
	// Since starts at the first event stored at or after this time.
	// Default zero (from the start). Exclusive with FromSeq.
	Since time.Time
	// FromSeq starts at this stream sequence. Default 0 (from the start).
	// Exclusive with Since.
	FromSeq uint64
	// Events keeps only these event names (messages.Event*), filtered on
	// the server. Default nil (every event).
	Events []string
	// ToSeq stops after this stream sequence. Default 0: the last message
	// present when Replay started (Replay never follows the stream).
	ToSeq uint64
	// Batch is how many messages the consumer keeps in flight.
	// Default DefaultBatch.
	Batch int
	// IdleCheck is how long Replay waits for the next message before it
	// asks the server whether any are left (they may have been removed by
	// the stream's limits while it read). Default DefaultIdleCheck.
	IdleCheck time.Duration
	// Progress, if set, is called after each message read (before the
	// conversation filter) with the count read so far and the estimated
	// total. See [Progress.Update].
	Progress func(read, total uint64)
}

// Validate reports every problem with the options, joined; each wraps
// ErrInvalidOptions.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...)))
	}
	if o.Conversation != "" && !messages.ValidID(o.Conversation) {
		bad("conversation %q is not a valid id", o.Conversation)
	}
	if o.FromSeq != 0 && !o.Since.IsZero() {
		bad("from-seq and since are exclusive")
	}
	if o.ToSeq != 0 && o.FromSeq > o.ToSeq {
		bad("from-seq %d is after to-seq %d", o.FromSeq, o.ToSeq)
	}
	for _, e := range o.Events {
		if !slices.Contains(messages.Events, e) {
			bad("unknown event %q (want one of %v)", e, messages.Events)
		}
	}
	if o.Batch < 0 {
		bad("batch must not be negative")
	}
	if o.IdleCheck < 0 {
		bad("idle check must not be negative")
	}
	return errors.Join(errs...)
}

// Event is one message of the turn stream.
type Event struct {
	// Seq is the stream sequence.
	Seq uint64
	// Subject is the full subject, e.g. "agentbus.turn.completed.r1".
	Subject string
	// Event and RequestID are parsed from the subject ("" if it is not a
	// turn subject).
	Event, RequestID string
	// ConversationID is the payload's top-level conversation_id ("" if
	// absent or the payload is not a JSON object).
	ConversationID string
	// User is the payload's top-level user ("" if absent).
	User string
	// Time is when the stream stored the message.
	Time time.Time
	// Data is the JSON payload.
	Data json.RawMessage
	// Headers are the message's NATS headers.
	Headers nats.Header
}

// NewEvent builds an Event from a stored message's parts: it parses the
// subject and extracts the conversation id. Replay uses it; tests and
// other readers (e.g. a direct get) can too.
func NewEvent(seq uint64, subject string, at time.Time, data []byte, hdr nats.Header) Event {
	ev := Event{Seq: seq, Subject: subject, Time: at, Data: data, Headers: hdr}
	ev.Event, ev.RequestID, _ = messages.ParseSubject(subject)
	ev.ConversationID = ConversationID(data)
	ev.User = User(data)
	return ev
}

// Replay reads the stream from the start point (FromSeq, Since, or the
// first message) up to ToSeq or the last message present when it started,
// in stream order, and calls fn for each event that passes the filters. It
// terminates: it never waits for new messages.
//
// It reads through an ordered consumer (ephemeral, no acks, in-memory,
// recreated by the client on a gap) and deletes it before returning, so it
// leaves no state on the server. If the consumer stalls (the server has
// messages for it but nothing arrives for IdleCheck), Replay resumes after
// the last sequence seen on a fresh consumer; events are never repeated or
// skipped. If fn returns ErrStop, Replay returns nil; any other error ends
// the replay and is returned wrapped.
func Replay(ctx context.Context, js jetstream.JetStream, opts Options, fn func(Event) error) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if js == nil || fn == nil {
		return fmt.Errorf("%w: nil JetStream or callback", ErrInvalidOptions)
	}
	r := &run{js: js, opts: opts, fn: fn, stream: opts.Stream, batch: opts.Batch, idle: opts.IdleCheck}
	if r.stream == "" {
		r.stream = messages.StreamTurns
	}
	if r.batch == 0 {
		r.batch = DefaultBatch
	}
	if r.idle == 0 {
		r.idle = DefaultIdleCheck
	}

	st, err := js.Stream(ctx, r.stream)
	if err != nil {
		return fmt.Errorf("replay: stream %s: %w", r.stream, err)
	}
	last := st.CachedInfo().State.LastSeq
	r.to = opts.ToSeq
	if r.to == 0 || r.to > last {
		r.to = last
	}
	if r.to == 0 || opts.FromSeq > r.to {
		return nil
	}

	cfg := jetstream.OrderedConsumerConfig{InactiveThreshold: time.Minute}
	for _, e := range opts.Events {
		cfg.FilterSubjects = append(cfg.FilterSubjects, messages.EventFilter(e))
	}
	switch {
	case opts.FromSeq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = opts.FromSeq
	case !opts.Since.IsZero():
		since := opts.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	for stalls := 0; ; {
		before := r.lastSeen.Load()
		err := r.segment(ctx, st, cfg)
		if !errors.Is(err, errStalled) {
			return err
		}
		if r.lastSeen.Load() == before {
			if stalls++; stalls == maxStalls {
				return fmt.Errorf("replay: no progress after %d consumer restarts at sequence %d: %w", stalls, before, err)
			}
		} else {
			stalls = 0
		}
		// Resume right after the last message seen (or where we started,
		// if none was).
		if seen := r.lastSeen.Load(); seen > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, seen+1, nil
		}
	}
}

// maxStalls bounds consecutive consumer restarts that bring no message.
const maxStalls = 3

var (
	errDrained = errors.New("nothing left to read")
	errStalled = errors.New("consumer stalled")
)

// run is the state of one Replay call, kept across consumer restarts.
type run struct {
	js     jetstream.JetStream
	opts   Options
	fn     func(Event) error
	stream string
	batch  int
	idle   time.Duration
	to     uint64
	read   uint64
	// lastSeen is the stream sequence of the last message read; inFn is
	// set while fn runs (the watchdog then leaves the consumer alone).
	lastSeen atomic.Uint64
	inFn     atomic.Bool
}

// segment reads on one ordered consumer until the end (nil), an error, or
// a stall (errStalled: the caller resumes after lastSeen).
func (r *run) segment(ctx context.Context, st jetstream.Stream, cfg jetstream.OrderedConsumerConfig) error {
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("replay: consumer on %s: %w", r.stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(r.batch))
	if err != nil {
		return fmt.Errorf("replay: consumer on %s: %w", r.stream, err)
	}
	defer func() {
		it.Stop()
		// The ordered consumer deletes the consumers it replaces but not the
		// last one; delete it now rather than wait for InactiveThreshold.
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = r.js.DeleteConsumer(dctx, r.stream, info.Name)
			cancel()
		}
	}()
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	// The watchdog checks every idle period in which nothing arrived whether
	// the stream lost the messages we wait for (limits or a purge while we
	// read) or the consumer stalled. It costs the loop an atomic store per
	// message instead of a timer per Next.
	nctx, ncancel := context.WithCancelCause(ctx)
	defer ncancel(nil)
	go r.watchdog(nctx, ncancel, cons)

	for {
		if err := ctx.Err(); err != nil {
			return err // Next may still hand out prefetched messages
		}
		msg, err := it.Next(jetstream.NextContext(nctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			switch cause := context.Cause(nctx); {
			case errors.Is(cause, errDrained):
				return nil
			case errors.Is(cause, errStalled):
				return cause
			case cause != nil:
				return fmt.Errorf("replay: %w", cause)
			}
			return fmt.Errorf("replay: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		seq := md.Sequence.Stream
		if seq > r.to {
			return nil
		}
		r.lastSeen.Store(seq)
		r.read++
		if r.opts.Progress != nil {
			r.opts.Progress(r.read, r.read+md.NumPending)
		}
		ev := NewEvent(seq, msg.Subject(), md.Timestamp, msg.Data(), msg.Headers())
		if (r.opts.Conversation == "" || ev.ConversationID == r.opts.Conversation) && (r.opts.User == "" || ev.User == r.opts.User) {
			r.inFn.Store(true)
			err := r.fn(ev)
			r.inFn.Store(false)
			if err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return fmt.Errorf("replay: event %d: %w", seq, err)
			}
		}
		if seq >= r.to || md.NumPending == 0 {
			return nil
		}
	}
}

// watchdog cancels ctx after an idle period without progress (and outside
// fn): with errDrained if the server has nothing pending and has delivered
// nothing beyond lastSeen; with errStalled if it has messages pending but
// none is on its way; with the error of a failed check.
func (r *run) watchdog(ctx context.Context, cancel context.CancelCauseFunc, cons jetstream.Consumer) {
	tick := time.NewTicker(r.idle)
	defer tick.Stop()
	prev := r.lastSeen.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if cur := r.lastSeen.Load(); cur != prev || r.inFn.Load() {
			prev = cur
			continue
		}
		info, err := cons.Info(ctx)
		if err != nil {
			if ctx.Err() == nil {
				cancel(fmt.Errorf("consumer info: %w", err))
			}
			return
		}
		if info.Delivered.Stream > r.lastSeen.Load() {
			continue // in flight or buffered
		}
		if info.NumPending == 0 {
			cancel(errDrained)
		} else {
			cancel(errStalled)
		}
		return
	}
}
