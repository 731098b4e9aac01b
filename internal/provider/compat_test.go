package provider

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/messages"
)

// Every request parameter reaches an OpenAI-compatible provider as OpenAI
// names it; parts go as sent; passed-through parameters never override
// agentbus's own.
func TestOpenAIRequestFidelity(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, map[string]any{"model": "gpt-test", "choices": []any{map[string]any{"finish_reason": "stop",
			"message":  map[string]any{"role": "assistant", "content": `{"answer":42}`, "refusal": nil},
			"logprobs": map[string]any{"content": []any{map[string]any{"token": "{", "logprob": -0.1, "bytes": []int{123}, "top_logprobs": []any{}}}, "refusal": nil}}}})
	})
	p := newOpenAI(t, f.URL)
	seed, mct, tl, strict, no := int64(7), 50, 2, true, false
	req := Request{
		Model: "gpt-x",
		Messages: []messages.Message{{Role: "user", Content: "hi\nthere", Parts: []messages.ContentPart{{Type: "text", Text: "hi"}, {Type: "text", Text: "there"},
			{Type: "image_url", ImageURL: &messages.ImageURL{URL: "https://example.com/a.png", Detail: "low"}}}}},
		Tools: []ToolSpec{calcTool, {Name: "get_weather", Parameters: json.RawMessage(`{"type":"object"}`), Strict: &strict}},
		User:  "alice",
		Params: messages.Params{Seed: &seed, MaxCompletionTokens: &mct, Logprobs: true, TopLogprobs: &tl, User: "end-9", ParallelToolCalls: &no,
			ToolChoice:     &messages.ToolChoice{Mode: "function", Function: "calculator"},
			ResponseFormat: &messages.ResponseFormat{Type: "json_schema", JSONSchema: &messages.JSONSchemaFormat{Name: "answer", Schema: json.RawMessage(`{"type":"object"}`), Strict: &strict}},
			OpenAI:         map[string]json.RawMessage{"reasoning_effort": json.RawMessage(`"low"`), "model": json.RawMessage(`"evil"`)},
			Extra:          map[string]json.RawMessage{"top_k": json.RawMessage(`5`)},
		},
	}
	resp, err := p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := f.request(0)
	for k, want := range map[string]string{
		"model":                 `"gpt-x"`,
		"seed":                  `7`,
		"max_completion_tokens": `50`,
		"logprobs":              `true`,
		"top_logprobs":          `2`,
		"user":                  `"end-9"`,
		"parallel_tool_calls":   `false`,
		"tool_choice":           `{"function":{"name":"calculator"},"type":"function"}`,
		"tools.1":               `{"function":{"name":"get_weather","parameters":{"type":"object"},"strict":true},"type":"function"}`,
		"response_format":       `{"json_schema":{"name":"answer","schema":{"type":"object"},"strict":true},"type":"json_schema"}`,
		"reasoning_effort":      `"low"`,
		"top_k":                 `5`,
		"messages":              `[{"content":[{"text":"hi","type":"text"},{"text":"there","type":"text"},{"image_url":{"detail":"low","url":"https://example.com/a.png"},"type":"image_url"}],"role":"user"}]`,
	} {
		v := got[k]
		if k == "tools.1" { // a client tool declared strict stays strict
			v = got["tools"].([]any)[1]
		}
		b, _ := json.Marshal(v)
		if string(b) != want {
			t.Errorf("%s = %s, want %s", k, b, want)
		}
	}
	if _, ok := got["max_tokens"]; ok {
		t.Errorf("max_tokens sent: %v", got)
	}
	if resp.Message.Content != `{"answer":42}` || !strings.Contains(string(resp.Logprobs), `"token":"{"`) {
		t.Fatalf("response %+v logprobs %s", resp, resp.Logprobs)
	}
	// Without tools, tool_choice and parallel_tool_calls are not sent
	// (OpenAI refuses them), and the agentbus user stands in for a missing
	// end-user id.
	req.Tools, req.Params.User = nil, ""
	if _, err := p.Complete(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	got = f.request(1)
	if _, ok := got["tool_choice"]; ok || got["parallel_tool_calls"] != nil || got["user"] != "alice" {
		t.Fatalf("request %v", got)
	}
}

func TestOpenAIRefusalAndFinishReasons(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			sse(w, `{"model":"m","choices":[{"index":0,"delta":{"role":"assistant","refusal":"I can"}}]}`,
				`{"model":"m","choices":[{"index":0,"delta":{"refusal":"not."}}]}`,
				`{"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`, `[DONE]`)
		case 2:
			writeJSON(w, 200, map[string]any{"choices": []any{map[string]any{"finish_reason": "length", "message": map[string]any{"role": "assistant", "content": "abc"}}}})
		case 3:
			writeJSON(w, 200, map[string]any{"choices": []any{map[string]any{"finish_reason": "eos_token", "message": map[string]any{"role": "assistant", "content": "abc"}}}})
		default:
			writeJSON(w, 200, map[string]any{"choices": []any{map[string]any{"finish_reason": "content_filter", "message": map[string]any{"role": "assistant", "content": nil}}}})
		}
	})
	p := newOpenAI(t, f.URL)
	resp, err := p.Complete(context.Background(), userReq, func(string) {})
	if err != nil || resp.Message.Refusal != "I cannot." || resp.FinishReason != "stop" {
		t.Fatalf("%+v %v", resp, err)
	}
	for _, want := range []string{"length", "stop", "content_filter"} {
		resp, err := p.Complete(context.Background(), userReq, nil)
		if err != nil || resp.FinishReason != want {
			t.Fatalf("finish %q, want %q (%v)", resp.FinishReason, want, err)
		}
	}
}

func TestCapabilitiesCheck(t *testing.T) {
	seed := int64(1)
	temp := 1.5
	no := false
	img := []messages.Message{{Role: "user", Content: "a", Parts: []messages.ContentPart{{Type: "text", Text: "a"}, {Type: "image_url", ImageURL: &messages.ImageURL{URL: "https://x/y.png"}}}}}
	cases := []struct {
		kind  string
		req   Request
		param string
	}{
		{KindOpenAI, Request{Messages: img, Params: messages.Params{Seed: &seed, Logprobs: true, ResponseFormat: &messages.ResponseFormat{Type: "json_object"}}}, ""},
		{KindOllama, Request{Messages: img}, "messages.[0].content.[1]"},
		{KindOffline, Request{Params: messages.Params{Seed: &seed, Stop: []string{"x"}, ToolChoice: &messages.ToolChoice{Mode: "none"}, ParallelToolCalls: &no}}, ""},
		{KindOffline, Request{Params: messages.Params{ResponseFormat: &messages.ResponseFormat{Type: "json_object"}}}, "response_format"},
		{KindOffline, Request{Params: messages.Params{Logprobs: true}}, "logprobs"},
		{KindOffline, Request{Params: messages.Params{OpenAI: map[string]json.RawMessage{"store": json.RawMessage(`true`)}}}, ""},
		{KindOffline, Request{Params: messages.Params{OpenAI: map[string]json.RawMessage{"store": json.RawMessage(`true`), "frequency_penalty": json.RawMessage(`1`)}}}, "frequency_penalty"},
		{KindAnthropic, Request{Messages: img, Params: messages.Params{Temperature: &temp}}, "temperature"},
		{KindAnthropic, Request{Params: messages.Params{Seed: &seed}}, "seed"},
		{KindAnthropic, Request{Params: messages.Params{ResponseFormat: &messages.ResponseFormat{Type: "json_schema", JSONSchema: &messages.JSONSchemaFormat{Name: "a"}}}}, "response_format"},
		{KindAnthropic, Request{Messages: img, Params: messages.Params{ToolChoice: &messages.ToolChoice{Mode: "required"}, ParallelToolCalls: &no}}, ""},
	}
	for i, c := range cases {
		err := KindCapabilities(c.kind).Check("p", "m", &c.req)
		var ue *UnsupportedError
		switch {
		case c.param == "" && err != nil:
			t.Errorf("%d %s: %v", i, c.kind, err)
		case c.param != "" && (!errors.As(err, &ue) || ue.Param != c.param || !errors.Is(err, ErrBadRequest)):
			t.Errorf("%d %s: %v, want param %s", i, c.kind, err, c.param)
		case c.param != "":
			if s, code := Classify(err); s != 400 || code != messages.CodeUnsupportedParameter || !strings.Contains(ClientMessage(err), "not supported by model m") {
				t.Errorf("%d: %d %s %q", i, s, code, ClientMessage(err))
			}
		}
	}
}

// A request is routed by its model: within the model's providers it fails
// over; a provider that cannot honour a parameter is skipped for one that
// can; the catalog lists models and aliases in configuration order.
func TestRoutingByModel(t *testing.T) {
	a, b, c := okProvider("a"), failing("b", errStatus(500, ErrUnavailable, 0)), okProvider("c")
	var seen []string
	rec := &scripted{name: "d", fn: nil}
	rec.fn = func(_ context.Context, _ int, _ func(string)) (Response, error) {
		return Response{Message: messages.Message{Role: "assistant", Content: "d"}}, nil
	}
	capsB, capsC, capsD := KindCapabilities(KindOpenAI), KindCapabilities(KindOpenAI), KindCapabilities(KindOffline)
	spy := &modelSpy{Provider: rec, models: &seen}
	fo, err := NewFailover([]Entry{
		{Provider: a, Models: []string{"small"}, Default: "small", Kind: KindOffline},
		{Provider: b, Models: []string{"big"}, Default: "big", Kind: KindOpenAI, Caps: &capsB},
		{Provider: c, Models: []string{"big"}, Default: "big", Kind: KindOpenRouter, Caps: &capsC, Aliases: map[string]string{"large": "openai/big"}},
		{Provider: spy, Models: []string{"any-model", AnyModel}, Default: "any-model", Kind: KindOffline, Caps: &capsD},
	}, FailoverConfig{Retry: RetryConfig{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if r, err := fo.Complete(ctx, Request{Model: "big"}, nil); err != nil || r.Provider != "c" {
		t.Fatalf("big: %+v %v", r, err)
	}
	if r, err := fo.Complete(ctx, Request{Model: "large"}, nil); err != nil || r.Provider != "c" {
		t.Fatalf("large: %+v %v", r, err)
	}
	if r, err := fo.Complete(ctx, Request{Model: "whatever"}, nil); err != nil || r.Provider != "d" || strings.Join(seen, ",") != "whatever" {
		t.Fatalf("open provider: %+v %v %v", r, err, seen)
	}
	seed := int64(1)
	if _, err := fo.Complete(ctx, Request{Model: "whatever", Params: messages.Params{Logprobs: true, Seed: &seed}}, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unsupported: %v", err)
	}
	// A tool_choice the offered tools cannot satisfy is refused, naming
	// tool_choice, before any call.
	for _, tc := range []messages.ToolChoice{{Mode: "function", Function: "get_weather"}, {Mode: "required"}} {
		_, err := fo.Complete(ctx, Request{Model: "small", Params: messages.Params{ToolChoice: &tc}}, nil)
		var ue *UnsupportedError
		if !errors.As(err, &ue) || ue.Param != "tool_choice" || !strings.Contains(ue.Reason, "(none)") {
			t.Fatalf("tool_choice %+v: %v", tc, err)
		}
	}
	if _, err := fo.Complete(ctx, Request{Model: "small", Tools: []ToolSpec{calcTool}, Params: messages.Params{ToolChoice: &messages.ToolChoice{Mode: "function", Function: "calculator"}}}, nil); err != nil {
		t.Fatal(err)
	}
	cat := fo.Catalog()
	if got := strings.Join(cat.IDs(), ","); got != "small,big,large,any-model" || cat.Default != "small" || len(cat.Open) != 1 {
		t.Fatalf("catalog %s default %s open %v", got, cat.Default, cat.Open)
	}
	if info, _ := cat.Find("big"); len(info.Providers) != 2 || info.OwnedBy != "openai" {
		t.Fatalf("big %+v", info)
	}
	if err := cat.Check(&Request{Model: "nope-but-open"}); err != nil {
		t.Fatalf("open provider takes any name: %v", err)
	}
	if err := cat.Check(&Request{Model: "small", Params: messages.Params{Logprobs: true}}); err != nil {
		t.Fatalf("no caps = everything: %v", err)
	}
	if err := cat.Check(&Request{Model: "any-model", Params: messages.Params{Logprobs: true}}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("offline logprobs: %v", err)
	}
}

type modelSpy struct {
	Provider
	models *[]string
}

func (s *modelSpy) Complete(ctx context.Context, req Request, onDelta func(string)) (Response, error) {
	*s.models = append(*s.models, req.Model)
	return s.Provider.Complete(ctx, req, onDelta)
}

func TestOfflineHonoursItsParameters(t *testing.T) {
	o := NewOffline()
	two := 2
	req := Request{Messages: []messages.Message{{Role: "user", Content: "tell me about the sea"}}, Params: messages.Params{MaxTokens: &two}}
	resp, _ := o.Complete(context.Background(), req, nil)
	if resp.FinishReason != "length" || len(resp.Message.Content) != 8 {
		t.Fatalf("max_tokens: %+v", resp)
	}
	req.Params = messages.Params{Stop: []string{"the"}}
	if resp, _ := o.Complete(context.Background(), req, nil); resp.Message.Content != "You said: tell me about " || resp.FinishReason != "stop" {
		t.Fatalf("stop: %+v", resp)
	}
	calc := Request{Messages: []messages.Message{{Role: "user", Content: "What is 2+2?"}}, Tools: []ToolSpec{calcTool}}
	calc.Params.ToolChoice = &messages.ToolChoice{Mode: "none"}
	if resp, _ := o.Complete(context.Background(), calc, nil); len(resp.Message.ToolCalls) != 0 || resp.Message.Content != "2+2 = 4" {
		t.Fatalf("tool_choice none: %+v", resp)
	}
	calc.Messages[0].Content = "hello"
	calc.Params.ToolChoice = &messages.ToolChoice{Mode: "required"}
	if resp, _ := o.Complete(context.Background(), calc, nil); len(resp.Message.ToolCalls) != 1 || resp.FinishReason != "tool_calls" {
		t.Fatalf("tool_choice required: %+v", resp)
	}
}
