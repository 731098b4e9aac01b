package ratelimit

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Errors. Store implementations return ErrNotFound, ErrConflict and errors
// wrapping ErrUnavailable; [Limiter] returns errors wrapping ErrUnavailable
// and ErrInvalid.
var (
	// ErrNotFound: Store.Get found no value for the key.
	ErrNotFound = errors.New("ratelimit: key not found")
	// ErrConflict: Store.Create found the key already present, or
	// Store.Update was given a revision that is no longer the latest.
	ErrConflict = errors.New("ratelimit: revision conflict")
	// ErrUnavailable: the Store could not be reached or did not answer.
	ErrUnavailable = errors.New("ratelimit: state store unavailable")
	// ErrContention wraps ErrUnavailable: too many compare-and-swap
	// conflicts in a row (Config.MaxRetries).
	ErrContention = errors.Join(ErrUnavailable, errors.New("ratelimit: too much contention on the state store"))
	// ErrRateLimited is wrapped by [*RateLimitError] (see [Decision.Err]).
	ErrRateLimited = errors.New("rate limit exceeded")
	// ErrInvalid: a Request or Config that cannot be used.
	ErrInvalid = errors.New("ratelimit: invalid")
)

// Store holds the buckets' state with compare-and-swap semantics, so that
// several Limiters (guard replicas) can share it. Keys are made of letters,
// digits and "-_=." (safe as NATS KV keys). Revisions are chosen by the
// Store; a key's revision changes on every write and is never 0.
//
// Implementations must be safe for concurrent use. The kvstore subpackage
// implements Store on a NATS JetStream KV bucket; [MemoryStore] in memory.
type Store interface {
	// Get returns the latest value of key and its revision, or ErrNotFound.
	Get(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Create stores value under key if key does not exist, else returns
	// ErrConflict.
	Create(ctx context.Context, key string, value []byte) (revision uint64, err error)
	// Update stores value under key if revision is still key's latest
	// revision, else returns ErrConflict.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// MemoryStore is a Store for a single process, bounded to a number of keys:
// when full, the least recently used key is forgotten (its bucket starts
// full again, which only matters for a key idle for less than its refill
// time; size MaxKeys above the number of users active within that time).
// Revisions increase monotonically across all keys, so a forgotten and
// re-created key never reuses a revision.
type MemoryStore struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, memEntry]
	rev uint64
}

type memEntry struct {
	val []byte
	rev uint64
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns a MemoryStore holding at most maxKeys keys
// (DefaultMaxKeys if maxKeys <= 0).
func NewMemoryStore(maxKeys int) *MemoryStore {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l, err := simplelru.NewLRU[string, memEntry](maxKeys, nil)
	if err != nil { // only for size <= 0
		panic(err)
	}
	return &MemoryStore{lru: l}
}

// Len returns the number of keys held.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// Get implements Store.
func (m *MemoryStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lru.Get(key)
	if !ok {
		return nil, 0, ErrNotFound
	}
	return append([]byte(nil), e.val...), e.rev, nil
}

// Create implements Store.
func (m *MemoryStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lru.Contains(key) {
		return 0, ErrConflict
	}
	m.rev++
	m.lru.Add(key, memEntry{val: append([]byte(nil), value...), rev: m.rev})
	return m.rev, nil
}

// Update implements Store.
func (m *MemoryStore) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lru.Peek(key)
	if !ok || e.rev != revision {
		return 0, ErrConflict
	}
	m.rev++
	m.lru.Add(key, memEntry{val: append([]byte(nil), value...), rev: m.rev})
	return m.rev, nil
}
