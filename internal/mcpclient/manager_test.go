package mcpclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/mcpclient"
	"github.com/agentbus/agentbus/internal/mcpclient/mcptest"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/internal/tools"
)

func TestMain(m *testing.M) {
	mcptest.MainIfServer()
	os.Exit(m.Run())
}

// scanner judges descriptions with the real sanitizer's result
// thresholds, as agentbus does.
type scanner struct{ s *sanitize.Sanitizer }

func (s scanner) ScanDescription(text string) (string, []string) {
	v := s.s.CheckResult(text)
	return v.Verdict, v.Rules
}

var (
	sanOnce sync.Once
	san     *sanitize.Sanitizer
	sanErr  error
)

func newScanner(t testing.TB) scanner {
	sanOnce.Do(func() { san, sanErr = sanitize.New(sanitize.Config{}) })
	if sanErr != nil {
		t.Fatal(sanErr)
	}
	return scanner{san}
}

// harness is a running manager with a change signal.
type harness struct {
	m       *mcpclient.Manager
	changed chan struct{}
	log     *testutil.Buffer
}

func start(t *testing.T, servers map[string]firewall.MCPServer, getenv func(string) string) *harness {
	t.Helper()
	h := &harness{changed: make(chan struct{}, 64), log: &testutil.Buffer{}}
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := firewall.Config{MCPServers: servers}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := mcpclient.New(mcpclient.Options{
		Servers: servers, Getenv: getenv, Scanner: newScanner(t),
		OnChange: func() {
			select {
			case h.changed <- struct{}{}:
			default:
			}
		},
		Log: slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(func() { _ = m.Close() })
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

// waitFor polls cond after every change notification (and every 50ms)
// until it holds or 20s pass.
func (h *harness) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-h.changed:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; status %+v\nlog:\n%s", what, h.m.Status(), h.log.String())
		}
	}
}

func (h *harness) tool(name string) *mcpclient.Tool {
	for _, t := range h.m.Tools() {
		if t.Spec().Name == name {
			return t
		}
	}
	return nil
}

func (h *harness) offered() []string {
	var out []string
	for _, t := range h.m.Tools() {
		if t.Available() {
			out = append(out, t.Spec().Name)
		}
	}
	return out
}

func stdioServer(t *testing.T) (firewall.MCPServer, string) {
	calls := filepath.Join(t.TempDir(), "calls.log")
	argv, env := mcptest.Command(calls)
	e := map[string]firewall.MCPSecret{}
	for k, v := range env {
		e[k] = firewall.MCPSecret{Value: v}
	}
	return firewall.MCPServer{
		Command: argv, Env: e,
		Allow:          []string{"echo", "fetch_page", "add", "crash", "search_issues", "sleep", "add_tool", "late_*"},
		PingInterval:   time.Minute,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		StopTimeout: time.Second, Timeout: time.Second, MaxOutputBytes: 100,
	}, calls
}

func TestStdioServer(t *testing.T) {
	cfg, calls := stdioServer(t)
	h := start(t, map[string]firewall.MCPServer{"test": cfg}, nil)
	ctx := context.Background()

	want := []string{"test__add_tool", "test__crash", "test__echo", "test__fetch_page", "test__search_issues", "test__sleep"}
	if got := h.offered(); !slices.Equal(got, want) {
		t.Fatalf("offered %v, want %v\nlog:\n%s", got, want, h.log.String())
	}
	st := h.m.Status()[0]
	if st.State != mcpclient.StateUp || st.Transport != "stdio" {
		t.Fatalf("status %+v", st)
	}
	if r := st.Refused["admin_reset"]; !strings.HasPrefix(r, "not allowed") {
		t.Fatalf("admin_reset refused for %q", r)
	}
	if r := st.Refused["add"]; !strings.HasPrefix(r, "description: looks like a prompt injection") {
		t.Fatalf("poisoned add refused for %q (status %+v)", r, st)
	}
	if !strings.Contains(h.log.String(), "MCP tool not offered") || !strings.Contains(h.log.String(), "tool=add") {
		t.Fatalf("the refusal is not logged:\n%s", h.log.String())
	}

	t.Run("call", func(t *testing.T) {
		out, err := h.tool("test__echo").Call(ctx, json.RawMessage(`{"text":"hello"}`))
		if err != nil || out != "echo: hello" {
			t.Fatalf("echo: %q, %v", out, err)
		}
		// A protocol error (unknown argument types) is the model's to see.
		out, err = h.tool("test__echo").Call(ctx, json.RawMessage(`{"text":5}`))
		if err != nil || !strings.HasPrefix(out, "error: ") {
			t.Fatalf("bad arguments: %q, %v", out, err)
		}
	})

	t.Run("schema with $defs is kept", func(t *testing.T) {
		spec := h.tool("test__search_issues").Spec()
		var s map[string]any
		if err := json.Unmarshal(spec.Parameters, &s); err != nil || s["$defs"] == nil {
			t.Fatalf("schema %s", spec.Parameters)
		}
		fw, err := firewall.New(firewall.Config{}, map[string]json.RawMessage{spec.Name: spec.Parameters})
		if err != nil {
			t.Fatal(err)
		}
		if v := fw.Check(firewall.Call{Name: spec.Name, Arguments: `{"filter":{"owner":""}}`}); v.Allowed() || v.Rule != firewall.RuleArgsSchema {
			t.Fatalf("empty owner: %v", v)
		}
		if v := fw.Check(firewall.Call{Name: spec.Name, Arguments: `{"filter":{"owner":"nats-io","state":"open"},"limit":5}`}); !v.Allowed() {
			t.Fatalf("valid: %v", v)
		}
	})

	t.Run("list changed", func(t *testing.T) {
		if _, err := h.tool("test__add_tool").Call(ctx, json.RawMessage(`{"name":"late_echo"}`)); err != nil {
			t.Fatal(err)
		}
		h.waitFor(t, "late_echo offered", func() bool { return slices.Contains(h.offered(), "test__late_echo") })
		out, err := h.tool("test__late_echo").Call(ctx, json.RawMessage(`{"text":"x"}`))
		if err != nil || out != "late_echo: x" {
			t.Fatalf("late_echo: %q, %v", out, err)
		}
		// Not allowed: listed, never offered.
		if _, err := h.tool("test__add_tool").Call(ctx, json.RawMessage(`{"name":"sneaky"}`)); err != nil {
			t.Fatal(err)
		}
		h.waitFor(t, "sneaky refused", func() bool { return h.m.Status()[0].Refused["sneaky"] != "" })
		if h.tool("test__sneaky") != nil {
			t.Fatal("sneaky offered")
		}
	})

	t.Run("timeout", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := h.tool("test__sleep").Call(cctx, json.RawMessage(`{"ms":5000}`))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
		if !h.tool("test__echo").Available() {
			t.Fatal("a timed-out call took the server down")
		}
		// Behind the executor the server's own limits apply: its timeout
		// and its output limit.
		var all []tools.Tool
		for _, tl := range h.m.Tools() {
			all = append(all, tl)
		}
		reg, err := tools.NewRegistry(all...)
		if err != nil {
			t.Fatal(err)
		}
		exec, err := tools.NewExecutor(reg, tools.ExecutorConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if r := exec.Execute(ctx, "test__sleep", json.RawMessage(`{"ms":10000}`)); !errors.Is(r.Err, tools.ErrTimeout) || r.Duration > 5*time.Second {
			t.Fatalf("sleep: %+v", r)
		}
		long := strings.Repeat("x", 500)
		if r := exec.Execute(ctx, "test__echo", json.RawMessage(`{"text":"`+long+`"}`)); r.Err != nil || !r.Truncated || len(r.Output) > 100 {
			t.Fatalf("echo: %+v", r)
		}
	})

	t.Run("crash restarts the server", func(t *testing.T) {
		before := h.m.Status()[0].Restarts
		_, err := h.tool("test__crash").Call(ctx, json.RawMessage(`{}`))
		if !errors.Is(err, tools.ErrUnavailable) {
			t.Fatalf("crash: %v", err)
		}
		h.waitFor(t, "restart", func() bool {
			st := h.m.Status()[0]
			return st.Restarts > before && st.State == mcpclient.StateUp
		})
		out, err := h.tool("test__echo").Call(ctx, json.RawMessage(`{"text":"again"}`))
		if err != nil || out != "echo: again" {
			t.Fatalf("after restart: %q, %v", out, err)
		}
		// A restarted server lists its tools afresh.
		if slices.Contains(h.offered(), "test__late_echo") {
			t.Fatal("the new process does not have late_echo")
		}
	})

	if got := mcptest.Calls(calls); slices.Index(got, "crash") < 0 || !slices.Contains(got, "echo") {
		t.Fatalf("calls %v", got)
	}
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	if st := h.m.Status()[0]; st.State != mcpclient.StateStopped || h.tool("test__echo").Available() {
		t.Fatalf("after close: %+v", st)
	}
}

// A command that cannot start is retried with exponential backoff: the
// wait doubles from backoff_initial up to backoff_max.
func TestStdioCommandMissing(t *testing.T) {
	h := start(t, map[string]firewall.MCPServer{"gone": {Command: []string{filepath.Join(t.TempDir(), "no-such-server")}, Allow: []string{"*"},
		ConnectTimeout: time.Second, BackoffInitial: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond}}, nil)
	st := h.m.Status()[0]
	if st.State != mcpclient.StateDown || !strings.Contains(st.LastError, "no-such-server") || len(h.m.Tools()) != 0 {
		t.Fatalf("status %+v", st)
	}
	want := map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 3: 40 * time.Millisecond, 4: 80 * time.Millisecond, 5: 80 * time.Millisecond, 6: 80 * time.Millisecond}
	seen := map[int]bool{}
	h.waitFor(t, "six retries", func() bool {
		st := h.m.Status()[0]
		if w, ok := want[st.Retries]; ok {
			if st.RetryIn != w {
				t.Fatalf("retry %d waits %s, want %s", st.Retries, st.RetryIn, w)
			}
			seen[st.Retries] = true
		}
		return st.Retries >= 6
	})
	if len(seen) < 2 {
		t.Fatalf("saw too few retries: %v", seen)
	}
}

// authed serves the test server behind a bearer token.
func authed(token string, calls string) http.Handler {
	inner := mcptest.Handler(calls)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

func TestHTTPServer(t *testing.T) {
	const token = "s3cret-token-value-123"
	srv := httptest.NewServer(authed(token, ""))
	t.Cleanup(srv.Close)
	env := map[string]string{"MCP_TOKEN": token}
	getenv := func(k string) string { return env[k] }
	cfg := firewall.MCPServer{
		URL:     srv.URL + "/mcp?api_key=" + token,
		Headers: map[string]firewall.MCPSecret{"Authorization": {Env: "MCP_TOKEN", Prefix: "Bearer "}},
		Allow:   []string{"echo", "search_*"}, PingInterval: 100 * time.Millisecond,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, ConnectTimeout: 2 * time.Second,
	}
	bad := cfg
	bad.Headers = map[string]firewall.MCPSecret{"Authorization": {Value: "Bearer wrong-token-xyz"}}
	h := start(t, map[string]firewall.MCPServer{"remote": cfg, "badauth": bad}, getenv)

	if got := h.offered(); !slices.Equal(got, []string{"remote__echo", "remote__search_issues"}) {
		t.Fatalf("offered %v\nlog:\n%s", got, h.log.String())
	}
	out, err := h.tool("remote__echo").Call(context.Background(), json.RawMessage(`{"text":"over http"}`))
	if err != nil || out != "echo: over http" {
		t.Fatalf("echo: %q, %v", out, err)
	}
	sts := h.m.Status()
	if sts[0].Name != "badauth" || sts[0].State != mcpclient.StateDown || !strings.Contains(sts[0].LastError, "401") && !strings.Contains(strings.ToLower(sts[0].LastError), "unauthorized") {
		t.Fatalf("badauth %+v", sts[0])
	}
	for _, secret := range []string{token, "wrong-token-xyz"} {
		if strings.Contains(h.log.String(), secret) || strings.Contains(sts[0].LastError, secret) {
			t.Fatalf("a secret reached the log or the status:\n%s\n%+v", h.log.String(), sts)
		}
	}
	if !strings.Contains(h.log.String(), "env:MCP_TOKEN") && !strings.Contains(h.log.String(), "headers=[Authorization]") {
		t.Logf("log:\n%s", h.log.String())
	}
}

// TestHTTPServerDown: a server that goes away is withdrawn (pings fail)
// and offered again once it is back at the same address.
func TestHTTPServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) *http.Server {
		s := &http.Server{Handler: mcptest.Handler(""), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = s.Serve(ln) }()
		return s
	}
	s1 := serve(ln)
	h := start(t, map[string]firewall.MCPServer{"web": {URL: "http://" + addr + "/", Allow: []string{"echo"}, PingInterval: 50 * time.Millisecond,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, ConnectTimeout: time.Second}}, nil)
	if got := h.offered(); !slices.Equal(got, []string{"web__echo"}) {
		t.Fatalf("offered %v", got)
	}
	_ = s1.Close()
	h.waitFor(t, "withdrawn", func() bool { return len(h.offered()) == 0 && h.m.Status()[0].State == mcpclient.StateDown })
	if _, err := h.tool("web__echo").Call(context.Background(), json.RawMessage(`{"text":"x"}`)); !errors.Is(err, tools.ErrUnavailable) {
		t.Fatalf("call while down: %v", err)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	s2 := serve(ln2)
	t.Cleanup(func() { _ = s2.Close() })
	h.waitFor(t, "back", func() bool { return slices.Equal(h.offered(), []string{"web__echo"}) })
	out, err := h.tool("web__echo").Call(context.Background(), json.RawMessage(`{"text":"back"}`))
	if err != nil || out != "echo: back" {
		t.Fatalf("echo: %q, %v", out, err)
	}
}

func TestInvalidConfig(t *testing.T) {
	_, err := mcpclient.New(mcpclient.Options{Servers: map[string]firewall.MCPServer{"a__b": {}}})
	if !errors.Is(err, mcpclient.ErrConfig) || !errors.Is(err, firewall.ErrInvalidConfig) || !strings.Contains(err.Error(), "set command (stdio) or url") {
		t.Fatalf("err %v", err)
	}
}

func TestMissingEnv(t *testing.T) {
	_, err := mcpclient.New(mcpclient.Options{Servers: map[string]firewall.MCPServer{"gh": {URL: "https://example.com/mcp",
		Headers: map[string]firewall.MCPSecret{"Authorization": {Env: "NO_SUCH_TOKEN_VAR"}}}}, Getenv: func(string) string { return "" }})
	if !errors.Is(err, mcpclient.ErrConfig) || !errors.Is(err, firewall.ErrMissingEnv) || !strings.Contains(err.Error(), "NO_SUCH_TOKEN_VAR") {
		t.Fatalf("err %v", err)
	}
}

func benchStdio(b *testing.B) firewall.MCPServer {
	argv, env := mcptest.Command("")
	e := map[string]firewall.MCPSecret{}
	for k, v := range env {
		e[k] = firewall.MCPSecret{Value: v}
	}
	return firewall.MCPServer{Command: argv, Env: e, Allow: []string{"echo"}}
}

func newBenchManager(b *testing.B, servers map[string]firewall.MCPServer) (*mcpclient.Manager, error) {
	m, err := mcpclient.New(mcpclient.Options{Servers: servers})
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() { _ = m.Close() })
	return m, m.Start(context.Background())
}
