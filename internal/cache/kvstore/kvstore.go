// Package kvstore implements [cache.Store] on a NATS JetStream key-value
// bucket, so that every llm replica shares one response cache and a
// cluster replicates it. No other server is needed.
//
//	st, _ := kvstore.Open(js, kvstore.DefaultConfig(), log)
//	c := cache.New(st, cache.Config{}, log)
//
// The bucket is bounded three ways: entries expire after TTL, an entry
// above MaxEntryBytes is not stored (ErrTooLarge), and when the bucket
// reaches MaxBytes or MaxEntries the oldest entries are dropped to make
// room (the bucket's stream discards old messages, where a KV bucket
// normally refuses new ones).
//
// It uses the nats.go jetstream API the way it used the legacy
// JetStreamContext: ctx is checked before each call, and the call itself
// keeps ctx's values but not its cancellation (a started write completes),
// bounded by the JetStream client's default timeout
// (jetstream.WithDefaultTimeout, the legacy MaxWait).
package kvstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentbus/agentbus/internal/cache"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of the response cache. Only the llm stage's
// identity may read or write it.
const Bucket = "agentbus_llm_cache"

// Config bounds the cache bucket.
type Config struct {
	// TTL is how long an answer stays cached. Default 1h.
	TTL time.Duration
	// MaxBytes bounds the whole bucket; the oldest entries go first.
	// Default 256 MiB.
	MaxBytes int64
	// MaxEntries bounds the number of entries; the oldest go first.
	// Default 100,000.
	MaxEntries int64
	// MaxEntryBytes is the largest answer cached (encoded); larger ones
	// are not. Default 1 MiB.
	MaxEntryBytes int32
	// Replicas of the bucket (match the streams). Default 1.
	Replicas int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{TTL: time.Hour, MaxBytes: 256 << 20, MaxEntries: 100_000, MaxEntryBytes: 1 << 20, Replicas: 1}
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.TTL < time.Second {
		errs = append(errs, fmt.Errorf("cache.ttl must be at least 1s, got %s", c.TTL))
	}
	if c.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("cache.max_bytes must be at least 1 MiB, got %d", c.MaxBytes))
	}
	if c.MaxEntries < 1 {
		errs = append(errs, fmt.Errorf("cache.max_entries must be positive, got %d", c.MaxEntries))
	}
	if c.MaxEntryBytes < 1024 || int64(c.MaxEntryBytes) > c.MaxBytes {
		errs = append(errs, fmt.Errorf("cache.max_entry_bytes must be 1 KiB..max_bytes, got %d", c.MaxEntryBytes))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("cache.replicas must be 1..5, got %d", c.Replicas))
	}
	return errors.Join(errs...)
}

// Store is a cache.Store on a KV bucket.
type Store struct {
	kv  jetstream.KeyValue
	max int
}

var _ cache.Store = (*Store)(nil)

// Open provisions the cache bucket and returns a Store on it. The bucket
// is created as a cache (its stream drops the oldest entries when full,
// where a KV bucket refuses new ones) in one step: a stage identity may
// create streams, not update them. An existing bucket whose limits differ
// is updated where the identity may; otherwise the difference is logged
// and the bucket is used as it is (an operator or `agentbus serve`
// applies it).
func Open(js jetstream.JetStream, c Config, log *slog.Logger) (*Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	want := streamConfig(c)
	err := pipeline.Provision(func() error {
		ctx := context.Background() // the client's default timeout bounds each call
		stream, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil // created meanwhile by another replica
			}
			return err
		}
		if err != nil {
			return err
		}
		sc := stream.CachedInfo().Config
		if sc.Discard == want.Discard && sc.MaxMsgs == want.MaxMsgs && sc.MaxBytes == want.MaxBytes && sc.MaxAge == want.MaxAge && sc.MaxMsgSize == want.MaxMsgSize {
			return nil
		}
		sc.Discard, sc.MaxMsgs, sc.MaxBytes, sc.MaxAge, sc.MaxMsgSize, sc.Duplicates = want.Discard, want.MaxMsgs, want.MaxBytes, want.MaxAge, want.MaxMsgSize, want.Duplicates
		uctx, ucancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer ucancel()
		if _, err := js.UpdateStream(uctx, sc); err != nil && log != nil {
			log.Warn("response cache limits differ from this process's and could not be updated; running with the bucket as it is",
				"bucket", Bucket, "err", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache bucket %s: %w", Bucket, err)
	}
	kv, err := js.KeyValue(context.Background(), Bucket)
	if err != nil {
		return nil, fmt.Errorf("cache bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv, max: int(c.MaxEntryBytes)}, nil
}

// streamConfig is the bucket's stream: a KV bucket's (as nats.go creates
// them: one value per key, rollups, direct gets) that discards old
// entries.
func streamConfig(c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + Bucket,
		Description:       "agentbus response cache",
		Subjects:          []string{"$KV." + Bucket + ".>"},
		MaxMsgsPerSubject: 1,
		MaxMsgs:           c.MaxEntries,
		MaxBytes:          c.MaxBytes,
		MaxAge:            c.TTL,
		MaxMsgSize:        c.MaxEntryBytes,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        min(c.TTL, 2*time.Minute),
		MaxConsumers:      -1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardOld,
	}
}

// Get implements cache.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, cache.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cache get: %w", err)
	}
	return e.Value(), nil
}

// Put implements cache.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The stream's own limit counts the subject and headers too: keep a
	// margin so an entry near the limit is refused here, clearly.
	if len(value)+512 > s.max {
		return cache.ErrTooLarge
	}
	ctx = context.WithoutCancel(ctx)
	if _, err := s.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("cache put: %w", err)
	}
	return nil
}
