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
			for i := range tc.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := g.Append(context.Background(), turn(fmt.Sprintf("r%d", i), "c", 2)); err != nil {
						t.Error(err)
						return
					}
					ok.Add(1)
				}()
			}
			wg.Wait()
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
	if err := g.Append(ctx, turn("r1", "c", 1)); !errors.Is(err, boom) {
		t.Fatalf("Append = %v, want the store's error", err)
	}
	down.Store(false)
	// One bad record fails only its own caller.
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := turn(fmt.Sprintf("r%d", i), "c", 1)
			if i == 3 {
				r.ConversationID = ""
			}
			errs[i] = g.Append(ctx, r)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 3) != errors.Is(err, ErrInvalidRecord) || (i != 3 && err != nil) {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if h := history(t, base, "c"); len(h) != 9 {
		t.Fatalf("%d messages, want 9", len(h))
	}
	// A caller that gives up gets its context's error.
	rs.delay = 50 * time.Millisecond
	cctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if err := g.Append(cctx, turn("slow", "c", 1)); !errors.Is(err, context.DeadlineExceeded) {
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
			results <- g.Append(context.Background(), turn(fmt.Sprintf("r%d", i), "c", 1))
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
	if err := g.Append(context.Background(), turn("late", "c", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	g.Close()
}
