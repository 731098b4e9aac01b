package ingest_test

// What agent frameworks send, through the official SDKs, reaches the
// provider intact; models are listed and routed as configured; an
// Anthropic provider stands behind the same OpenAI API.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

func sdk(sys *app.System, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL("http://"+sys.HTTPAddr+"/v1/"), option.WithAPIKey(key),
		option.WithMaxRetries(0), option.WithRequestTimeout(30*time.Second))
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The request shapes of JSON-mode and structured-output code, vision
// code and the sampling options frameworks set, through openai-go.
func TestOpenAIGoSDKRequestFidelity(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f))
	client := sdk(sys, issueKey(t, sys, "sdk", 0))
	ctx := context.Background()
	user := func(text string) []openai.ChatCompletionMessageParamUnion {
		return []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("answer in JSON"), openai.UserMessage(text)}
	}

	t.Run("json_object", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "fake-1", Messages: user("json mode"),
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}},
			Seed:           openai.Int(42), Stop: openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END", "STOP"}},
			MaxCompletionTokens: openai.Int(64), User: openai.String("end-user-1"), Temperature: openai.Float(0.3)})
		if err != nil {
			t.Fatal(err)
		}
		got := f.last(t, "json mode")
		for k, want := range map[string]string{"response_format": `{"type":"json_object"}`, "seed": `42`, "stop": `["END","STOP"]`,
			"max_completion_tokens": `64`, "user": `"end-user-1"`, "temperature": `0.3`} {
			if g := jsonOf(t, got[k]); g != want {
				t.Errorf("%s = %s, want %s", k, g, want)
			}
		}
	})
	t.Run("json_schema", func(t *testing.T) {
		schema := map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "integer"}}, "required": []string{"answer"}, "additionalProperties": false}
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "fake-1", Messages: user("structured output"),
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "answer", Schema: schema, Strict: openai.Bool(true)}}}})
		if err != nil {
			t.Fatal(err)
		}
		want := `{"json_schema":{"name":"answer","schema":{"additionalProperties":false,"properties":{"answer":{"type":"integer"}},"required":["answer"],"type":"object"},"strict":true},"type":"json_schema"}`
		if g := jsonOf(t, f.last(t, "structured output")["response_format"]); g != want {
			t.Fatalf("response_format = %s", g)
		}
	})
	t.Run("tool_choice and parallel_tool_calls", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "fake-1", Messages: user("choose nothing"),
			ToolChoice:        openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")},
			ParallelToolCalls: openai.Bool(false)})
		if err != nil {
			t.Fatal(err)
		}
		got := f.last(t, "choose nothing")
		if got["tool_choice"] != "none" || got["parallel_tool_calls"] != false || got["tools"] == nil {
			t.Fatalf("tool_choice %v parallel %v tools %v", got["tool_choice"], got["parallel_tool_calls"], got["tools"])
		}
	})
	t.Run("image and text parts", func(t *testing.T) {
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "fake-1", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("what is in"), openai.TextContentPart("this picture?"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo=", Detail: "low"}),
			})}})
		if err != nil {
			t.Fatal(err)
		}
		msgs := f.last(t, "this picture?")["messages"].([]any)
		want := `{"content":[{"text":"what is in","type":"text"},{"text":"this picture?","type":"text"},{"image_url":{"detail":"low","url":"data:image/png;base64,iVBORw0KGgo="},"type":"image_url"}],"role":"user"}`
		if g := jsonOf(t, msgs[len(msgs)-1]); g != want {
			t.Fatalf("the provider got %s", g)
		}
		if !strings.Contains(res.Choices[0].Message.Content, "what is in") {
			t.Fatalf("answer %q", res.Choices[0].Message.Content)
		}
	})
	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if strings.Join(ids, ",") != "agentbus-offline,fake-1,fake-alias,flaky-1" {
			t.Fatalf("models %v", ids)
		}
		m, err := client.Models.Get(ctx, "fake-alias")
		if err != nil || m.ID != "fake-alias" || m.OwnedBy != "openai" || m.Object != "model" {
			t.Fatalf("retrieve: %+v %v", m, err)
		}
		_, err = client.Models.Get(ctx, "gpt-nope")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
			t.Fatalf("retrieve unknown: %v", err)
		}
	})
	t.Run("unknown model and unsupported parameter", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-nope", Messages: user("hi")})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
			t.Fatalf("unknown model: %v", err)
		}
		_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "agentbus-offline", Messages: user("hi"), Logprobs: openai.Bool(true)})
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "unsupported_parameter" || apiErr.Param != "logprobs" {
			t.Fatalf("unsupported parameter: %v", err)
		}
	})
}

// An API key limited to models lists and uses only those.
func TestKeyLimitedToModels(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f))
	plain, _, err := apikey.IssueModels(context.Background(), sys.Keys, "intern", 0, 0, []string{"agentbus-offline"})
	if err != nil {
		t.Fatal(err)
	}
	client := sdk(sys, plain)
	ctx := context.Background()
	page, err := client.Models.List(ctx)
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != "agentbus-offline" {
		t.Fatalf("models %+v %v", page, err)
	}
	if _, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "agentbus-offline",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}); err != nil {
		t.Fatal(err)
	}
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "fake-1", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || strings.Contains(apiErr.Message, "fake-1,") {
		t.Fatalf("another model: %v", err)
	}
	if _, err := client.Models.Get(ctx, "fake-1"); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("retrieve another model: %v", err)
	}
}

// With the operator's flag, parameters OpenAI does not define reach the
// provider verbatim.
func TestAllowUnknownParams(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f), func(o *app.Options) { o.Ingest.AllowUnknownParams = true })
	key := issueKey(t, sys, "op", 0)
	req, _ := http.NewRequest(http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions",
		strings.NewReader(`{"model":"fake-1","messages":[{"role":"user","content":"extra please"}],"top_k":40,"repetition_penalty":1.1}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	got := f.last(t, "extra please")
	if got["top_k"] != float64(40) || got["repetition_penalty"] != 1.1 {
		t.Fatalf("the provider got %v", got)
	}
}

// In a split deployment ingest has no provider configuration: it lists
// and checks what the llm stage serves.
func TestSplitDeploymentListsTheLLMStagesModels(t *testing.T) {
	f := newFakeOpenAI(t)
	srv := testutil.NATSServer(t)
	external := func(o *app.Options) { o.Pipeline.NATSURL = srv.ClientURL() }
	ingestOnly := startWith(t, external, func(o *app.Options) { o.Stages = []string{app.StageIngest}; o.Auth = false })
	base := "http://" + ingestOnly.HTTPAddr
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// No llm stage yet: the list is unavailable, not made up.
	if status, b := get("/v1/models"); status != 503 || !strings.Contains(b, "no llm stage") {
		t.Fatalf("%d %s", status, b)
	}
	startWith(t, external, fakeProviders(t, f), func(o *app.Options) {
		o.Stages = []string{app.StageGuard, app.StageLLM, app.StageToolexec, app.StagePersist}
	})
	status, b := get("/v1/models")
	if status != 200 || !strings.Contains(b, `"id":"fake-alias"`) || !strings.Contains(b, `"id":"flaky-1"`) {
		t.Fatalf("%d %s", status, b)
	}
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body("fake-alias", "split hello")))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(rb), "fake says: split hello") {
		t.Fatalf("%d %s", resp.StatusCode, rb)
	}
}

// fakeAnthropicAPI speaks Anthropic's Messages protocol: it answers a
// user's "tool" with a calculator tool_use and then, given the
// tool_result, with text; "overloaded" gets 529; anything else is echoed.
// It streams when asked.
type fakeAnthropicAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []map[string]any
}

const anthropicKey = "sk-ant-test-0123456789abcdef"

func newFakeAnthropicAPI(t *testing.T) *fakeAnthropicAPI {
	f := &fakeAnthropicAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != anthropicKey || r.Header.Get("anthropic-version") == "" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
			return
		}
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		msgs := req["messages"].([]any)
		last := msgs[len(msgs)-1].(map[string]any)
		blocks, _ := last["content"].([]any)
		var text, toolResult string
		for _, b := range blocks {
			bl := b.(map[string]any)
			switch bl["type"] {
			case "text":
				text += bl["text"].(string)
			case "tool_result":
				toolResult = fmt.Sprint(bl["content"])
			}
		}
		if strings.Contains(text, "overloaded") {
			w.Header().Set("retry-after", "2")
			w.WriteHeader(529)
			fmt.Fprint(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
			return
		}
		type block map[string]any
		content := []block{{"type": "text", "text": "Claude says: " + text}}
		stop := "end_turn"
		switch {
		case toolResult != "":
			content = []block{{"type": "text", "text": "The calculator says " + toolResult}}
		case strings.Contains(text, "tool"):
			content = []block{{"type": "tool_use", "id": "toolu_01", "name": "calculator", "input": map[string]any{"expression": "6*7"}}}
			stop = "tool_use"
		}
		if req["stream"] != true {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-20250101",
				"content": content, "stop_reason": stop, "usage": map[string]any{"input_tokens": 10, "output_tokens": 6}})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		ev := func(v map[string]any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", v["type"], b)
			w.(http.Flusher).Flush()
		}
		ev(map[string]any{"type": "message_start", "message": map[string]any{"model": "claude-test-20250101", "usage": map[string]any{"input_tokens": 10, "output_tokens": 1}}})
		for i, c := range content {
			if c["type"] == "text" {
				ev(map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{"type": "text", "text": ""}})
				for _, word := range strings.SplitAfter(c["text"].(string), " ") {
					ev(map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "text_delta", "text": word}})
				}
			} else {
				ev(map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{"type": "tool_use", "id": c["id"], "name": c["name"], "input": map[string]any{}}})
				in, _ := json.Marshal(c["input"])
				ev(map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "input_json_delta", "partial_json": string(in)}})
			}
			ev(map[string]any{"type": "content_block_stop", "index": i})
		}
		ev(map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop}, "usage": map[string]any{"output_tokens": 6}})
		ev(map[string]any{"type": "message_stop"})
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAnthropicAPI) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// The same pipeline behind an Anthropic provider: plain, streaming, a
// server tool round through tool_use/tool_result, 529 overload; every
// answer valid against OpenAI's spec.
func TestAnthropicBehindThePipeline(t *testing.T) {
	spec := loadSpec(t)
	f := newFakeAnthropicAPI(t)
	cfg := fmt.Sprintf(`{"providers":[{"name":"claude","kind":"anthropic","base_url":%q,"api_key_env":"ANTHROPIC_KEY","model":"claude-test",
	  "breaker":{"failure_threshold":2,"open_timeout":"1h"}}],"retry":{"max_attempts":1}}`, f.URL+"/v1")
	path := providersFile(t, cfg)
	sys := apptest.Start(t, func(o *app.Options) {
		o.ProvidersFile = path
		o.Getenv = func(k string) string {
			if k == "ANTHROPIC_KEY" {
				return anthropicKey
			}
			return ""
		}
	})
	s := &suite{t: t, spec: spec, base: "http://" + sys.HTTPAddr}
	key := issueKey(t, sys, "claude-user", 0)

	s.run(conformanceCase{name: "plain", key: key, body: `{"model":"claude-test","messages":[{"role":"system","content":"be kind"},{"role":"user","content":"hello claude"}]}`,
		specValid: yes(), status: 200, check: finishIs("stop", contentHas("Claude says: hello claude"))})
	f.mu.Lock()
	first := f.reqs[0]
	f.mu.Unlock()
	if first["system"] != "be kind" || first["model"] != "claude-test" || first["tools"] == nil {
		t.Fatalf("anthropic request %v", first)
	}
	s.run(conformanceCase{name: "tool round", key: key, body: body("claude-test", "use a tool please"), specValid: yes(), status: 200,
		check: finishIs("stop", contentHas("The calculator says"), contentHas("42"))})
	s.run(conformanceCase{name: "stream", key: key, body: body("claude-test", "stream to me", `"stream":true`, `"stream_options":{"include_usage":true}`), specValid: yes(), status: 200,
		check: func(t *testing.T, r *response) {
			sum := summarize(t, r)
			if !sum.done || sum.finish != "stop" || sum.content != "Claude says: stream to me" || sum.usage["total_tokens"] != float64(16) {
				t.Fatalf("%+v", sum)
			}
		}})
	s.run(conformanceCase{name: "stream tool round", key: key, body: body("claude-test", "a tool in a stream", `"stream":true`), specValid: yes(), status: 200,
		check: func(t *testing.T, r *response) {
			if sum := summarize(t, r); !sum.done || !strings.Contains(sum.content, "42") {
				t.Fatalf("%+v", sum)
			}
		}})
	s.run(conformanceCase{name: "seed refused", key: key, body: body("claude-test", "hi", `"seed":1`), specValid: yes(), status: 400, code: "unsupported_parameter", param: "seed"})
	s.run(conformanceCase{name: "temperature above 1 refused", key: key, body: body("claude-test", "hi", `"temperature":1.5`), specValid: yes(), status: 400,
		code: "unsupported_parameter", param: "temperature"})
	before := f.calls()
	s.run(conformanceCase{name: "overloaded", key: key, body: body("claude-test", "overloaded 1"), specValid: yes(), status: 503, code: "provider_unavailable"})
	s.run(conformanceCase{name: "overloaded (stream)", key: key, body: body("claude-test", "overloaded 2", `"stream":true`), specValid: yes(), status: 503, code: "provider_unavailable"})
	s.run(conformanceCase{name: "breaker open", key: key, body: body("claude-test", "are you there?"), specValid: yes(), status: 503, code: "provider_unavailable",
		check: func(t *testing.T, r *response) {
			if r.header.Get("Retry-After") == "" {
				t.Fatal("no Retry-After")
			}
		}})
	if n := f.calls() - before; n != 2 {
		t.Fatalf("%d calls for two overloads and one request with the breaker open", n)
	}
}

// The official Node SDK: JSON mode and json_schema reaching the provider,
// image parts, a client tool round by the SDK's own runTools loop (plain
// and streaming), models.list and models.retrieve, an unknown model's 404.
func TestOpenAINodeSDKRequestFidelity(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH")
	}
	dir, _ := filepath.Abs(filepath.Join("..", "..", "..", "examples", "openai-node"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Skipf("%s/node_modules is missing: run `npm ci --prefix examples/openai-node`", dir)
	}
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "compat.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL=http://"+sys.HTTPAddr+"/v1", "API_KEY="+issueKey(t, sys, "node", 0), "MODEL=fake-1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("compat.mjs: %v\n%s\n%s", err, out, stderr.String())
	}
	var got struct {
		Models      []string `json:"models"`
		Retrieved   string   `json:"retrieved"`
		UnknownCode string   `json:"unknown_code"`
		Status      int      `json:"unknown_status"`
		Image       string   `json:"image_answer"`
		Stream      string   `json:"stream_content"`
		ToolAnswer  string   `json:"tool_answer"`
		ToolStream  string   `json:"tool_stream_answer"`
		Weather     []string `json:"weather_calls"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Join(got.Models, ",") != "agentbus-offline,fake-1,fake-alias,flaky-1" || got.Retrieved != "fake-1" || got.Status != 404 || got.UnknownCode != "model_not_found" {
		t.Fatalf("%+v", got)
	}
	if g := jsonOf(t, f.last(t, "node json mode")["response_format"]); g != `{"type":"json_object"}` {
		t.Fatalf("json mode: %s", g)
	}
	if g := jsonOf(t, f.last(t, "node structured")["response_format"]); !strings.Contains(g, `"name":"person"`) || !strings.Contains(g, `"strict":true`) {
		t.Fatalf("json_schema: %s", g)
	}
	msgs := f.last(t, "node picture")["messages"].([]any)
	if g := jsonOf(t, msgs[len(msgs)-1]); !strings.Contains(g, `"image_url":{"url":"https://example.com/cat.png"}`) || !strings.Contains(g, `{"text":"node picture","type":"text"}`) {
		t.Fatalf("image parts: %s", g)
	}
	if !strings.Contains(got.Stream, "fake says") {
		t.Fatalf("stream %q", got.Stream)
	}
	// The SDK ran get_weather twice (once per round) and the model saw its
	// result: the provider's answer quotes it.
	if strings.Join(got.Weather, ",") != "Paris,Paris" || got.ToolAnswer != "the tool said sunny in Paris" || got.ToolStream != "the tool said sunny in Paris" {
		t.Fatalf("client tools: calls %v, answers %q and %q", got.Weather, got.ToolAnswer, got.ToolStream)
	}
	// The second round carried the assistant's tool_calls and the tool
	// result, as the SDK sends them.
	msgs = f.last(t, "sunny in Paris")["messages"].([]any)
	if g := jsonOf(t, msgs[len(msgs)-2:]); !strings.Contains(g, `"tool_calls"`) || !strings.Contains(g, `"tool_call_id":"call_fake1"`) {
		t.Fatalf("tool round as sent upstream: %s", g)
	}
}
