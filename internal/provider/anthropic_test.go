package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/breaker"
	"github.com/agentbus/agentbus/messages"
)

const anthKey = "sk-ant-test-0123456789SECRET"

// fakeAnthropic is an httptest server speaking Anthropic's Messages
// protocol (POST /v1/messages, x-api-key, anthropic-version); handle
// decides each answer.
type fakeAnthropic struct {
	*httptest.Server
	mu       sync.Mutex
	requests []map[string]any
	headers  []http.Header
}

func newFakeAnthropic(t *testing.T, handle func(w http.ResponseWriter, req map[string]any, n int)) *fakeAnthropic {
	t.Helper()
	f := &fakeAnthropic{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" || r.Method != http.MethodPost {
			http.Error(w, "not found", 404)
			return
		}
		if r.Header.Get("x-api-key") != anthKey || r.Header.Get("anthropic-version") != DefaultAnthropicVersion || r.Header.Get("Authorization") != "" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
			return
		}
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, "bad json", 400)
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, body)
		f.headers = append(f.headers, r.Header.Clone())
		n := len(f.requests)
		f.mu.Unlock()
		handle(w, body, n)
	}))
	t.Cleanup(f.Server.Close)
	return f
}

func (f *fakeAnthropic) request(i int) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[i]
}

func newAnthropic(t *testing.T, url string) *Anthropic {
	t.Helper()
	p, err := NewAnthropic(AnthropicConfig{Name: "claude", BaseURL: url + "/v1", APIKey: anthKey, Model: "claude-test", StreamIdleTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sseEvents(w http.ResponseWriter, events ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range events {
		var typ struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal([]byte(e), &typ)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ.Type, e)
		w.(http.Flusher).Flush()
	}
}

func TestAnthropicMapsRequestsAndAnswers(t *testing.T) {
	f := newFakeAnthropic(t, func(w http.ResponseWriter, req map[string]any, n int) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test-20250101",
		  "content":[{"type":"text","text":"Let me compute. "},{"type":"tool_use","id":"toolu_1","name":"calculator","input":{"expression":"6*7"}}],
		  "stop_reason":"tool_use","stop_sequence":null,
		  "usage":{"input_tokens":20,"output_tokens":7,"cache_read_input_tokens":5,"cache_creation_input_tokens":1}}`)
	})
	p := newAnthropic(t, f.URL)
	temp, maxTok, no, yes := 0.5, 99, false, true
	req := Request{
		Messages: []messages.Message{
			{Role: "system", Content: "Be brief."},
			{Role: "developer", Content: "Use tools."},
			{Role: "user", Content: "hi\nthere", Parts: []messages.ContentPart{{Type: "text", Text: "hi"}, {Type: "text", Text: "there"},
				{Type: "image_url", ImageURL: &messages.ImageURL{URL: "data:image/png;base64,iVBORw0KGgo="}}, {Type: "image_url", ImageURL: &messages.ImageURL{URL: "https://example.com/a.png"}}}},
			{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "toolu_0", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"1+1"}`}}}},
			{Role: "tool", ToolCallID: "toolu_0", Content: "2"},
			{Role: "user", Content: "and 6*7?"},
		},
		Tools:  []ToolSpec{{Name: "calculator", Description: "arithmetic", Parameters: json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string"}}}`)}, {Name: "clock", Strict: &yes}}, // strict is OpenAI's: not sent
		Params: messages.Params{Temperature: &temp, MaxTokens: &maxTok, Stop: []string{"END"}, ToolChoice: &messages.ToolChoice{Mode: "required"}, ParallelToolCalls: &no, User: "end-7"},
		User:   "alice",
	}
	resp, err := p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := f.request(0)
	want := `{"max_tokens":99,"messages":[` +
		`{"content":[{"text":"hi","type":"text"},{"text":"there","type":"text"},{"source":{"data":"iVBORw0KGgo=","media_type":"image/png","type":"base64"},"type":"image"},{"source":{"type":"url","url":"https://example.com/a.png"},"type":"image"}],"role":"user"},` +
		`{"content":[{"id":"toolu_0","input":{"expression":"1+1"},"name":"calculator","type":"tool_use"}],"role":"assistant"},` +
		`{"content":[{"content":"2","tool_use_id":"toolu_0","type":"tool_result"},{"text":"and 6*7?","type":"text"}],"role":"user"}],` +
		`"metadata":{"user_id":"end-7"},"model":"claude-test","stop_sequences":["END"],"system":"Be brief.\n\nUse tools.","temperature":0.5,` +
		`"tool_choice":{"disable_parallel_tool_use":true,"type":"any"},` +
		`"tools":[{"description":"arithmetic","input_schema":{"properties":{"expression":{"type":"string"}},"type":"object"},"name":"calculator"},{"input_schema":{"properties":{},"type":"object"},"name":"clock"}]}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("request\n got %s\nwant %s", b, want)
	}
	if resp.Message.Content != "Let me compute. " || len(resp.Message.ToolCalls) != 1 || resp.Message.ToolCalls[0].ID != "toolu_1" ||
		resp.Message.ToolCalls[0].Function.Arguments != `{"expression":"6*7"}` || resp.FinishReason != "tool_calls" ||
		resp.Model != "claude-test-20250101" || resp.Provider != "claude" {
		t.Fatalf("response %+v", resp)
	}
	if resp.Usage != (messages.Usage{PromptTokens: 26, CompletionTokens: 7, TotalTokens: 33}) {
		t.Fatalf("usage %+v", resp.Usage)
	}
}

// An earlier refusal in the history (the refusal field or a refusal part,
// as agent frameworks resend it) reaches Claude as what the assistant
// said: Anthropic has no refusal field.
func TestAnthropicKeepsRefusalsInHistory(t *testing.T) {
	f := newFakeAnthropic(t, func(w http.ResponseWriter, req map[string]any, n int) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`)
	})
	p := newAnthropic(t, f.URL)
	no := "I can't help with that."
	req := Request{Messages: []messages.Message{
		{Role: "user", Content: "hi"},
		{Role: "assistant", Parts: []messages.ContentPart{{Type: messages.PartRefusal, Refusal: &no}}},
		{Role: "user", Content: "why?"},
		{Role: "assistant", Refusal: "Still no."},
		{Role: "user", Content: "fine"},
	}}
	if _, err := p.Complete(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	want := `[{"content":[{"text":"hi","type":"text"}],"role":"user"},{"content":[{"text":"I can't help with that.","type":"text"}],"role":"assistant"},` +
		`{"content":[{"text":"why?","type":"text"}],"role":"user"},{"content":[{"text":"Still no.","type":"text"}],"role":"assistant"},{"content":[{"text":"fine","type":"text"}],"role":"user"}]`
	if b, _ := json.Marshal(f.request(0)["messages"]); string(b) != want {
		t.Fatalf("messages\n got %s\nwant %s", b, want)
	}
}

func TestAnthropicStopReasons(t *testing.T) {
	for stop, want := range map[string]string{"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "refusal": "content_filter", "pause_turn": "stop"} {
		f := newFakeAnthropic(t, func(w http.ResponseWriter, req map[string]any, n int) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"model":"m","content":[{"type":"text","text":"x"}],"stop_reason":%q,"usage":{"input_tokens":1,"output_tokens":1}}`, stop)
		})
		resp, err := newAnthropic(t, f.URL).Complete(context.Background(), userReq, nil)
		if err != nil || resp.FinishReason != want {
			t.Fatalf("%s: %q %v", stop, resp.FinishReason, err)
		}
		if got := f.request(0)["max_tokens"]; got != float64(DefaultAnthropicMaxTokens) {
			t.Fatalf("default max_tokens %v", got)
		}
	}
}

func TestAnthropicStreams(t *testing.T) {
	f := newFakeAnthropic(t, func(w http.ResponseWriter, req map[string]any, n int) {
		if req["stream"] != true {
			t.Errorf("stream not asked: %v", req)
		}
		sseEvents(w,
			`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-test-1","content":[],"usage":{"input_tokens":12,"output_tokens":1}}}`,
			`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
			`{"type":"ping"}`,
			`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`,
			`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", world"}}`,
			`{"type":"content_block_stop","index":0}`,
			`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"calculator","input":{}}}`,
			`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"expres"}}`,
			`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"sion\":\"2+2\"}"}}`,
			`{"type":"content_block_stop","index":1}`,
			`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}`,
			`{"type":"message_stop"}`)
	})
	var deltas []string
	resp, err := newAnthropic(t, f.URL).Complete(context.Background(), userReq, func(d string) { deltas = append(deltas, d) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deltas, "|") != "Hello|, world" || resp.Message.Content != "Hello, world" || resp.FinishReason != "tool_calls" ||
		len(resp.Message.ToolCalls) != 1 || resp.Message.ToolCalls[0].Function.Arguments != `{"expression":"2+2"}` || resp.Message.ToolCalls[0].ID != "toolu_9" {
		t.Fatalf("deltas %q response %+v", deltas, resp)
	}
	if resp.Usage != (messages.Usage{PromptTokens: 12, CompletionTokens: 15, TotalTokens: 27}) || resp.Model != "claude-test-1" {
		t.Fatalf("usage %+v model %s", resp.Usage, resp.Model)
	}
}

func TestAnthropicErrors(t *testing.T) {
	cases := []struct {
		name    string
		handle  func(w http.ResponseWriter)
		stream  bool
		kind    error
		breaker bool
		retry   time.Duration
		status  int
	}{
		{"overloaded 529", func(w http.ResponseWriter) {
			w.Header().Set("retry-after", "3")
			w.WriteHeader(529)
			fmt.Fprint(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
		}, false, ErrUnavailable, true, 3 * time.Second, 503},
		{"rate limited 429", func(w http.ResponseWriter) {
			w.Header().Set("retry-after", "12")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`)
		}, false, ErrRateLimited, false, 12 * time.Second, 429},
		{"prompt too long", func(w http.ResponseWriter) {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}`)
		}, false, ErrContextLength, false, 0, 400},
		{"bad request", func(w http.ResponseWriter) {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"type":"error","error":{"type":"invalid_request_error","message":"messages: roles must alternate"}}`)
		}, false, ErrBadRequest, false, 0, 400},
		{"unknown model", func(w http.ResponseWriter) {
			w.WriteHeader(404)
			fmt.Fprint(w, `{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}`)
		}, false, ErrModelNotFound, false, 0, 404},
		{"our key refused", func(w http.ResponseWriter) {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key `+anthKey+`"}}`)
		}, false, ErrAuth, false, 0, 502},
		{"server error", func(w http.ResponseWriter) {
			w.WriteHeader(500)
			fmt.Fprint(w, `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`)
		}, false, ErrUnavailable, true, 0, 503},
		{"overloaded inside a stream", func(w http.ResponseWriter) {
			sseEvents(w, `{"type":"message_start","message":{"model":"m","usage":{"input_tokens":1}}}`,
				`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
		}, true, ErrUnavailable, true, 0, 503},
		{"stream cut before message_stop", func(w http.ResponseWriter) {
			sseEvents(w, `{"type":"message_start","message":{"model":"m","usage":{"input_tokens":1}}}`,
				`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`)
		}, true, ErrUnavailable, true, 0, 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeAnthropic(t, func(w http.ResponseWriter, _ map[string]any, _ int) { c.handle(w) })
			var onDelta func(string)
			if c.stream {
				onDelta = func(string) {}
			}
			_, err := newAnthropic(t, f.URL).Complete(context.Background(), userReq, onDelta)
			if !errors.Is(err, c.kind) || IsBreakerFailure(err) != c.breaker {
				t.Fatalf("err %v (breaker failure %v)", err, IsBreakerFailure(err))
			}
			if d, _ := RetryAfter(err); d != c.retry {
				t.Fatalf("retry after %s, want %s", d, c.retry)
			}
			if s, _ := Classify(err); s != c.status {
				t.Fatalf("status %d, want %d", s, c.status)
			}
			if strings.Contains(err.Error(), anthKey) || strings.Contains(ClientMessage(err), "SECRET") {
				t.Fatalf("the key leaks: %v", err)
			}
		})
	}
}

// 529 counts against the breaker like the OpenAI provider's 5xx: behind a
// Failover the breaker opens and then answers at once without a call.
func TestAnthropicOverloadOpensTheBreaker(t *testing.T) {
	calls := 0
	f := newFakeAnthropic(t, func(w http.ResponseWriter, _ map[string]any, n int) {
		calls = n
		w.WriteHeader(529)
		fmt.Fprint(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
	})
	br, err := breaker.New("claude", breaker.Config{FailureThreshold: 2, OpenTimeout: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	caps := KindCapabilities(KindAnthropic)
	fo, err := NewFailover([]Entry{{Provider: newAnthropic(t, f.URL), Breaker: br, Models: []string{"claude-test"}, Default: "claude-test", Kind: KindAnthropic, Caps: &caps}},
		FailoverConfig{Retry: RetryConfig{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		_, err = fo.Complete(context.Background(), Request{Model: "claude-test", Messages: userReq.Messages}, nil)
		if s, code := Classify(err); s != 503 || code != messages.CodeProviderUnavailable {
			t.Fatalf("%d %s %v", s, code, err)
		}
	}
	if calls != 2 || br.State() != breaker.Open {
		t.Fatalf("%d calls, breaker %s", calls, br.State())
	}
	// Parameters Anthropic cannot honour are refused before any call,
	// naming the parameter.
	seed := int64(1)
	_, err = fo.Complete(context.Background(), Request{Model: "claude-test", Messages: userReq.Messages, Params: messages.Params{Seed: &seed}}, nil)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Param != "seed" || calls != 2 {
		t.Fatalf("seed: %v", err)
	}
}

func TestAnthropicConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  AnthropicConfig
		want string
	}{
		{AnthropicConfig{Model: "m"}, "API key is required"},
		{AnthropicConfig{APIKey: "sk-0123456789012345678901", Model: "m"}, `must start with "sk-ant-"`},
		{AnthropicConfig{APIKey: anthKey}, "a model is required"},
		{AnthropicConfig{APIKey: anthKey, Model: "m", BaseURL: "ftp://x"}, "absolute http(s) URL"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%+v: %v", c.cfg.Model, err)
		}
	}
	cfg, err := ParseConfig([]byte(`{"providers":[{"name":"claude","kind":"anthropic","api_key_env":"ANTHROPIC_API_KEY","model":"claude-sonnet-4-5",
	  "models":["claude-haiku-4-5"],"aliases":{"claude":"claude-sonnet-4-5"},"capabilities":{"images":false}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	fo, err := Build(cfg, func(string) string { return anthKey })
	if err != nil {
		t.Fatal(err)
	}
	cat := fo.Catalog()
	if strings.Join(cat.IDs(), ",") != "claude-sonnet-4-5,claude-haiku-4-5,claude" || cat.Models[0].OwnedBy != "anthropic" || cat.Default != "claude-sonnet-4-5" ||
		cat.Models[0].Providers[0].Capabilities.Images || cat.Models[0].Providers[0].Capabilities.MaxTemperature != 1 {
		t.Fatalf("catalog %+v", cat)
	}
	if _, err := ParseConfig([]byte(`{"providers":[{"name":"claude","kind":"anthropic","api_key_env":"K"}]}`)); err == nil || !strings.Contains(err.Error(), "needs a model") {
		t.Fatalf("anthropic without a model: %v", err)
	}
	if _, err := ParseConfig([]byte(`{"providers":[{"name":"x","kind":"openai","api_key_env":"K","capabilities":{"telepathy":true}}]}`)); err == nil || !strings.Contains(err.Error(), `"telepathy" is unknown`) {
		t.Fatalf("unknown capability: %v", err)
	}
}
