package memory

import (
	"context"
	"sync"
)

// DefaultMaxBatch is the default batch size of GroupCommitter.
const DefaultMaxBatch = 256

// GroupCommitter turns concurrent single-turn appends into batched
// Store.Append calls: while one batch commits, newcomers queue and go
// together in the next one (natural batching: no timer, no added latency
// when idle). One goroutine commits; Close flushes the queue and stops it.
type GroupCommitter struct {
	store    Store
	maxBatch int

	mu     sync.Mutex
	queue  []*pending
	closed bool
	wake   chan struct{} // capacity 1
	done   chan struct{} // closed when the loop exits
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
	g := &GroupCommitter{store: store, maxBatch: maxBatch, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go g.loop()
	return g
}

// Append queues rec and blocks until the batch containing it committed,
// returning that batch's error (nil: durably stored). On success *rec is
// what Store.Append left: Seq, Hash and PrevHash set (the stored values if
// the turn was stored before). If ctx ends first it returns ctx.Err() and
// leaves *rec alone; the turn may still be committed later (which is safe:
// Append is idempotent on RequestID and the caller retries).
func (g *GroupCommitter) Append(ctx context.Context, rec *TurnRecord) error {
	p := &pending{rec: *rec, done: make(chan committed, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.queue = append(g.queue, p)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
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
	select {
	case g.wake <- struct{}{}:
	default:
	}
	<-g.done
	return nil
}
