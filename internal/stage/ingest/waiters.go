package ingest

import (
	"errors"
	"sync"

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
type waiters struct {
	mu      sync.Mutex
	waiting map[string][]chan *nats.Msg
	subs    []*nats.Subscription
}

// newWaiters subscribes to the terminal events on nc; the subscriptions
// are registered with the server when it returns.
func newWaiters(nc *nats.Conn) (*waiters, error) {
	w := &waiters{waiting: map[string][]chan *nats.Msg{}}
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

func (w *waiters) close() {
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}
