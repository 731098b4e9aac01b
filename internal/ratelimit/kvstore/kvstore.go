// Package kvstore implements [ratelimit.Store] on a NATS JetStream key-value
// bucket, so that every guard replica shares one set of token buckets.
//
//	js, _ := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
//	kv, _ := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "RATELIMIT", History: 1, TTL: lim.StateTTL()})
//	lim, _ := ratelimit.New(cfg, kvstore.New(kv), nil)
//
// It uses the nats.go jetstream API (jetstream.KeyValue) the way it used
// the legacy JetStreamContext: ctx is checked before each call, and the
// call itself keeps ctx's values but not its cancellation (a started write
// completes), bounded by the JetStream client's default timeout
// (jetstream.WithDefaultTimeout, the legacy MaxWait). Create and Update are
// compare-and-swap (expected last subject sequence), which is all the
// limiter relies on; Get may read a stale value, which can only cause a
// conflict (and a retry) or a conservative rejection.
//
// Errors map to the ratelimit sentinels: key not found or deleted ->
// ErrNotFound; key exists / wrong last sequence -> ErrConflict; anything
// else (timeouts, closed or reconnecting connection, no responders) wraps
// ErrUnavailable and keeps the NATS error.
//
// Use a bucket with History 1 and a TTL of at least Limiter.StateTTL so that
// idle users' buckets disappear (state stays bounded).
package kvstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentbus/agentbus/internal/ratelimit"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket agentbus keeps the shared rate-limit state in:
// guard replicas write it, ingest reads it (a pre-check before a request
// is stored).
const Bucket = "agentbus_ratelimit"

// Store is a ratelimit.Store on a jetstream.KeyValue bucket. It is safe for
// concurrent use.
type Store struct {
	kv jetstream.KeyValue
}

var _ ratelimit.Store = (*Store)(nil)

// New returns a Store on kv.
func New(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

// Get implements ratelimit.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	ctx = context.WithoutCancel(ctx)
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return nil, 0, mapErr("get", key, err)
	}
	return e.Value(), e.Revision(), nil
}

// Create implements ratelimit.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ctx = context.WithoutCancel(ctx)
	rev, err := s.kv.Create(ctx, key, value)
	if err != nil {
		return 0, mapErr("create", key, err)
	}
	return rev, nil
}

// Update implements ratelimit.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ctx = context.WithoutCancel(ctx)
	rev, err := s.kv.Update(ctx, key, value, revision)
	if err != nil {
		return 0, mapErr("update", key, err)
	}
	return rev, nil
}

// mapErr translates a jetstream KV error into the ratelimit sentinels.
func mapErr(op, key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return ratelimit.ErrNotFound
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return ratelimit.ErrConflict
	case errors.Is(err, jetstream.ErrInvalidKey):
		return fmt.Errorf("ratelimit/kvstore: %s %q: %w", op, key, err)
	default:
		return fmt.Errorf("%w: kv %s %q: %w", ratelimit.ErrUnavailable, op, key, err)
	}
}
