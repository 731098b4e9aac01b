package apikey

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// MaxCacheTTL is the longest a Verifier may trust a cached record: a
// revocation takes effect within this time.
const MaxCacheTTL = time.Second

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// CacheTTL is how long a valid key's record is reused without asking
	// the Store again; a revocation takes effect within CacheTTL. At most
	// MaxCacheTTL (1s). Default 500ms; negative disables the cache.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached records. Default 10_000.
	CacheSize int
	// Now tells the time (for the cache). Default time.Now.
	Now func() time.Time
}

// Validate reports every problem of c, joined.
func (c VerifierConfig) Validate() error {
	var errs []error
	if c.CacheTTL > MaxCacheTTL {
		errs = append(errs, fmt.Errorf("CacheTTL: %s exceeds %s (revocation must take effect within it)", c.CacheTTL, MaxCacheTTL))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("CacheSize: %d must not be negative", c.CacheSize))
	}
	return errors.Join(errs...)
}

// Verifier authenticates API keys against a Store. It is safe for
// concurrent use.
//
// It caches the records of keys that verified (never failures, so a new key
// works at once) for CacheTTL, so a revoked key is refused within CacheTTL
// (at most one second) on every replica. Unknown ids always reach the
// Store.
type Verifier struct {
	store Store
	ttl   time.Duration
	now   func() time.Time
	mu    sync.Mutex
	cache *simplelru.LRU[string, cached]
}

type cached struct {
	rec   Record
	until time.Time
}

// NewVerifier returns a Verifier on store.
func NewVerifier(store Store, cfg VerifierConfig) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w verifier config: %w", ErrInvalid, err)
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 500 * time.Millisecond
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{store: store, ttl: cfg.CacheTTL, now: cfg.Now}
	if v.ttl > 0 {
		c, err := simplelru.NewLRU[string, cached](cfg.CacheSize, nil)
		if err != nil {
			return nil, err
		}
		v.cache = c
	}
	return v, nil
}

// Verify authenticates an HTTP Authorization header value ("Bearer <key>",
// scheme case-insensitive) and returns the key's record.
//
// Errors (none contains the key): ErrMissing (no header, not Bearer, empty
// token), ErrMalformedPrefix / ErrMalformedLength / ErrMalformedCharset,
// ErrUnknown (no such id, or wrong secret), ErrRevoked, or an error
// wrapping ErrUnavailable when the Store fails.
func (v *Verifier) Verify(ctx context.Context, authorization string) (Record, error) {
	h := strings.TrimSpace(authorization)
	if h == "" {
		return Record{}, ErrMissing
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Record{}, fmt.Errorf("%w (the Authorization scheme must be Bearer)", ErrMissing)
	}
	return v.VerifyKey(ctx, strings.TrimSpace(token))
}

// VerifyKey authenticates a bare key (e.g. from a NATS header); errors as
// Verify.
func (v *Verifier) VerifyKey(ctx context.Context, key string) (Record, error) {
	id, err := Parse(key)
	if err != nil {
		return Record{}, err
	}
	rec, hit := v.lookup(id)
	if !hit {
		rec, err = v.store.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			return Record{}, ErrUnknown
		case err != nil:
			if errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
				return Record{}, err
			}
			return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if rec.ID != id || !rec.Matches(key) {
		return Record{}, ErrUnknown
	}
	if rec.Revoked {
		return Record{}, ErrRevoked
	}
	if !hit {
		v.remember(rec)
	}
	return rec, nil
}

func (v *Verifier) lookup(id string) (Record, bool) {
	if v.cache == nil {
		return Record{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cache.Get(id)
	if !ok {
		return Record{}, false
	}
	if !v.now().Before(c.until) {
		v.cache.Remove(id)
		return Record{}, false
	}
	return clone(c.rec), true
}

func (v *Verifier) remember(rec Record) {
	if v.cache == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cache.Add(rec.ID, cached{rec: clone(rec), until: v.now().Add(v.ttl)})
}
