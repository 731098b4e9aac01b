package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// waiters route the turns' terminal events (completed, rejected, failed)
// to the requests waiting for them, from one subscription per terminal
// event for the whole process. A subscription per request would cost a
// SUB and an UNSUB per turn (and the server's subject cache churn that
// comes with them), and it would receive every event of its turn where
// only the last one matters. Each ingest instance sees every turn's
// terminal event: one small message per turn and instance.
//
// Streaming deltas take the same path without the fan-out: the instance
// has its own id, sets it as each streaming turn's StreamTo, and
// subscribes once to messages.StreamSubjectTo(id, "*"); the llm stage
// sends each turn's deltas to the instance that waits for them.
type waiters struct {
	nc      *nats.Conn
	inst    string
	mu      sync.Mutex
	waiting map[string][]chan *nats.Msg
	streams map[string]chan *nats.Msg
	subs    []*nats.Subscription
}

// instanceID names this ingest instance as the receiver of its streams.
func instanceID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return "ingest_" + hex.EncodeToString(b[:])
}

// newWaiters subscribes to the terminal events on nc; the subscriptions
// are registered with the server when it returns.
func newWaiters(nc *nats.Conn) (*waiters, error) {
	w := &waiters{nc: nc, inst: instanceID(), waiting: map[string][]chan *nats.Msg{}, streams: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(messages.StreamSubjectTo(w.inst, "*"), w.deliverDelta)
	if err != nil {
		return nil, err
	}
	_ = sub.SetPendingLimits(1<<16, 256<<20)
	w.subs = append(w.subs, sub)
	for _, ev := range []string{messages.EventCompleted, messages.EventRejected, messages.EventFailed} {
		sub, err := nc.Subscribe(messages.EventFilter(ev), w.deliver)
		if err != nil {
			w.close()
			return nil, err
		}
		// The server drops what a slow consumer cannot take; a waiter
		// that misses its event still settles from the stream at its
		// deadline, but the limits are the bus's, not the defaults.
		_ = sub.SetPendingLimits(1<<16, 256<<20)
		w.subs = append(w.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		w.close()
		return nil, errors.Join(errors.New("ingest: subscribe to terminal events"), err)
	}
	return w, nil
}

// deliver hands m to the requests waiting for its turn; it never blocks
// (a waiter's channel holds more than the one event a turn ends with).
func (w *waiters) deliver(m *nats.Msg) {
	_, rid, err := messages.ParseSubject(m.Subject)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.waiting[rid] {
		select {
		case ch <- m:
		default:
		}
	}
}

// wait registers a request waiting for turn rid's terminal event, before
// the turn is published; done unregisters it.
func (w *waiters) wait(rid string) (events chan *nats.Msg, done func()) {
	ch := make(chan *nats.Msg, 8)
	w.mu.Lock()
	w.waiting[rid] = append(w.waiting[rid], ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		rest := w.waiting[rid][:0]
		for _, c := range w.waiting[rid] {
			if c != ch {
				rest = append(rest, c)
			}
		}
		if len(rest) == 0 {
			delete(w.waiting, rid)
		} else {
			w.waiting[rid] = rest
		}
	}
}

// deliverDelta hands a delta to the stream waiting for it; it never
// blocks: a stream whose channel is full loses the delta (the terminal
// event carries the whole answer, and the stream writes what it missed).
func (w *waiters) deliverDelta(m *nats.Msg) {
	rid := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	w.mu.Lock()
	ch := w.streams[rid]
	w.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
	}
}

// streamTo is the StreamTo of a turn this instance publishes: its own id
// when the turn streams.
func (w *waiters) streamTo(stream bool) string {
	if !stream {
		return ""
	}
	return w.inst
}

// stream registers a request waiting for turn rid's deltas (a turn whose
// StreamTo is streamTo(true)), before the turn is published; done
// unregisters it.
func (w *waiters) stream(rid string) (deltas chan *nats.Msg, done func()) {
	ch := make(chan *nats.Msg, 256)
	w.mu.Lock()
	w.streams[rid] = ch
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		if w.streams[rid] == ch {
			delete(w.streams, rid)
		}
		w.mu.Unlock()
	}
}

// caughtUp returns once the deltas this connection received before the
// call are in their streams' channels (they arrive on another
// subscription than the terminal events, each with its own goroutine),
// or after max.
func (w *waiters) caughtUp(max time.Duration) {
	done := make(chan struct{})
	if err := w.nc.Barrier(func() { close(done) }); err != nil {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func (w *waiters) close() {
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}
