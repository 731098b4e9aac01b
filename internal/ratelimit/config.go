package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// DefaultMaxKeys bounds the in-memory [MemoryStore] that [New] creates when it
// is given no Store.
const DefaultMaxKeys = 100_000

// DefaultMaxRetries bounds how often [Limiter.Allow] re-reads and retries after
// a compare-and-swap conflict before it gives up with [ErrContention].
const DefaultMaxRetries = 16

// Limit is one token bucket: Rate tokens are added every Per, and the bucket
// holds at most Burst tokens. A full bucket lets Burst tokens be spent at
// once; after that spending is limited to Rate per Per.
//
// The zero Limit is disabled (no limit).
type Limit struct {
	// Rate is how many tokens are added per Per. Default 0: the bucket is
	// disabled and never rejects.
	Rate float64
	// Per is the period of Rate. Default time.Second.
	Per time.Duration
	// Burst is the size of the bucket. Default max(Rate, 1).
	Burst float64
}

// PerSecond returns a limit of n tokens per second with a burst of n.
func PerSecond(n float64) Limit { return Limit{Rate: n, Per: time.Second, Burst: n} }

// PerMinute returns a limit of n tokens per minute with a burst of n (the
// usual "requests per minute" or "tokens per minute").
func PerMinute(n float64) Limit { return Limit{Rate: n, Per: time.Minute, Burst: n} }

// PerHour returns a limit of n tokens per hour with a burst of n.
func PerHour(n float64) Limit { return Limit{Rate: n, Per: time.Hour, Burst: n} }

// WithBurst returns l with its bucket size set to b.
func (l Limit) WithBurst(b float64) Limit { l.Burst = b; return l }

// Enabled reports whether l limits anything (Rate > 0).
func (l Limit) Enabled() bool { return l.Rate > 0 }

// String formats l as "10/1m0s burst 20".
func (l Limit) String() string {
	if !l.Enabled() {
		return "unlimited"
	}
	s := l.spec()
	return fmt.Sprintf("%g/%s burst %g", l.Rate, l.per(), s.capacity)
}

func (l Limit) per() time.Duration {
	if l.Per <= 0 {
		return time.Second
	}
	return l.Per
}

func (l Limit) spec() spec {
	if !l.Enabled() {
		return spec{}
	}
	b := l.Burst
	if b == 0 {
		b = math.Max(l.Rate, 1)
	}
	return spec{capacity: b, perNano: l.Rate / float64(l.per())}
}

func (l Limit) validate(field string) error {
	var errs []error
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	if bad(l.Rate) {
		errs = append(errs, fmt.Errorf("%s.Rate: %g must be a finite number >= 0", field, l.Rate))
	}
	if bad(l.Burst) {
		errs = append(errs, fmt.Errorf("%s.Burst: %g must be a finite number >= 0", field, l.Burst))
	}
	if l.Per < 0 {
		errs = append(errs, fmt.Errorf("%s.Per: %s must not be negative", field, l.Per))
	}
	if !l.Enabled() && l.Burst > 0 {
		errs = append(errs, fmt.Errorf("%s: Burst %g without a Rate (set Rate > 0, or leave both zero for no limit)", field, l.Burst))
	}
	return errors.Join(errs...)
}

// TierLimits are the two buckets of one tier: requests (spent by
// [Request.Cost]) and LLM tokens (spent by [Request.Tokens]). Either may be
// the zero Limit (unlimited).
type TierLimits struct {
	// Requests limits the request rate (e.g. PerMinute(60) = 60 RPM).
	// Default: unlimited.
	Requests Limit
	// Tokens limits the estimated LLM tokens (e.g. PerMinute(90_000) TPM).
	// Default: unlimited.
	Tokens Limit
}

func (t TierLimits) validate(field string) error {
	return errors.Join(t.Requests.validate(field+".Requests"), t.Tokens.validate(field+".Tokens"))
}

// KeyLimits are the per-API-key limits carried by a request (see
// [Request.Overrides]): requests per minute and tokens per minute, with a
// burst of one minute's worth. 0 means no per-key limit for that resource.
type KeyLimits struct {
	RPM, TPM int
}

func (k KeyLimits) tier() TierLimits {
	var t TierLimits
	if k.RPM > 0 {
		t.Requests = PerMinute(float64(k.RPM))
	}
	if k.TPM > 0 {
		t.Tokens = PerMinute(float64(k.TPM))
	}
	return t
}

// Config configures a [Limiter]. Four tiers are checked for every request,
// each with a requests bucket and a tokens bucket:
//
//	global    one bucket pair shared by every request
//	endpoint  one pair per Request.Endpoint
//	user      one pair per Request.User
//	key       one pair per Request.KeyID, only when Request.Overrides is set
//
// A request is admitted only if every enabled bucket has enough tokens, and
// then it is charged to all of them.
type Config struct {
	// Global limits all requests together. Default: unlimited.
	Global TierLimits
	// Endpoint is the limit of each endpoint. Default: unlimited.
	Endpoint TierLimits
	// Endpoints replaces Endpoint for the named endpoints (both of its
	// limits: a zero Limit there means unlimited). Default: none.
	Endpoints map[string]TierLimits
	// User is the limit of each user. Default: unlimited.
	User TierLimits
	// Users replaces User for the named users (both of its limits: a zero
	// Limit there means unlimited). Default: none.
	Users map[string]TierLimits
	// FailOpen admits requests (Decision.Degraded set) when the Store is
	// unreachable. Default false: fail closed, Allow returns an error
	// wrapping ErrUnavailable.
	FailOpen bool
	// MaxKeys bounds the MemoryStore that New creates when it is given a
	// nil Store. Default DefaultMaxKeys (100_000).
	MaxKeys int
	// MaxRetries bounds the compare-and-swap retries of one Allow.
	// Default DefaultMaxRetries (16).
	MaxRetries int
	// KeyPrefix starts every Store key; letters, digits, '-' and '_'.
	// Default "rl".
	KeyPrefix string
}

// Validate reports every problem of c, joined.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, c.Global.validate("Global"), c.Endpoint.validate("Endpoint"), c.User.validate("User"))
	for name, t := range c.Endpoints {
		errs = append(errs, t.validate(fmt.Sprintf("Endpoints[%q]", name)))
	}
	for name, t := range c.Users {
		errs = append(errs, t.validate(fmt.Sprintf("Users[%q]", name)))
	}
	if c.MaxKeys < 0 {
		errs = append(errs, fmt.Errorf("MaxKeys: %d must not be negative", c.MaxKeys))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("MaxRetries: %d must not be negative", c.MaxRetries))
	}
	if strings.Trim(c.KeyPrefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
		errs = append(errs, fmt.Errorf("KeyPrefix: %q may hold only letters, digits, '-' and '_'", c.KeyPrefix))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "rl"
	}
	return c
}

// spec is a Limit normalised for the hot path. The zero spec is disabled.
type spec struct {
	capacity float64 // Burst
	perNano  float64 // tokens added per nanosecond
}

func (s spec) enabled() bool { return s.perNano > 0 }

// fullAfter is how long an empty bucket (or one in debt down to -capacity)
// takes to refill.
func (s spec) fullAfter() time.Duration {
	if !s.enabled() {
		return 0
	}
	return time.Duration(math.Ceil(2 * s.capacity / s.perNano))
}
