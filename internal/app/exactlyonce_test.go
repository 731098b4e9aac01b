package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// slowModel answers every prompt after a delay and counts its calls per
// prompt (thread-safe).
type slowModel struct {
	delay time.Duration
	mu    sync.Mutex
	calls map[string]int
}

func (m *slowModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []messages.Message `json:"messages"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	last := req.Messages[len(req.Messages)-1].Content
	m.mu.Lock()
	m.calls[last]++
	m.mu.Unlock()
	select {
	case <-time.After(m.delay):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(map[string]any{"id": "x", "object": "chat.completion", "model": "slow-1",
		"choices": []map[string]any{{"index": 0, "message": map[string]string{"role": "assistant", "content": "slow answer to " + last}, "finish_reason": "stop"}},
		"usage":   map[string]int{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
	_, _ = w.Write(b)
}

func slowProvider(t *testing.T, m *slowModel) string {
	t.Helper()
	s := httptest.NewServer(m)
	t.Cleanup(s.Close)
	p := filepath.Join(t.TempDir(), "providers.json")
	cfg := fmt.Sprintf(`{"providers":[{"name":"slow","kind":"local","base_url":%q,"model":"slow-1","timeout":"20s"}],"retry":{"max_attempts":1}}`, s.URL+"/v1")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A slow provider and a backlog larger than the llm stage's concurrency:
// every request gets exactly one terminal event, and the provider is
// called once per request. (Before pull consumers the backlog was pushed to
// the stage's subscriptions at once; the buffered messages passed their ack
// wait before they first ran and were handled twice: on the previous commit
// this test fails with provider calls counted twice and failed+completed
// turns.)
func TestSlowProviderRunsEachStepOnce(t *testing.T) {
	model := &slowModel{delay: 900 * time.Millisecond, calls: map[string]int{}}
	sys := startSystem(t, func(o *app.Options) {
		o.ProvidersFile = slowProvider(t, model)
		o.Pipeline.Consumer.AckWait = 3 * time.Second
		o.Pipeline.Consumer.Concurrency = 2
		o.LLMTimeout = 1500 * time.Millisecond
		o.Limits = app.LimitsFrom(0, 0, 0)
	})
	nc := sys.Runtime.Conn()
	js, _ := jetstream.New(nc)
	var mu sync.Mutex
	terminal := map[string][]string{}
	for _, ev := range []string{messages.EventCompleted, messages.EventFailed, messages.EventRejected} {
		sub, err := nc.Subscribe(messages.EventFilter(ev), func(m *nats.Msg) {
			ev, rid, _ := messages.ParseSubject(m.Subject)
			mu.Lock()
			terminal[rid] = append(terminal[rid], ev)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	const n = 20
	for i := range n {
		rid := fmt.Sprintf("slow%d", i)
		if err := apptest.Publish(js, messages.EventReceived, rid, apptest.Turn(rid, "u", "question "+rid)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		done := len(terminal)
		mu.Unlock()
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d turns ended: %v", done, n, terminal)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Let any duplicate that is still under way show itself: wait for the
	// llm consumer to settle, then count.
	for {
		info, err := testutil.ConsumerInfo(js, messages.StreamTurns, "agentbus-llm-admitted")
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("llm consumer not settled: %+v", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	model.mu.Lock()
	defer model.mu.Unlock()
	for i := range n {
		rid := fmt.Sprintf("slow%d", i)
		if evs := terminal[rid]; len(evs) != 1 || evs[0] != messages.EventCompleted {
			t.Errorf("%s: terminal events %v", rid, evs)
		}
		if c := model.calls["question "+rid]; c != 1 {
			t.Errorf("%s: the provider was called %d times", rid, c)
		}
	}
	// And the stream holds one terminal event per turn.
	info, err := testutil.StreamInfo(js, messages.StreamTurns, "agentbus.turn.*.slow*")
	if err != nil {
		t.Fatal(err)
	}
	for subj, c := range info.State.Subjects {
		if (strings.Contains(subj, ".completed.") || strings.Contains(subj, ".failed.")) && c != 1 {
			t.Errorf("%s stored %d times", subj, c)
		}
	}
}

// A model call longer than the ack wait keeps its message: in-progress acks
// while the handler runs, so the server never redelivers it.
func TestCallLongerThanAckWaitIsNotRedelivered(t *testing.T) {
	model := &slowModel{delay: 4 * time.Second, calls: map[string]int{}}
	sys := startSystem(t, func(o *app.Options) {
		o.ProvidersFile = slowProvider(t, model)
		o.Pipeline.Consumer.AckWait = 3 * time.Second
		o.LLMTimeout = 10 * time.Second
	})
	key := newKey(t, sys, "patient")
	r := post(t, sys, key, "", chatBodyFor("slow-1", "take your time"))
	if r.status != 200 || !strings.Contains(content(t, r), "slow answer") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	js := sys.Runtime.JetStream()
	info, err := testutil.ConsumerInfo(js, messages.StreamTurns, "agentbus-llm-admitted")
	if err != nil {
		t.Fatal(err)
	}
	model.mu.Lock()
	calls := model.calls["take your time"]
	model.mu.Unlock()
	if info.NumRedelivered != 0 || calls != 1 {
		t.Fatalf("redelivered %d, provider calls %d", info.NumRedelivered, calls)
	}
}

// One deadline per turn: a client that timed out (X-Request-Timeout) gets
// 504 deadline_exceeded, the turn is ended once (failed) and not stored
// even though the provider answers later; the same Idempotency-Key then
// gets that outcome, never a second run. A second key completes normally
// and its retry returns the stored answer.
func TestDeadlineAndIdempotencyKey(t *testing.T) {
	model := &slowModel{delay: 2 * time.Second, calls: map[string]int{}}
	sys := startSystem(t, func(o *app.Options) {
		o.ProvidersFile = slowProvider(t, model)
		o.Limits = app.LimitsFrom(0, 0, 0)
	})
	key := newKey(t, sys, "impatient")
	send := func(t *testing.T, idem, timeout, text string) httpResult {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions", strings.NewReader(chatBodyFor("slow-1", text)))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idem)
		if timeout != "" {
			req.Header.Set("X-Request-Timeout", timeout)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &body)
		return httpResult{status: resp.StatusCode, header: resp.Header, body: body, raw: string(raw)}
	}
	js := sys.Runtime.JetStream()

	t.Run("timed out, then the same key", func(t *testing.T) {
		r := send(t, "idem-late-1", "500ms", "too slow for you")
		if r.status != 504 || errCode(r) != messages.CodeDeadlineExceeded {
			t.Fatalf("first: %d %s", r.status, r.raw)
		}
		rid := r.header.Get("X-Request-Id")
		// The provider still answers (after 2s); the turn must not
		// complete. Wait until the llm and persist consumers have settled
		// everything.
		waitSettled(t, js, "agentbus-llm-admitted", "agentbus-persist-generated")
		again := send(t, "idem-late-1", "", "too slow for you")
		if again.status != 504 || errCode(again) != messages.CodeDeadlineExceeded || again.header.Get("X-Request-Id") != rid {
			t.Fatalf("retry: %d %s (request %s, first %s)", again.status, again.raw, again.header.Get("X-Request-Id"), rid)
		}
		info, err := testutil.StreamInfo(js, messages.StreamTurns, "agentbus.turn.*."+rid)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Subjects[messages.Subject(messages.EventCompleted, rid)] != 0 || info.State.Subjects[messages.Subject(messages.EventFailed, rid)] != 1 {
			t.Fatalf("events of the late turn: %v", info.State.Subjects)
		}
		model.mu.Lock()
		defer model.mu.Unlock()
		if c := model.calls["too slow for you"]; c != 1 {
			t.Fatalf("provider calls %d", c)
		}
	})
	t.Run("completed, then the same key", func(t *testing.T) {
		r := send(t, "idem-ok-1", "", "patient question")
		if r.status != 200 {
			t.Fatalf("first: %d %s", r.status, r.raw)
		}
		again := send(t, "idem-ok-1", "", "patient question")
		if again.status != 200 || content(t, again) != content(t, r) || again.header.Get("X-Request-Id") != r.header.Get("X-Request-Id") {
			t.Fatalf("retry: %d %s", again.status, again.raw)
		}
		model.mu.Lock()
		defer model.mu.Unlock()
		if c := model.calls["patient question"]; c != 1 {
			t.Fatalf("provider calls %d", c)
		}
	})
}

// waitSettled waits until the consumers have nothing pending or in flight.
func waitSettled(t *testing.T, js jetstream.JetStream, durables ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, d := range durables {
		for {
			info, err := testutil.ConsumerInfo(js, messages.StreamTurns, d)
			if err != nil {
				t.Fatal(err)
			}
			if info.NumAckPending == 0 && info.NumPending == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not settled: %d pending, %d ack pending", d, info.NumPending, info.NumAckPending)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
