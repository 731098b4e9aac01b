// Package cache is the llm stage's response cache: a provider's answer,
// stored under a key made of everything that determines it, so that the
// same request asked again is answered without paying a provider.
//
//	c := cache.New(store, cache.Config{Shared: false}, log)
//	if read, write := cache.Decide(turn.Cache, req.Params); read || write {
//		key := c.Key(turn.User, req)
//		if resp, ok := c.Get(ctx, key); ok && read { ... answered ... }
//		resp := callProvider(req)
//		c.Put(ctx, key, resp)
//	}
//
// Guarantees:
//   - only what determines an answer is in the key: the model asked for,
//     the messages after history and pruning, the tools offered, every
//     sampling and format parameter, and the tenant (the authenticated
//     user) unless the operator shares the cache; two requests that
//     differ in any of these never share an entry;
//   - a model call is cached only when it is deterministic (an explicit
//     temperature of 0) or the client asked for the cache explicitly;
//   - the cache can fail without failing a turn: an unreachable or
//     missing store is a miss, a failed write is logged, and the provider
//     answers;
//   - the answer stored is the provider's answer exactly (its usage too):
//     a hit is answered, stored in the conversation and audited like any
//     other turn.
//
// The package holds no NATS: Store is implemented on a JetStream KV
// bucket by package kvstore.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/messages"
)

// ErrNotFound is what a Store returns for a key it does not hold (or that
// expired).
var ErrNotFound = errors.New("cache: not found")

// ErrTooLarge is what a Store returns for an entry above its size limit;
// the answer is simply not cached.
var ErrTooLarge = errors.New("cache: entry too large")

// Store keeps entries under keys, with an expiry of its own.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
}

// Entry is one cached answer.
type Entry struct {
	Response provider.Response `json:"response"`
	StoredAt time.Time         `json:"stored_at"`
}

// Config configures the cache.
type Config struct {
	// Shared lets every tenant (authenticated user) share entries: the
	// same request from two users is paid once. Default false: entries
	// are per tenant.
	Shared bool
}

// Cache looks answers up and stores them. It is safe for concurrent use.
type Cache struct {
	store Store
	cfg   Config
	log   *slog.Logger
}

// New returns a cache on store.
func New(store Store, cfg Config, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{store: store, cfg: cfg, log: log}
}

// Decide says whether a model call of a turn with cache request c and
// parameters p may be answered from the cache (read) and stored (write).
// A nil c never uses the cache; a call that is not deterministic (no
// explicit temperature 0) is cached only when the client asked
// explicitly; Refresh writes without reading.
func Decide(c *messages.CacheRequest, p messages.Params) (read, write bool) {
	if c == nil {
		return false, false
	}
	deterministic := p.Temperature != nil && *p.Temperature == 0
	if !deterministic && !c.Explicit {
		return false, false
	}
	return !c.Refresh, true
}

// keyVersion changes when the key's contents change, so that an upgrade
// never serves an entry computed another way.
const keyVersion = 1

// Key is the cache key of req for tenant: the hex SHA-256 of a canonical
// encoding of everything that determines the answer; "" when req cannot
// be encoded (then it is not cached).
func (c *Cache) Key(tenant string, req provider.Request) string {
	if c.cfg.Shared {
		tenant = ""
	}
	k := struct {
		V        int                 `json:"v"`
		Tenant   string              `json:"tenant"`
		Model    string              `json:"model"`
		Messages []messages.Message  `json:"messages"`
		Tools    []provider.ToolSpec `json:"tools"`
		Params   messages.Params     `json:"params"`
		User     string              `json:"user"`
	}{keyVersion, tenant, req.Model, req.Messages, req.Tools, req.Params, req.EndUser()}
	// encoding/json writes struct fields in order and map keys sorted:
	// the same request always encodes the same way.
	b, err := json.Marshal(k)
	if err != nil {
		return "" // unencodable parts (never from a decoded turn): not cached
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Get returns the answer stored under key. Anything but a clean hit (not
// found, expired, the store unreachable, an entry that cannot be read) is
// a miss; only the unexpected ones are logged.
func (c *Cache) Get(ctx context.Context, key string) (provider.Response, bool) {
	b, err := c.store.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			c.log.Warn("response cache unavailable; calling the provider", "err", err)
		}
		return provider.Response{}, false
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		c.log.Warn("unreadable response cache entry; calling the provider", "err", err)
		return provider.Response{}, false
	}
	return e.Response, true
}

// Put stores resp under key. A failure is logged, never returned: the
// answer is already the client's.
func (c *Cache) Put(ctx context.Context, key string, resp provider.Response) {
	b, err := json.Marshal(Entry{Response: resp, StoredAt: time.Now().UTC()})
	if err == nil {
		err = c.store.Put(ctx, key, b)
	}
	switch {
	case errors.Is(err, ErrTooLarge):
		c.log.Debug("answer too large for the response cache", "bytes", len(b))
	case err != nil:
		c.log.Warn("response cache write failed", "err", err)
	}
}

// Cacheable reports whether a provider's answer may be stored: a complete
// answer (not cut by a content filter) with content or tool calls.
func Cacheable(resp provider.Response) bool {
	switch resp.FinishReason {
	case "content_filter":
		return false
	}
	return resp.Message.Content != "" || len(resp.Message.ToolCalls) > 0 || resp.Message.Refusal != ""
}
