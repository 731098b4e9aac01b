package provider

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/agentbus/agentbus/internal/breaker"
	"github.com/agentbus/agentbus/messages"
)

// Entry is one provider in a Failover, in priority order.
type Entry struct {
	Provider Provider
	// Breaker guards the provider; nil means none.
	Breaker *breaker.Breaker
	// Models the provider serves, by the names clients use; empty or "*"
	// means any name (forwarded as is). A request for a model the entry
	// does not serve skips it.
	Models []string
	// Aliases maps a name clients use to the provider's own name for the
	// model (e.g. "gpt-4o-mini" -> "openai/gpt-4o-mini" on OpenRouter).
	Aliases map[string]string
	// Default is the model (a client name) a request naming none gets;
	// also listed. Default: the provider's own default.
	Default string
	// Kind is the provider kind (the catalog's owned_by). Optional.
	Kind string
	// Caps are the parameters the provider honours; nil means all (no
	// check).
	Caps *Capabilities
	// Timeout bounds one attempt; for a streamed call, the wait for the
	// first delta. Default: the breaker's CallTimeout, or no timeout
	// (beyond ctx) without a breaker.
	Timeout time.Duration
}

// RetryConfig configures retries in Failover, the one place that retries.
type RetryConfig struct {
	// MaxAttempts is the number of attempts per provider (first call
	// included) for errors that count as breaker failures. Default 2.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// BaseDelay is the backoff before the 2nd attempt; it doubles per
	// attempt, with full jitter (a uniform random delay in [0, backoff)).
	// Default 200ms.
	BaseDelay time.Duration `json:"base_delay,omitempty"`
	// MaxDelay caps the backoff. Default 5s.
	MaxDelay time.Duration `json:"max_delay,omitempty"`
}

// Defaults of RetryConfig.
const (
	DefaultMaxAttempts = 2
	DefaultBaseDelay   = 200 * time.Millisecond
	DefaultMaxDelay    = 5 * time.Second
)

// WithDefaults returns c with zero fields set to their defaults.
func (c RetryConfig) WithDefaults() RetryConfig {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseDelay == 0 {
		c.BaseDelay = DefaultBaseDelay
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	return c
}

// Validate reports negative fields and MaxDelay < BaseDelay, joined.
func (c RetryConfig) Validate() error {
	var errs []error
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("%w: retry.max_attempts must not be negative", ErrInvalidConfig))
	}
	if c.BaseDelay < 0 || c.MaxDelay < 0 {
		errs = append(errs, fmt.Errorf("%w: retry delays must not be negative", ErrInvalidConfig))
	}
	if d := c.WithDefaults(); d.MaxDelay < d.BaseDelay {
		errs = append(errs, fmt.Errorf("%w: retry.max_delay (%s) is below retry.base_delay (%s)", ErrInvalidConfig, d.MaxDelay, d.BaseDelay))
	}
	return errors.Join(errs...)
}

// FailoverConfig configures a Failover.
type FailoverConfig struct {
	// Retry configures per-provider retries. Defaults as in RetryConfig.
	Retry RetryConfig
	// Sleep waits d or until ctx ends. Default: a timer (tests inject).
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a float in [0, 1) for jitter. Default math/rand/v2.
	Rand func() float64
}

// ProviderError is one provider's failure inside a FailoverError.
type ProviderError struct {
	// Provider is the provider's name.
	Provider string
	// Err is what it returned (or the open breaker's error).
	Err error
}

// FailoverError is returned when no provider answered. It wraps
// ErrAllProvidersUnavailable (and so ErrUnavailable) and every provider's
// error, so errors.Is(err, ErrRateLimited) reports whether any provider
// was rate-limited.
type FailoverError struct {
	// RetryAfter is the shortest hint among the providers: Retry-After of
	// a 429, or the time until an open breaker admits a probe. 0 if none.
	RetryAfter time.Duration
	// Errors lists what happened at each provider, in order.
	Errors []ProviderError
}

func (e *FailoverError) Error() string {
	var b strings.Builder
	b.WriteString(ErrAllProvidersUnavailable.Error())
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter.Round(time.Millisecond))
	}
	for i, pe := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(pe.Provider + ": " + pe.Err.Error())
	}
	return b.String()
}

// Unwrap returns ErrAllProvidersUnavailable and every provider's error.
func (e *FailoverError) Unwrap() []error {
	out := []error{ErrAllProvidersUnavailable}
	for _, pe := range e.Errors {
		out = append(out, pe.Err)
	}
	return out
}

func (e *FailoverError) onlyRateLimited() bool {
	n := 0
	for _, pe := range e.Errors {
		if !errors.Is(pe.Err, ErrRateLimited) {
			return false
		}
		n++
	}
	return n > 0
}

// Failover is a Provider that tries an ordered list of providers, each
// behind its own circuit breaker:
//
//   - a provider whose breaker is open is skipped at once (no waiting);
//   - 5xx, timeouts, connection errors (IsBreakerFailure) count against the
//     breaker and are retried on the same provider up to MaxAttempts with
//     exponential backoff and full jitter, then the next provider is tried;
//   - 400 and context-length errors are returned at once: no failover, no
//     breaker count;
//   - 429 and 401/403 fail over to the next provider without counting;
//   - the caller's ctx ending returns at once, uncounted;
//   - once a streaming call has delivered a delta, an error is returned as
//     is: failing over would duplicate text.
//
// When no provider answers it returns a *FailoverError wrapping
// ErrAllProvidersUnavailable with the shortest RetryAfter.
type Failover struct {
	entries []Entry
	created time.Time
	retry   RetryConfig
	sleep   func(context.Context, time.Duration) error
	rand    func() float64
}

// NewFailover returns a Failover over entries (at least one).
func NewFailover(entries []Entry, cfg FailoverConfig) (*Failover, error) {
	var errs []error
	if len(entries) == 0 {
		errs = append(errs, fmt.Errorf("%w: failover needs at least one provider", ErrInvalidConfig))
	}
	seen := map[string]bool{}
	for i, e := range entries {
		if e.Provider == nil {
			errs = append(errs, fmt.Errorf("%w: providers[%d] is nil", ErrInvalidConfig, i))
			continue
		}
		if seen[e.Provider.Name()] {
			errs = append(errs, fmt.Errorf("%w: provider name %q is used twice", ErrInvalidConfig, e.Provider.Name()))
		}
		seen[e.Provider.Name()] = true
		if e.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%w: providers[%d].timeout must not be negative", ErrInvalidConfig, i))
		}
	}
	errs = append(errs, flatten(cfg.Retry.Validate())...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	f := &Failover{entries: slices.Clone(entries), retry: cfg.Retry.WithDefaults(), sleep: cfg.Sleep, rand: cfg.Rand, created: now().UTC()}
	if f.sleep == nil {
		f.sleep = sleepCtx
	}
	if f.rand == nil {
		f.rand = rand.Float64
	}
	for i := range f.entries {
		if f.entries[i].Timeout == 0 && f.entries[i].Breaker != nil {
			f.entries[i].Timeout = f.entries[i].Breaker.Config().CallTimeout
		}
	}
	return f, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Name returns "failover".
func (f *Failover) Name() string { return "failover" }

// Backoff returns the jittered delay before retry number attempt (1 = the
// first retry): uniform in [0, min(MaxDelay, BaseDelay*2^(attempt-1))).
func (f *Failover) Backoff(attempt int) time.Duration {
	ceil := float64(f.retry.BaseDelay) * math.Pow(2, float64(attempt-1))
	ceil = min(ceil, float64(f.retry.MaxDelay))
	return time.Duration(f.rand() * ceil)
}

// Complete tries the providers in order; see Failover. Response.Provider
// names the provider that answered.
func (f *Failover) Complete(ctx context.Context, req Request, onDelta func(string)) (Response, error) {
	fe := &FailoverError{}
	note := func(name string, err error) {
		fe.Errors = append(fe.Errors, ProviderError{name, err})
		if d, ok := RetryAfter(err); ok && d > 0 && (fe.RetryAfter == 0 || d < fe.RetryAfter) {
			fe.RetryAfter = d
		}
	}
	sent := false
	var deltaFn func(string)
	if onDelta != nil {
		deltaFn = func(s string) { sent = true; onDelta(s) }
	}
	if err := checkToolChoice(&req); err != nil {
		return Response{}, err
	}
	matched := false
	var unsupported error
	for _, e := range f.entries {
		upstream, ok := serves(e, req.Model)
		if !ok {
			continue
		}
		matched = true
		name := e.Provider.Name()
		if e.Caps != nil {
			model := req.Model
			if model == "" {
				model = e.Default
			}
			if err := e.Caps.Check(name, model, &req); err != nil {
				if unsupported == nil {
					unsupported = err
				}
				continue
			}
		}
		ereq := req
		ereq.Model = upstream
	attempts:
		for attempt := 0; attempt < f.retry.MaxAttempts; attempt++ {
			if attempt > 0 {
				if err := f.sleep(ctx, f.Backoff(attempt)); err != nil {
					return Response{}, err
				}
			}
			var t breaker.Ticket
			if e.Breaker != nil {
				var err error
				if t, err = e.Breaker.Allow(); err != nil {
					note(name, fmt.Errorf("%w: %w", ErrUnavailable, err))
					break attempts
				}
			}
			resp, err := f.call(ctx, e, ereq, deltaFn)
			done := func(failure bool) {
				if e.Breaker != nil {
					e.Breaker.Done(t, failure)
				}
			}
			release := func() {
				if e.Breaker != nil {
					e.Breaker.Release(t)
				}
			}
			switch {
			case err == nil:
				done(false)
				resp.Provider = name
				return resp, nil
			case ctx.Err() != nil: // the caller gave up
				release()
				return Response{}, err
			case errors.Is(err, ErrBadRequest): // includes ErrContextLength
				release()
				return Response{}, err
			case errors.Is(err, ErrRateLimited), errors.Is(err, ErrAuth):
				release()
				if sent {
					return Response{}, err
				}
				note(name, err)
				break attempts
			case IsBreakerFailure(err):
				done(true)
			default:
				release()
			}
			if sent {
				return Response{}, err
			}
			note(name, err)
			if !IsBreakerFailure(err) {
				break attempts
			}
		}
	}
	if !matched {
		return Response{}, &ModelNotFoundError{Model: req.Model, Served: f.Catalog().IDs()}
	}
	if len(fe.Errors) == 0 && unsupported != nil {
		return Response{}, unsupported
	}
	return Response{}, fe
}

// errAttemptTimeout is the cause of an attempt's context when its timeout
// fires.
var errAttemptTimeout = errors.New("attempt timeout")

// call makes one attempt bounded by the entry's timeout. For a streamed
// call the timeout bounds the wait for the first delta (after that the
// provider's idle timeout and ctx govern), so a long answer is not cut. A
// timeout of the attempt (not of ctx) is reported as ErrUnavailable.
func (f *Failover) call(ctx context.Context, e Entry, req Request, onDelta func(string)) (Response, error) {
	if e.Timeout <= 0 {
		return e.Provider.Complete(ctx, req, onDelta)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(e.Timeout, func() { cancel(errAttemptTimeout) })
	defer timer.Stop()
	fn := onDelta
	if onDelta != nil {
		fn = func(s string) { timer.Stop(); onDelta(s) }
	}
	resp, err := e.Provider.Complete(cctx, req, fn)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), errAttemptTimeout) {
		return Response{}, fmt.Errorf("provider %s: %w: no answer within %s (%v)", e.Provider.Name(), ErrUnavailable, e.Timeout, err)
	}
	return resp, err
}

// Available reports whether at least one provider's breaker would admit a
// call now (providers without a breaker always would). Health uses it
// instead of calling a model.
func (f *Failover) Available() bool {
	for _, e := range f.entries {
		if e.Breaker == nil || e.Breaker.State() != breaker.Open {
			return true
		}
	}
	return false
}

// checkToolChoice refuses a tool_choice the offered tools cannot satisfy
// (a function that is not offered, "required" without tools), as OpenAI
// refuses it, instead of letting a provider ignore it.
func checkToolChoice(req *Request) error {
	tc := req.Params.ToolChoice
	if tc == nil || tc.Mode == messages.ToolChoiceAuto || tc.Mode == messages.ToolChoiceNone {
		return nil
	}
	names := make([]string, 0, len(req.Tools))
	for _, t := range req.Tools {
		if tc.Mode == messages.ToolChoiceRequired || t.Name == tc.Function {
			return nil
		}
		names = append(names, t.Name)
	}
	what := "tool_choice required"
	if tc.Mode == messages.ToolChoiceFunction {
		what = fmt.Sprintf("tool_choice names function '%s'", truncate(tc.Function, 64))
	}
	offered := "(none)"
	if len(names) > 0 {
		offered = strings.Join(names, ", ")
	}
	return &UnsupportedError{Provider: "failover", Param: "tool_choice",
		Reason: fmt.Sprintf("%s, but the tools offered are: %s", what, offered)}
}

// serves reports whether e serves model, and the name to send the
// provider ("" for its default).
func serves(e Entry, model string) (string, bool) {
	switch {
	case model == "":
		return "", true
	case e.Aliases[model] != "":
		return e.Aliases[model], true
	case len(e.Models) == 0, slices.Contains(e.Models, model), slices.Contains(e.Models, AnyModel), model == e.Default:
		return model, true
	}
	return "", false
}

// Status is one provider's health in a Failover snapshot.
type Status struct {
	// Name is the provider's name.
	Name string `json:"name"`
	// Models it serves; empty means any.
	Models []string `json:"models,omitempty"`
	// Timeout is the per-attempt timeout ("" if none).
	Timeout string `json:"timeout,omitempty"`
	// Breaker is the breaker's metrics; nil when the entry has none.
	Breaker *breaker.Metrics `json:"breaker,omitempty"`
}

// Snapshot returns each provider's status and breaker metrics, in order
// (for health and STATS).
func (f *Failover) Snapshot() []Status {
	out := make([]Status, 0, len(f.entries))
	for _, e := range f.entries {
		s := Status{Name: e.Provider.Name(), Models: slices.Clone(e.Models)}
		if e.Timeout > 0 {
			s.Timeout = e.Timeout.String()
		}
		if e.Breaker != nil {
			m := e.Breaker.Snapshot()
			s.Breaker = &m
		}
		out = append(out, s)
	}
	return out
}

// flatten returns the errors joined in err (nil: none).
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
