package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/messages"
)

const testKey = "sk-test-0123456789abcdefSECRET"

// fakeOpenAI is an httptest server speaking the Chat Completions protocol;
// handle decides each answer.
type fakeOpenAI struct {
	*httptest.Server
	mu       sync.Mutex
	requests []map[string]any
	headers  []http.Header
	handle   func(w http.ResponseWriter, r *http.Request, n int)
	release  chan struct{} // closed at cleanup: unblocks hanging handlers
}

func newFake(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *fakeOpenAI {
	t.Helper()
	f := &fakeOpenAI{handle: handle, release: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.Error(w, "not found", 404)
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
		f.handle(w, r, n)
	}))
	t.Cleanup(f.Server.Close)
	t.Cleanup(func() { close(f.release) }) // runs before Close
	return f
}

func (f *fakeOpenAI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeOpenAI) request(i int) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[i]
}

func (f *fakeOpenAI) hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-f.release:
	}
}

func newOpenAI(t *testing.T, url string, mod ...func(*OpenAIConfig)) *OpenAI {
	t.Helper()
	cfg := OpenAIConfig{Name: "fake", BaseURL: url + "/v1", APIKey: testKey, Model: "gpt-test"}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := NewOpenAI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func sse(w http.ResponseWriter, chunks ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, c := range chunks {
		fmt.Fprintf(w, "data: %s\n\n", c)
		w.(http.Flusher).Flush()
	}
}

var calcTool = ToolSpec{Name: "calculator", Description: "evaluates arithmetic", Parameters: json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}`)}

func TestOpenAIToolCallRoundTrip(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			writeJSON(w, 200, map[string]any{
				"model": "gpt-test-2025",
				"choices": []any{map[string]any{"finish_reason": "tool_calls", "message": map[string]any{
					"role": "assistant", "content": nil,
					"tool_calls": []any{map[string]any{"id": "call_1", "type": "function",
						"function": map[string]any{"name": "calculator", "arguments": `{"expression":"17*23"}`}}},
				}}},
				"usage": map[string]any{"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
			})
			return
		}
		writeJSON(w, 200, map[string]any{
			"model":   "gpt-test-2025",
			"choices": []any{map[string]any{"finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": "17*23 = 391"}}},
			"usage":   map[string]any{"prompt_tokens": 70, "completion_tokens": 5, "total_tokens": 75},
		})
	})
	p := newOpenAI(t, f.URL)
	temp := 0.5
	req := Request{Messages: []messages.Message{{Role: "user", Content: "What is 17*23?"}}, Tools: []ToolSpec{calcTool}, User: "u1", Params: messages.Params{Temperature: &temp}}
	resp, err := p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Message.ToolCalls) != 1 || resp.Message.ToolCalls[0].Function.Arguments != `{"expression":"17*23"}` || resp.FinishReason != "tool_calls" {
		t.Fatalf("resp = %+v", resp)
	}
	if resp.Usage.TotalTokens != 60 || resp.Model != "gpt-test-2025" || resp.Provider != "fake" {
		t.Fatalf("resp = %+v", resp)
	}
	// The request carried the tools in OpenAI form, the default model, auth.
	body := f.request(0)
	if body["model"] != "gpt-test" || body["user"] != "u1" || body["temperature"] != 0.5 || body["stream"] != nil {
		t.Fatalf("request body %v", body)
	}
	tools, _ := json.Marshal(body["tools"])
	if want := `[{"function":{"description":"evaluates arithmetic","name":"calculator","parameters":{"properties":{"expression":{"type":"string"}},"required":["expression"],"type":"object"}},"type":"function"}]`; string(tools) != want {
		t.Fatalf("tools\n got %s\nwant %s", tools, want)
	}
	if got := f.headers[0].Get("Authorization"); got != "Bearer "+testKey {
		t.Fatalf("Authorization = %q", got)
	}
	// Second round: the assistant tool call and the tool result go back.
	req.Messages = append(req.Messages, resp.Message, messages.Message{Role: "tool", ToolCallID: "call_1", Content: "391"})
	resp, err = p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "17*23 = 391" {
		t.Fatalf("content %q", resp.Message.Content)
	}
	msgs, _ := json.Marshal(f.request(1)["messages"])
	want := `[{"content":"What is 17*23?","role":"user"},{"content":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{\"expression\":\"17*23\"}","name":"calculator"},"id":"call_1","type":"function"}]},{"content":"391","role":"tool","tool_call_id":"call_1"}]`
	if string(msgs) != want {
		t.Fatalf("messages\n got %s\nwant %s", msgs, want)
	}
}

func TestOpenAIStreaming(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		sse(w,
			`{"model":"m1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
			`{"choices":[{"index":0,"delta":{"content":"Let me "}}]}`,
			`{"choices":[{"index":0,"delta":{"content":"compute."}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"calculator","arguments":""}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"calc","arguments":"{\"expr"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"expression\":"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"name":"ulator","arguments":"ession\":\"1+1\"}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"17*23\"}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
			`{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`,
			`[DONE]`)
	})
	p := newOpenAI(t, f.URL)
	var deltas []string
	resp, err := p.Complete(context.Background(), Request{Messages: []messages.Message{{Role: "user", Content: "hi"}}}, func(d string) { deltas = append(deltas, d) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deltas, "|") != "Let me |compute." || resp.Message.Content != "Let me compute." {
		t.Fatalf("deltas %q content %q", deltas, resp.Message.Content)
	}
	got, _ := json.Marshal(resp.Message.ToolCalls)
	want := `[{"id":"call_a","type":"function","function":{"name":"calculator","arguments":"{\"expression\":\"17*23\"}"}},{"id":"call_b","type":"function","function":{"name":"calculator","arguments":"{\"expression\":\"1+1\"}"}}]`
	if string(got) != want {
		t.Fatalf("tool calls\n got %s\nwant %s", got, want)
	}
	if resp.Usage.TotalTokens != 13 || resp.FinishReason != "tool_calls" || resp.Model != "m1" {
		t.Fatalf("resp %+v", resp)
	}
	body := f.request(0)
	if body["stream"] != true || fmt.Sprint(body["stream_options"]) != "map[include_usage:true]" {
		t.Fatalf("request %v", body)
	}
}

func TestOpenAIStreamIgnoredByServer(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, map[string]any{"choices": []any{map[string]any{"finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": "whole"}}}})
	})
	var deltas []string
	resp, err := newOpenAI(t, f.URL).Complete(context.Background(), Request{}, func(d string) { deltas = append(deltas, d) })
	if err != nil || resp.Message.Content != "whole" || len(deltas) != 1 || resp.Model != "gpt-test" {
		t.Fatalf("resp %+v deltas %q err %v", resp, deltas, err)
	}
}

func TestOpenAIStreamBreaks(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		deltas int
	}{
		{"eof before done", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n", 1},
		{"cut mid line", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choi", 1},
		{"malformed chunk", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {oops}\n\n", 1},
		{"error event", "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, tt.body)
			})
			var deltas int
			_, err := newOpenAI(t, f.URL).Complete(context.Background(), Request{}, func(string) { deltas++ })
			if !errors.Is(err, ErrUnavailable) || !IsBreakerFailure(err) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if deltas != tt.deltas {
				t.Fatalf("deltas %d, want %d", deltas, tt.deltas)
			}
		})
	}
}

func TestOpenAIStreamFinishedWithoutDone(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		sse(w, `{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}`)
	})
	resp, err := newOpenAI(t, f.URL).Complete(context.Background(), Request{}, func(string) {})
	if err != nil || resp.Message.Content != "ok" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
}

func TestOpenAINeverHangs(t *testing.T) {
	var f *fakeOpenAI
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Accept") == "text/event-stream" {
			sse(w, `{"choices":[{"index":0,"delta":{"content":"a"}}]}`)
		}
		f.hang(w, r)
	})
	p := newOpenAI(t, f.URL, func(c *OpenAIConfig) { c.StreamIdleTimeout = 100 * time.Millisecond })
	t.Run("ctx deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := p.Complete(ctx, Request{}, nil)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := p.Complete(ctx, Request{}, nil)
		if !errors.Is(err, context.Canceled) || IsBreakerFailure(err) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("stream idle", func(t *testing.T) {
		start := time.Now()
		var got string
		_, err := p.Complete(context.Background(), Request{}, func(d string) { got += d })
		if !errors.Is(err, ErrUnavailable) || got != "a" || time.Since(start) > 3*time.Second {
			t.Fatalf("err %v, deltas %q after %s", err, got, time.Since(start))
		}
	})
}

func TestOpenAIConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := newOpenAI(t, url).Complete(context.Background(), Request{}, nil)
	if !errors.Is(err, ErrUnavailable) || !IsBreakerFailure(err) || strings.Contains(err.Error(), testKey) {
		t.Fatalf("err %v", err)
	}
}

func TestOpenAIErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		want      error
		code      string
		retry     time.Duration
		isFailure bool
		httpCode  int
	}{
		{"500", 500, nil, `{"error":{"message":"boom","type":"server_error"}}`, ErrUnavailable, "server_error", 0, true, 503},
		{"502 html", 502, nil, `<html>bad gateway</html>`, ErrUnavailable, "", 0, true, 503},
		{"429 retry-after", 429, map[string]string{"Retry-After": "7"}, `{"error":{"message":"slow down","code":"rate_limit_exceeded"}}`, ErrRateLimited, "rate_limit_exceeded", 7 * time.Second, false, 429},
		{"429 retry-after-ms", 429, map[string]string{"retry-after-ms": "1500", "Retry-After": "2"}, `{}`, ErrRateLimited, "", 1500 * time.Millisecond, false, 429},
		{"400 ctx code", 400, nil, `{"error":{"message":"too long","code":"context_length_exceeded"}}`, ErrContextLength, "context_length_exceeded", 0, false, 400},
		{"400 ctx text", 400, nil, `{"error":{"message":"This model's maximum context length is 8192 tokens"}}`, ErrContextLength, "", 0, false, 400},
		{"400 plain", 400, nil, `{"error":{"message":"bad param","type":"invalid_request_error","code":null}}`, ErrBadRequest, "invalid_request_error", 0, false, 400},
		{"404 ollama", 404, nil, `{"error":"model \"x\" not found"}`, ErrBadRequest, "", 0, false, 400},
		{"422 vllm", 422, nil, `{"object":"error","message":"bad","type":"BadRequestError","code":422}`, ErrBadRequest, "", 0, false, 400},
		{"401 echoes key", 401, nil, `{"error":{"message":"Incorrect API key provided: ` + testKey + `. Also sk-abc***xyz.","code":"invalid_api_key"}}`, ErrAuth, "invalid_api_key", 0, false, 502},
		{"403", 403, nil, `{"error":{"message":"forbidden"}}`, ErrAuth, "", 0, false, 502},
		{"408", 408, nil, ``, ErrUnavailable, "", 0, true, 503},
		{"200 malformed", 200, nil, `{"choices":`, ErrUnavailable, "", 0, true, 503},
		{"200 no choices", 200, nil, `{"choices":[]}`, ErrUnavailable, "", 0, true, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			_, err := newOpenAI(t, f.URL).Complete(context.Background(), Request{}, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if IsBreakerFailure(err) != tt.isFailure {
				t.Fatalf("IsBreakerFailure = %v", !tt.isFailure)
			}
			if s, _ := Classify(err); s != tt.httpCode {
				t.Fatalf("Classify = %d, want %d", s, tt.httpCode)
			}
			if strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "sk-abc") {
				t.Fatalf("key leaked: %v", err)
			}
			var pe *Error
			if errors.As(err, &pe) {
				if pe.Status != tt.status || pe.Code != tt.code || pe.RetryAfter != tt.retry || pe.Provider != "fake" {
					t.Fatalf("*Error %+v", pe)
				}
			} else if tt.status >= 400 {
				t.Fatalf("want *Error, got %T", err)
			}
			if d, ok := RetryAfter(err); d != tt.retry || ok != (tt.retry > 0) {
				t.Fatalf("RetryAfter = %s %v", d, ok)
			}
		})
	}
}

func TestOpenAIConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  OpenAIConfig
		want []string // substrings, one per joined error
	}{
		{"ok", OpenAIConfig{APIKey: testKey}, nil},
		{"local no key", OpenAIConfig{Kind: KindOllama}, nil},
		{"missing key", OpenAIConfig{}, []string{"API key is required"}},
		{"bad url and key", OpenAIConfig{Kind: KindOpenRouter, APIKey: "sk-nope-0123456789abc", BaseURL: "ftp://x"}, []string{`must start with "sk-or-"`, "absolute http(s) URL"}},
		{"local needs url", OpenAIConfig{Kind: KindLocal}, []string{"base_url is required"}},
		{"creds in url", OpenAIConfig{Kind: KindLocal, BaseURL: "http://u:p@h/v1"}, []string{"must not carry credentials"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("want error")
			}
			errs := err.(interface{ Unwrap() []error }).Unwrap()
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors: %v", len(errs), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Fatalf("error %d = %q, want %q", i, errs[i], w)
				}
			}
			if strings.Contains(err.Error(), "0123456789") {
				t.Fatalf("key echoed: %v", err)
			}
		})
	}
}

func TestLogValueRedactsKey(t *testing.T) {
	var b strings.Builder
	log := slog.New(slog.NewJSONHandler(&b, nil))
	p := newOpenAI(t, "http://localhost:1")
	log.Info("provider", "p", p, "cfg", OpenAIConfig{APIKey: testKey})
	if strings.Contains(b.String(), testKey) || !strings.Contains(b.String(), "[redacted]") {
		t.Fatalf("log: %s", b.String())
	}
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		kind, key, want string
	}{
		{"openai", "sk-proj-abcdefghijklmnopqrstuvwxyz", ""},
		{"openai", "", `invalid API key: openai: API key is required (set the environment variable named by api_key_env)`},
		{"openai", "pk-abcdefghijklmnopqrstuvwxyz", `invalid API key: openai: API key must start with "sk-"`},
		{"openai", "sk-short", `invalid API key: openai: API key is too short (8 characters, need at least 20)`},
		{"openai", "sk-abcdefghijklmnopqrstuvwxyz\n", `invalid API key: openai: API key contains whitespace or control characters`},
		{"openrouter", "sk-or-v1-abcdefghijklmnopqrstuvwxyz", ""},
		{"openrouter", "sk-abcdefghijklmnopqrstuvwxyz", `invalid API key: openrouter: API key must start with "sk-or-"`},
		{"ollama", "", ""},
		{"vllm", "anything-goes", ""},
		{"llamacpp", "", ""},
		{"local", "has space", `invalid API key: local: API key contains whitespace or control characters`},
		{"offline", "whatever", ""},
		{"azure", "k", `invalid API key: unknown provider kind "azure" (want one of openai, openrouter, ollama, vllm, llamacpp, local, compatible, anthropic, offline)`},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.want, func(t *testing.T) {
			err := ValidateKey(tt.kind, tt.key)
			got := ""
			if err != nil {
				got = err.Error()
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatal("does not wrap ErrInvalidKey")
				}
			}
			if got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{http.Header{"Retry-After": {now.Add(20 * time.Second).Format(http.TimeFormat)}}, 20 * time.Second},
		{http.Header{"Retry-After": {"-5"}}, 0},
		{http.Header{"Retry-After": {"999999"}}, time.Hour},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
		{nil, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.h), func(t *testing.T) {
			if got := parseRetryAfter(tt.h, now); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func BenchmarkOpenAIStream(b *testing.B) {
	var chunks []string
	for range 50 {
		chunks = append(chunks, `{"choices":[{"index":0,"delta":{"content":"word "}}]}`)
	}
	chunks = append(chunks, `{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`, "[DONE]")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		sse(w, chunks...)
	}))
	defer srv.Close()
	p, _ := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", APIKey: testKey})
	req := Request{Messages: []messages.Message{{Role: "user", Content: "hi"}}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Complete(context.Background(), req, func(string) {}); err != nil {
			b.Fatal(err)
		}
	}
}
