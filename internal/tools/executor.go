package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults of ExecutorConfig.
const (
	DefaultToolTimeout    = 10 * time.Second
	DefaultMaxConcurrent  = 4
	DefaultMaxOutputBytes = 64 << 10
)

// Errors of the executor (the tool's own errors pass through unchanged).
var (
	// ErrTimeout: the call did not finish within its timeout.
	ErrTimeout = errors.New("tool timed out")
	// ErrPanic is wrapped by *PanicError.
	ErrPanic = errors.New("tool panicked")
)

// PanicError is a panic inside a tool, recovered.
type PanicError struct {
	Tool  string
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("tool %s panicked: %v", e.Tool, e.Value) }

// Unwrap returns ErrPanic.
func (e *PanicError) Unwrap() error { return ErrPanic }

// Limits bound one tool's calls.
type Limits struct {
	// Timeout bounds a call, including the wait for a concurrency slot
	// (default ExecutorConfig.Timeout).
	Timeout time.Duration
	// MaxConcurrent bounds the calls of this tool running at once (default
	// ExecutorConfig.MaxConcurrent).
	MaxConcurrent int
	// MaxOutputBytes bounds the output (default
	// ExecutorConfig.MaxOutputBytes).
	MaxOutputBytes int
}

// ExecutorConfig configures an Executor.
type ExecutorConfig struct {
	// Timeout bounds each call (default 10 s).
	Timeout time.Duration
	// MaxConcurrent bounds concurrent calls per tool (default 4).
	MaxConcurrent int
	// MaxOutputBytes bounds each output (default 64 KiB); longer output is
	// truncated on a UTF-8 boundary and marked.
	MaxOutputBytes int
	// PerTool overrides the limits of single tools, keyed by the name in
	// the tool's Spec; zero fields
	// take the defaults above. Default: none.
	PerTool map[string]Limits
}

// Validate reports every invalid field, joined.
func (c ExecutorConfig) Validate() error {
	var errs []error
	check := func(where string, l Limits) {
		if l.Timeout < 0 {
			errs = append(errs, fmt.Errorf("executor: %stimeout %s is negative", where, l.Timeout))
		}
		if l.MaxConcurrent < 0 {
			errs = append(errs, fmt.Errorf("executor: %smax_concurrent %d is negative", where, l.MaxConcurrent))
		}
		if l.MaxOutputBytes < 0 {
			errs = append(errs, fmt.Errorf("executor: %smax_output_bytes %d is negative", where, l.MaxOutputBytes))
		}
	}
	check("", Limits{c.Timeout, c.MaxConcurrent, c.MaxOutputBytes})
	for name, l := range c.PerTool {
		check("per_tool["+strconv.Quote(name)+"].", l)
	}
	return errors.Join(errs...)
}

// Result is the outcome of one call. Output is always what the model
// should see: the tool's output, or "error: <message>" when Err is set.
type Result struct {
	Output string
	// Err is the failure, if any: a wrapped ErrUnknownTool, ErrTimeout, a
	// *PanicError, the context's error, or the tool's own error.
	Err       error
	Duration  time.Duration
	Truncated bool
}

// Executor runs tool calls from a Registry with per-tool timeouts,
// concurrency limits and output limits. It is safe for concurrent use.
//
// A tool that ignores its context cannot hold the caller: Execute returns
// at the timeout, and the tool's concurrency slot is freed only when the
// tool really returns, so a stuck tool cannot exceed its concurrency.
type Executor struct {
	reg  *Registry
	cfg  ExecutorConfig
	mu   sync.Mutex
	sems map[string]chan struct{}
}

// NewExecutor returns an executor for the tools of reg.
func NewExecutor(reg *Registry, cfg ExecutorConfig) (*Executor, error) {
	if reg == nil {
		return nil, errors.New("executor: nil registry")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultToolTimeout
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	return &Executor{reg: reg, cfg: cfg, sems: map[string]chan struct{}{}}, nil
}

// Limited is a tool that brings its own limits (an MCP server's tools):
// its non-zero fields override the executor's defaults; PerTool still
// wins.
type Limited interface {
	Limits() Limits
}

func (e *Executor) limits(t Tool, name string) Limits {
	l, ok := e.cfg.PerTool[name]
	if lt, isLimited := t.(Limited); isLimited && !ok {
		l = lt.Limits()
	}
	if l.Timeout == 0 {
		l.Timeout = e.cfg.Timeout
	}
	if l.MaxConcurrent == 0 {
		l.MaxConcurrent = e.cfg.MaxConcurrent
	}
	if l.MaxOutputBytes == 0 {
		l.MaxOutputBytes = e.cfg.MaxOutputBytes
	}
	return l
}

// sem returns the semaphore of a registered tool; the map only ever holds
// registered tool names, so it stays bounded.
func (e *Executor) sem(name string, n int) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.sems[name]
	if !ok {
		s = make(chan struct{}, n)
		e.sems[name] = s
	}
	return s
}

// Execute runs the tool called name with args. It never panics and never
// returns before the call ended or its timeout or ctx expired.
func (e *Executor) Execute(ctx context.Context, name string, args json.RawMessage) Result {
	start := time.Now()
	t, ok := e.reg.Lookup(name)
	if !ok {
		return failed(fmt.Errorf("%w: %q", ErrUnknownTool, name), start)
	}
	canon := t.Spec().Name
	lim := e.limits(t, canon)
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()

	sem := e.sem(canon, lim.MaxConcurrent)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return failed(ctxErr(ctx, canon, lim.Timeout, "waiting for a free slot"), start)
	}

	type outcome struct {
		out string
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() { <-sem }()
		defer func() {
			if r := recover(); r != nil {
				done <- outcome{err: &PanicError{Tool: canon, Value: r, Stack: debug.Stack()}}
			}
		}()
		out, err := t.Call(ctx, args)
		done <- outcome{out, err}
	}()

	select {
	case o := <-done:
		if o.err != nil {
			return failed(o.err, start)
		}
		out, trunc := truncate(o.out, lim.MaxOutputBytes)
		return Result{Output: out, Duration: time.Since(start), Truncated: trunc}
	case <-ctx.Done():
		// prefer a result that raced with the deadline
		select {
		case o := <-done:
			if o.err == nil {
				out, trunc := truncate(o.out, lim.MaxOutputBytes)
				return Result{Output: out, Duration: time.Since(start), Truncated: trunc}
			}
		default:
		}
		return failed(ctxErr(ctx, canon, lim.Timeout, "running"), start)
	}
}

func ctxErr(ctx context.Context, tool string, d time.Duration, phase string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s did not finish within %s (%s)", ErrTimeout, tool, d, phase)
	}
	return ctx.Err()
}

func failed(err error, start time.Time) Result {
	return Result{Output: "error: " + err.Error(), Err: err, Duration: time.Since(start)}
}

// truncate cuts s to at most max bytes on a rune boundary, marker included.
func truncate(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	marker := fmt.Sprintf("\n[output truncated: %d of %d bytes shown]", 0, len(s))
	keep := max - len(marker) - 8 // room for the real digits
	if keep < 0 {
		keep = 0
	}
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	marker = fmt.Sprintf("\n[output truncated: %d of %d bytes shown]", keep, len(s))
	if keep+len(marker) > max { // tiny limits: the marker alone
		return marker[:min(len(marker), max)], true
	}
	return s[:keep] + marker, true
}
