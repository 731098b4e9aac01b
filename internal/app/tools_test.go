package app_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// publishToolCalls puts a toolcalls event on the stream as the llm stage
// would after the model asked for calls.
func publishToolCalls(t *testing.T, js nats.JetStreamContext, rid string, calls ...messages.ToolCall) {
	t.Helper()
	g := messages.Generation{
		Admitted: messages.Admitted{Turn: messages.Turn{SchemaVersion: 1, RequestID: rid, ConversationID: "conv_" + rid, User: "u", Endpoint: "nats",
			Messages: []messages.Message{{Role: "user", Content: "do it"}}, CreatedAt: time.Now().UTC()}},
		Steps: []messages.Message{{Role: "assistant", ToolCalls: calls}},
	}
	b, _ := json.Marshal(g)
	m := nats.NewMsg(messages.Subject(messages.EventToolCalls, rid))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, messages.MsgID(rid, messages.EventToolCalls, 0))
	if _, err := js.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
}

func nextEvent(t *testing.T, sub *nats.Subscription) (string, []byte) {
	t.Helper()
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ev, _, _ := messages.ParseSubject(m.Subject)
		if ev != messages.EventToolCalls {
			return ev, m.Data
		}
	}
}

func TestBlockedToolCallIsARefusalOnTheStream(t *testing.T) {
	sys := startSystem(t, nil)
	nc := sys.Runtime.Conn()
	js, _ := nc.JetStream()
	tests := []struct {
		name string
		call messages.ToolCall
		rule string
	}{
		{"denied tool name", messages.ToolCall{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "Exec", Arguments: `{"command":"ls"}`}}, "tool.denied"},
		{"unknown tool", messages.ToolCall{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "send_email", Arguments: `{}`}}, "tool.unknown"},
		{"schema violation", messages.ToolCall{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression": 42}`}}, "args.schema"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rid := "blk" + string(rune('a'+i))
			sub, _ := nc.SubscribeSync(messages.ReplyFilter(rid))
			defer sub.Unsubscribe()
			publishToolCalls(t, js, rid, tc.call)
			ev, data := nextEvent(t, sub)
			var f messages.Failed
			_ = json.Unmarshal(data, &f)
			if ev != messages.EventFailed || f.Code != messages.CodeToolBlocked || f.Status != 403 {
				t.Fatalf("%s %s", ev, data)
			}
			if len(f.ToolVerdicts) != 1 || f.ToolVerdicts[0].Verdict != "block" || f.ToolVerdicts[0].Rule != tc.rule {
				t.Fatalf("verdicts %+v, want rule %s", f.ToolVerdicts, tc.rule)
			}
		})
	}
	t.Run("allowed call runs and loops back", func(t *testing.T) {
		sub, _ := nc.SubscribeSync(messages.ReplyFilter("okcall"))
		defer sub.Unsubscribe()
		publishToolCalls(t, js, "okcall", messages.ToolCall{ID: "c9", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"6*7"}`}})
		ev, data := nextEvent(t, sub)
		var g messages.Generation
		_ = json.Unmarshal(data, &g)
		last, _ := g.Final()
		if ev != messages.EventTooled || last.Role != "tool" || last.ToolCallID != "c9" || last.Content != "42" || g.ToolVerdicts[0].Rule == "" {
			t.Fatalf("%s %s", ev, data)
		}
	})
}
