// Package kvstore implements [apikey.Store] on a NATS JetStream key-value
// bucket: one JSON [apikey.Record] per key id, so every ingest replica sees
// a new key at once and a revocation within the Verifier's cache TTL.
//
//	js, _ := jetstream.New(nc)
//	kv, _ := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "APIKEYS", History: 5})
//	store := kvstore.New(kv)
//	v, _ := apikey.NewVerifier(store, apikey.VerifierConfig{})
//
// It uses the nats.go jetstream API (jetstream.KeyValue) the way it used
// the legacy JetStreamContext: ctx is checked before each call, and the
// call itself keeps ctx's values but not its cancellation (a started write
// completes), bounded by the JetStream client's default timeout
// (jetstream.WithDefaultTimeout, the legacy MaxWait). Put is a KV Create
// (never overwrites); Revoke is a compare-and-swap loop, so concurrent
// revocations and writes are not lost. Errors: ErrNotFound and ErrExists as
// the Store contract says, anything else from NATS wraps
// apikey.ErrUnavailable.
package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket agentbus keeps API key records in (hashes only).
const Bucket = "agentbus_apikeys"

// Store is an apikey.Store on a jetstream.KeyValue bucket. It is safe for
// concurrent use.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

var _ apikey.Store = (*Store)(nil)

// New returns a Store on kv.
func New(kv jetstream.KeyValue) *Store { return &Store{kv: kv, now: time.Now} }

// Put implements apikey.Store.
func (s *Store) Put(ctx context.Context, rec apikey.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rec.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.kv.Create(context.WithoutCancel(ctx), rec.ID, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: %s", apikey.ErrExists, rec.ID)
		}
		return unavailable("put", err)
	}
	return nil
}

// Get implements apikey.Store.
func (s *Store) Get(ctx context.Context, id string) (apikey.Record, error) {
	rec, _, err := s.get(ctx, id)
	return rec, err
}

func (s *Store) get(ctx context.Context, id string) (apikey.Record, uint64, error) {
	if err := ctx.Err(); err != nil {
		return apikey.Record{}, 0, err
	}
	if !apikey.ValidID(id) { // also keeps wildcards out of KV subjects
		return apikey.Record{}, 0, apikey.ErrNotFound
	}
	e, err := s.kv.Get(context.WithoutCancel(ctx), id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return apikey.Record{}, 0, apikey.ErrNotFound
	case err != nil:
		return apikey.Record{}, 0, unavailable("get", err)
	}
	var rec apikey.Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return apikey.Record{}, 0, fmt.Errorf("apikey/kvstore: record %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// List implements apikey.Store.
func (s *Store) List(ctx context.Context) ([]apikey.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids, err := s.kv.Keys(ctx)
	switch {
	case errors.Is(err, jetstream.ErrNoKeysFound):
		return []apikey.Record{}, nil
	case err != nil:
		return nil, unavailable("list", err)
	}
	out := make([]apikey.Record, 0, len(ids))
	for _, id := range ids {
		rec, err := s.Get(ctx, id)
		if errors.Is(err, apikey.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	apikey.SortRecords(out)
	return out, nil
}

// Revoke implements apikey.Store.
func (s *Store) Revoke(ctx context.Context, id string) error {
	for range 10 {
		rec, rev, err := s.get(ctx, id)
		if err != nil {
			return err
		}
		if rec.Revoked {
			return nil
		}
		b, err := json.Marshal(apikey.MarkRevoked(rec, s.now()))
		if err != nil {
			return err
		}
		_, err = s.kv.Update(context.WithoutCancel(ctx), id, b, rev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return unavailable("revoke", err)
		}
	}
	return fmt.Errorf("%w: revoke %s: too many concurrent updates", apikey.ErrUnavailable, id)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: kv %s: %w", apikey.ErrUnavailable, op, err)
}
