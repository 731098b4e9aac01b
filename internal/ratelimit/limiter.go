package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// Clock tells the time; tests inject a fake one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Tier names, as reported in [Decision.Tier] and [Quota.Tier].
const (
	TierGlobal   = "global"
	TierEndpoint = "endpoint"
	TierUser     = "user"
	TierKey      = "key"
)

// Resource names, as reported in [Decision.Resource].
const (
	ResourceRequests = "requests"
	ResourceTokens   = "tokens"
)

// Request is what one call asks to spend.
type Request struct {
	// User selects the user tier (Config.User or Config.Users[User]).
	User string
	// Endpoint selects the endpoint tier (Config.Endpoint or
	// Config.Endpoints[Endpoint]).
	Endpoint string
	// KeyID identifies the API key for the key tier; required when
	// Overrides is set.
	KeyID string
	// Cost is spent from the requests buckets. Default 1.
	Cost float64
	// Tokens (estimated LLM tokens) are spent from the tokens buckets.
	// Default 0. Correct the estimate later with [Limiter.Reconcile].
	Tokens float64
	// Overrides are the API key's own limits (the key tier). nil: no key
	// tier. A key limit can only narrow what its user may do; to widen a
	// user's limit use Config.Users.
	Overrides *KeyLimits
}

func (r Request) amounts() (cost, tokens float64, err error) {
	cost, tokens = r.Cost, r.Tokens
	if math.IsNaN(cost) || math.IsInf(cost, 0) || cost < 0 {
		return 0, 0, fmt.Errorf("%w request: Cost %g must be a finite number >= 0", ErrInvalid, cost)
	}
	if math.IsNaN(tokens) || math.IsInf(tokens, 0) || tokens < 0 {
		return 0, 0, fmt.Errorf("%w request: Tokens %g must be a finite number >= 0", ErrInvalid, tokens)
	}
	if r.Overrides != nil && r.KeyID == "" {
		return 0, 0, fmt.Errorf("%w request: Overrides need a KeyID", ErrInvalid)
	}
	if cost == 0 {
		cost = 1
	}
	return cost, tokens, nil
}

// Quota describes one bucket for the caller: the most restrictive bucket of
// a resource, i.e. the one with the least remaining.
type Quota struct {
	// Tier is the bucket's tier; "" when no bucket limits the resource.
	Tier string
	// Limit is the bucket size (Burst).
	Limit float64
	// Remaining is what is left in the bucket now (negative while a
	// Reconcile debt is being paid back).
	Remaining float64
	// Reset is how long until the bucket is full again.
	Reset time.Duration
}

// Decision is the outcome of [Limiter.Allow].
type Decision struct {
	// Allowed reports whether the request was admitted and charged.
	Allowed bool
	// Degraded is set when the Store was unreachable and Config.FailOpen
	// admitted the request without a check: it says why.
	Degraded error
	// TooLarge: the request alone is larger than the rejecting bucket
	// (Limit); it can never be admitted, RetryAfter is 0.
	TooLarge bool
	// RetryAfter is when the rejected request would fit in every bucket,
	// if nothing else spends in the meantime.
	RetryAfter time.Duration
	// Tier and Resource name the bucket that rejected ("" when allowed).
	Tier, Resource string
	// Limit, Remaining and Reset describe the rejecting bucket, or, when
	// allowed, the most restrictive requests bucket (tokens if requests
	// are unlimited).
	Limit, Remaining float64
	Reset            time.Duration
	// Requests and Tokens are the most restrictive bucket of each
	// resource, after the request was charged (before, if rejected).
	Requests, Tokens Quota
}

// Headers returns the OpenAI-style rate-limit headers of d:
// x-ratelimit-{limit,remaining,reset}-{requests,tokens} for each limited
// resource, and retry-after (seconds, rounded up) and retry-after-ms when
// rejected with a RetryAfter.
func (d Decision) Headers() map[string]string {
	h := make(map[string]string, 8)
	put := func(res string, q Quota) {
		if q.Tier == "" {
			return
		}
		h["x-ratelimit-limit-"+res] = strconv.FormatFloat(q.Limit, 'f', -1, 64)
		h["x-ratelimit-remaining-"+res] = strconv.FormatFloat(math.Floor(math.Max(q.Remaining, 0)), 'f', 0, 64)
		h["x-ratelimit-reset-"+res] = q.Reset.Round(time.Millisecond).String()
	}
	put(ResourceRequests, d.Requests)
	put(ResourceTokens, d.Tokens)
	if !d.Allowed && d.RetryAfter > 0 {
		h["retry-after"] = strconv.FormatInt(int64(math.Ceil(d.RetryAfter.Seconds())), 10)
		h["retry-after-ms"] = strconv.FormatInt(int64(math.Ceil(float64(d.RetryAfter)/float64(time.Millisecond))), 10)
	}
	return h
}

// Err returns nil if d allowed the request, else a [*RateLimitError]
// (which wraps ErrRateLimited).
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &RateLimitError{Tier: d.Tier, Resource: d.Resource, Limit: d.Limit, RetryAfter: d.RetryAfter, TooLarge: d.TooLarge}
}

// RateLimitError is a rejection as an error; errors.Is(err, ErrRateLimited).
type RateLimitError struct {
	// Tier and Resource name the bucket that rejected.
	Tier, Resource string
	// Limit is that bucket's size.
	Limit float64
	// RetryAfter is when to try again (0 with TooLarge).
	RetryAfter time.Duration
	// TooLarge: the request can never fit.
	TooLarge bool
}

func (e *RateLimitError) Error() string {
	if e.TooLarge {
		return fmt.Sprintf("rate limit exceeded: request is larger than the %s %s limit (%g)", e.Tier, e.Resource, e.Limit)
	}
	return fmt.Sprintf("rate limit exceeded: %s %s limit (%g), retry after %s", e.Tier, e.Resource, e.Limit, e.RetryAfter.Round(time.Millisecond))
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

type tierSpec struct{ req, tok spec }

func (t TierLimits) spec() tierSpec { return tierSpec{t.Requests.spec(), t.Tokens.spec()} }

func (t tierSpec) enabled() bool { return t.req.enabled() || t.tok.enabled() }

// check is one tier's bucket pair for one request.
type check struct {
	tier string
	key  string
	spec tierSpec
}

// Limiter admits requests against token buckets kept in a Store. It is safe
// for concurrent use; several Limiters sharing one Store share the limits.
type Limiter struct {
	cfg       Config
	store     Store
	clock     Clock
	global    tierSpec
	endpoint  tierSpec
	user      tierSpec
	endpoints map[string]tierSpec
	users     map[string]tierSpec
	globalKey string
	local     bool               // store is a MemoryStore: no concurrent I/O
	stripes   [256]chan struct{} // ctx-aware mutexes (buffer 1)
}

// lockKeys locks the stripes of the keys of checks (in ascending order, so
// two callers never deadlock) and returns them for unlockKeys. It gives up
// with ctx's error when ctx ends first (a slow Store must not queue callers
// beyond their deadline).
func (l *Limiter) lockKeys(ctx context.Context, checks []check) (held [4]uint8, n int, err error) {
	for _, c := range checks {
		h := uint32(2166136261) // FNV-1a
		for i := 0; i < len(c.key); i++ {
			h = (h ^ uint32(c.key[i])) * 16777619
		}
		s := uint8(h)
		j := n
		for j > 0 && held[j-1] > s {
			j--
		}
		if j > 0 && held[j-1] == s {
			continue
		}
		copy(held[j+1:n+1], held[j:n])
		held[j] = s
		n++
	}
	for i, s := range held[:n] {
		select {
		case l.stripes[s] <- struct{}{}:
		case <-ctx.Done():
			l.unlockKeys(held, i)
			return held, 0, ctx.Err()
		}
	}
	return held, n, nil
}

func (l *Limiter) unlockKeys(held [4]uint8, n int) {
	for _, s := range held[:n] {
		<-l.stripes[s]
	}
}

// New returns a Limiter. A nil store means a new MemoryStore of
// cfg.MaxKeys keys (single process); a nil clock means the real clock.
func New(cfg Config, store Store, clock Clock) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w config: %w", ErrInvalid, err)
	}
	cfg = cfg.withDefaults()
	if store == nil {
		store = NewMemoryStore(cfg.MaxKeys)
	}
	if clock == nil {
		clock = realClock{}
	}
	_, local := store.(*MemoryStore)
	l := &Limiter{
		cfg: cfg, store: store, clock: clock,
		global: cfg.Global.spec(), endpoint: cfg.Endpoint.spec(), user: cfg.User.spec(),
		endpoints: make(map[string]tierSpec, len(cfg.Endpoints)),
		users:     make(map[string]tierSpec, len(cfg.Users)),
		globalKey: cfg.KeyPrefix + ".g",
		local:     local,
	}
	for i := range l.stripes {
		l.stripes[i] = make(chan struct{}, 1)
	}
	for k, v := range cfg.Endpoints {
		l.endpoints[k] = v.spec()
	}
	for k, v := range cfg.Users {
		l.users[k] = v.spec()
	}
	return l, nil
}

// StateTTL is how long a bucket's state must be kept after its last write:
// by then it is full again, so forgetting it changes no decision. Use it
// as the TTL (MaxAge) of a KV bucket holding the state.
func (l *Limiter) StateTTL() time.Duration {
	var d time.Duration
	all := []tierSpec{l.global, l.endpoint, l.user}
	for _, t := range l.endpoints {
		all = append(all, t)
	}
	for _, t := range l.users {
		all = append(all, t)
	}
	for _, t := range all {
		d = max(d, t.req.fullAfter(), t.tok.fullAfter())
	}
	return d
}

// KeyFor returns the Store key of a tier's bucket pair for name (ignored
// for TierGlobal). Names are hashed (SHA-256, base64url, 22 characters), so
// every key is a valid NATS KV key whatever the user or endpoint name.
func (l *Limiter) KeyFor(tier, name string) string {
	if tier == TierGlobal {
		return l.globalKey
	}
	sum := sha256.Sum256([]byte(name))
	return l.cfg.KeyPrefix + "." + tier[:1] + "." + base64.RawURLEncoding.EncodeToString(sum[:16])
}

// plan lists the enabled tiers of r from the most shared (global) to the
// most specific (key); Allow writes them in reverse.
func (l *Limiter) plan(r Request, buf []check) []check {
	if l.global.enabled() {
		buf = append(buf, check{TierGlobal, l.globalKey, l.global})
	}
	if t, ok := l.endpoints[r.Endpoint]; ok || l.endpoint.enabled() {
		if !ok {
			t = l.endpoint
		}
		if t.enabled() {
			buf = append(buf, check{TierEndpoint, l.KeyFor(TierEndpoint, r.Endpoint), t})
		}
	}
	if t, ok := l.users[r.User]; ok || l.user.enabled() {
		if !ok {
			t = l.user
		}
		if t.enabled() {
			buf = append(buf, check{TierUser, l.KeyFor(TierUser, r.User), t})
		}
	}
	if r.Overrides != nil {
		if t := r.Overrides.tier().spec(); t.enabled() {
			buf = append(buf, check{TierKey, l.KeyFor(TierKey, r.KeyID), t})
		}
	}
	return buf
}

type loaded struct {
	st  state
	rev uint64
}

// eps absorbs floating-point error in refills (1e-9 of a token).
const eps = 1e-9

// Allow checks r against every tier and, if every bucket has enough, takes
// r's cost and tokens from all of them atomically; a rejected request spends
// nothing.
//
// The algorithm (optimistic, multi-key compare-and-swap):
//
//  1. Read every bucket of r with its revision and refill it to now.
//  2. If any bucket lacks tokens, reject: nothing has been written.
//  3. Else write each bucket's new state with Update(key, state, revision)
//     (Create for a new key), one after the other, most specific tier
//     first (key, user, endpoint, global).
//  4. If a write fails with ErrConflict (another replica wrote since step
//     1), refund the buckets already written and start again from step 1,
//     after a short random backoff, at most Config.MaxRetries times.
//
// With a network Store the reads of step 1 are issued concurrently.
//
// Within one Limiter, calls that share a key take turns (striped locks held
// for the whole call): compare-and-swap then only arbitrates between
// processes, and concurrent callers of one process do not spend their
// retries conflicting with each other on a shared (global) key.
//
// Why it is safe: a bucket is only ever charged by a compare-and-swap whose
// new state was computed from the exact revision it replaces, so two
// writers can never both spend the same tokens, and no bucket is charged
// below what step 2 checked. A refund is itself a compare-and-swap loop on
// the latest revision (add back, capped at Burst), so it never overwrites
// anyone's charge. Between a partial charge and its refund other requests
// may see fewer tokens than there are and be rejected: errors only ever go
// towards rejecting, never towards admitting more than the limit. If the
// Store fails during a refund, those tokens stay spent (again the safe
// direction).
//
// Errors: ErrInvalid for a bad Request; an error wrapping ErrUnavailable
// when the Store is unreachable or contention exhausts the retries (unless
// Config.FailOpen, then the Decision is Allowed with Degraded set); the
// context's error if ctx ends.
func (l *Limiter) Allow(ctx context.Context, r Request) (Decision, error) {
	cost, tokens, err := r.amounts()
	if err != nil {
		return Decision{}, err
	}
	var cbuf [4]check
	checks := l.plan(r, cbuf[:0])
	if len(checks) == 0 {
		return Decision{Allowed: true}, nil
	}
	held, n, err := l.lockKeys(ctx, checks)
	if err != nil {
		return Decision{}, err
	}
	defer l.unlockKeys(held, n)
	var reads [4]loaded
	for attempt := 0; attempt <= l.cfg.MaxRetries; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return Decision{}, err
			}
		}
		now := l.clock.Now().UnixNano()
		var errs [4]error
		l.loadAll(ctx, checks, now, reads[:len(checks)], errs[:len(checks)])
		if err := errors.Join(errs[:len(checks)]...); err != nil {
			return l.unavailable(ctx, err)
		}
		if d, ok := decide(checks, reads[:len(checks)], cost, tokens); !ok {
			return d, nil
		}
		for i := range checks {
			reads[i].st.take(checks[i].spec, cost, tokens)
		}
		// Most specific tier first: a conflict on a busy shared key (global)
		// then only has to refund low-traffic keys (this user's), and a
		// conflict on the user's own key happens before anything is written.
		var charged [4]check
		n := 0
		var werr error
		for i := len(checks) - 1; i >= 0; i-- {
			if _, werr = l.write(ctx, checks[i].key, reads[i].st, reads[i].rev); werr != nil {
				break
			}
			charged[n] = checks[i]
			n++
		}
		if werr == nil {
			return allowed(checks, reads[:len(checks)]), nil
		}
		l.refund(ctx, charged[:n], cost, tokens)
		if !errors.Is(werr, ErrConflict) {
			return l.unavailable(ctx, werr)
		}
	}
	return l.unavailable(ctx, ErrContention)
}

// Peek answers what Allow would decide now without spending anything: one
// read per bucket, no write. A process that may only read the shared state
// (ingest) uses it to refuse a request its limits would reject before the
// request is stored; the decision that counts is still Allow's. Errors as
// Allow's, except that Peek never fails open: an unreachable Store is an
// error the caller decides about.
func (l *Limiter) Peek(ctx context.Context, r Request) (Decision, error) {
	cost, tokens, err := r.amounts()
	if err != nil {
		return Decision{}, err
	}
	var cbuf [4]check
	checks := l.plan(r, cbuf[:0])
	if len(checks) == 0 {
		return Decision{Allowed: true}, nil
	}
	var reads [4]loaded
	var errs [4]error
	l.loadAll(ctx, checks, l.clock.Now().UnixNano(), reads[:len(checks)], errs[:len(checks)])
	if err := errors.Join(errs[:len(checks)]...); err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if d, ok := decide(checks, reads[:len(checks)], cost, tokens); !ok {
		return d, nil
	}
	return allowed(checks, reads[:len(checks)]), nil
}

// Reconcile corrects the tokens buckets of r once the provider has reported
// the real usage: it charges actualTokens - r.Tokens (a refund when
// negative). A charge may leave a bucket in debt (down to -Burst), which
// later requests wait out. Each bucket is adjusted by its own
// compare-and-swap loop; the result is joined errors wrapping
// ErrUnavailable for buckets that could not be adjusted.
func (l *Limiter) Reconcile(ctx context.Context, r Request, actualTokens float64) error {
	if _, _, err := r.amounts(); err != nil {
		return err
	}
	if math.IsNaN(actualTokens) || math.IsInf(actualTokens, 0) || actualTokens < 0 {
		return fmt.Errorf("%w: actual tokens %g must be a finite number >= 0", ErrInvalid, actualTokens)
	}
	delta := actualTokens - r.Tokens
	if delta == 0 {
		return nil
	}
	var cbuf [4]check
	var errs []error
	for _, c := range l.plan(r, cbuf[:0]) {
		if !c.spec.tok.enabled() {
			continue
		}
		held, n, err := l.lockKeys(ctx, []check{c})
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		errs = append(errs, l.modify(ctx, c, func(st *state) {
			st.tok = math.Max(math.Min(st.tok-delta, c.spec.tok.capacity), -c.spec.tok.capacity)
		}))
		l.unlockKeys(held, n)
	}
	return errors.Join(errs...)
}

// loadAll loads the buckets of checks into out, errors into errs: one
// after the other on a MemoryStore, concurrently on any other Store (whose
// calls are network round trips). Reads write nothing, so their order
// does not matter.
func (l *Limiter) loadAll(ctx context.Context, checks []check, now int64, out []loaded, errs []error) {
	if l.local || len(checks) == 1 {
		for i, c := range checks {
			out[i].st, out[i].rev, errs[i] = l.load(ctx, c, now)
		}
		return
	}
	res, rerrs := make([]loaded, len(checks)), make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { res[i].st, res[i].rev, rerrs[i] = l.load(ctx, c, now) })
	}
	wg.Wait()
	copy(out, res)
	copy(errs, rerrs)
}

func (l *Limiter) load(ctx context.Context, c check, now int64) (state, uint64, error) {
	b, rev, err := l.store.Get(ctx, c.key)
	switch {
	case errors.Is(err, ErrNotFound):
		return fresh(c.spec, now), 0, nil
	case err != nil:
		return state{}, 0, err
	}
	st, ok := decodeState(b)
	if !ok { // corrupt: start empty (safe direction) and overwrite
		st = state{last: now}
	}
	st.advance(c.spec, now)
	return st, rev, nil
}

func (l *Limiter) write(ctx context.Context, key string, st state, rev uint64) (uint64, error) {
	if rev == 0 {
		return l.store.Create(ctx, key, st.encode())
	}
	return l.store.Update(ctx, key, st.encode(), rev)
}

// modify applies f to the bucket pair of c in a compare-and-swap loop.
func (l *Limiter) modify(ctx context.Context, c check, f func(*state)) error {
	for attempt := 0; attempt <= l.cfg.MaxRetries; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return err
			}
		}
		st, rev, err := l.load(ctx, c, l.clock.Now().UnixNano())
		if err != nil {
			return wrapUnavailable(err)
		}
		f(&st)
		_, err = l.write(ctx, c.key, st, rev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return wrapUnavailable(err)
		}
	}
	return ErrContention
}

// refund gives cost and tokens back to the buckets of checks, even if ctx
// has ended (the charge must not outlive the request that failed).
func (l *Limiter) refund(ctx context.Context, checks []check, cost, tokens float64) {
	ctx = context.WithoutCancel(ctx)
	for _, c := range checks {
		_ = l.modify(ctx, c, func(st *state) { st.give(c.spec, cost, tokens) })
	}
}

func (l *Limiter) unavailable(ctx context.Context, err error) (Decision, error) {
	if cerr := ctx.Err(); cerr != nil {
		return Decision{}, cerr
	}
	err = wrapUnavailable(err)
	if l.cfg.FailOpen {
		return Decision{Allowed: true, Degraded: err}, nil
	}
	return Decision{}, err
}

func wrapUnavailable(err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func backoff(ctx context.Context, attempt int) error {
	ceil := 50 * time.Microsecond << min(attempt, 8) // up to 12.8ms
	t := time.NewTimer(rand.N(ceil) + time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// bucket is one resource of one check, for decisions.
type bucket struct {
	tier, resource string
	spec           spec
	have           float64
}

func buckets(checks []check, reads []loaded, f func(bucket)) {
	for i, c := range checks {
		if c.spec.req.enabled() {
			f(bucket{c.tier, ResourceRequests, c.spec.req, reads[i].st.req})
		}
		if c.spec.tok.enabled() {
			f(bucket{c.tier, ResourceTokens, c.spec.tok, reads[i].st.tok})
		}
	}
}

func (b bucket) quota() Quota {
	return Quota{Tier: b.tier, Limit: b.spec.capacity, Remaining: b.have, Reset: b.spec.until(b.have, b.spec.capacity)}
}

func quotas(checks []check, reads []loaded) (req, tok Quota) {
	buckets(checks, reads, func(b bucket) {
		q := &req
		if b.resource == ResourceTokens {
			q = &tok
		}
		if q.Tier == "" || b.have < q.Remaining {
			*q = b.quota()
		}
	})
	return req, tok
}

// decide returns a rejection and false if some bucket lacks tokens.
func decide(checks []check, reads []loaded, cost, tokens float64) (Decision, bool) {
	var worst bucket
	var wait time.Duration
	found, tooLarge := false, false
	buckets(checks, reads, func(b bucket) {
		need := cost
		if b.resource == ResourceTokens {
			need = tokens
		}
		switch {
		case tooLarge:
		case need > b.spec.capacity+eps:
			found, tooLarge, worst, wait = true, true, b, 0
		case b.have+eps < need:
			if w := b.spec.until(b.have, need); !found || w > wait {
				found, worst, wait = true, b, w
			}
		}
	})
	if !found {
		return Decision{}, true
	}
	d := Decision{
		TooLarge: tooLarge, RetryAfter: wait, Tier: worst.tier, Resource: worst.resource,
		Limit: worst.spec.capacity, Remaining: worst.have, Reset: worst.spec.until(worst.have, worst.spec.capacity),
	}
	d.Requests, d.Tokens = quotas(checks, reads)
	return d, false
}

func allowed(checks []check, reads []loaded) Decision {
	d := Decision{Allowed: true}
	d.Requests, d.Tokens = quotas(checks, reads)
	q := d.Requests
	if q.Tier == "" {
		q = d.Tokens
	}
	d.Limit, d.Remaining, d.Reset = q.Limit, q.Remaining, q.Reset
	return d
}

// until is how long the bucket takes to go from have to want tokens.
func (s spec) until(have, want float64) time.Duration {
	if have >= want || !s.enabled() {
		return 0
	}
	return time.Duration(math.Ceil((want - have) / s.perNano))
}
