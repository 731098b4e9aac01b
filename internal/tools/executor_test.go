package tools

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentbus/agentbus/internal/firewall"
)

func newExec(t testing.TB, cfg ExecutorConfig, tools ...Tool) *Executor {
	t.Helper()
	r, err := NewRegistry(tools...)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExecutor(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExecutor(t *testing.T) {
	calc, _ := NewCalculator(CalculatorConfig{})
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	tools := []Tool{
		calc,
		fn("boom", func(context.Context, json.RawMessage) (string, error) { panic("kaboom") }),
		fn("nilmap", func(context.Context, json.RawMessage) (string, error) {
			var m map[string]int
			//lint:ignore SA5000 the tool panics on purpose: a runtime error, not a panic(value)
			m["x"] = 1
			return "", nil
		}),
		fn("fails", func(context.Context, json.RawMessage) (string, error) { return "partial", errors.New("disk full") }),
		fn("polite_sleep", func(ctx context.Context, _ json.RawMessage) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		}),
		fn("rude_sleep", func(context.Context, json.RawMessage) (string, error) { <-block; return "late", nil }),
		fn("big", func(context.Context, json.RawMessage) (string, error) { return strings.Repeat("ü", 100), nil }),
	}
	e := newExec(t, ExecutorConfig{Timeout: 50 * time.Millisecond, MaxOutputBytes: 1024,
		PerTool: map[string]Limits{"big": {MaxOutputBytes: 80}}}, tools...)
	tests := []struct {
		name, tool, args string
		wantOut          string
		wantErr          error
		truncated        bool
	}{
		{"ok", "calculator", `{"expression":"17*23"}`, "391", nil, false},
		{"name normalised", "Calculator", `{"expression":"1+1"}`, "2", nil, false},
		{"tool error shown to the model", "calculator", `{"expression":"1/0"}`, "error: division by zero", nil, false},
		{"unknown", "nope", `{}`, `error: tools: unknown tool: "nope"`, ErrUnknownTool, false},
		{"panic", "boom", `{}`, "error: tool boom panicked: kaboom", ErrPanic, false},
		{"runtime panic", "nilmap", `{}`, "error: tool nilmap panicked: assignment to entry in nil map", ErrPanic, false},
		{"error wins over output", "fails", `{}`, "error: disk full", nil, false},
		{"timeout, polite tool", "polite_sleep", `{}`, "error: tool timed out: polite_sleep did not finish within 50ms (running)", ErrTimeout, false},
		{"timeout, rude tool", "rude_sleep", `{}`, "error: tool timed out: rude_sleep did not finish within 50ms (running)", ErrTimeout, false},
		{"truncated", "big", `{}`, "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.Execute(context.Background(), tt.tool, json.RawMessage(tt.args))
			if tt.truncated {
				if !res.Truncated || len(res.Output) > 80 || !strings.Contains(res.Output, "[output truncated:") || !utf8.ValidString(res.Output) {
					t.Fatalf("got %q (%d bytes, truncated=%v)", res.Output, len(res.Output), res.Truncated)
				}
				return
			}
			if res.Output != tt.wantOut {
				t.Errorf("Output = %q, want %q", res.Output, tt.wantOut)
			}
			if tt.wantErr != nil && !errors.Is(res.Err, tt.wantErr) {
				t.Errorf("Err = %v, want %v", res.Err, tt.wantErr)
			}
			if strings.HasPrefix(tt.wantOut, "error: ") && res.Err == nil {
				t.Error("Err is nil for an error result")
			}
			if res.Duration <= 0 {
				t.Error("Duration not set")
			}
		})
	}
}

func TestExecutorConcurrencyLimit(t *testing.T) {
	var running, peak atomic.Int32
	slow := fn("slow", func(ctx context.Context, _ json.RawMessage) (string, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		return "ok", nil
	})
	tests := []struct {
		name  string
		limit int
	}{{"limit 1", 1}, {"limit 3", 3}, {"default 4", 0}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running.Store(0)
			peak.Store(0)
			e := newExec(t, ExecutorConfig{MaxConcurrent: tt.limit, Timeout: 5 * time.Second}, slow)
			var wg sync.WaitGroup
			for range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if r := e.Execute(context.Background(), "slow", nil); r.Err != nil {
						t.Error(r.Err)
					}
				}()
			}
			wg.Wait()
			want := int32(tt.limit)
			if want == 0 {
				want = DefaultMaxConcurrent
			}
			if p := peak.Load(); p > want || p < 1 {
				t.Fatalf("peak concurrency %d, limit %d", p, want)
			}
		})
	}
}

func TestExecutorSlotWaitTimesOut(t *testing.T) {
	release := make(chan struct{})
	hold := fn("hold", func(context.Context, json.RawMessage) (string, error) { <-release; return "", nil })
	e := newExec(t, ExecutorConfig{MaxConcurrent: 1, Timeout: 30 * time.Millisecond}, hold)
	first := e.Execute(context.Background(), "hold", nil) // times out, keeps the slot
	if !errors.Is(first.Err, ErrTimeout) {
		t.Fatalf("first: %v", first.Err)
	}
	second := e.Execute(context.Background(), "hold", nil)
	if !errors.Is(second.Err, ErrTimeout) || !strings.Contains(second.Output, "waiting for a free slot") {
		t.Fatalf("second: %q %v", second.Output, second.Err)
	}
	close(release)
}

func TestExecutorCallerCancel(t *testing.T) {
	e := newExec(t, ExecutorConfig{}, fn("wait", func(ctx context.Context, _ json.RawMessage) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	r := e.Execute(ctx, "wait", nil)
	if !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", r.Err)
	}
}

func TestExecutorConfigValidate(t *testing.T) {
	bad := ExecutorConfig{Timeout: -1, MaxConcurrent: -1, MaxOutputBytes: -1, PerTool: map[string]Limits{"x": {Timeout: -1}}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"timeout", "max_concurrent", "max_output_bytes", `per_tool["x"]`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not mention %s", err, w)
		}
	}
	if _, err := NewExecutor(nil, ExecutorConfig{}); err == nil {
		t.Error("nil registry accepted")
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		s     string
		max   int
		trunc bool
	}{
		{"short", 10, false},
		{strings.Repeat("a", 100), 100, false},
		{strings.Repeat("a", 101), 100, true},
		{strings.Repeat("日本", 100), 90, true},
		{strings.Repeat("a", 100), 5, true},
	}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			got, tr := truncate(tt.s, tt.max)
			if tr != tt.trunc || len(got) > tt.max || !utf8.ValidString(got) {
				t.Fatalf("truncate(%d bytes, %d) = %q (%d bytes), %v", len(tt.s), tt.max, got, len(got), tr)
			}
		})
	}
}

func TestBuiltinsPassTheFirewall(t *testing.T) {
	calc, _ := NewCalculator(CalculatorConfig{})
	clock, _ := NewClock(ClockConfig{})
	fetch, _ := NewHTTPFetch(HTTPFetchConfig{})
	r, err := NewRegistry(calc, clock, fetch)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := firewall.New(firewall.Config{}, r.Schemas())
	if err != nil {
		t.Fatalf("the built-in schemas are outside the firewall's subset: %v", err)
	}
	tests := []struct {
		call firewall.Call
		want string
	}{
		{firewall.Call{Name: "calculator", Arguments: `{"expression":"17*23"}`}, firewall.Allow},
		{firewall.Call{Name: "current_time", Arguments: `{}`}, firewall.Allow},
		{firewall.Call{Name: "http_fetch", Arguments: `{"url":"https://example.com/?a=1&b=2"}`}, firewall.Allow},
		{firewall.Call{Name: "calculator", Arguments: `{"expr":"1"}`}, firewall.Block},
		{firewall.Call{Name: "current_time", Arguments: `{"timezone":5}`}, firewall.Block},
	}
	for _, tt := range tests {
		t.Run(tt.call.Name+tt.call.Arguments, func(t *testing.T) {
			if v := fw.Check(tt.call); v.Verdict != tt.want {
				t.Errorf("got %v, want %s", v, tt.want)
			}
		})
	}
}

func BenchmarkExecutorCalculator(b *testing.B) {
	calc, _ := NewCalculator(CalculatorConfig{})
	e := newExec(b, ExecutorConfig{}, calc)
	args := json.RawMessage(`{"expression":"17*23"}`)
	ctx := context.Background()
	b.Run("executor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := e.Execute(ctx, "calculator", args); r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := calc.Call(ctx, args); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("executor_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r := e.Execute(ctx, "calculator", args); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	})
}
