package memory_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/messages"
)

// The persist stage stores CompletedTurn before the commit and publishes
// the event after it (with CompletedAt and ChainSeq set); a rebuild reads
// that event back. Both must give the same content hash.
func TestCompletedTurn(t *testing.T) {
	input := []messages.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "What is 17*23?"}}
	call := messages.Message{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"17*23"}`}}}}
	steps := []messages.Message{call, {Role: "tool", ToolCallID: "c1", Content: "391"}, {Role: "assistant", Content: "17*23 = 391"}}
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	c := messages.Completed{SchemaVersion: 1, RequestID: "req_1", ConversationID: "conv_1", User: "alice", KeyID: "k1", Endpoint: "nats",
		Model: "m", Provider: "p", Message: steps[2], Steps: steps, Guard: messages.Verdict{Action: "allow", Score: 0.125},
		ToolVerdicts: []messages.ToolVerdict{{ToolCallID: "c1", Tool: "calculator", Verdict: "allow"}},
		Usage:        messages.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, CreatedAt: created}

	before, err := memory.CompletedTurn(input, c)
	if err != nil {
		t.Fatal(err)
	}
	if before.RequestID != "req_1" || before.ConversationID != "conv_1" || before.User != "alice" || !before.CreatedAt.Equal(created) || len(before.Messages) != 5 ||
		before.Messages[1].Content != input[1].Content || before.Messages[4].Content != "17*23 = 391" {
		t.Fatalf("record %+v", before)
	}
	if strings.Contains(string(before.Meta), "chain_seq") || !strings.Contains(string(before.Meta), `"completed_at":"0001-01-01T00:00:00Z"`) {
		t.Fatalf("meta %s", before.Meta)
	}
	// The input is copied, not aliased.
	before.Messages[0].Content = "changed"
	if input[0].Content != "be brief" {
		t.Fatal("CompletedTurn aliases its input")
	}
	before.Messages[0].Content = "be brief"

	// The event as published and read back by a rebuild.
	c.CompletedAt, c.ChainSeq = time.Now(), 42
	b, _ := json.Marshal(c)
	var back messages.Completed
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var received messages.Turn
	tb, _ := json.Marshal(messages.Turn{Messages: input})
	if err := json.Unmarshal(tb, &received); err != nil {
		t.Fatal(err)
	}
	after, err := memory.CompletedTurn(received.Messages, back)
	if err != nil {
		t.Fatal(err)
	}
	h1, err1 := memory.ContentHash(&before)
	h2, err2 := memory.ContentHash(&after)
	if err1 != nil || err2 != nil || h1 != h2 {
		t.Fatalf("content hash %s before the commit, %s rebuilt (%v %v)\n%s\n%s", h1, h2, err1, err2, before.Meta, after.Meta)
	}
}
