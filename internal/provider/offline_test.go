package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/calc"
	"github.com/agentbus/agentbus/messages"
)

func user(s string) messages.Message { return messages.Message{Role: "user", Content: s} }

func TestOffline(t *testing.T) {
	long := strings.Repeat("é", 250)
	tests := []struct {
		name      string
		msgs      []messages.Message
		tools     []ToolSpec
		content   string
		toolArgs  string
		finish    string
		usagePrmt int
	}{
		{"calculator call", []messages.Message{user("What is 17*23?")}, []ToolSpec{calcTool}, "", `{"expression":"17*23"}`, "tool_calls", 4},
		{"parenthesised", []messages.Message{user("compute (2+3)*4 please")}, []ToolSpec{{Name: "Calculator"}}, "", `{"expression":"(2+3)*4"}`, "tool_calls", 6},
		{"no tool: computes", []messages.Message{user("What is 17*23?")}, nil, "17*23 = 391", "", "stop", 4},
		{"no tool: division by zero", []messages.Message{user("what is 1/0")}, nil, "I cannot compute 1/0: division by zero.", "", "stop", 3},
		{"no tool: decimals", []messages.Message{user("2.5 * 4 - 1 ?")}, nil, "2.5 * 4 - 1 = 9", "", "stop", 4},
		{"tool result", []messages.Message{
			user("What is 17*23?"),
			{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"17*23"}`}}}},
			{Role: "tool", ToolCallID: "c1", Content: "391"},
		}, []ToolSpec{calcTool}, "17*23 = 391", "", "stop", 13},
		{"two tool results, json result", []messages.Message{
			user("x"),
			{Role: "assistant", ToolCalls: []messages.ToolCall{
				{ID: "c1", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"1+1"}`}},
				{ID: "c2", Function: messages.FunctionCall{Name: "search", Arguments: `{}`}}}},
			{Role: "tool", ToolCallID: "c1", Content: `{"result":2}`},
			{Role: "tool", ToolCallID: "c2", Content: "nothing found"},
		}, nil, "1+1 = 2; The search tool returned: nothing found", "", "stop", 16},
		{"echo", []messages.Message{{Role: "system", Content: "be nice"}, user("hello there")}, []ToolSpec{calcTool}, "You said: hello there", "", "stop", 5},
		{"version is not arithmetic", []messages.Message{user("upgrade to 1.2.3")}, []ToolSpec{calcTool}, "You said: upgrade to 1.2.3", "", "stop", 4},
		{"echo truncated to 200 runes", []messages.Message{user(long)}, nil, "You said: " + strings.Repeat("é", 200), "", "stop", 125},
		{"no messages", nil, nil, "Hello! Ask me something.", "", "stop", 0},
	}
	o := NewOffline()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := Request{Messages: tt.msgs, Tools: tt.tools}
			resp, err := o.Complete(context.Background(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Message.Content != tt.content || resp.FinishReason != tt.finish || resp.Message.Role != "assistant" {
				t.Fatalf("got %q (%s), want %q (%s)", resp.Message.Content, resp.FinishReason, tt.content, tt.finish)
			}
			if tt.toolArgs != "" {
				tc := resp.Message.ToolCalls
				if len(tc) != 1 || tc[0].Function.Name != "calculator" || tc[0].Function.Arguments != tt.toolArgs || !strings.HasPrefix(tc[0].ID, "call_") {
					t.Fatalf("tool calls %+v", tc)
				}
			} else if len(resp.Message.ToolCalls) != 0 {
				t.Fatalf("unexpected tool calls %+v", resp.Message.ToolCalls)
			}
			if resp.Usage.PromptTokens != tt.usagePrmt || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
				t.Fatalf("usage %+v, want prompt %d", resp.Usage, tt.usagePrmt)
			}
			if resp.Model != OfflineName || resp.Provider != OfflineName {
				t.Fatalf("model %q provider %q", resp.Model, resp.Provider)
			}
			// Deterministic, and streaming delivers the same text word by word.
			var deltas []string
			again, err := o.Complete(context.Background(), req, func(d string) { deltas = append(deltas, d) })
			if err != nil || fmt.Sprint(again) != fmt.Sprint(resp) {
				t.Fatalf("not deterministic: %+v vs %+v", again, resp)
			}
			if strings.Join(deltas, "") != resp.Message.Content || (resp.Message.Content != "" && len(deltas) != len(strings.Fields(resp.Message.Content))) {
				t.Fatalf("deltas %q", deltas)
			}
		})
	}
}

func TestOfflineCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewOffline().Complete(ctx, userReq, nil); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// The offline model computes with the calculator tool's parser: its own
// answer is what the tool would return, including the tool's precedence
// (-2^2 = -4) and its errors.
func TestOfflineComputesLikeTheCalculator(t *testing.T) {
	for _, expr := range []string{"17*23", "(2+3)*4", "2^3^2", "-2^2", "2**10", "-3 + +2", "10 % 4", "7/2", "1/3", "0.1+0.2", "1/0", "5 % 0", "9^999", "2*", "(1"} {
		t.Run(expr, func(t *testing.T) {
			want := ""
			if v, err := calc.Eval(expr, calc.Limits{}); err == nil {
				want = expr + " = " + calc.Format(v)
			} else if errors.Is(err, calc.ErrDivisionByZero) {
				want = "I cannot compute " + expr + ": " + err.Error() + "."
			}
			resp, err := NewOffline().Complete(context.Background(), Request{Messages: []messages.Message{user("What is " + expr + "?")}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := resp.Message.Content
			if want == "" { // not arithmetic: echoed
				want = "You said: What is " + expr + "?"
			}
			if got != want {
				t.Fatalf("offline answer %q, calculator %q", got, want)
			}
		})
	}
	long := strings.Repeat("1+", 128) + "1" // 257 bytes: beyond the offline bound
	if resp, _ := NewOffline().Complete(context.Background(), Request{Messages: []messages.Message{user(long)}}, nil); !strings.HasPrefix(resp.Message.Content, "You said:") {
		t.Fatalf("a %d-byte expression was computed: %q", len(long), resp.Message.Content)
	}
}

func BenchmarkOffline(b *testing.B) {
	o := NewOffline()
	ctx := context.Background()
	reqs := map[string]Request{
		"toolcall": {Messages: []messages.Message{{Role: "system", Content: "You are helpful."}, user("What is 17*23?")}, Tools: []ToolSpec{calcTool}},
		"echo":     {Messages: []messages.Message{user(strings.Repeat("hello world ", 40))}},
	}
	for name, req := range reqs {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := o.Complete(ctx, req, func(string) {}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func ExampleOffline() {
	o := NewOffline()
	req := Request{Messages: []messages.Message{{Role: "user", Content: "What is 17*23?"}}, Tools: []ToolSpec{{Name: "calculator"}}}
	resp, _ := o.Complete(context.Background(), req, nil)
	call := resp.Message.ToolCalls[0]
	fmt.Println(resp.FinishReason, call.Function.Name, call.Function.Arguments)

	req.Messages = append(req.Messages, resp.Message, messages.Message{Role: "tool", ToolCallID: call.ID, Content: "391"})
	var deltas []string
	resp, _ = o.Complete(context.Background(), req, func(delta string) { deltas = append(deltas, delta) })
	fmt.Printf("%q\n", deltas)
	fmt.Println(resp.Message.Content, resp.Usage.TotalTokens)
	// Output:
	// tool_calls calculator {"expression":"17*23"}
	// ["17*23 " "= " "391"]
	// 17*23 = 391 16
}
