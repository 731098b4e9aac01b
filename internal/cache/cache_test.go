package cache_test

import (
	"encoding/json"
	"testing"

	"github.com/agentbus/agentbus/internal/cache"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/messages"
)

func f64(v float64) *float64 { return &v }

func TestDecide(t *testing.T) {
	cases := []struct {
		name        string
		c           *messages.CacheRequest
		p           messages.Params
		read, write bool
	}{
		{"no cache request", nil, messages.Params{Temperature: f64(0)}, false, false},
		{"key allows, temperature 0", &messages.CacheRequest{}, messages.Params{Temperature: f64(0)}, true, true},
		{"key allows, temperature unset (provider default, not 0)", &messages.CacheRequest{}, messages.Params{}, false, false},
		{"key allows, temperature 0.7", &messages.CacheRequest{}, messages.Params{Temperature: f64(0.7)}, false, false},
		{"explicit, temperature 0.7", &messages.CacheRequest{Explicit: true}, messages.Params{Temperature: f64(0.7)}, true, true},
		{"explicit, temperature unset", &messages.CacheRequest{Explicit: true}, messages.Params{}, true, true},
		{"refresh: write only", &messages.CacheRequest{Refresh: true}, messages.Params{Temperature: f64(0)}, false, true},
		{"refresh of a call not cacheable", &messages.CacheRequest{Refresh: true}, messages.Params{Temperature: f64(1)}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, w := cache.Decide(tc.c, tc.p)
			if r != tc.read || w != tc.write {
				t.Fatalf("Decide = read %v write %v, want %v %v", r, w, tc.read, tc.write)
			}
		})
	}
}

// Every part of a request that determines the answer changes the key;
// nothing else does.
func TestKeyCoversWhatDeterminesTheAnswer(t *testing.T) {
	c := cache.New(nil, cache.Config{}, nil)
	base := func() provider.Request {
		return provider.Request{
			Model:    "gpt-x",
			Messages: []messages.Message{{Role: messages.RoleSystem, Content: "be brief"}, {Role: messages.RoleUser, Content: "hi"}},
			Tools:    []provider.ToolSpec{{Name: "calculator", Parameters: json.RawMessage(`{"type":"object"}`)}},
			Params:   messages.Params{Temperature: f64(0)},
		}
	}
	k0 := c.Key("alice", base())
	if len(k0) != 64 || k0 != c.Key("alice", base()) {
		t.Fatalf("key %q is not a stable SHA-256", k0)
	}
	seven, other := 7, int64(3)
	changes := map[string]func(r *provider.Request){
		"model":         func(r *provider.Request) { r.Model = "gpt-y" },
		"a message":     func(r *provider.Request) { r.Messages[1].Content = "hi!" },
		"system prompt": func(r *provider.Request) { r.Messages[0].Content = "be long" },
		"history": func(r *provider.Request) {
			r.Messages = append([]messages.Message{{Role: messages.RoleUser, Content: "earlier"}}, r.Messages...)
		},
		"tools": func(r *provider.Request) { r.Tools = nil },
		"tool schema": func(r *provider.Request) {
			r.Tools[0].Parameters = json.RawMessage(`{"type":"object","properties":{}}`)
		},
		"temperature": func(r *provider.Request) { r.Params.Temperature = f64(0.5) },
		"max_tokens":  func(r *provider.Request) { r.Params.MaxTokens = &seven },
		"seed":        func(r *provider.Request) { r.Params.Seed = &other },
		"stop":        func(r *provider.Request) { r.Params.Stop = []string{"\n"} },
		"response_format": func(r *provider.Request) {
			r.Params.ResponseFormat = &messages.ResponseFormat{Type: messages.FormatJSONObject}
		},
		"forwarded param": func(r *provider.Request) {
			r.Params.OpenAI = map[string]json.RawMessage{"frequency_penalty": json.RawMessage(`0.5`)}
		},
		"end user": func(r *provider.Request) { r.Params.User = "end-user-7" },
	}
	for name, change := range changes {
		r := base()
		change(&r)
		if c.Key("alice", r) == k0 {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
	if c.Key("bob", base()) == k0 {
		t.Error("two tenants share a key without a shared cache")
	}
	shared := cache.New(nil, cache.Config{Shared: true}, nil)
	if shared.Key("alice", base()) != shared.Key("bob", base()) {
		t.Error("a shared cache keys tenants apart")
	}
	bad := base()
	bad.Tools[0].Parameters = json.RawMessage(`{not json`)
	if k := c.Key("alice", bad); k != "" {
		t.Errorf("an unencodable request got key %q", k)
	}
}

func TestCacheable(t *testing.T) {
	cases := []struct {
		name string
		r    provider.Response
		want bool
	}{
		{"answer", provider.Response{Message: messages.Message{Content: "hi"}, FinishReason: "stop"}, true},
		{"tool calls", provider.Response{Message: messages.Message{ToolCalls: []messages.ToolCall{{ID: "c"}}}, FinishReason: "tool_calls"}, true},
		{"truncated answer", provider.Response{Message: messages.Message{Content: "hi"}, FinishReason: "length"}, true},
		{"content filter", provider.Response{Message: messages.Message{Content: ""}, FinishReason: "content_filter"}, false},
		{"empty", provider.Response{FinishReason: "stop"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := cache.Cacheable(tc.r); got != tc.want {
				t.Fatalf("Cacheable = %v", got)
			}
		})
	}
}
