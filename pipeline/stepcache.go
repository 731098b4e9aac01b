package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// StepCache records the result of a step with side effects (a model call,
// a tool run) in a JetStream KV bucket before the step's event is
// published, so a redelivered message reuses the result instead of doing
// the work again (a redelivery never re-bills the model or re-runs a tool).
//
// A step runs once: Lease gives one runner the right to do its work while a
// redelivered copy elsewhere waits; a failed step is recorded like a
// successful one (the caller records its outcome, whatever it is). Reads and
// writes retry transient errors (a KV leader election in a cluster) until
// the caller's context ends, so a paid-for answer is not lost because its
// record could not be written at the first try.
type StepCache struct {
	kv nats.KeyValue
	id string
}

// limit is the largest value the bucket takes: the bus's max payload, less
// room for headers.
func (c *StepCache) limit() int { return MaxPayload - eventHeadroom }

// NewStepCache opens (or creates) the bucket.
func NewStepCache(js nats.JetStreamContext, bucket string, ttl time.Duration, replicas int) (*StepCache, error) {
	kv, err := EnsureKV(js, nats.KeyValueConfig{Bucket: bucket, Description: "agentbus step results for idempotent redelivery", TTL: ttl, History: 1, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &StepCache{kv: kv, id: host + "/" + strconv.Itoa(os.Getpid())}, nil
}

// ErrStepTooLarge is returned by Get for a step whose result was too large
// to record (Put stored a marker instead): the step is done, and failed;
// it must not run again.
var ErrStepTooLarge = errors.New("step result too large for the bus")

// ErrStepBusy is returned by Lease when another runner holds the step: the
// message is handed back (NAKed with a delay), not counted as a failure.
var ErrStepBusy = errors.New("step is running elsewhere")

// tooLargeMarker is what Put records for a result that does not fit.
type tooLargeMarker struct {
	TooLarge int `json:"agentbus_step_too_large"`
}

// retryKV runs f until it succeeds, fails for good, or ctx ends.
func retryKV(ctx context.Context, f func() error) error {
	wait := 50 * time.Millisecond
	for {
		err := f()
		if err == nil || !transient(err) && !errors.Is(err, nats.ErrNoStreamResponse) {
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

// Get loads the result of key into v; found is false when there is none.
// A step whose result did not fit is found, with ErrStepTooLarge.
func (c *StepCache) Get(ctx context.Context, key string, v any) (found bool, err error) {
	var e nats.KeyValueEntry
	err = retryKV(ctx, func() error {
		var err error
		e, err = c.kv.Get(key)
		return err
	})
	if errors.Is(err, nats.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("step cache get %s: %w", key, err)
	}
	var m tooLargeMarker
	if json.Unmarshal(e.Value(), &m) == nil && m.TooLarge > 0 {
		return true, fmt.Errorf("%w (%d bytes)", ErrStepTooLarge, m.TooLarge)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("step cache entry %s is corrupt: %w", key, err)
	}
	return true, nil
}

// Put records the result of key. A result too large for the bus is
// recorded as a marker, and Put returns ErrStepTooLarge: the work is not
// repeated on a redelivery (Get returns ErrStepTooLarge too).
func (c *StepCache) Put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tooLarge := false
	if limit := c.limit(); len(b) > limit {
		b, _ = json.Marshal(tooLargeMarker{TooLarge: len(b)})
		tooLarge = true
	}
	if err := retryKV(ctx, func() error { _, err := c.kv.Put(key, b); return err }); err != nil {
		return fmt.Errorf("step cache put %s: %w", key, err)
	}
	if tooLarge {
		return fmt.Errorf("%w (limit %d)", ErrStepTooLarge, c.limit())
	}
	return nil
}

// lease is the value of a step's lease key.
type lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// leaseTTL is how long a lease lives without renewal: a holder renews it
// every leaseTTL/3 while it works, so a holder that died (kill -9) loses
// it within leaseTTL, before its message is redelivered (the default ack
// wait is 30s).
const leaseTTL = 20 * time.Second

// Lease takes the right to run key's work. It returns ErrStepBusy (with
// how long the holder's lease still runs) when another runner holds a live
// lease; an expired lease (its holder died) is taken over. The lease is
// renewed while held, for at most max; call release when the step's
// result is recorded.
func (c *StepCache) Lease(ctx context.Context, key string, max time.Duration) (release func(), err error) {
	lk := key + ".lease"
	mine, _ := json.Marshal(lease{Holder: c.id, Expires: time.Now().Add(leaseTTL)})
	var rev uint64
	err = retryKV(ctx, func() error {
		r, err := c.kv.Create(lk, mine)
		if err == nil {
			rev = r
			return nil
		}
		if !errors.Is(err, nats.ErrKeyExists) {
			return err
		}
		e, gerr := c.kv.Get(lk)
		if errors.Is(gerr, nats.ErrKeyNotFound) {
			return nats.ErrTimeout // released meanwhile: try to create again
		}
		if gerr != nil {
			return gerr
		}
		var l lease
		if json.Unmarshal(e.Value(), &l) == nil && time.Now().Before(l.Expires) {
			return &busyError{until: l.Expires}
		}
		r, err = c.kv.Update(lk, mine, e.Revision())
		if err != nil {
			return nats.ErrTimeout // someone else took it over: look again
		}
		rev = r
		return nil
	})
	if err != nil {
		return func() {}, err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		until := time.Now().Add(max)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if time.Now().After(until) {
					return
				}
				b, _ := json.Marshal(lease{Holder: c.id, Expires: time.Now().Add(leaseTTL)})
				r, err := c.kv.Update(lk, b, rev)
				if err != nil {
					return // lost it (taken over): the holder's record decides
				}
				rev = r
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		// Released even when the caller's context ended.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = retryKV(ctx, func() error {
			err := c.kv.Delete(lk, nats.LastRevision(rev))
			if err != nil && !transient(err) {
				return nil // not ours any more: fine
			}
			return err
		})
	}, nil
}

type busyError struct{ until time.Time }

func (e *busyError) Error() string {
	return fmt.Sprintf("%v until %s", ErrStepBusy, e.until.Format(time.RFC3339Nano))
}
func (e *busyError) Unwrap() error { return ErrStepBusy }

// Retry says how long to wait before trying the step again.
func (e *busyError) Retry() time.Duration { return max(time.Until(e.until), 100*time.Millisecond) }
