package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go/jetstream"
)

// 200 connections that send their body slowly (a valid key, then nothing)
// are each closed within the read timeout, and a normal request is served
// meanwhile; a request without a key is answered without its body.
func TestSlowBodiesAreCutOff(t *testing.T) {
	sys := startSystem(t, func(o *app.Options) {
		o.Ingest.ReadTimeout = time.Second
		o.Ingest.MaxConns = 256
	})
	key := newKey(t, sys, "slowpoke")
	const n = 200
	var wg sync.WaitGroup
	closedIn := make(chan time.Duration, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", sys.HTTPAddr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\":", key)
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, _ = io.Copy(io.Discard, c) // returns when the server closes
			closedIn <- time.Since(start)
		}()
	}
	// Served while the slow connections are open.
	if r := post(t, sys, key, "", chatBody("hello while others are slow")); r.status != 200 {
		t.Fatalf("normal request: %d %s", r.status, r.raw)
	}
	wg.Wait()
	close(closedIn)
	count := 0
	for d := range closedIn {
		count++
		if d > 5*time.Second {
			t.Fatalf("a slow connection stayed open %s (read timeout 1s)", d)
		}
	}
	if count != n {
		t.Fatalf("%d of %d slow connections were closed", count, n)
	}

	// No key: 401 at once, the body never read, the connection closed.
	c, err := net.Dial("tcp", sys.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 401") || !strings.Contains(string(b), "invalid_api_key") {
		t.Fatalf("unauthenticated slow body: %q", b)
	}
}

// A body over the limit is 413, as OpenAI clients expect.
func TestTooLargeBodyIs413(t *testing.T) {
	sys := startSystem(t, func(o *app.Options) { o.Ingest.MaxBodyBytes = 64 << 10 })
	key := newKey(t, sys, "big")
	r := post(t, sys, key, "", chatBody(strings.Repeat("a", 70<<10)))
	if r.status != 413 || errCode(r) != "request_too_large" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

// bigModel answers "big N" with N bytes of text, and echoes anything else;
// it counts its calls per prompt.
type bigModel struct {
	mu    sync.Mutex
	calls map[string]int
}

func (b *bigModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []messages.Message `json:"messages"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	last := req.Messages[len(req.Messages)-1].Content
	key := last
	if len(key) > 40 {
		key = key[:40]
	}
	b.mu.Lock()
	b.calls[key]++
	b.mu.Unlock()
	answer := "echo: " + last
	var n int
	if _, err := fmt.Sscanf(last, "big %d", &n); err == nil {
		answer = strings.Repeat("x", n)
	}
	w.Header().Set("Content-Type", "application/json")
	body, _ := json.Marshal(map[string]any{"id": "x", "object": "chat.completion", "model": "big-1",
		"choices": []map[string]any{{"index": 0, "message": map[string]string{"role": "assistant", "content": answer}, "finish_reason": "stop"}},
		"usage":   map[string]int{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
	_, _ = w.Write(body)
}

func (b *bigModel) callsFor(prefix string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for k, c := range b.calls {
		if strings.HasPrefix(k, prefix) {
			n += c
		}
	}
	return n
}

// Every event fits, or the turn fails cleanly: a request whose encoded
// turn would not leave room for the answer is refused at ingest (nothing
// stored); an answer larger than the bus carries, and a generated event
// that would exceed it, each end the turn with payload_too_large after one
// provider call; the llm consumer is left with nothing pending and other
// turns keep completing.
func TestOversizedEventsFailCleanly(t *testing.T) {
	model := &bigModel{calls: map[string]int{}}
	ms := httptest.NewServer(model)
	t.Cleanup(ms.Close)
	providers := filepath.Join(t.TempDir(), "providers.json")
	cfg := fmt.Sprintf(`{"providers":[{"name":"big","kind":"local","base_url":%q,"model":"big-1"}],"retry":{"max_attempts":1}}`, ms.URL+"/v1")
	if err := os.WriteFile(providers, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startSystem(t, func(o *app.Options) {
		o.ProvidersFile = providers
		o.Limits = app.LimitsFrom(0, 0, 0)
		o.Sanitizer.MaxTotalBytes = 4 << 20
		o.Sanitizer.MaxBytes = 4 << 20
		o.Sanitizer.MaxChars = 4 << 20
	})
	key := newKey(t, sys, "abuser")
	op := sys.Runtime.Conn()
	js, _ := jetstream.New(op)
	streamMsgs := func() uint64 {
		info, err := testutil.StreamInfo(js, messages.StreamTurns)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	t.Run("escaping growth refused at ingest", func(t *testing.T) {
		before := streamMsgs()
		// 150 KB of '<' is 900 KB once Go escapes it for the bus.
		r := post(t, sys, key, "", `{"model":"big-1","messages":[{"role":"user","content":"`+strings.Repeat("<", 150<<10)+`"}]}`)
		if r.status != 413 || errCode(r) != messages.CodePayloadTooLarge {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if after := streamMsgs(); after != before {
			t.Fatalf("the stream grew by %d messages for a refused request", after-before)
		}
	})
	t.Run("answer larger than the bus", func(t *testing.T) {
		r := post(t, sys, key, "", chatBodyFor("big-1", "big 1500000"))
		if r.status != 413 || errCode(r) != messages.CodePayloadTooLarge {
			t.Fatalf("%d %.300s", r.status, r.raw)
		}
		if n := model.callsFor("big 1500000"); n != 1 {
			t.Fatalf("the provider was called %d times", n)
		}
	})
	t.Run("generated event larger than the bus", func(t *testing.T) {
		// A prompt just under the ingest limit, echoed back: the generated
		// event carries both.
		prompt := "long " + strings.Repeat("y", 522_000)
		r := post(t, sys, key, "", chatBodyFor("big-1", prompt))
		if r.status != 413 || errCode(r) != messages.CodePayloadTooLarge {
			t.Fatalf("%d %.300s", r.status, r.raw)
		}
		if n := model.callsFor("long yyy"); n != 1 {
			t.Fatalf("the provider was called %d times", n)
		}
	})
	// Nothing is left pending, nothing was dead-lettered, and other turns
	// complete.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := testutil.ConsumerInfo(js, messages.StreamTurns, pipeline.DurableName("llm", messages.EventAdmitted))
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("llm consumer: %d ack pending, %d pending", info.NumAckPending, info.NumPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if dlq, _ := testutil.StreamInfo(js, messages.StreamDLQ); dlq.State.Msgs != 0 {
		t.Fatalf("%d dead letters", dlq.State.Msgs)
	}
	if r := post(t, sys, key, "", chatBodyFor("big-1", "hello after the big ones")); r.status != 200 || !strings.Contains(content(t, r), "hello after") {
		t.Fatalf("a normal turn: %d %s", r.status, r.raw)
	}
}

// A key at its limit cannot grow the stream: ingest reads the shared
// limiter state and refuses what the guard would reject, before storing.
func TestKeyAtItsLimitCannotGrowTheStream(t *testing.T) {
	sys := startSystem(t, nil)
	plain, _, err := apikey.Issue(context.Background(), sys.Keys, "flooder", 1, 0) // 1 request per minute
	if err != nil {
		t.Fatal(err)
	}
	js := sys.Runtime.JetStream()
	received := func() uint64 {
		info, err := testutil.StreamInfo(js, messages.StreamTurns, messages.EventFilter(messages.EventReceived))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	before := received()
	big := chatBody(strings.Repeat("lorem ipsum dolor sit amet ", 5_000)) // ~135 KB body
	accepted, refused := 0, 0
	for range 100 {
		r := post(t, sys, plain, "", big)
		switch r.status {
		case 200, 400, 413:
			accepted++ // stored (413: refused by size, also before storing)
		case 429:
			refused++
			if r.header.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %s", r.raw)
			}
		default:
			t.Fatalf("%d %s", r.status, r.raw)
		}
	}
	grew := received() - before
	if refused < 98 || grew > 1 {
		t.Fatalf("%d refused, %d accepted; the stream gained %d received events", refused, accepted, grew)
	}
}
