package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeOpenAI speaks the Chat Completions protocol; it answers, or fails
// with 500 while failing is set.
type fakeOpenAI struct {
	*httptest.Server
	calls    atomic.Int64
	failing  atomic.Bool
	lastMsgs atomic.Value // []messages.Message of the last request
	breakMid atomic.Bool  // streams break after two chunks
}

func newFakeOpenAI(t *testing.T) *fakeOpenAI {
	f := &fakeOpenAI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer sk-test-0123456789abcdefghij" {
			http.Error(w, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
			return
		}
		if f.failing.Load() {
			http.Error(w, `{"error":{"message":"upstream exploded"}}`, http.StatusInternalServerError)
			return
		}
		var req struct {
			Messages []messages.Message `json:"messages"`
			Stream   bool               `json:"stream"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.lastMsgs.Store(req.Messages)
		last := req.Messages[len(req.Messages)-1].Content
		if req.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, word := range []string{"fake ", "says ", "streamed ", "words"} {
				fmt.Fprintf(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"model\":\"fake-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", word)
				w.(http.Flusher).Flush()
				if word == "says " && f.breakMid.Load() {
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close() // the provider dies mid-answer
					return
				}
			}
			fmt.Fprint(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"model\":\"fake-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4,\"total_tokens\":9}}\n\ndata: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":"fake-1","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`, "fake says: "+last)
	}))
	t.Cleanup(f.Close)
	return f
}

func providerFile(t *testing.T, url string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "providers.json")
	cfg := fmt.Sprintf(`{"providers":[{"name":"fake","kind":"openai","base_url":%q,"api_key_env":"FAKE_KEY","model":"fake-1",
	  "timeout":"2s","breaker":{"failure_threshold":2,"success_threshold":1,"open_timeout":"2s","call_timeout":"2s"}}],
	  "retry":{"max_attempts":1,"base_delay":"1ms","max_delay":"2ms"}}`, url+"/v1")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func withFake(f *fakeOpenAI, t *testing.T) func(*app.Options) {
	return func(o *app.Options) {
		o.ProvidersFile = providerFile(t, f.URL)
		o.Getenv = func(k string) string {
			if k == "FAKE_KEY" {
				return "sk-test-0123456789abcdefghij"
			}
			return ""
		}
		o.Auth = false
	}
}

// outcome publishes a turn over NATS and returns its terminal event.
func outcome(t *testing.T, nc *nats.Conn, rid, text string) (string, []byte) {
	t.Helper()
	js, _ := jetstream.New(nc)
	sub, _ := nc.SubscribeSync(messages.ReplyFilter(rid))
	defer sub.Unsubscribe()
	if err := apptest.Publish(js, messages.EventReceived, rid, apptest.Turn(rid, "u", text)); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", rid, err)
		}
		if ev, _, _ := messages.ParseSubject(msg.Subject); messages.Terminal(ev) {
			return ev, msg.Data
		}
	}
}

func dlqCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	info, err := testutil.StreamInfo(js, messages.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestProviderOutageFailsFastAndRecovers(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startSystem(t, withFake(f, t))
	nc := sys.Runtime.Conn()
	js, _ := jetstream.New(nc)

	if ev, data := outcome(t, nc, "ok0", "hello"); ev != messages.EventCompleted || !strings.Contains(string(data), "fake says: hello") {
		t.Fatalf("healthy provider: %s %s", ev, data)
	}
	f.failing.Store(true)
	before := f.calls.Load()
	var openLatency time.Duration
	for i := range 8 {
		start := time.Now()
		ev, data := outcome(t, nc, fmt.Sprintf("out%d", i), "hello")
		var fl messages.Failed
		_ = json.Unmarshal(data, &fl)
		if ev != messages.EventFailed || fl.Status != 503 || fl.Code != messages.CodeProviderUnavailable {
			t.Fatalf("turn %d during outage: %s %s", i, ev, data)
		}
		if i >= 2 {
			openLatency = max(openLatency, time.Since(start))
			if fl.RetryAfterMS <= 0 {
				t.Fatalf("no Retry-After while the breaker is open: %s", data)
			}
		}
	}
	// Failure threshold 2, one attempt each: the breaker opened after two
	// calls and the other six never reached the provider.
	if n := f.calls.Load() - before; n != 2 {
		t.Fatalf("provider called %d times during the outage, want 2", n)
	}
	if n := dlqCount(t, js); n != 0 {
		t.Fatalf("an outage dead-lettered %d messages", n)
	}
	t.Logf("slowest failure with the breaker open: %s", openLatency)
	// Recovery through half-open once the provider is back.
	f.failing.Store(false)
	time.Sleep(2100 * time.Millisecond) // the breaker's open timeout
	if ev, data := outcome(t, nc, "rec1", "again"); ev != messages.EventCompleted {
		t.Fatalf("after recovery: %s %s", ev, data)
	}
}

func TestRedeliveredLLMStepCallsProviderOnce(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startSystem(t, withFake(f, t))
	nc := sys.Runtime.Conn()
	js, _ := jetstream.New(nc)
	ev, _ := outcome(t, nc, "dup1", "count me once")
	if ev != messages.EventCompleted || f.calls.Load() != 1 {
		t.Fatalf("first delivery: %s, %d calls", ev, f.calls.Load())
	}
	// Re-deliver the admitted step: the same payload again, as JetStream
	// does after a lost ack (a new message id, so the stream keeps it).
	raw, err := testutil.LastMsg(js, messages.StreamTurns, messages.Subject(messages.EventAdmitted, "dup1"))
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(raw.Subject)
	m.Data = raw.Data
	m.Header.Set(nats.MsgIdHdr, "dup1/admitted/redelivery")
	sub, _ := nc.SubscribeSync(messages.Subject(messages.EventGenerated, "dup1"))
	defer sub.Unsubscribe()
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// The llm stage handles it again and republishes generated (dropped
	// by the duplicate window), without calling the provider.
	waitUntil(t, 5*time.Second, func() bool {
		info, _ := testutil.ConsumerInfo(js, messages.StreamTurns, "agentbus-llm-admitted")
		return info != nil && info.NumAckPending == 0 && info.NumPending == 0 && info.Delivered.Stream >= raw.Sequence+1
	})
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("provider called %d times, want 1", n)
	}
	info, _ := testutil.StreamInfo(js, messages.StreamTurns, messages.Subject(messages.EventGenerated, "dup1"))
	if len(info.State.Subjects) != 1 || info.State.Subjects[messages.Subject(messages.EventGenerated, "dup1")] != 1 {
		t.Fatalf("generated events stored: %+v", info.State.Subjects)
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not met in time")
}

// The model gets the stored conversation (pruned) before the new message.
func TestModelSeesHistory(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startSystem(t, withFake(f, t))
	r := post(t, sys, "", "", chatBodyFor("fake-1", "my name is Ada"))
	conv := r.header.Get("X-Conversation-Id")
	if r.status != 200 {
		t.Fatal(r.raw)
	}
	if r := post(t, sys, "", conv, chatBodyFor("fake-1", "what is my name?")); r.status != 200 {
		t.Fatal(r.raw)
	}
	msgs := f.lastMsgs.Load().([]messages.Message)
	var got []string
	for _, m := range msgs {
		got = append(got, m.Role+":"+m.Content)
	}
	want := "user:my name is Ada|assistant:fake says: my name is Ada|user:what is my name?"
	if strings.Join(got, "|") != want {
		t.Fatalf("context sent to the model:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
}

// readSSE returns the data lines of a streamed response.
func readSSE(t *testing.T, sys *app.System, text string) (int, []string) {
	t.Helper()
	body := `{"model":"fake-1","stream":true,"messages":[{"role":"user","content":` + strconv.Quote(text) + `}]}`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			lines = append(lines, d)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("stream hung")
	}
	return resp.StatusCode, lines
}

func TestStreamingFromProvider(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startSystem(t, withFake(f, t))
	status, lines := readSSE(t, sys, "go")
	all := strings.Join(lines, "\n")
	if status != 200 || lines[len(lines)-1] != "[DONE]" || !strings.Contains(all, `"content":"streamed "`) || !strings.Contains(all, `"finish_reason":"stop"`) {
		t.Fatalf("%d\n%s", status, all)
	}

	f.breakMid.Store(true)
	status, lines = readSSE(t, sys, "go again")
	all = strings.Join(lines, "\n")
	// Two deltas went out, then an OpenAI-style error event ends the
	// stream, as OpenAI's failing streams end (no [DONE]): no hang, no
	// failover that would repeat the text.
	if status != 200 || !strings.Contains(all, `"content":"says "`) || !strings.HasPrefix(lines[len(lines)-1], `{"error":`) || strings.Contains(all, "[DONE]") {
		t.Fatalf("%d\n%s", status, all)
	}
}

func TestDailyQuotaOverHTTP(t *testing.T) {
	sys := startSystem(t, func(o *app.Options) {
		o.Auth = false
		o.Quota.PerUserRequests = 1
	})
	if r := post(t, sys, "", "", chatBody("one")); r.status != 200 {
		t.Fatal(r.raw)
	}
	r := post(t, sys, "", "", chatBody("two"))
	if r.status != 429 || errCode(r) != messages.CodeQuotaExceeded || r.header.Get("Retry-After") == "" {
		t.Fatalf("%d %v %s", r.status, r.header, r.raw)
	}
	// /health reports the quota as degraded (100% of it is used).
	resp, err := http.Get("http://" + sys.HTTPAddr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h.Status != "degraded" {
		t.Fatalf("health %q with a used-up quota", h.Status)
	}
}
