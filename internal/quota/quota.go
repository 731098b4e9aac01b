package quota

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// ErrQuotaExceeded is wrapped by every *ExceededError.
var ErrQuotaExceeded = errors.New("quota exceeded")

// ErrInvalidConfig is wrapped by every Config.Validate error.
var ErrInvalidConfig = errors.New("invalid quota config")

// Limit names one of the four daily limits.
type Limit string

// The limits, in the order Check tests them.
const (
	UserRequests  Limit = "user_requests"
	UserTokens    Limit = "user_tokens"
	ModelRequests Limit = "model_requests"
	ModelTokens   Limit = "model_tokens"
)

// Scopes of Entry.
const (
	ScopeUser  = "user"
	ScopeModel = "model"
)

// ExceededError says which limit a request hit and when it resets. It
// wraps ErrQuotaExceeded.
type ExceededError struct {
	Limit Limit
	// Key is the user or the model the limit applies to.
	Key string
	// Used and Max are today's count and the limit.
	Used, Max int64
	// Reset is the next UTC midnight, when the window starts afresh.
	Reset time.Time
	// RetryAfter is Reset minus the time of the check.
	RetryAfter time.Duration
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("quota exceeded: %s %q used %d of %d today (resets %s)", e.Limit, e.Key, e.Used, e.Max, e.Reset.Format(time.RFC3339))
}

// Unwrap returns ErrQuotaExceeded.
func (e *ExceededError) Unwrap() error { return ErrQuotaExceeded }

// Config sets daily limits. A limit of 0 means unlimited.
type Config struct {
	// PerUserRequests is the requests one user may make per UTC day.
	// Default 0 (unlimited).
	PerUserRequests int64 `json:"per_user_requests,omitempty"`
	// PerUserTokens is the tokens one user may use per UTC day. Default 0.
	PerUserTokens int64 `json:"per_user_tokens,omitempty"`
	// PerModelRequests is the requests all users together may make to one
	// model per UTC day. Default 0.
	PerModelRequests int64 `json:"per_model_requests,omitempty"`
	// PerModelTokens is the tokens all users together may use on one model
	// per UTC day. Default 0.
	PerModelTokens int64 `json:"per_model_tokens,omitempty"`
	// MaxUsers bounds the users tracked; the least recently used is
	// forgotten beyond it (and starts afresh). Default 100,000.
	MaxUsers int `json:"max_users,omitempty"`
	// MaxModels bounds the models tracked, likewise. Default 1,000.
	MaxModels int `json:"max_models,omitempty"`
	// DegradedRatio is the fraction of a limit at which Degraded reports
	// true. Default 0.8.
	DegradedRatio float64 `json:"degraded_ratio,omitempty"`
}

// Defaults of Config.
const (
	DefaultMaxUsers      = 100_000
	DefaultMaxModels     = 1_000
	DefaultDegradedRatio = 0.8
)

// WithDefaults returns c with zero bounds set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MaxUsers == 0 {
		c.MaxUsers = DefaultMaxUsers
	}
	if c.MaxModels == 0 {
		c.MaxModels = DefaultMaxModels
	}
	if c.DegradedRatio == 0 {
		c.DegradedRatio = DefaultDegradedRatio
	}
	return c
}

// Validate reports every negative field and a DegradedRatio outside
// (0, 1], joined.
func (c Config) Validate() error {
	var errs []error
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%w: %s must not be negative (0 = unlimited)", ErrInvalidConfig, name))
		}
	}
	neg("per_user_requests", c.PerUserRequests)
	neg("per_user_tokens", c.PerUserTokens)
	neg("per_model_requests", c.PerModelRequests)
	neg("per_model_tokens", c.PerModelTokens)
	neg("max_users", int64(c.MaxUsers))
	neg("max_models", int64(c.MaxModels))
	if c.DegradedRatio < 0 || c.DegradedRatio > 1 {
		errs = append(errs, fmt.Errorf("%w: degraded_ratio must be in (0, 1]", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// counter is one key's usage on one UTC day.
type counter struct {
	day      int64 // days since the Unix epoch, UTC
	requests int64
	tokens   int64
}

// Entry is one tracked counter, as reported by Usage.
type Entry struct {
	// Scope is ScopeUser or ScopeModel.
	Scope string `json:"scope"`
	// Key is the user or model name.
	Key string `json:"key"`
	// Requests and Tokens are today's counts.
	Requests int64 `json:"requests"`
	Tokens   int64 `json:"tokens"`
	// RequestLimit and TokenLimit are the limits (0 = unlimited).
	RequestLimit int64 `json:"request_limit,omitempty"`
	TokenLimit   int64 `json:"token_limit,omitempty"`
	// Reset is the next UTC midnight.
	Reset time.Time `json:"reset"`
}

// Quota counts requests and tokens per user and per model per UTC day. It
// is safe for concurrent use.
type Quota struct {
	cfg Config
	now func() time.Time

	mu     sync.Mutex
	users  *simplelru.LRU[string, *counter]
	models *simplelru.LRU[string, *counter]
	// hot holds the keys of counters that reached DegradedRatio today, so
	// Degraded does not scan every user.
	hot    map[hotKey]struct{}
	hotDay int64
}

type hotKey struct {
	scope, key string
}

// New returns an empty Quota. now is the clock (nil: time.Now).
func New(cfg Config, now func() time.Time) (*Quota, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if now == nil {
		now = time.Now
	}
	users, err := simplelru.NewLRU[string, *counter](cfg.MaxUsers, nil)
	if err != nil {
		return nil, err
	}
	models, err := simplelru.NewLRU[string, *counter](cfg.MaxModels, nil)
	if err != nil {
		return nil, err
	}
	return &Quota{cfg: cfg, now: now, users: users, models: models, hot: map[hotKey]struct{}{}}, nil
}

// Config returns the effective configuration.
func (q *Quota) Config() Config { return q.cfg }

func dayOf(t time.Time) int64 {
	s := t.Unix()
	d := s / 86400
	if s%86400 < 0 {
		d--
	}
	return d
}

func resetOf(day int64) time.Time { return time.Unix((day+1)*86400, 0).UTC() }

// today returns the counter's usage today (zero if it is from an earlier
// day or absent).
func today(c *counter, ok bool, day int64) (requests, tokens int64) {
	if !ok || c.day != day {
		return 0, 0
	}
	return c.requests, c.tokens
}

// check returns the first limit user/model has reached. Caller holds mu.
func (q *Quota) check(user, model string, now time.Time) error {
	day := dayOf(now)
	uc, uok := q.users.Peek(user)
	mc, mok := q.models.Peek(model)
	ur, ut := today(uc, uok, day)
	mr, mt := today(mc, mok, day)
	for _, c := range []struct {
		limit     Limit
		key       string
		used, max int64
	}{
		{UserRequests, user, ur, q.cfg.PerUserRequests},
		{UserTokens, user, ut, q.cfg.PerUserTokens},
		{ModelRequests, model, mr, q.cfg.PerModelRequests},
		{ModelTokens, model, mt, q.cfg.PerModelTokens},
	} {
		if c.max > 0 && c.used >= c.max {
			reset := resetOf(day)
			return &ExceededError{Limit: c.limit, Key: c.key, Used: c.used, Max: c.max, Reset: reset, RetryAfter: reset.Sub(now)}
		}
	}
	return nil
}

// Check reports whether user may make a request to model now: nil, or an
// *ExceededError (wrapping ErrQuotaExceeded) naming the first limit reached
// (user requests, user tokens, model requests, model tokens). It changes
// nothing. Check then Record is not atomic: concurrent requests can pass
// Check together; use Admit to check and count a request in one step.
func (q *Quota) Check(user, model string) error {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.check(user, model, now)
}

// Admit checks like Check and, if allowed, counts the request at once, so
// concurrent callers can never exceed a request limit. Report the tokens
// later with AddTokens.
func (q *Quota) Admit(user, model string) error {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.check(user, model, now); err != nil {
		return err
	}
	q.add(user, model, 1, 0, now)
	return nil
}

// Record counts one request by user to model that used tokens tokens
// (negative counts as 0).
func (q *Quota) Record(user, model string, tokens int64) {
	q.addLocked(user, model, 1, tokens)
}

// AddTokens counts tokens for a request already counted by Admit.
func (q *Quota) AddTokens(user, model string, tokens int64) {
	q.addLocked(user, model, 0, tokens)
}

func (q *Quota) addLocked(user, model string, requests, tokens int64) {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.add(user, model, requests, max(tokens, 0), now)
}

// add bumps both counters, resetting any from an earlier day. Caller holds mu.
func (q *Quota) add(user, model string, requests, tokens int64, now time.Time) {
	day := dayOf(now)
	if q.hotDay != day {
		clear(q.hot)
		q.hotDay = day
	}
	bump := func(l *simplelru.LRU[string, *counter], scope, key string, reqLimit, tokLimit int64) {
		c, ok := l.Get(key)
		if !ok {
			c = &counter{day: day}
			l.Add(key, c)
		}
		if c.day != day {
			*c = counter{day: day}
		}
		c.requests += requests
		c.tokens += tokens
		if q.near(c.requests, reqLimit) || q.near(c.tokens, tokLimit) {
			q.hot[hotKey{scope, key}] = struct{}{}
		}
	}
	bump(q.users, ScopeUser, user, q.cfg.PerUserRequests, q.cfg.PerUserTokens)
	bump(q.models, ScopeModel, model, q.cfg.PerModelRequests, q.cfg.PerModelTokens)
}

func (q *Quota) near(used, limit int64) bool {
	return limit > 0 && float64(used) >= q.cfg.DegradedRatio*float64(limit)
}

// Degraded reports whether any counter tracked today is at or above
// DegradedRatio (default 80%) of its limit. It costs O(hot counters), not
// O(users).
func (q *Quota) Degraded() bool {
	day := dayOf(q.now())
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hotDay != day {
		return false
	}
	for k := range q.hot {
		l, rl, tl := q.users, q.cfg.PerUserRequests, q.cfg.PerUserTokens
		if k.scope == ScopeModel {
			l, rl, tl = q.models, q.cfg.PerModelRequests, q.cfg.PerModelTokens
		}
		c, ok := l.Peek(k.key)
		if !ok || c.day != day {
			delete(q.hot, k) // evicted
			continue
		}
		if q.near(c.requests, rl) || q.near(c.tokens, tl) {
			return true
		}
	}
	return false
}

// Usage returns today's counters, models first, then users, each sorted by
// key. Counters from earlier days are left out.
func (q *Quota) Usage() []Entry {
	now := q.now()
	day := dayOf(now)
	reset := resetOf(day)
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Entry
	collect := func(l *simplelru.LRU[string, *counter], scope string, rl, tl int64) {
		start := len(out)
		for _, k := range l.Keys() {
			c, _ := l.Peek(k)
			if c.day != day {
				continue
			}
			out = append(out, Entry{Scope: scope, Key: k, Requests: c.requests, Tokens: c.tokens, RequestLimit: rl, TokenLimit: tl, Reset: reset})
		}
		part := out[start:]
		sort.Slice(part, func(i, j int) bool { return part[i].Key < part[j].Key })
	}
	collect(q.models, ScopeModel, q.cfg.PerModelRequests, q.cfg.PerModelTokens)
	collect(q.users, ScopeUser, q.cfg.PerUserRequests, q.cfg.PerUserTokens)
	return out
}
