package quota

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/agentbus/agentbus/internal/ratelimit"
)

// Shared enforces the same daily limits as Quota, with the counters in a
// compare-and-swap Store shared by every llm replica (the rate limiter's
// Store: a JetStream KV bucket in production), so N replicas allow the
// configured quota, not N times it.
//
// Each counter is one key per user (or model) per UTC day, so a window
// resets by moving to a new key; old keys expire with the bucket's TTL
// (use at least 48h).
type Shared struct {
	cfg   Config
	store ratelimit.Store
	now   func() time.Time
	// seen keeps the latest values this process read, for Degraded.
	mu   sync.Mutex
	seen map[string]sharedCounter
}

type sharedCounter struct {
	Requests int64 `json:"requests"`
	Tokens   int64 `json:"tokens"`
}

// NewShared returns a Shared quota over store; now nil means time.Now.
func NewShared(cfg Config, store ratelimit.Store, now func() time.Time) (*Shared, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, fmt.Errorf("%w: a store is required", ErrInvalidConfig)
	}
	if now == nil {
		now = time.Now
	}
	return &Shared{cfg: cfg.WithDefaults(), store: store, now: now, seen: map[string]sharedCounter{}}, nil
}

// sharedRetries bounds compare-and-swap attempts per counter update.
const sharedRetries = 32

func sharedKey(scope, name string, day int64) string {
	h := sha256.Sum256([]byte(name))
	return "quota." + scope + "." + hex.EncodeToString(h[:12]) + "." + strconv.FormatInt(day, 10)
}

// update applies fn to the counter at key with compare-and-swap; fn
// returns an error to leave the counter unchanged.
func (s *Shared) update(ctx context.Context, key string, fn func(c *sharedCounter) error) error {
	for range sharedRetries {
		var c sharedCounter
		raw, rev, err := s.store.Get(ctx, key)
		switch {
		case errors.Is(err, ratelimit.ErrNotFound):
			rev = 0
		case err != nil:
			return fmt.Errorf("quota store: %w", err)
		default:
			if err := json.Unmarshal(raw, &c); err != nil {
				return fmt.Errorf("quota counter %s is corrupt: %w", key, err)
			}
		}
		if err := fn(&c); err != nil {
			s.remember(key, c)
			return err
		}
		b, _ := json.Marshal(c)
		if rev == 0 {
			_, err = s.store.Create(ctx, key, b)
		} else {
			_, err = s.store.Update(ctx, key, b, rev)
		}
		if errors.Is(err, ratelimit.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("quota store: %w", err)
		}
		s.remember(key, c)
		return nil
	}
	return fmt.Errorf("quota store: %w: too many concurrent updates", ratelimit.ErrContention)
}

func (s *Shared) remember(key string, c sharedCounter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) > 10_000 {
		clear(s.seen) // only a hint for Degraded; keep it bounded
	}
	s.seen[key] = c
}

// Admit checks the user's and the model's counters and counts the request
// in both, or returns an *ExceededError. A request refused by the model's
// limit is taken back from the user's counter.
func (s *Shared) Admit(ctx context.Context, user, model string) error {
	now := s.now()
	day := dayOf(now)
	exceeded := func(limit Limit, key string, used, max int64) error {
		reset := resetOf(day)
		return &ExceededError{Limit: limit, Key: key, Used: used, Max: max, Reset: reset, RetryAfter: reset.Sub(now)}
	}
	uk, mk := sharedKey(ScopeUser, user, day), sharedKey(ScopeModel, model, day)
	err := s.update(ctx, uk, func(c *sharedCounter) error {
		if m := s.cfg.PerUserRequests; m > 0 && c.Requests >= m {
			return exceeded(UserRequests, user, c.Requests, m)
		}
		if m := s.cfg.PerUserTokens; m > 0 && c.Tokens >= m {
			return exceeded(UserTokens, user, c.Tokens, m)
		}
		c.Requests++
		return nil
	})
	if err != nil {
		return err
	}
	err = s.update(ctx, mk, func(c *sharedCounter) error {
		if m := s.cfg.PerModelRequests; m > 0 && c.Requests >= m {
			return exceeded(ModelRequests, model, c.Requests, m)
		}
		if m := s.cfg.PerModelTokens; m > 0 && c.Tokens >= m {
			return exceeded(ModelTokens, model, c.Tokens, m)
		}
		c.Requests++
		return nil
	})
	if err != nil {
		if rerr := s.update(ctx, uk, func(c *sharedCounter) error { c.Requests--; return nil }); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return nil
}

// AddTokens records the tokens a call used on both counters.
func (s *Shared) AddTokens(ctx context.Context, user, model string, tokens int64) error {
	if tokens <= 0 {
		return nil
	}
	day := dayOf(s.now())
	add := func(c *sharedCounter) error { c.Tokens += tokens; return nil }
	return errors.Join(s.update(ctx, sharedKey(ScopeUser, user, day), add), s.update(ctx, sharedKey(ScopeModel, model, day), add))
}

// Degraded reports whether a counter this process saw today is at or above
// DegradedRatio of its limit.
func (s *Shared) Degraded() bool {
	day := strconv.FormatInt(dayOf(s.now()), 10)
	s.mu.Lock()
	defer s.mu.Unlock()
	near := func(used, limit int64) bool {
		return limit > 0 && float64(used) >= s.cfg.DegradedRatio*float64(limit)
	}
	for k, c := range s.seen {
		if len(k) < len(day) || k[len(k)-len(day):] != day {
			continue
		}
		if isUserKey(k) {
			if near(c.Requests, s.cfg.PerUserRequests) || near(c.Tokens, s.cfg.PerUserTokens) {
				return true
			}
		} else if near(c.Requests, s.cfg.PerModelRequests) || near(c.Tokens, s.cfg.PerModelTokens) {
			return true
		}
	}
	return false
}

func isUserKey(k string) bool { return len(k) > 11 && k[:11] == "quota.user." }
