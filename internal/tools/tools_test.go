package tools

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func fn(name string, f func(ctx context.Context, args json.RawMessage) (string, error)) Func {
	return Func{S: Spec{Name: name, Description: name, Parameters: json.RawMessage(`{"type":"object"}`)}, F: f}
}

func echo(name string) Func {
	return fn(name, func(_ context.Context, a json.RawMessage) (string, error) { return string(a), nil })
}

func TestRegistry(t *testing.T) {
	tests := []struct {
		name    string
		tools   []Tool
		wantErr error
	}{
		{"ok", []Tool{echo("a"), echo("b")}, nil},
		{"duplicate", []Tool{echo("calc"), echo("calc")}, ErrDuplicate},
		{"duplicate after normalisation", []Tool{echo("Calc"), echo("calc")}, ErrDuplicate},
		{"empty name", []Tool{echo("")}, ErrInvalidSpec},
		{"bad characters", []Tool{echo("a b")}, ErrInvalidSpec},
		{"too long", []Tool{echo(strings.Repeat("a", 65))}, ErrInvalidSpec},
		{"bad schema", []Tool{Func{S: Spec{Name: "x", Parameters: json.RawMessage(`[1]`)}}}, ErrInvalidSpec},
		{"nil tool", []Tool{nil}, ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRegistry(tt.tools...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("NewRegistry() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != len(tt.tools) {
				t.Errorf("Len() = %d", r.Len())
			}
		})
	}
}

func TestRegistryLookupAndSpecs(t *testing.T) {
	r, err := NewRegistry(echo("zeta"), echo("Alpha"), echo("mid_tool"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "ALPHA", "ａｌｐｈａ", "al\u200bpha"} {
		if _, ok := r.Lookup(n); !ok {
			t.Errorf("Lookup(%q) failed", n)
		}
	}
	if _, ok := r.Lookup("beta"); ok {
		t.Error("Lookup(beta) succeeded")
	}
	var names []string
	for _, s := range r.Specs() {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "Alpha,mid_tool,zeta" {
		t.Errorf("Specs() names = %s", got)
	}
	if got := len(r.Schemas()); got != 3 {
		t.Errorf("Schemas() has %d entries", got)
	}
	if err := r.Register(echo("MID_TOOL")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Register duplicate: %v", err)
	}
}

func TestClock(t *testing.T) {
	fixed := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	c, err := NewClock(ClockConfig{Now: func() time.Time { return fixed }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args, want, wantErr string
	}{
		{`{}`, "2026-03-01T09:30:00Z", ""},
		{``, "2026-03-01T09:30:00Z", ""},
		{`{"timezone":"Europe/Paris"}`, "2026-03-01T10:30:00+01:00", ""},
		{`{"timezone":"America/New_York"}`, "2026-03-01T04:30:00-05:00", ""},
		{`{"timezone":"Asia/Kolkata"}`, "2026-03-01T15:00:00+05:30", ""},
		{`{"timezone":"UTC"}`, "2026-03-01T09:30:00Z", ""},
		{`{"timezone":"Mars/Olympus"}`, "", `unknown time zone "Mars/Olympus"`},
		{`{"timezone":"../../etc/passwd"}`, "", "unknown time zone"},
		{`{"timezone":"/etc/localtime"}`, "", "unknown time zone"},
		{`{"timezone":"Local"}`, "", "unknown time zone"},
		{`{"tz":"UTC"}`, "", "invalid arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			got, err := c.Call(context.Background(), json.RawMessage(tt.args))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestBuiltinSpecsAreValidForTheFirewall(t *testing.T) {
	calc, _ := NewCalculator(CalculatorConfig{})
	clock, _ := NewClock(ClockConfig{})
	fetch, _ := NewHTTPFetch(HTTPFetchConfig{})
	r, err := NewRegistry(calc, clock, fetch)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Specs() {
		var m map[string]any
		if err := json.Unmarshal(s.Parameters, &m); err != nil || m["type"] != "object" {
			t.Errorf("%s: parameters %s are not an object schema", s.Name, s.Parameters)
		}
		if s.Description == "" {
			t.Errorf("%s: no description", s.Name)
		}
	}
}
