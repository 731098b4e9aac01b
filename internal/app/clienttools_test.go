package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
)

// toolModel is an OpenAI-compatible model that calls the client's
// get_weather tool (and, asked for "both", the server's calculator too),
// answers from tool results, and streams when asked. It records the
// messages of every request.
type toolModel struct {
	mu        sync.Mutex
	requests  [][]messages.Message
	offered   [][]string
	cancelled atomic.Int64
	slow      bool
}

func (m *toolModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []messages.Message `json:"messages"`
		Stream   bool               `json:"stream"`
		Tools    []struct {
			Function struct{ Name string } `json:"function"`
		} `json:"tools"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	var names []string
	for _, t := range req.Tools {
		names = append(names, t.Function.Name)
	}
	m.mu.Lock()
	m.requests = append(m.requests, req.Messages)
	m.offered = append(m.offered, names)
	m.mu.Unlock()
	last := req.Messages[len(req.Messages)-1]
	var calls []messages.ToolCall
	content := ""
	switch {
	case last.Role == messages.RoleTool:
		content = "Weather report: " + last.Content
	case strings.Contains(last.Content, "both"):
		calls = []messages.ToolCall{
			{ID: "call_calc", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"2+2"}`}},
			{ID: "call_wx2", Type: "function", Function: messages.FunctionCall{Name: "get_weather", Arguments: `{"city":"Rome"}`}},
		}
	case strings.Contains(last.Content, "bad args"):
		calls = []messages.ToolCall{{ID: "call_bad", Type: "function", Function: messages.FunctionCall{Name: "get_weather", Arguments: `{"town":1}`}}}
	case strings.Contains(last.Content, "weather"):
		calls = []messages.ToolCall{{ID: "call_wx", Type: "function", Function: messages.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}
	default:
		content = "no tools needed"
	}
	finish := "stop"
	if len(calls) > 0 {
		finish = "tool_calls"
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		msg := map[string]any{"role": "assistant", "content": content}
		if len(calls) > 0 {
			msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": calls}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "x", "object": "chat.completion", "model": "tool-1",
			"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish}},
			"usage":   map[string]int{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	flush := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		w.(http.Flusher).Flush()
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": "x", "object": "chat.completion.chunk", "model": "tool-1", "choices": []map[string]any{{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	if m.slow {
		for i := 0; i < 100; i++ {
			select {
			case <-r.Context().Done():
				m.cancelled.Add(1)
				return
			case <-time.After(100 * time.Millisecond):
			}
			flush(chunk(map[string]any{"content": "word "}, nil))
		}
	}
	for i, c := range calls {
		flush(chunk(map[string]any{"tool_calls": []map[string]any{{"index": i, "id": c.ID, "type": "function", "function": map[string]string{"name": c.Function.Name, "arguments": c.Function.Arguments}}}}, nil))
	}
	if content != "" {
		flush(chunk(map[string]any{"content": content}, nil))
	}
	flush(chunk(map[string]any{}, finish))
	fmt.Fprint(w, "data: [DONE]\n\n")
}

const weatherTool = `{"type":"function","function":{"name":"get_weather","description":"Weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}`

func toolSystem(t *testing.T, m *toolModel, mod func(*app.Options)) (*app.System, string) {
	t.Helper()
	s := httptest.NewServer(m)
	t.Cleanup(s.Close)
	p := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(`{"providers":[{"name":"tool","kind":"local","base_url":%q,"model":"tool-1"}],"retry":{"max_attempts":1}}`, s.URL+"/v1")), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startSystem(t, func(o *app.Options) {
		o.ProvidersFile = p
		o.Limits = app.LimitsFrom(0, 0, 0)
		if mod != nil {
			mod(o)
		}
	})
	return sys, newKey(t, sys, "agent-dev")
}

type toolReply struct {
	Choices []struct {
		Message      messages.Message `json:"message"`
		FinishReason string           `json:"finish_reason"`
	} `json:"choices"`
}

func decodeTools(t *testing.T, r httpResult) toolReply {
	t.Helper()
	var out toolReply
	if err := json.Unmarshal([]byte(r.raw), &out); err != nil || len(out.Choices) != 1 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	return out
}

// Client-side tools: offered next to the server's, a call to one ends the
// turn with OpenAI tool_calls, and the client's next request carries the
// results, with X-Conversation-Id (only the new tool messages) or without
// (the whole list again). Server tools in the same model call still run
// server-side; a call the firewall refuses never reaches the client.
func TestClientTools(t *testing.T) {
	model := &toolModel{}
	sys, key := toolSystem(t, model, nil)

	t.Run("round trip with the conversation id", func(t *testing.T) {
		r := post(t, sys, key, "", `{"model":"tool-1","tools":[`+weatherTool+`],"messages":[{"role":"user","content":"weather in Paris?"}]}`)
		out := decodeTools(t, r)
		c := out.Choices[0]
		if r.status != 200 || c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || c.Message.ToolCalls[0].Function.Name != "get_weather" ||
			c.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || c.Message.ToolCalls[0].ID != "call_wx" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		model.mu.Lock()
		offered := model.offered[len(model.offered)-1]
		model.mu.Unlock()
		if o := strings.Join(offered, ","); !strings.Contains(o, "get_weather") || !strings.Contains(o, "calculator") {
			t.Fatalf("tools offered: %v", offered)
		}
		conv := r.header.Get("X-Conversation-Id")
		r2 := post(t, sys, key, conv, `{"model":"tool-1","tools":[`+weatherTool+`],"messages":[{"role":"tool","tool_call_id":"call_wx","content":"sunny, 24C"}]}`)
		c2 := decodeTools(t, r2).Choices[0]
		if r2.status != 200 || c2.FinishReason != "stop" || c2.Message.Content != "Weather report: sunny, 24C" {
			t.Fatalf("second: %d %s", r2.status, r2.raw)
		}
		// The model saw its own call and the client's result, in order.
		model.mu.Lock()
		msgs := model.requests[len(model.requests)-1]
		model.mu.Unlock()
		n := len(msgs)
		if n < 3 || msgs[n-2].Role != messages.RoleAssistant || len(msgs[n-2].ToolCalls) != 1 || msgs[n-1].ToolCallID != "call_wx" {
			t.Fatalf("model context: %+v", msgs)
		}
	})
	t.Run("round trip without the conversation id", func(t *testing.T) {
		r := post(t, sys, key, "", `{"model":"tool-1","tools":[`+weatherTool+`],"messages":[
			{"role":"user","content":"weather in Paris?"},
			{"role":"assistant","content":null,"tool_calls":[{"id":"call_wx","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
			{"role":"tool","tool_call_id":"call_wx","content":"rain"}]}`)
		if c := decodeTools(t, r).Choices[0]; r.status != 200 || c.Message.Content != "Weather report: rain" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("server tools in the same call run server-side", func(t *testing.T) {
		r := post(t, sys, key, "", `{"model":"tool-1","tools":[`+weatherTool+`],"messages":[{"role":"user","content":"both please"}]}`)
		c := decodeTools(t, r).Choices[0]
		if r.status != 200 || len(c.Message.ToolCalls) != 1 || c.Message.ToolCalls[0].Function.Name != "get_weather" {
			t.Fatalf("the client must get only its own call: %s", r.raw)
		}
		conv := r.header.Get("X-Conversation-Id")
		r2 := post(t, sys, key, conv, `{"model":"tool-1","tools":[`+weatherTool+`],"messages":[{"role":"tool","tool_call_id":"call_wx2","content":"cloudy"}]}`)
		if r2.status != 200 {
			t.Fatalf("second: %d %s", r2.status, r2.raw)
		}
		model.mu.Lock()
		msgs := model.requests[len(model.requests)-1]
		model.mu.Unlock()
		var calc, wx bool
		for _, m := range msgs {
			calc = calc || m.Role == messages.RoleTool && m.ToolCallID == "call_calc" && m.Content == "4"
			wx = wx || m.Role == messages.RoleTool && m.ToolCallID == "call_wx2" && m.Content == "cloudy"
		}
		if !calc || !wx {
			t.Fatalf("model context lacks the server result (%v) or the client's (%v): %+v", calc, wx, msgs)
		}
	})
	t.Run("a call the firewall refuses never reaches the client", func(t *testing.T) {
		r := post(t, sys, key, "", `{"model":"tool-1","tools":[`+weatherTool+`],"messages":[{"role":"user","content":"weather with bad args"}]}`)
		if r.status != 403 || errCode(r) != messages.CodeToolBlocked || strings.Contains(r.raw, "tool_calls") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("a client tool may not take a server tool's name", func(t *testing.T) {
		r := post(t, sys, key, "", `{"model":"tool-1","tools":[{"type":"function","function":{"name":"calculator","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"weather?"}]}`)
		if r.status != 400 || !strings.Contains(r.raw, `"param":"tools"`) {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("streamed as OpenAI streams tool calls", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions",
			strings.NewReader(`{"model":"tool-1","stream":true,"tools":[`+weatherTool+`],"messages":[{"role":"user","content":"weather in Paris?"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var name, args, finish string
		done := false
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			if data == "[DONE]" {
				done = true
				break
			}
			var c struct {
				Choices []struct {
					Delta struct {
						ToolCalls []struct {
							Index    int
							ID       string
							Function messages.FunctionCall
						} `json:"tool_calls"`
					} `json:"delta"`
					FinishReason *string `json:"finish_reason"`
				} `json:"choices"`
			}
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("chunk %s", data)
			}
			for _, ch := range c.Choices {
				for _, tc := range ch.Delta.ToolCalls {
					name += tc.Function.Name
					args += tc.Function.Arguments
				}
				if ch.FinishReason != nil {
					finish = *ch.FinishReason
				}
			}
		}
		if !done || name != "get_weather" || args != `{"city":"Paris"}` || finish != "tool_calls" {
			t.Fatalf("done=%v name=%q args=%q finish=%q", done, name, args, finish)
		}
	})
}

// A client that goes away cancels its turn: the provider's request is
// cancelled, the stream records client_cancelled, and nothing is stored.
func TestClientDisconnectCancelsTheTurn(t *testing.T) {
	model := &toolModel{slow: true}
	sys, key := toolSystem(t, model, nil)
	js := sys.Runtime.JetStream()
	req, _ := http.NewRequest(http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions",
		strings.NewReader(`{"model":"tool-1","stream":true,"messages":[{"role":"user","content":"tell me a long story"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rid := resp.Header.Get("X-Request-Id")
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil { // the stream has started
		t.Fatal(err)
	}
	resp.Body.Close() // the client goes away
	deadline := time.Now().Add(15 * time.Second)
	for model.cancelled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the provider's request was not cancelled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitSettled(t, js, "agentbus-llm-admitted", "agentbus-persist-generated")
	info, err := testutil.StreamInfo(js, messages.StreamTurns, "agentbus.turn.*."+rid)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Subjects[messages.Subject(messages.EventCompleted, rid)] != 0 || info.State.Subjects[messages.Subject(messages.EventFailed, rid)] != 1 {
		t.Fatalf("events: %v", info.State.Subjects)
	}
	raw, err := testutil.LastMsg(js, messages.StreamTurns, messages.Subject(messages.EventFailed, rid))
	if err != nil || !strings.Contains(string(raw.Data), messages.CodeClientCancelled) {
		t.Fatalf("failed event: %v %s", err, raw.Data)
	}
}

// The official Go SDK's own client-tool loop: it declares a tool, runs the
// model's call itself and sends the result back (the whole message list,
// as SDK code does), plain and streaming with the SDK's accumulator.
func TestClientToolsWithOpenAIGoSDK(t *testing.T) {
	model := &toolModel{}
	sys, key := toolSystem(t, model, nil)
	client, _ := sdkClient(sys, key)
	ctx := t.Context()
	tool := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Weather in a city"),
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required": []string{"city"}, "additionalProperties": false},
	})
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			params := openai.ChatCompletionNewParams{
				Model:    "tool-1",
				Tools:    []openai.ChatCompletionToolUnionParam{tool},
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Paris?")},
			}
			var msg openai.ChatCompletionMessage
			var finish string
			if stream {
				s := client.Chat.Completions.NewStreaming(ctx, params)
				var acc openai.ChatCompletionAccumulator
				for s.Next() {
					acc.AddChunk(s.Current())
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				msg, finish = acc.Choices[0].Message, acc.Choices[0].FinishReason
			} else {
				res, err := client.Chat.Completions.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				msg, finish = res.Choices[0].Message, res.Choices[0].FinishReason
			}
			if finish != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" {
				t.Fatalf("finish %q, message %+v", finish, msg)
			}
			var args struct{ City string }
			if err := json.Unmarshal([]byte(msg.ToolCalls[0].Function.Arguments), &args); err != nil || args.City != "Paris" {
				t.Fatalf("arguments %q", msg.ToolCalls[0].Function.Arguments)
			}
			// The SDK user runs the tool and sends everything back.
			params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage("sunny in "+args.City, msg.ToolCalls[0].ID))
			res, err := client.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Choices[0].Message.Content; got != "Weather report: sunny in Paris" || res.Choices[0].FinishReason != "stop" {
				t.Fatalf("answer %q (%s)", got, res.Choices[0].FinishReason)
			}
		})
	}
}
