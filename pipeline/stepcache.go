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

// Get loads the result of key into v; found is false when there is none.
func (c *StepCache) Get(key string, v any) (found bool, err error) {
	e, err := c.kv.Get(key)
	if errors.Is(err, nats.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("step cache get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("step cache entry %s is corrupt: %w", key, err)
	}
	return true, nil
}

// Put records the result of key.
func (c *StepCache) Put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := c.kv.Put(key, b); err != nil {
		return fmt.Errorf("step cache put %s: %w", key, err)
	}
	return nil
}
