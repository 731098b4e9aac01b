package memory

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxBatch is the default batch size of GroupCommitter.
const DefaultMaxBatch = 256

// DefaultMaxLinger is how long, by default, a batch may wait for the
// appends its callers announced (GroupCommitter.Expect).
const DefaultMaxLinger = time.Millisecond

// GroupCommitter turns concurrent single-turn appends into batched
// Store.Append calls: while one batch commits, newcomers queue and go
// together in the next one. One goroutine commits; Close flushes the
// queue and stops it.
//
// A commit has a fixed cost (for SQLite, writing the changed pages to the
// WAL) that a batch shares, so batches should be as large as what is
// about to arrive, without waiting for what is not. Callers that know an
// append is coming (a handler that has started on a turn) announce it
// with Expect: a batch waits for announced appends, at most MaxLinger
// after its first turn queued. Nothing announced, nothing waits: one turn
// alone commits at once.
type GroupCommitter struct {
	store    Store
	maxBatch int
	linger   time.Duration

	mu       sync.Mutex
	queue    []*pending
	first    time.Time // when queue's first turn arrived
	expected int       // announced appends not queued yet
	closed   bool
	wake     chan struct{} // capacity 1
	done     chan struct{} // closed when the loop exits
}

type pending struct {
	rec  TurnRecord
	done chan committed // capacity 1
}

// committed is the outcome of one pending turn: the record as the store
// left it (Seq, Hash, PrevHash set) or the error.
type committed struct {
	rec TurnRecord
	err error
}

// NewGroupCommitter starts a committer over store; maxBatch <= 0 means
// DefaultMaxBatch. It does not own store: Close does not close it.
func NewGroupCommitter(store Store, maxBatch int) *GroupCommitter {
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	g := &GroupCommitter{store: store, maxBatch: maxBatch, linger: DefaultMaxLinger, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go g.loop()
	return g
}

// SetMaxLinger sets how long a batch may wait for announced appends
// (default DefaultMaxLinger; 0: never wait). Call it before the first
// append.
func (g *GroupCommitter) SetMaxLinger(d time.Duration) {
	g.mu.Lock()
	g.linger = max(d, 0)
	g.mu.Unlock()
}

// Arrival is an append announced by Expect: Append fulfils it, Cancel
// withdraws it (the caller will not append after all). Exactly one of the
// two must be called; Cancel after Append is a no-op, so a deferred
// Cancel is the usual way.
type Arrival struct {
	g    *GroupCommitter
	once sync.Once
}

// Expect announces an append that will follow shortly: until it arrives,
// or is cancelled, a batch waits for it (at most MaxLinger).
func (g *GroupCommitter) Expect() *Arrival {
	g.mu.Lock()
	g.expected++
	g.mu.Unlock()
	return &Arrival{g: g}
}

// Cancel withdraws the announcement, if Append has not fulfilled it.
func (a *Arrival) Cancel() {
	a.once.Do(func() {
		a.g.mu.Lock()
		a.g.expected--
		a.g.mu.Unlock()
		a.g.signal()
	})
}

// Append is GroupCommitter.Append for the announced turn.
func (a *Arrival) Append(ctx context.Context, rec *TurnRecord) error {
	fulfil := false
	a.once.Do(func() { fulfil = true })
	return a.g.append(ctx, rec, fulfil)
}

func (g *GroupCommitter) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Append queues rec and blocks until the batch containing it committed,
// returning that batch's error (nil: durably stored). On success *rec is
// what Store.Append left: Seq, Hash and PrevHash set (the stored values if
// the turn was stored before). If ctx ends first it returns ctx.Err() and
// leaves *rec alone; the turn may still be committed later (which is safe:
// Append is idempotent on RequestID and the caller retries).
func (g *GroupCommitter) Append(ctx context.Context, rec *TurnRecord) error {
	return g.append(ctx, rec, false)
}

// append queues rec; fulfil: it was announced (Expect).
func (g *GroupCommitter) append(ctx context.Context, rec *TurnRecord, fulfil bool) error {
	p := &pending{rec: *rec, done: make(chan committed, 1)}
	g.mu.Lock()
	if fulfil {
		g.expected--
	}
	if g.closed {
		g.mu.Unlock()
		g.signal()
		return ErrClosed
	}
	if len(g.queue) == 0 {
		g.first = time.Now()
	}
	g.queue = append(g.queue, p)
	g.mu.Unlock()
	g.signal()
	select {
	case c := <-p.done:
		if c.err == nil {
			*rec = c.rec
		}
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *GroupCommitter) loop() {
	defer close(g.done)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			if g.closed {
				g.mu.Unlock()
				return
			}
			g.mu.Unlock()
			<-g.wake
			continue
		}
		// Announced appends are on their way: wait for them, up to the
		// linger since the batch's first turn.
		if wait := g.linger - time.Since(g.first); g.expected > 0 && len(g.queue) < g.maxBatch && !g.closed && wait > 0 {
			g.mu.Unlock()
			linger.Reset(wait)
			select {
			case <-g.wake:
			case <-linger.C:
			}
			linger.Stop()
			continue
		}
		n := min(len(g.queue), g.maxBatch)
		batch := g.queue[:n:n]
		g.queue = g.queue[n:]
		g.mu.Unlock()
		g.commit(batch)
	}
}

// commit stores a batch as one Store.Append call (one transaction for the
// SQLite store). The commit is not bound to any caller's context: one caller
// giving up must not fail the others. If the batch fails, no caller gets an
// error that is not its own:
//   - invalid records (the store's RecordErrors, found before anything is
//     written) fail their own callers only, and the rest of the batch is
//     committed again as one batch;
//   - any other error is not known to belong to one turn, so each turn is
//     retried alone and its caller gets its own outcome.
func (g *GroupCommitter) commit(batch []*pending) {
	recs := make([]TurnRecord, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	err := g.store.Append(context.Background(), recs...)
	if err == nil || len(batch) == 1 {
		for i, p := range batch {
			p.done <- committed{recs[i], err}
		}
		return
	}
	if bad := recordErrors(err, batch); bad != nil {
		rest := batch[:0:0]
		for i, p := range batch {
			if e, ok := bad[i]; ok {
				p.done <- committed{err: &RecordError{Index: 0, RequestID: e.RequestID, Reason: e.Reason}}
			} else {
				rest = append(rest, p)
			}
		}
		if len(rest) > 0 {
			g.commit(rest)
		}
		return
	}
	for _, p := range batch {
		one := []TurnRecord{p.rec}
		err := g.store.Append(context.Background(), one...)
		p.done <- committed{one[0], err}
	}
}

// recordErrors returns the RecordErrors in err by batch index, or nil if
// err holds anything else (or a RecordError that does not name a turn of
// batch): only then is every failure known to be a record's own.
func recordErrors(err error, batch []*pending) map[int]*RecordError {
	bad := map[int]*RecordError{}
	var walk func(error) bool
	walk = func(err error) bool {
		var re *RecordError
		switch u := err.(type) {
		case *RecordError:
			re = u
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if !walk(e) {
					return false
				}
			}
			return true
		case interface{ Unwrap() error }:
			if inner := u.Unwrap(); inner != nil {
				return walk(inner)
			}
			return false
		default:
			return false
		}
		if re.Index < 0 || re.Index >= len(batch) || batch[re.Index].rec.RequestID != re.RequestID {
			return false
		}
		bad[re.Index] = re
		return true
	}
	if !walk(err) || len(bad) == 0 {
		return nil
	}
	return bad
}

// Close commits every queued turn, then stops the committer. Appends after
// Close return ErrClosed. It is safe to call more than once.
func (g *GroupCommitter) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.signal()
	<-g.done
	return nil
}
