package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StepCache records the result of a step with side effects (a model call,
// a tool run) in a JetStream KV bucket before the step's event is
// published, so a redelivered message reuses the result instead of doing
// the work again (a redelivery never re-bills the model or re-runs a tool).
//
// A step runs once: Begin gives one runner the right to do its work (a
// lease in the step's key) while a redelivered copy elsewhere waits, and
// the runner's Put replaces the lease with the result; a failed step is
// recorded like a successful one (the caller records its outcome,
// whatever it is). Reads and
// writes retry transient errors (a KV leader election in a cluster) until
// the caller's context ends, so a paid-for answer is not lost because its
// record could not be written at the first try.
type StepCache struct {
	kv jetstream.KeyValue
	id string
}

// limit is the largest value the bucket takes: the bus's max payload, less
// room for headers.
func (c *StepCache) limit() int { return MaxPayload - eventHeadroom }

// NewStepCache opens (or creates) the bucket.
func NewStepCache(js jetstream.KeyValueManager, bucket string, ttl time.Duration, replicas int) (*StepCache, error) {
	kv, err := EnsureKV(js, jetstream.KeyValueConfig{Bucket: bucket, Description: "agentbus step results for idempotent redelivery", TTL: ttl, History: 1, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &StepCache{kv: kv, id: host + "/" + strconv.Itoa(os.Getpid())}, nil
}

// ErrStepTooLarge is returned by Begin for a step whose result was too
// large to record (Put stored a marker instead): the step is done, and
// failed; it must not run again.
var ErrStepTooLarge = errors.New("step result too large for the bus")

// ErrStepBusy is returned by Begin when another runner holds the step: the
// message is handed back (NAKed with a delay), not counted as a failure.
var ErrStepBusy = errors.New("step is running elsewhere")

// tooLargeMarker is what Put records for a result that does not fit.
type tooLargeMarker struct {
	TooLarge int `json:"agentbus_step_too_large"`
}

// retryKV runs f until it succeeds, fails for good, or ctx ends. As with
// the legacy API, an attempt keeps ctx's values but not its cancellation,
// and the JetStream client's default timeout bounds it: a write that
// records a paid-for result completes even when the handler's deadline
// passes meanwhile, and a request lost to a leader election is retried.
func retryKV(ctx context.Context, f func(ctx context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		err := f(context.WithoutCancel(ctx))
		if err == nil || !transient(err) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// lease is a step's value while it runs: its holder and until when the
// holder is presumed alive.
type lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// leasePrefix starts a lease value. It is not JSON, so an older agentbus
// reading the key as a result fails (and retries) instead of taking a
// lease for an empty answer.
const leasePrefix = "lease:"

// leaseTTL is how long a lease lives without renewal: a holder renews it
// every leaseTTL/3 while it works, so a holder that died (kill -9) loses
// it within leaseTTL, before its message is redelivered (the default ack
// wait is 30s).
var leaseTTL = 20 * time.Second // a variable for tests

// Claim is the right to run one step, taken by Begin: the step's key
// holds the holder's lease (renewed while it works) until Put replaces it
// with the result, or Release gives it up.
type Claim struct {
	c    *StepCache
	key  string
	mu   sync.Mutex
	rev  uint64
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// put is set once Put ran: Release is then a no-op.
	put bool
}

// Begin starts the step key: when its result is recorded, it is loaded
// into v and found is true (a step whose result did not fit is found,
// with ErrStepTooLarge); otherwise the caller gets the step's claim and
// must run the work and Put its outcome (or Release it). Another runner's
// live claim is ErrStepBusy (with how long it still runs); an expired one
// (its holder died) is taken over. The claim is renewed while held, for at
// most max.
//
// The happy path is one KV round trip (create the key with a lease) and
// Put one more: the lease and the result share the key.
func (c *StepCache) Begin(ctx context.Context, key string, max time.Duration, v any) (cl *Claim, found bool, err error) {
	mine := c.leaseValue()
	var rev uint64
	err = retryKV(ctx, func(ctx context.Context) error {
		r, err := c.kv.Create(ctx, key, mine)
		if err == nil {
			rev = r
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, gerr := c.kv.Get(ctx, key)
		if errors.Is(gerr, jetstream.ErrKeyNotFound) {
			return nats.ErrTimeout // released meanwhile: try to create again
		}
		if gerr != nil {
			return gerr
		}
		l, isLease := parseLease(e.Value())
		if !isLease {
			found = true
			return c.decode(key, e.Value(), v)
		}
		if time.Now().Before(l.Expires) {
			return &busyError{until: l.Expires}
		}
		r, err = c.kv.Update(ctx, key, mine, e.Revision())
		if err != nil {
			return nats.ErrTimeout // someone else took it over: look again
		}
		rev = r
		return nil
	})
	if err != nil || found {
		return nil, found, err
	}
	cl = &Claim{c: c, key: key, rev: rev, stop: make(chan struct{}), done: make(chan struct{})}
	go cl.renew(max)
	return cl, false, nil
}

func (c *StepCache) leaseValue() []byte {
	b, _ := json.Marshal(lease{Holder: c.id, Expires: time.Now().Add(leaseTTL)})
	return append([]byte(leasePrefix), b...)
}

func parseLease(b []byte) (lease, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(leasePrefix))
	if !ok {
		return lease{}, false
	}
	var l lease
	_ = json.Unmarshal(rest, &l) // unreadable: expired, taken over
	return l, true
}

// decode loads a recorded result into v.
func (c *StepCache) decode(key string, b []byte, v any) error {
	var m tooLargeMarker
	if json.Unmarshal(b, &m) == nil && m.TooLarge > 0 {
		return fmt.Errorf("%w (%d bytes)", ErrStepTooLarge, m.TooLarge)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("step cache entry %s is corrupt: %w", key, err)
	}
	return nil
}

func (cl *Claim) renew(max time.Duration) {
	defer close(cl.done)
	t := time.NewTicker(leaseTTL / 3)
	defer t.Stop()
	until := time.Now().Add(max)
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
			if time.Now().After(until) {
				return
			}
			cl.mu.Lock()
			r, err := cl.c.kv.Update(context.Background(), cl.key, cl.c.leaseValue(), cl.rev)
			if err == nil {
				cl.rev = r
			}
			cl.mu.Unlock()
			if err != nil {
				return // lost it (taken over): the last record decides
			}
		}
	}
}

func (cl *Claim) stopRenewing() {
	cl.once.Do(func() { close(cl.stop) })
	<-cl.done
}

// Put records the step's outcome in place of the lease. A result too
// large for the bus is recorded as a marker, and Put returns
// ErrStepTooLarge: the work is not repeated on a redelivery. A claim lost
// meanwhile (the holder stalled past its lease and another runner took
// over) still records: the last record decides, and the events both
// runners publish carry the same message id, so the stream keeps one.
func (cl *Claim) Put(ctx context.Context, v any) error {
	cl.stopRenewing()
	cl.put = true
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tooLarge := false
	if limit := cl.c.limit(); len(b) > limit {
		b, _ = json.Marshal(tooLargeMarker{TooLarge: len(b)})
		tooLarge = true
	}
	cl.mu.Lock()
	rev := cl.rev
	cl.mu.Unlock()
	err = retryKV(ctx, func(ctx context.Context) error {
		_, err := cl.c.kv.Update(ctx, cl.key, b, rev)
		if err != nil && !transient(err) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			_, err = cl.c.kv.Put(ctx, cl.key, b) // lost the claim: record anyway
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("step cache put %s: %w", cl.key, err)
	}
	if tooLarge {
		return fmt.Errorf("%w (limit %d)", ErrStepTooLarge, cl.c.limit())
	}
	return nil
}

// Release gives the claim up without a result (the step failed in a way
// a retry may fix), so that a redelivery runs it at once. It is a no-op
// after Put.
func (cl *Claim) Release() {
	if cl.put {
		return
	}
	cl.stopRenewing()
	cl.mu.Lock()
	rev := cl.rev
	cl.mu.Unlock()
	// Released even when the caller's context ended.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = retryKV(ctx, func(ctx context.Context) error {
		err := cl.c.kv.Delete(ctx, cl.key, jetstream.LastRevision(rev))
		if err != nil && !transient(err) {
			return nil // not ours any more: fine
		}
		return err
	})
}

type busyError struct{ until time.Time }

func (e *busyError) Error() string {
	return fmt.Sprintf("%v until %s", ErrStepBusy, e.until.Format(time.RFC3339Nano))
}
func (e *busyError) Unwrap() error { return ErrStepBusy }

// Retry says how long to wait before trying the step again.
func (e *busyError) Retry() time.Duration { return max(time.Until(e.until), 100*time.Millisecond) }
