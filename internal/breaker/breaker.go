package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// State is the state of a [Breaker].
type State int

const (
	// Closed lets every call through and counts consecutive failures.
	Closed State = iota
	// Open rejects every call until OpenTimeout has passed.
	Open
	// HalfOpen lets a bounded number of probe calls through; enough
	// successes close the breaker, one failure opens it again.
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText encodes s as its String form, so JSON shows "open".
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ErrOpen is wrapped by the error [Breaker.Allow] returns when it rejects a
// call: the breaker is open, or half-open with every probe slot taken.
var ErrOpen = errors.New("circuit breaker open")

// ErrInvalidConfig is wrapped by every [Config.Validate] error.
var ErrInvalidConfig = errors.New("invalid breaker config")

// OpenError is the error [Breaker.Allow] returns when it rejects a call. It
// wraps [ErrOpen].
type OpenError struct {
	// Name is the breaker's name (the provider it protects).
	Name string
	// State is Open or HalfOpen (all probe slots busy).
	State State
	// RetryAfter is how long until the breaker admits a probe again:
	// the rest of OpenTimeout when open, or until the oldest probe's
	// CallTimeout ends when half-open. Never negative.
	RetryAfter time.Duration
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("circuit breaker %q %s: retry after %s", e.Name, e.State, e.RetryAfter.Round(time.Millisecond))
}

// Unwrap returns ErrOpen.
func (e *OpenError) Unwrap() error { return ErrOpen }

// Clock tells the time. Tests inject a fake one.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now calls f.
func (f ClockFunc) Now() time.Time { return f() }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Config configures a [Breaker]. A zero field takes its default.
type Config struct {
	// FailureThreshold is the number of consecutive failures in Closed
	// that open the breaker. Default 5.
	FailureThreshold int `json:"failure_threshold,omitempty"`
	// SuccessThreshold is the number of successful probes in HalfOpen
	// that close the breaker. Default 2.
	SuccessThreshold int `json:"success_threshold,omitempty"`
	// OpenTimeout is how long the breaker stays Open before it admits a
	// probe (HalfOpen). Default 60s.
	OpenTimeout time.Duration `json:"open_timeout,omitempty"`
	// HalfOpenMaxProbes bounds the concurrent probe calls in HalfOpen;
	// further calls are rejected with ErrOpen. Default 1.
	HalfOpenMaxProbes int `json:"half_open_max_probes,omitempty"`
	// CallTimeout bounds one call made through Execute; a half-open probe
	// whose ticket is not reported within it frees its slot. Default 30s.
	CallTimeout time.Duration `json:"call_timeout,omitempty"`
	// OnStateChange, if set, is called after every transition, outside
	// the breaker's lock (it may call Snapshot). Default nil.
	OnStateChange func(name string, from, to State) `json:"-"`
}

// Defaults of Config.
const (
	DefaultFailureThreshold  = 5
	DefaultSuccessThreshold  = 2
	DefaultOpenTimeout       = 60 * time.Second
	DefaultHalfOpenMaxProbes = 1
	DefaultCallTimeout       = 30 * time.Second
)

// Validate reports every negative field, joined.
func (c Config) Validate() error {
	var errs []error
	neg := func(field string, bad bool) {
		if bad {
			errs = append(errs, fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, field))
		}
	}
	neg("failure_threshold", c.FailureThreshold < 0)
	neg("success_threshold", c.SuccessThreshold < 0)
	neg("open_timeout", c.OpenTimeout < 0)
	neg("half_open_max_probes", c.HalfOpenMaxProbes < 0)
	neg("call_timeout", c.CallTimeout < 0)
	return errors.Join(errs...)
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.FailureThreshold == 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	if c.SuccessThreshold == 0 {
		c.SuccessThreshold = DefaultSuccessThreshold
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.HalfOpenMaxProbes == 0 {
		c.HalfOpenMaxProbes = DefaultHalfOpenMaxProbes
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	return c
}

// Ticket is the permission to make one call, returned by [Breaker.Allow].
// Report its outcome exactly once with Done or Release; later reports of
// the same ticket are ignored.
type Ticket struct {
	// Generation is the breaker generation the call started in.
	Generation uint64
	id         uint64 // probe id in HalfOpen, 0 otherwise
}

// Metrics is a point-in-time view of a breaker, for health and STATS.
type Metrics struct {
	// Name is the breaker's name.
	Name string `json:"name"`
	// State is the current state (JSON: "closed", "open", "half-open").
	State State `json:"state"`
	// Generation increases on every transition.
	Generation  uint64 `json:"generation"`
	Transitions uint64 `json:"transitions"`
	// Requests counts Allow calls; Requests = admitted + Rejections.
	Requests   uint64 `json:"requests"`
	Rejections uint64 `json:"rejections"`
	// Successes and Failures count the results that were applied.
	Successes uint64 `json:"successes"`
	Failures  uint64 `json:"failures"`
	// Ignored counts results of stale tickets (older generation, or
	// reported twice) and Release calls: they changed nothing.
	Ignored uint64 `json:"ignored"`
	// InFlight is the number of admitted calls not yet reported.
	InFlight int `json:"in_flight"`
	// ConsecutiveFailures counts failures since the last success in Closed.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// LastFailure is when the last applied failure was reported.
	LastFailure time.Time `json:"last_failure,omitzero"`
	// OpenedAt is when the breaker last opened (zero if never).
	OpenedAt time.Time `json:"opened_at,omitzero"`
	// RetryAfter is the time until the next probe while Open, else 0.
	RetryAfter time.Duration `json:"retry_after_ns,omitempty"`
}

// Breaker is a circuit breaker for one provider. It is safe for concurrent
// use.
type Breaker struct {
	name  string
	cfg   Config
	clock Clock

	mu          sync.Mutex
	state       State
	gen         uint64
	consecFail  int
	halfOpenOK  int
	openedAt    time.Time
	probes      map[uint64]time.Time // in-flight half-open probes by id -> start
	nextProbeID uint64
	inFlight    map[uint64]int // admitted, unreported non-probe calls per generation
	m           Metrics
}

// New returns a closed breaker named name (the provider it protects). A nil
// clock is the system clock.
func New(name string, cfg Config, clock Clock) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = SystemClock{}
	}
	return &Breaker{
		name:     name,
		cfg:      cfg.WithDefaults(),
		clock:    clock,
		probes:   make(map[uint64]time.Time),
		inFlight: make(map[uint64]int),
	}, nil
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Config returns the effective configuration (defaults applied).
func (b *Breaker) Config() Config { return b.cfg }

type transition struct{ from, to State }

// setState moves to s and starts a new generation. Caller holds mu.
func (b *Breaker) setState(s State, now time.Time, tr *[]transition) {
	*tr = append(*tr, transition{b.state, s})
	b.state = s
	b.gen++
	b.m.Transitions++
	b.consecFail = 0
	b.halfOpenOK = 0
	clear(b.probes)
	clear(b.inFlight)
	if s == Open {
		b.openedAt = now
	}
}

// advance performs the time-driven transition Open -> HalfOpen and frees
// probe slots whose call outlived CallTimeout. Caller holds mu.
func (b *Breaker) advance(now time.Time, tr *[]transition) {
	if b.state == Open && !now.Before(b.openedAt.Add(b.cfg.OpenTimeout)) {
		b.setState(HalfOpen, now, tr)
	}
	if b.state == HalfOpen {
		for id, start := range b.probes {
			if now.Sub(start) >= b.cfg.CallTimeout {
				delete(b.probes, id)
			}
		}
	}
}

func (b *Breaker) notify(tr []transition) {
	if b.cfg.OnStateChange == nil {
		return
	}
	for _, t := range tr {
		b.cfg.OnStateChange(b.name, t.from, t.to)
	}
}

// Allow asks to start a call. It returns a ticket carrying the current
// generation, or an *OpenError (wrapping ErrOpen) when the breaker is open
// or every half-open probe slot is taken. It never blocks.
func (b *Breaker) Allow() (Ticket, error) {
	var tr []transition
	defer func() { b.notify(tr) }()
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	b.advance(now, &tr)
	b.m.Requests++
	switch b.state {
	case Closed:
		b.inFlight[b.gen]++
		return Ticket{Generation: b.gen}, nil
	case HalfOpen:
		if len(b.probes) < b.cfg.HalfOpenMaxProbes {
			b.nextProbeID++
			b.probes[b.nextProbeID] = now
			return Ticket{Generation: b.gen, id: b.nextProbeID}, nil
		}
		b.m.Rejections++
		oldest := now
		for _, start := range b.probes {
			if start.Before(oldest) {
				oldest = start
			}
		}
		return Ticket{}, &OpenError{Name: b.name, State: HalfOpen, RetryAfter: max(0, oldest.Add(b.cfg.CallTimeout).Sub(now))}
	default: // Open
		b.m.Rejections++
		return Ticket{}, &OpenError{Name: b.name, State: Open, RetryAfter: max(0, b.openedAt.Add(b.cfg.OpenTimeout).Sub(now))}
	}
}

// take consumes ticket t and reports whether it is current. Caller holds mu.
func (b *Breaker) take(t Ticket) bool {
	if t.Generation != b.gen {
		return false
	}
	if t.id != 0 {
		if _, ok := b.probes[t.id]; !ok {
			return false // reported twice, or its slot expired
		}
		delete(b.probes, t.id)
		return true
	}
	if b.state != Closed || b.inFlight[b.gen] == 0 {
		return false
	}
	b.inFlight[b.gen]--
	return true
}

// Done reports the result of a call started with t. failure should be true
// only for errors that mean the provider is unhealthy (see the caller's
// classifier); a result from a ticket of an older generation is ignored, so
// a call started before a transition cannot flip the state after it.
func (b *Breaker) Done(t Ticket, failure bool) {
	var tr []transition
	defer func() { b.notify(tr) }()
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	if !b.take(t) {
		b.m.Ignored++
		return
	}
	if failure {
		b.m.Failures++
		b.m.LastFailure = now
		switch b.state {
		case Closed:
			b.consecFail++
			if b.consecFail >= b.cfg.FailureThreshold {
				b.setState(Open, now, &tr)
			}
		case HalfOpen:
			b.setState(Open, now, &tr)
		}
		return
	}
	b.m.Successes++
	switch b.state {
	case Closed:
		b.consecFail = 0
	case HalfOpen:
		b.halfOpenOK++
		if b.halfOpenOK >= b.cfg.SuccessThreshold {
			b.setState(Closed, now, &tr)
		}
	}
}

// Release gives back ticket t without a verdict: the call ended in a way
// that says nothing about the provider's health (cancelled by the client,
// rejected as a bad request, rate-limited). It frees a half-open probe slot
// and counts as Ignored.
func (b *Breaker) Release(t Ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.take(t)
	b.m.Ignored++
}

// Execute runs fn through the breaker: it returns the *OpenError of Allow
// without calling fn, else calls fn with a context bounded by CallTimeout
// and reports the outcome. An error counts as a failure when isFailure
// reports true (a nil isFailure counts every error), or when CallTimeout
// expired; if ctx itself ended (the caller gave up) the ticket is released
// uncounted. fn must return when its context is done.
func (b *Breaker) Execute(ctx context.Context, isFailure func(error) bool, fn func(ctx context.Context) error) error {
	t, err := b.Allow()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.CallTimeout)
	defer cancel()
	err = fn(cctx)
	switch {
	case err == nil:
		b.Done(t, false)
		return nil
	case ctx.Err() != nil:
		b.Release(t)
		return err
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		b.Done(t, true)
		return fmt.Errorf("circuit breaker %q: call timed out after %s: %w", b.name, b.cfg.CallTimeout, err)
	case isFailure == nil || isFailure(err):
		b.Done(t, true)
		return err
	default:
		b.Done(t, false)
		return err
	}
}

// State returns the current state (after any due Open -> HalfOpen
// transition).
func (b *Breaker) State() State {
	return b.Snapshot().State
}

// Snapshot returns the breaker's metrics.
func (b *Breaker) Snapshot() Metrics {
	var tr []transition
	defer func() { b.notify(tr) }()
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	b.advance(now, &tr)
	m := b.m
	m.Name = b.name
	m.State = b.state
	m.Generation = b.gen
	m.ConsecutiveFailures = b.consecFail
	m.OpenedAt = b.openedAt
	m.InFlight = len(b.probes) + b.inFlight[b.gen]
	if b.state == Open {
		m.RetryAfter = max(0, b.openedAt.Add(b.cfg.OpenTimeout).Sub(now))
	}
	return m
}
