package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// StepCache records the result of a step with side effects (a model call,
// a tool run) in a JetStream KV bucket before the step's event is
// published, so a redelivered message reuses the result instead of doing
// the work again (a redelivery never re-bills the model or re-runs a tool).
type StepCache struct{ kv nats.KeyValue }

// limit is the largest value the bucket takes: the bus's max payload, less
// room for headers.
func (c *StepCache) limit() int { return MaxPayload - eventHeadroom }

// NewStepCache opens (or creates) the bucket.
func NewStepCache(js nats.JetStreamContext, bucket string, ttl time.Duration, replicas int) (*StepCache, error) {
	kv, err := js.KeyValue(bucket)
	if errors.Is(err, nats.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(&nats.KeyValueConfig{Bucket: bucket, Description: "agentbus step results for idempotent redelivery", TTL: ttl, History: 1, Replicas: max(replicas, 1)})
	}
	if err != nil {
		return nil, fmt.Errorf("step cache %s: %w", bucket, err)
	}
	return &StepCache{kv: kv}, nil
}

// ErrStepTooLarge is returned by Get for a step whose result was too large
// to record (Put stored a marker instead): the step is done, and failed;
// it must not run again.
var ErrStepTooLarge = errors.New("step result too large for the bus")

// tooLargeMarker is what Put records for a result that does not fit.
type tooLargeMarker struct {
	TooLarge int `json:"agentbus_step_too_large"`
}

// Get loads the result of key into v; found is false when there is none.
// A step whose result did not fit is found, with ErrStepTooLarge.
func (c *StepCache) Get(key string, v any) (found bool, err error) {
	e, err := c.kv.Get(key)
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
func (c *StepCache) Put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if limit := c.limit(); len(b) > limit {
		m, _ := json.Marshal(tooLargeMarker{TooLarge: len(b)})
		if _, err := c.kv.Put(key, m); err != nil {
			return fmt.Errorf("step cache put %s: %w", key, err)
		}
		return fmt.Errorf("%w (%d bytes, limit %d)", ErrStepTooLarge, len(b), limit)
	}
	if _, err := c.kv.Put(key, b); err != nil {
		return fmt.Errorf("step cache put %s: %w", key, err)
	}
	return nil
}
