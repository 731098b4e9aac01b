package app_test

// MCP servers behind the firewall (issue 19), through the whole pipeline:
// a server written in the test with the official Go SDK, over stdio (this
// test binary re-executed, see TestMain) and over streamable HTTP.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/mcpclient/mcptest"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// directedModel is an OpenAI-compatible endpoint that does what the user
// says: "call TOOL ARGS" asks for TOOL with the JSON ARGS; once a tool
// result is there it answers "result: <content>". It records the tools
// offered with each request.
type directedModel struct {
	mu      sync.Mutex
	offered [][]string
	calls   int
}

func (m *directedModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []messages.Message `json:"messages"`
		Tools    []struct {
			Function struct {
				Name        string `json:"name"`
				Description string `json:"description"`
			} `json:"function"`
		} `json:"tools"`
	}
	if json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Messages) == 0 {
		http.Error(w, `{"error":{"message":"bad request","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	var names []string
	for _, tl := range req.Tools {
		names = append(names, tl.Function.Name)
		if strings.Contains(tl.Function.Description, "IMPORTANT") {
			names = append(names, "POISONED:"+tl.Function.Name)
		}
	}
	m.mu.Lock()
	m.offered = append(m.offered, names)
	m.calls++
	m.mu.Unlock()
	last := req.Messages[len(req.Messages)-1]
	msg := messages.Message{Role: "assistant"}
	finish := "stop"
	text := last.Content
	if last.Role == messages.RoleTool {
		msg.Content = "result: " + text
	} else if rest, ok := strings.CutPrefix(text, "call "); ok {
		tool, args, _ := strings.Cut(rest, " ")
		msg.ToolCalls = []messages.ToolCall{{ID: "call_1", Type: "function", Function: messages.FunctionCall{Name: tool, Arguments: args}}}
		finish = "tool_calls"
	} else {
		msg.Content = "no directive"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-directed", "object": "chat.completion", "model": "directed",
		"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   map[string]int{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
	})
}

func (m *directedModel) lastOffer() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.offered) == 0 {
		return nil
	}
	return slices.Clone(m.offered[len(m.offered)-1])
}

func (m *directedModel) modelCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// directedProvider points the llm stage at handler.
func directedProvider(t *testing.T, handler http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p := filepath.Join(t.TempDir(), "providers.json")
	cfg := fmt.Sprintf(`{"providers":[{"name":"directed","kind":"local","base_url":"http://%s/v1","model":"directed"}],"retry":{"max_attempts":1}}`, ln.Addr())
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mcpHTTP serves the test MCP server behind a bearer token on a fixed
// address, and can stop and start again there.
type mcpHTTP struct {
	addr, token string
	mu          sync.Mutex
	srv         *http.Server
}

func (s *mcpHTTP) start(t testing.TB) {
	t.Helper()
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	inner := mcptest.Handler("")
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+s.token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	t.Cleanup(s.stop)
}

func (s *mcpHTTP) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

// mcpToolsFile is the tools file of the test: a stdio server "local"
// (this binary as the MCP server, calls logged to calls) and an HTTP
// server "remote" with a token from the environment.
func mcpToolsFile(calls, httpAddr string) string {
	return fmt.Sprintf(`
mcp_servers:
  local:
    command: [%q, "-test.run=^$"]
    env:
      %s: stdio
      %s: %q
    allow: [echo, fetch_page, add, crash, search_issues]
    backoff_initial: 20ms
    backoff_max: 200ms
    stop_timeout: 1s
  remote:
    url: http://%s/mcp
    headers:
      Authorization: {env: TEST_MCP_TOKEN, prefix: "Bearer "}
    allow: ["ec*"]
    ping_interval: 100ms
    backoff_initial: 20ms
    backoff_max: 200ms
    connect_timeout: 2s
`, os.Args[0], mcptest.EnvServer, mcptest.EnvCalls, calls, httpAddr)
}

func TestMCPServers(t *testing.T) {
	const token = "mcp-test-token-0123456789"
	web := &mcpHTTP{token: token}
	web.start(t)
	calls := filepath.Join(t.TempDir(), "calls.log")
	fwc, err := firewall.ParseConfig([]byte(mcpToolsFile(calls, web.addr)))
	if err != nil {
		t.Fatal(err)
	}
	model := &directedModel{}
	sys := startSystem(t, func(o *app.Options) {
		o.ProvidersFile = directedProvider(t, model)
		o.Firewall = fwc
		o.Getenv = func(k string) string {
			if k == "TEST_MCP_TOKEN" {
				return token
			}
			return ""
		}
		o.Limits = app.LimitsFrom(0, 0, 0)
	})
	key := newKey(t, sys, "mcp-user")
	js := sys.Runtime.JetStream()
	turn := func(t *testing.T, text string) httpResult {
		t.Helper()
		return post(t, sys, key, "", chatBodyFor("directed", text))
	}
	// verdicts reads the tool verdicts of a turn's terminal event.
	verdicts := func(t *testing.T, r httpResult, event string) []messages.ToolVerdict {
		t.Helper()
		rid := r.header.Get("X-Request-Id")
		m, err := testutil.LastMsg(js, messages.StreamTurns, messages.Subject(event, rid))
		if err != nil {
			t.Fatalf("%s event of %s: %v", event, rid, err)
		}
		var v struct {
			ToolVerdicts []messages.ToolVerdict `json:"tool_verdicts"`
		}
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatal(err)
		}
		return v.ToolVerdicts
	}
	countCalls := func(tool string) int {
		n := 0
		for _, c := range mcptest.Calls(calls) {
			if c == tool {
				n++
			}
		}
		return n
	}

	t.Run("a whole turn uses a stdio MCP tool", func(t *testing.T) {
		r := turn(t, `call local__echo {"text":"hello over stdio"}`)
		if r.status != 200 || content(t, r) != "result: echo: hello over stdio" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		offer := model.lastOffer()
		for _, want := range []string{"local__echo", "local__fetch_page", "local__search_issues", "remote__echo", "calculator"} {
			if !slices.Contains(offer, want) {
				t.Errorf("%s not offered: %v", want, offer)
			}
		}
		// Replay and audit read the server and tool from the name.
		v := verdicts(t, r, messages.EventCompleted)
		if len(v) != 1 || v[0].Tool != "local__echo" || v[0].Verdict != "allow" || v[0].ResultVerdict != "allow" {
			t.Fatalf("verdicts %+v", v)
		}
	})

	t.Run("an HTTP MCP tool with an auth header", func(t *testing.T) {
		r := turn(t, `call remote__echo {"text":"hello over http"}`)
		if r.status != 200 || content(t, r) != "result: echo: hello over http" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("a poisoned description is never offered", func(t *testing.T) {
		for _, offer := range model.offered {
			for _, name := range offer {
				if strings.HasPrefix(name, "POISONED:") || name == "local__add" || name == "local__admin_reset" {
					t.Fatalf("offered %v", offer)
				}
			}
		}
		// A model that calls it anyway is refused by the firewall.
		r := turn(t, `call local__add {"a":1,"b":2}`)
		if r.status != http.StatusForbidden || errCode(r) != messages.CodeToolBlocked || !strings.Contains(r.raw, "tool.unknown") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if countCalls("add") != 0 {
			t.Fatal("the poisoned tool was called")
		}
		h := toolexecHealth(t, sys, key)
		if !strings.Contains(h, `description: looks like a prompt injection`) {
			t.Fatalf("the refusal is not in the health report: %s", h)
		}
	})

	t.Run("an injected result is withheld", func(t *testing.T) {
		r := turn(t, `call local__fetch_page {"url":"https://example.com/"}`)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if got := content(t, r); !strings.HasPrefix(got, "result: [tool result withheld") || strings.Contains(got, "system prompt") {
			t.Fatalf("the model saw %q", got)
		}
		if v := verdicts(t, r, messages.EventCompleted); len(v) != 1 || v[0].ResultVerdict != "block" {
			t.Fatalf("verdicts %+v", v)
		}
	})

	t.Run("$ref schema arguments are validated", func(t *testing.T) {
		r := turn(t, `call local__search_issues {"filter":{"owner":""}}`)
		if r.status != http.StatusForbidden || !strings.Contains(r.raw, "args.schema") || !strings.Contains(r.raw, "/filter/owner") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		r = turn(t, `call local__search_issues {"filter":{"owner":"nats-io","state":"merged"}}`)
		if r.status != http.StatusForbidden || !strings.Contains(r.raw, "args.schema") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		before := countCalls("search_issues")
		r = turn(t, `call local__search_issues {"filter":{"owner":"nats-io","state":"open"},"limit":3}`)
		if r.status != 200 || content(t, r) != `result: issues for {"filter":{"owner":"nats-io","state":"open"},"limit":3}` {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if countCalls("search_issues") != before+1 {
			t.Fatal("blocked calls reached the server")
		}
	})

	t.Run("a crash restarts the server and fails the turn once", func(t *testing.T) {
		modelBefore := model.modelCalls()
		r := turn(t, `call local__crash {}`)
		if r.status != http.StatusServiceUnavailable || errCode(r) != messages.CodeUnavailable || !strings.Contains(r.raw, "local__crash") || r.header.Get("Retry-After") != "5" {
			t.Fatalf("%d %v %s", r.status, r.header, r.raw)
		}
		if v := verdicts(t, r, messages.EventFailed); len(v) != 1 || v[0].ResultVerdict != "unavailable" {
			t.Fatalf("verdicts %+v", v)
		}
		if got := countCalls("crash"); got != 1 {
			t.Fatalf("crash called %d times", got)
		}
		if got := model.modelCalls() - modelBefore; got != 1 {
			t.Fatalf("the model was called %d times for the failed turn", got)
		}
		rid := r.header.Get("X-Request-Id")
		info, err := testutil.StreamInfo(js, messages.StreamTurns, "agentbus.turn.*."+rid)
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[messages.Subject(messages.EventFailed, rid)]; n != 1 {
			t.Fatalf("%d failed events: %v", n, info.State.Subjects)
		}
		// The server is back: the next turn uses it.
		waitFor(t, "the restarted server answers", func() bool {
			r := turn(t, `call local__echo {"text":"after the crash"}`)
			return r.status == 200 && content(t, r) == "result: echo: after the crash"
		})
		if h := toolexecHealth(t, sys, key); !strings.Contains(h, `"restarts":1`) {
			t.Fatalf("health %s", h)
		}
	})

	t.Run("a redelivered step does not call the server again", func(t *testing.T) {
		rid := "req_mcpredeliver"
		g := messages.Generation{
			Admitted: messages.Admitted{Turn: apptest.Turn(rid, "mcp-user", "echo please"), Guard: messages.Verdict{Action: "allow"}},
			Steps: []messages.Message{{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{{
				ID: "call_r1", Type: "function", Function: messages.FunctionCall{Name: "local__echo", Arguments: `{"text":"once"}`},
			}}}},
		}
		g.Model = "directed"
		before := countCalls("echo")
		seq1 := publishStep(t, js, rid, g, messages.MsgID(rid, messages.EventToolCalls, 0))
		waitConsumed(t, js, seq1)
		if _, err := testutil.LastMsg(js, messages.StreamTurns, messages.Subject(messages.EventTooled, rid)); err != nil {
			t.Fatalf("no tooled event: %v", err)
		}
		if got := countCalls("echo") - before; got != 1 {
			t.Fatalf("echo called %d times", got)
		}
		// The same step again (a redelivery: another copy of the message).
		seq2 := publishStep(t, js, rid, g, messages.MsgID(rid, messages.EventToolCalls, 0)+"/again")
		waitConsumed(t, js, seq2)
		if got := countCalls("echo") - before; got != 1 {
			t.Fatalf("after the redelivery echo was called %d times", got)
		}
	})

	t.Run("a server that is down degrades toolexec and its tools are withdrawn", func(t *testing.T) {
		web.stop()
		waitFor(t, "remote withdrawn", func() bool {
			r := turn(t, "hello")
			return r.status == 200 && !slices.Contains(model.lastOffer(), "remote__echo") && slices.Contains(model.lastOffer(), "local__echo")
		})
		hr := healthOf(t, sys, key)
		st := hr.Stages["toolexec"]
		if hr.Status != pipeline.Degraded || st.Status != pipeline.Degraded || len(st.Instances) == 0 {
			t.Fatalf("health %+v", hr)
		}
		c := st.Instances[0].Checks["mcp remote"]
		if c.Status != pipeline.Degraded || st.Instances[0].Checks["mcp local"].Status != pipeline.Healthy {
			t.Fatalf("checks %+v", st.Instances[0].Checks)
		}
		if strings.Contains(fmt.Sprint(hr), token) {
			t.Fatal("the token is in the health report")
		}
		// A model that still calls it gets a clean 503.
		r := turn(t, `call remote__echo {"text":"anyone?"}`)
		if r.status != http.StatusServiceUnavailable || errCode(r) != messages.CodeUnavailable {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		web.start(t)
		waitFor(t, "remote offered again", func() bool {
			r := turn(t, `call remote__echo {"text":"back"}`)
			return r.status == 200 && content(t, r) == "result: echo: back"
		})
		if hr := healthOf(t, sys, key); hr.Stages["toolexec"].Status != pipeline.Healthy {
			t.Fatalf("health %+v", hr.Stages["toolexec"])
		}
	})
}

// publishStep puts a toolcalls event on the stream with the message
// id msgID and returns its stream sequence.
func publishStep(t *testing.T, js jetstream.JetStream, rid string, g messages.Generation, msgID string) uint64 {
	t.Helper()
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(messages.Subject(messages.EventToolCalls, rid))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, msgID)
	ack, err := js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatal("dropped as a duplicate")
	}
	return ack.Sequence
}

// waitConsumed waits until toolexec acknowledged every toolcalls event up
// to the stream sequence seq.
func waitConsumed(t *testing.T, js jetstream.JetStream, seq uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("toolexec acknowledged seq %d", seq), func() bool {
		info, err := testutil.ConsumerInfo(js, messages.StreamTurns, pipeline.DurableName("toolexec", messages.EventToolCalls))
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
	})
}

// waitFor polls cond until it holds or 30s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		tm := time.NewTimer(50 * time.Millisecond)
		<-tm.C
	}
}

type healthReport struct {
	Status string `json:"status"`
	Stages map[string]struct {
		Status    string                  `json:"status"`
		Instances []pipeline.HealthReport `json:"instances"`
	} `json:"stages"`
}

func healthOf(t *testing.T, sys *app.System, key string) healthReport {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+sys.HTTPAddr+"/health", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h healthReport
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health: %d %+v", resp.StatusCode, h)
	}
	return h
}

// toolexecHealth is toolexec's health report as JSON.
func toolexecHealth(t *testing.T, sys *app.System, key string) string {
	t.Helper()
	b, _ := json.Marshal(healthOf(t, sys, key).Stages["toolexec"])
	return string(b)
}

// In a split deployment the MCP servers run in the toolexec process; the
// llm process learns the tools it may offer from toolexec's catalog, each
// with its own NATS identity.
func TestMCPSplitDeployment(t *testing.T) {
	model := &directedModel{}
	sys := startSystem(t, func(o *app.Options) {
		o.Stages = []string{app.StageIngest, app.StageGuard, app.StageLLM, app.StagePersist}
		o.ProvidersFile = directedProvider(t, model)
		o.Tools.RemoteRefresh = 100 * time.Millisecond
	})
	calls := filepath.Join(t.TempDir(), "calls.log")
	argv, env := mcptest.Command(calls)
	e := map[string]firewall.MCPSecret{}
	for k, v := range env {
		e[k] = firewall.MCPSecret{Value: v}
	}
	o := app.DefaultOptions()
	o.Stages = []string{app.StageToolexec}
	o.DataDir = t.TempDir()
	o.Pipeline.NATSURL = sys.Runtime.URL()
	o.NATSCreds = apptest.CredsFile(t, sys, app.StageToolexec, "toolexec-mcp", app.GrantOptions{})
	o.Getenv = func(string) string { return "" }
	o.Tools.Remote = false
	o.Firewall = firewall.Config{MCPServers: map[string]firewall.MCPServer{"local": {Command: argv, Env: e, Allow: []string{"echo"}}}}
	te, err := app.Start(context.Background(), o, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(te.Close)
	key := newKey(t, sys, "split-user")
	waitFor(t, "the llm stage offers the toolexec's MCP tool", func() bool {
		r := post(t, sys, key, "", chatBodyFor("directed", `call local__echo {"text":"split"}`))
		return r.status == 200 && content(t, r) == "result: echo: split" && slices.Contains(model.lastOffer(), "local__echo")
	})
}
