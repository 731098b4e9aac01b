package app_test

// A remote tool written in JavaScript (examples/remote-tool-js) joins the
// agentbus-tools NATS micro service; agentbus discovers it at start, offers
// it to the model, lets it through the firewall and calls it over NATS.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/internal/stage/toolexec"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startJSTool runs examples/remote-tool-js/tool.js against natsURL, waits
// for its "ready" line, and at cleanup stops it with SIGTERM and checks it
// exits cleanly.
func startJSTool(t *testing.T, node, dir, natsURL, creds string) {
	t.Helper()
	cmd := exec.Command(node, "tool.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NATS_URL="+natsURL, "NATS_CREDS="+creds)
	stderr := &testutil.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				select {
				case ready <- id:
				default:
				}
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-drained // Wait must not close the pipe before it is read
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("tool.js did not stop cleanly on SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("tool.js still running 10s after SIGTERM\n%s", stderr.String())
		}
	})
	select {
	case id := <-ready:
		t.Logf("tool.js ready, service instance %s", id)
	case err := <-exited:
		t.Fatalf("tool.js exited before ready: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("tool.js not ready after 30s\n%s", stderr.String())
	}
}

// scriptedModel is an OpenAI-compatible chat endpoint that asks for
// word_count when it is offered and answers with the tool's result once
// it has it. It records the tools offered with each request.
type scriptedModel struct {
	mu      sync.Mutex
	offered [][]string
}

func (m *scriptedModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []messages.Message `json:"messages"`
		Tools    []struct {
			Function struct {
				Name        string          `json:"name"`
				Description string          `json:"description"`
				Parameters  json.RawMessage `json:"parameters"`
			} `json:"function"`
		} `json:"tools"`
	}
	if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Messages) == 0 {
		http.Error(w, `{"error":{"message":"bad request","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	var names []string
	for _, tl := range req.Tools {
		names = append(names, tl.Function.Name)
	}
	m.mu.Lock()
	m.offered = append(m.offered, names)
	m.mu.Unlock()
	last := req.Messages[len(req.Messages)-1]
	msg := messages.Message{Role: "assistant"}
	finish := "stop"
	switch {
	case last.Role == messages.RoleTool:
		msg.Content = "word_count says " + last.Content
	case slices.Contains(names, "word_count"):
		args, _ := json.Marshal(map[string]string{"text": last.Content})
		msg.ToolCalls = []messages.ToolCall{{ID: "call_wc1", Type: "function", Function: messages.FunctionCall{Name: "word_count", Arguments: string(args)}}}
		finish = "tool_calls"
	default:
		msg.Content = fmt.Sprintf("word_count is not offered (tools: %v)", names)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-scripted", "object": "chat.completion", "model": "scripted",
		"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   map[string]int{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
	})
}

func (m *scriptedModel) offers() [][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.offered)
}

func TestRemoteToolJS(t *testing.T) {
	node, dir := nodeExample(t, "remote-tool-js")
	// An external server trusting the authority of the data directory the
	// system will use: the tool has its own tool credential.
	data := t.TempDir()
	auth, err := natsauth.LoadOrCreate(app.AuthDir(data))
	if err != nil {
		t.Fatal(err)
	}
	ns := testutil.NATSServerWith(t, t.TempDir(), -1, auth.ConfigureServer)
	startJSTool(t, node, dir, ns.ClientURL(), apptest.AuthorityCreds(t, auth, app.RoleTool, "word_count", app.GrantOptions{}))
	ctx := context.Background()

	t.Run("discovered and called from Go", func(t *testing.T) {
		// As the toolexec stage does, with its identity.
		co, err := pipeline.CredsFile(apptest.AuthorityCreds(t, auth, app.StageToolexec, "toolexec-probe", app.GrantOptions{})).ConnectOptions("")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(ns.ClientURL(), co...)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		found, err := toolexec.DiscoverRemoteTools(ctx, nc, time.Second, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var wc *toolexec.RemoteTool
		for _, r := range found {
			if r.Spec().Name == "word_count" {
				wc = r
			}
		}
		if wc == nil || len(found) != 1 {
			t.Fatalf("discovered %d tools, want word_count only", len(found))
		}
		spec := wc.Spec()
		var schema struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		}
		if err := json.Unmarshal(spec.Parameters, &schema); err != nil || schema.Type != "object" || schema.Properties["text"] == nil || !slices.Equal(schema.Required, []string{"text"}) {
			t.Fatalf("schema %s (%v)", spec.Parameters, err)
		}
		if wc.Subject() != "agentbus.tool.word_count" || !strings.Contains(spec.Description, "words") {
			t.Fatalf("subject %q description %q", wc.Subject(), spec.Description)
		}
		out, err := wc.Call(ctx, json.RawMessage(`{"text":"one two  three\nfour élan"}`))
		if err != nil {
			t.Fatal(err)
		}
		var counts struct{ Words, Lines, Characters int }
		if err := json.Unmarshal([]byte(out), &counts); err != nil || counts.Words != 5 || counts.Lines != 2 || counts.Characters != 24 {
			t.Fatalf("result %q (%v)", out, err)
		}
		// A failed call is a micro error, reported with its code.
		_, err = wc.Call(ctx, json.RawMessage(`{"txt":"typo"}`))
		if err == nil || !strings.Contains(err.Error(), "(400)") || !strings.Contains(err.Error(), `"text"`) {
			t.Fatalf("bad arguments: %v", err)
		}
	})

	model := &scriptedModel{}
	ms := httptest.NewServer(model)
	t.Cleanup(ms.Close)
	providers := filepath.Join(t.TempDir(), "providers.json")
	cfg := fmt.Sprintf(`{"providers":[{"name":"scripted","kind":"local","base_url":%q,"model":"scripted"}],"retry":{"max_attempts":1}}`, ms.URL+"/v1")
	if err := os.WriteFile(providers, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startSystem(t, func(o *app.Options) {
		o.Pipeline.NATSURL = ns.ClientURL()
		o.DataDir = data
		o.Tools.Remote = true
		o.Tools.RemoteAllow = []string{"word_count"}
		o.Tools.RemoteWait = time.Second
		o.ProvidersFile = providers
	})
	nc := sys.Runtime.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// toolcalls publishes a model's call of word_count with args and
	// returns the event that answers it: tooled, or a terminal failure.
	toolcalls := func(t *testing.T, rid, args string) (string, messages.Generation, messages.Failed) {
		t.Helper()
		sub, err := nc.SubscribeSync(messages.ReplyFilter(rid))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		g := messages.Generation{
			Admitted: messages.Admitted{Turn: messages.Turn{
				SchemaVersion: messages.SchemaVersion, RequestID: rid, ConversationID: "conv_" + rid, User: "js-tool-test",
				Endpoint: "nats", Messages: []messages.Message{{Role: "user", Content: "count these words please"}}, CreatedAt: time.Now().UTC(),
			}, Guard: messages.Verdict{Action: "allow"}},
			Steps: []messages.Message{{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{{
				ID: "call_" + rid, Type: "function", Function: messages.FunctionCall{Name: "word_count", Arguments: args},
			}}}},
		}
		if err := apptest.Publish(js, messages.EventToolCalls, rid, g); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := sub.NextMsg(15 * time.Second)
			if err != nil {
				t.Fatalf("no tooled event: %v", err)
			}
			ev, _, _ := messages.ParseSubject(msg.Subject)
			var out messages.Generation
			var f messages.Failed
			switch ev {
			case messages.EventTooled:
				if err := json.Unmarshal(msg.Data, &out); err != nil {
					t.Fatal(err)
				}
				return ev, out, f
			case messages.EventFailed, messages.EventRejected:
				_ = json.Unmarshal(msg.Data, &f)
				return ev, out, f
			}
		}
	}

	t.Run("toolexec calls the JS tool", func(t *testing.T) {
		rid := "req_jstool1"
		ev, g, f := toolcalls(t, rid, `{"text":"the quick brown fox jumps"}`)
		if ev != messages.EventTooled {
			t.Fatalf("event %s: %+v", ev, f)
		}
		res, ok := g.Final()
		if !ok || res.Role != messages.RoleTool || res.ToolCallID != "call_"+rid || res.Name != "word_count" {
			t.Fatalf("last step %+v", res)
		}
		if res.Content != `{"words":5,"lines":1,"characters":25}` {
			t.Fatalf("tool result %q", res.Content)
		}
		if len(g.ToolVerdicts) != 1 || g.ToolVerdicts[0].Verdict != "allow" || g.ToolVerdicts[0].ResultVerdict != "allow" {
			t.Fatalf("verdicts %+v", g.ToolVerdicts)
		}
	})

	t.Run("firewall checks the JS tool's schema", func(t *testing.T) {
		ev, _, f := toolcalls(t, "req_jstool2", `{"text":"fine","extra":1}`)
		if ev != messages.EventFailed || f.Code != messages.CodeToolBlocked || !strings.Contains(f.Reason, "args.schema") {
			t.Fatalf("event %s: %+v", ev, f)
		}
	})

	t.Run("offered to the model, end to end over HTTP", func(t *testing.T) {
		key := newKey(t, sys, "js-tool-user")
		body, _ := json.Marshal(map[string]any{"model": "scripted", "messages": []map[string]string{{"role": "user", "content": "alpha beta gamma"}}})
		r := post(t, sys, key, "", string(body))
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.raw)
		}
		if got := content(t, r); got != `word_count says {"words":3,"lines":1,"characters":16}` {
			t.Fatalf("answer %q", got)
		}
		offers := model.offers()
		if len(offers) < 2 || !slices.Contains(offers[0], "word_count") || !slices.Contains(offers[0], "calculator") {
			t.Fatalf("tools offered per model call: %v", offers)
		}
	})
}

// A client in JavaScript (examples/nats-client-js) with a client
// credential and an API key: a plain and a streamed turn through the NATS
// entry, answers on its own inbox.
func TestNATSClientJS(t *testing.T) {
	node, dir := nodeExample(t, "nats-client-js")
	sys := startSystem(t, nil)
	key := newKey(t, sys, "js-client")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.js", "What is 6*7?")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NATS_URL="+sys.Runtime.URL(), "AGENTBUS_API_KEY="+key,
		"NATS_CREDS="+apptest.CredsFile(t, sys, app.RoleClient, "billing-bot", app.GrantOptions{}))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.js: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var res struct {
		Plain, Streamed, Conversation string
		Chunks                        int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if !strings.Contains(res.Plain, "42") || res.Chunks < 2 || res.Streamed == "" || !strings.HasPrefix(res.Conversation, "conv_") {
		t.Fatalf("%+v", res)
	}
}
