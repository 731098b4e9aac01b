package ingest_test

// Fakes at the true edge only: local HTTP servers speaking the OpenAI
// Chat Completions protocol and Anthropic's Messages protocol, behind a
// whole agentbus system (embedded JetStream, every stage, real HTTP).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
)

// fakeOpenAI answers by the last message's text:
//
//	finish:length, finish:content_filter   that finish reason
//	refuse                                 a refusal (content null)
//	client tool                            a call to the request's last tool (a client tool), {"city":"Paris"}
//	handoff                                a call to the request's last tool with an instance of its
//	                                       parameters schema (see exampleOf) as arguments
//	tool                                   a calculator call, then (after the tool result) an answer
//	fail:500, fail:429, fail:400           that HTTP error (the 500 names an internal URL)
//	break                                  a stream that dies after two chunks
//	anything else                          "fake says: <text>", or, when the request has a
//	                                       json_schema response_format, an instance of its
//	                                       schema (see exampleOf) as the content
//
// A request with logprobs gets a logprobs object. It records every
// request body.
type fakeOpenAI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []map[string]any
}

const fakeKey = "sk-test-0123456789abcdefghij"

func newFakeOpenAI(t testing.TB) *fakeOpenAI {
	f := &fakeOpenAI{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// last returns the body of the last request whose last message contains
// text.
func (f *fakeOpenAI) last(t *testing.T, text string) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.reqs) - 1; i >= 0; i-- {
		b, _ := json.Marshal(f.reqs[i]["messages"])
		if strings.Contains(string(b), text) {
			return f.reqs[i]
		}
	}
	t.Fatalf("the provider never got a request with %q", text)
	return nil
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+fakeKey {
		http.Error(w, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
		return
	}
	var req map[string]any
	_ = json.NewDecoder(r.Body).Decode(&req)
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	msgs, _ := req["messages"].([]any)
	last, _ := msgs[len(msgs)-1].(map[string]any)
	role, _ := last["role"].(string)
	text := fmt.Sprint(last["content"])
	stream, _ := req["stream"].(bool)
	model, _ := req["model"].(string)

	type answer struct {
		content, refusal, finish string
		toolCall                 bool
	}
	callName, callArgs := "calculator", `{\"expression\":\"6*7\"}`
	a := answer{content: "fake says: " + text, finish: "stop"}
	if rf, _ := req["response_format"].(map[string]any); rf["type"] == "json_schema" {
		js, _ := rf["json_schema"].(map[string]any)
		b, _ := json.Marshal(exampleOf(js["schema"]))
		a.content = string(b) // what a model bound to the schema answers
	}
	switch {
	case role == "tool":
		a.content = "the tool said " + text
	case strings.Contains(text, "fail:500"):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"error":{"message":"upstream exploded at http://10.1.2.3:9000/internal/v1","type":"server_error"}}`)
		return
	case strings.Contains(text, "fail:429"):
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`)
		return
	case strings.Contains(text, "fail:400"):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"message":"Invalid 'messages': see https://platform.example/docs/errors","type":"invalid_request_error","code":"invalid_value"}}`)
		return
	case strings.Contains(text, "finish:length"):
		a = answer{content: "a truncated answ", finish: "length"}
	case strings.Contains(text, "finish:content_filter"):
		a = answer{content: "", finish: "content_filter"}
	case strings.Contains(text, "refuse"):
		a = answer{refusal: "I can't help with that.", finish: "stop"}
	case strings.Contains(text, "client tool"):
		tools, _ := req["tools"].([]any)
		if len(tools) == 0 {
			break
		}
		fn, _ := tools[len(tools)-1].(map[string]any)["function"].(map[string]any)
		callName, _ = fn["name"].(string)
		callArgs = `{\"city\":\"Paris\"}`
		a = answer{toolCall: true, finish: "tool_calls"}
	case strings.Contains(text, "handoff"):
		tools, _ := req["tools"].([]any)
		if len(tools) == 0 {
			break
		}
		fn, _ := tools[len(tools)-1].(map[string]any)["function"].(map[string]any)
		callName, _ = fn["name"].(string)
		args, _ := json.Marshal(exampleOf(fn["parameters"]))
		b, _ := json.Marshal(string(args))
		callArgs = string(b[1 : len(b)-1]) // escaped for the JSON string below
		a = answer{toolCall: true, finish: "tool_calls"}
	case strings.Contains(text, "tool"):
		a = answer{toolCall: true, finish: "tool_calls"}
	}
	logprobs := "null"
	if lp, _ := req["logprobs"].(bool); lp {
		logprobs = `{"content":[{"token":"fake","logprob":-0.01,"bytes":[102,97,107,101],"top_logprobs":[]}],"refusal":null}`
	}
	usage := `{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}`
	call := fmt.Sprintf(`{"index":0,"id":"call_fake1","type":"function","function":{"name":%q,"arguments":"%s"}}`, callName, callArgs)
	if !stream {
		msg := map[string]any{"role": "assistant", "content": a.content, "refusal": nil}
		if a.refusal != "" {
			msg["content"], msg["refusal"] = nil, a.refusal
		}
		if a.toolCall {
			var tc map[string]any
			_ = json.Unmarshal([]byte(call), &tc)
			delete(tc, "index")
			msg["content"], msg["tool_calls"] = nil, []any{tc}
		}
		mb, _ := json.Marshal(msg)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"model":%q,"choices":[{"index":0,"message":%s,"logprobs":%s,"finish_reason":%q}],"usage":%s}`,
			model, mb, logprobs, a.finish, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(delta, finish string) {
		fin := "null"
		if finish != "" {
			fin = `"` + finish + `"`
		}
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":%s,\"logprobs\":null,\"finish_reason\":%s}]}\n\n", model, delta, fin)
		w.(http.Flusher).Flush()
	}
	send(`{"role":"assistant","content":""}`, "")
	switch {
	case a.toolCall:
		send(`{"tool_calls":[`+call+`]}`, "")
	case a.refusal != "":
		b, _ := json.Marshal(a.refusal)
		send(`{"refusal":`+string(b)+`}`, "")
	default:
		for i, word := range strings.SplitAfter(a.content, " ") {
			b, _ := json.Marshal(word)
			send(`{"content":`+string(b)+`}`, "")
			if i == 1 && strings.Contains(text, "break") {
				conn, _, _ := w.(http.Hijacker).Hijack()
				_ = conn.Close() // the provider dies mid-answer
				return
			}
		}
	}
	send(`{}`, a.finish)
	fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":%q,\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", model, usage)
}

// exampleOf returns a value valid against a JSON schema of the kinds
// structured-output code sends (objects, arrays, enums, scalars, anyOf):
// every property of an object, strings "fake", numbers 42, booleans
// true, an enum's first value, arrays of one item.
func exampleOf(schema any) any {
	s, _ := schema.(map[string]any)
	if e, _ := s["enum"].([]any); len(e) > 0 {
		return e[0]
	}
	if c, ok := s["const"]; ok {
		return c
	}
	if alts, _ := s["anyOf"].([]any); len(alts) > 0 {
		return exampleOf(alts[0])
	}
	typ := s["type"]
	if ts, _ := typ.([]any); len(ts) > 0 {
		typ = ts[0]
	}
	switch typ {
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		for k, v := range props {
			out[k] = exampleOf(v)
		}
		return out
	case "array":
		return []any{exampleOf(s["items"])}
	case "string":
		return "fake"
	case "integer", "number":
		return 42
	case "boolean":
		return true
	}
	return nil
}

// providersFile writes a provider configuration file and returns its path.
func providersFile(t testing.TB, cfg string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeProviders serves agentbus-offline (offline), fake-1 and its alias
// fake-alias (f, a healthy provider whose breaker does not open in a test)
// and flaky-1 (f again, behind a breaker that opens at the first failure
// and stays open).
func fakeProviders(t testing.TB, f *fakeOpenAI) func(*app.Options) {
	cfg := fmt.Sprintf(`{"providers":[
	  {"name":"offline","kind":"offline"},
	  {"name":"fake","kind":"openai","base_url":%q,"api_key_env":"FAKE_KEY","model":"fake-1","aliases":{"fake-alias":"fake-1"},
	   "timeout":"10s","breaker":{"failure_threshold":1000,"call_timeout":"10s"}},
	  {"name":"flaky","kind":"openai","base_url":%q,"api_key_env":"FAKE_KEY","model":"flaky-1",
	   "timeout":"10s","breaker":{"failure_threshold":1,"open_timeout":"1h","call_timeout":"10s"}}],
	  "retry":{"max_attempts":1}}`, f.URL+"/v1", f.URL+"/v1")
	path := providersFile(t, cfg)
	return func(o *app.Options) {
		o.ProvidersFile = path
		o.Getenv = func(k string) string {
			if k == "FAKE_KEY" {
				return fakeKey
			}
			return ""
		}
	}
}

// startWith starts a system with the test defaults and mods applied in
// order.
func startWith(t testing.TB, mods ...func(*app.Options)) *app.System {
	t.Helper()
	return apptest.Start(t, func(o *app.Options) {
		for _, m := range mods {
			m(o)
		}
	})
}
