package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordingStore wraps a Store and records batch sizes; it can be made slow
// or failing.
type recordingStore struct {
	Store
	mu      sync.Mutex
	batches []int
	delay   time.Duration
	fail    func(turns []TurnRecord) error
}

func (r *recordingStore) Append(ctx context.Context, turns ...TurnRecord) error {
	r.mu.Lock()
	r.batches = append(r.batches, len(turns))
	r.mu.Unlock()
	time.Sleep(r.delay)
	if r.fail != nil {
		if err := r.fail(turns); err != nil {
			return err
		}
	}
	return r.Store.Append(ctx, turns...)
}

func TestGroupCommitterBatches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBatch int
		callers  int
	}{
		{"default batch", 0, 64},
		{"small batches", 5, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := openSQLite(t)
			rs := &recordingStore{Store: base, delay: 5 * time.Millisecond}
			g := NewGroupCommitter(rs, tc.maxBatch)
			var wg sync.WaitGroup
			var ok atomic.Int64
			recs := make([]TurnRecord, tc.callers)
			for i := range tc.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					recs[i] = turn(fmt.Sprintf("r%d", i), "c", 2)
					if err := g.Append(context.Background(), &recs[i]); err != nil {
						t.Error(err)
						return
					}
					ok.Add(1)
				}()
			}
			wg.Wait()
			// Each caller learns its turn's place in the chain.
			stored, err := base.Turns(context.Background(), "c")
			if err != nil || len(stored) != tc.callers {
				t.Fatalf("%d turns stored: %v", len(stored), err)
			}
			for _, st := range stored {
				var i int
				fmt.Sscanf(st.RequestID, "r%d", &i)
				if r := recs[i]; r.Seq != st.Seq || r.Hash != st.Hash || r.PrevHash != st.PrevHash {
					t.Fatalf("caller %d got seq %d hash %.8s, stored seq %d hash %.8s", i, r.Seq, r.Hash, st.Seq, st.Hash)
				}
			}
			g.Close()
			if h := history(t, base, "c"); len(h) != 2*tc.callers || ok.Load() != int64(tc.callers) {
				t.Fatalf("%d messages, %d ok, want %d, %d", len(h), ok.Load(), 2*tc.callers, tc.callers)
			}
			limit := tc.maxBatch
			if limit == 0 {
				limit = DefaultMaxBatch
			}
			total := 0
			for _, n := range rs.batches {
				if n > limit {
					t.Fatalf("batch of %d exceeds %d", n, limit)
				}
				total += n
			}
			if total != tc.callers || len(rs.batches) >= tc.callers {
				t.Fatalf("batches %v: no batching happened", rs.batches)
			}
			verifyOK(t, base)
			// A repeated append learns the stored link.
			g = NewGroupCommitter(base, 0)
			defer g.Close()
			again := turn("r0", "c", 2)
			if err := g.Append(context.Background(), &again); err != nil || again.Seq != recs[0].Seq || again.Hash != recs[0].Hash {
				t.Fatalf("a repeated append got seq %d (%v), want the stored %d", again.Seq, err, recs[0].Seq)
			}
		})
	}
}

func TestGroupCommitterErrors(t *testing.T) {
	base, _ := openSQLite(t)
	boom := errors.New("disk on fire")
	var down atomic.Bool
	down.Store(true)
	rs := &recordingStore{Store: base, delay: 2 * time.Millisecond, fail: func([]TurnRecord) error {
		if down.Load() {
			return boom
		}
		return nil
	}}
	g := NewGroupCommitter(rs, 0)
	defer g.Close()
	ctx := context.Background()
	r1 := turn("r1", "c", 1)
	if err := g.Append(ctx, &r1); !errors.Is(err, boom) || r1.Seq != 0 {
		t.Fatalf("Append = %v, want the store's error", err)
	}
	down.Store(false)
	// One bad record fails only its own caller.
	var wg sync.WaitGroup
	errs := make([]error, 10)
	recs := make([]TurnRecord, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i] = turn(fmt.Sprintf("r%d", i), "c", 1)
			if i == 3 {
				recs[i].ConversationID = ""
			}
			errs[i] = g.Append(ctx, &recs[i])
		}()
	}
	wg.Wait()
	seqs := map[int64]bool{}
	for i, err := range errs {
		if (i == 3) != errors.Is(err, ErrInvalidRecord) || (i != 3 && err != nil) {
			t.Fatalf("caller %d: %v", i, err)
		}
		if i != 3 && (recs[i].Seq == 0 || seqs[recs[i].Seq]) {
			t.Fatalf("caller %d: seq %d (retried alone, it still learns its own)", i, recs[i].Seq)
		}
		seqs[recs[i].Seq] = true
	}
	if h := history(t, base, "c"); len(h) != 9 {
		t.Fatalf("%d messages, want 9", len(h))
	}
	// A caller that gives up gets its context's error.
	rs.delay = 50 * time.Millisecond
	cctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	slow := turn("slow", "c", 1)
	if err := g.Append(cctx, &slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append = %v, want DeadlineExceeded", err)
	}
}

func TestGroupCommitterCloseFlushes(t *testing.T) {
	base, _ := openSQLite(t)
	rs := &recordingStore{Store: base, delay: 10 * time.Millisecond}
	g := NewGroupCommitter(rs, 0)
	var wg sync.WaitGroup
	results := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := turn(fmt.Sprintf("r%d", i), "c", 1)
			results <- g.Append(context.Background(), &r)
		}()
	}
	time.Sleep(2 * time.Millisecond)
	g.Close()
	wg.Wait()
	close(results)
	acked := 0
	for err := range results {
		switch {
		case err == nil:
			acked++
		case !errors.Is(err, ErrClosed):
			t.Fatal(err)
		}
	}
	if h := history(t, base, "c"); len(h) != acked {
		t.Fatalf("%d stored, %d acked", len(h), acked)
	}
	late := turn("late", "c", 1)
	if err := g.Append(context.Background(), &late); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	g.Close()
}

// queueTurns starts one Append per rec while the committer is busy with a
// slow blocker, waits until all are queued (so they form one batch), and
// returns their errors once done.
func queueTurns(t *testing.T, g *GroupCommitter, recs []TurnRecord) []error {
	t.Helper()
	var wg sync.WaitGroup
	blocker := turn("blocker", "b", 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.Append(context.Background(), &blocker); err != nil {
			t.Error(err)
		}
	}()
	for queued := -1; queued != 0; { // the blocker is taken off the queue
		time.Sleep(time.Millisecond)
		g.mu.Lock()
		queued = len(g.queue)
		g.mu.Unlock()
	}
	errs := make([]error, len(recs))
	for i := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.Append(context.Background(), &recs[i])
		}()
	}
	for queued := 0; queued != len(recs); {
		time.Sleep(time.Millisecond)
		g.mu.Lock()
		queued = len(g.queue)
		g.mu.Unlock()
	}
	wg.Wait()
	return errs
}

// TestGroupCommitterSplitsFailedBatch: invalid records fail alone and the
// rest of their batch commits again as one batch; a failure the store does
// not attribute to a record is retried turn by turn so only the turn that
// causes it fails.
func TestGroupCommitterSplitsFailedBatch(t *testing.T) {
	base, _ := openSQLite(t)
	boom := errors.New("constraint failed")
	rs := &recordingStore{Store: base, delay: 20 * time.Millisecond, fail: func(turns []TurnRecord) error {
		for _, r := range turns {
			if r.RequestID == "poison" {
				return boom
			}
		}
		return nil
	}}
	g := NewGroupCommitter(rs, 0)
	defer g.Close()

	recs := make([]TurnRecord, 10)
	for i := range recs {
		recs[i] = turn(fmt.Sprintf("r%d", i), "c", 1)
	}
	recs[2].ConversationID = ""
	recs[7].Meta = []byte("{not json")
	errs := queueTurns(t, g, recs)
	for i, err := range errs {
		bad := i == 2 || i == 7
		var re *RecordError
		if bad != errors.As(err, &re) || (!bad && err != nil) {
			t.Fatalf("caller %d: %v", i, err)
		}
		if bad && (re.Index != 0 || re.RequestID != recs[i].RequestID || !errors.Is(err, ErrInvalidRecord)) {
			t.Fatalf("caller %d: %#v, want its own record named at index 0", i, re)
		}
		if !bad && recs[i].Seq == 0 {
			t.Fatalf("caller %d: no seq", i)
		}
	}
	if got := fmt.Sprint(rs.batches); got != "[1 10 8]" {
		t.Fatalf("batches %s, want [1 10 8]: the 8 valid turns commit together", got)
	}

	rs.batches = nil
	recs = make([]TurnRecord, 6)
	for i := range recs {
		recs[i] = turn(fmt.Sprintf("s%d", i), "c", 1)
	}
	recs[4].RequestID = "poison"
	errs = queueTurns(t, g, recs)
	for i, err := range errs {
		if (i == 4) != errors.Is(err, boom) || (i != 4 && err != nil) {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if got := fmt.Sprint(rs.batches); got != "[1 6 1 1 1 1 1 1]" {
		t.Fatalf("batches %s, want the batch of 6 then each alone", got)
	}
	if h := history(t, base, "c"); len(h) != 8+5 {
		t.Fatalf("%d messages stored, want 13", len(h))
	}
	verifyOK(t, base)
}

// Announced appends (Expect) share a batch: the committer waits for them,
// and for nothing else.
func TestGroupCommitterWaitsForAnnouncedAppends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	appendAsync := func(t *testing.T, f func(context.Context, *TurnRecord) error, rid string) chan error {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			rec := turn(rid, "c", 2)
			done <- f(ctx, &rec)
		}()
		return done
	}
	t.Run("announced turns join one batch", func(t *testing.T) {
		base, _ := openSQLite(t)
		rs := &recordingStore{Store: base}
		g := NewGroupCommitter(rs, 0)
		defer g.Close()
		g.SetMaxLinger(time.Hour) // only the arrivals end the wait
		a, b, c := g.Expect(), g.Expect(), g.Expect()
		errA := appendAsync(t, a.Append, "r1")
		errB := appendAsync(t, b.Append, "r2")
		c.Cancel() // this caller will not append after all
		for _, ch := range []chan error{errA, errB} {
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
		}
		a.Cancel() // after Append: a no-op
		if rs.batches[0] != 2 || len(rs.batches) != 1 {
			t.Fatalf("batches %v, want one of 2", rs.batches)
		}
		if g.expected != 0 {
			t.Fatalf("%d appends still expected", g.expected)
		}
	})
	t.Run("nothing announced commits at once", func(t *testing.T) {
		base, _ := openSQLite(t)
		g := NewGroupCommitter(base, 0)
		defer g.Close()
		g.SetMaxLinger(time.Hour)
		if err := <-appendAsync(t, g.Append, "r1"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an announced turn that never comes delays a batch by the linger only", func(t *testing.T) {
		base, _ := openSQLite(t)
		rs := &recordingStore{Store: base}
		g := NewGroupCommitter(rs, 0)
		defer g.Close()
		g.SetMaxLinger(20 * time.Millisecond)
		stuck := g.Expect()
		defer stuck.Cancel()
		for _, rid := range []string{"r1", "r2"} { // each batch waits once
			if err := <-appendAsync(t, g.Append, rid); err != nil {
				t.Fatal(err)
			}
		}
		if len(rs.batches) != 2 {
			t.Fatalf("batches %v", rs.batches)
		}
	})
	t.Run("close flushes a waiting batch", func(t *testing.T) {
		base, _ := openSQLite(t)
		g := NewGroupCommitter(base, 0)
		g.SetMaxLinger(time.Hour)
		stuck := g.Expect()
		a := g.Expect()
		errA := appendAsync(t, a.Append, "r1")
		// Close once r1 is queued (the loop then waits for stuck).
		for {
			g.mu.Lock()
			n := len(g.queue)
			g.mu.Unlock()
			if n == 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errA; err != nil {
			t.Fatalf("queued turn: %v", err)
		}
		if h := history(t, base, "c"); len(h) != 2 {
			t.Fatalf("%d messages stored, want 2", len(h))
		}
		stuck.Cancel()
		if err := stuck.Append(ctx, &TurnRecord{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("append after close: %v", err)
		}
	})
}
