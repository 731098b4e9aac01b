package replay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentbus/agentbus/internal/replay"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/validation"
)

// Replay one conversation to stdout, with a progress counter on a terminal.
func ExampleReplay() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	progress := replay.TerminalProgress(os.Stderr)
	defer progress.Finish()
	opts := replay.Options{Conversation: "c1", Since: time.Now().Add(-24 * time.Hour), Progress: progress.Update}
	err = replay.Replay(context.Background(), js, opts, func(ev replay.Event) error {
		return replay.Format(os.Stdout, ev)
	})
	if err != nil {
		fmt.Println(err)
	}
}

func ExampleFormat() {
	data, _ := json.Marshal(messages.Rejected{RequestID: "r2", ConversationID: "c2", Code: messages.CodeRateLimited,
		Status: 429, Reason: "user limit reached", RetryAfterMS: 1500})
	at := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	_ = replay.Format(os.Stdout, replay.NewEvent(12, messages.Subject(messages.EventRejected, "r2"), at, data, nil))
	// Output:
	// #12 2026-11-29T18:00:00.000Z rejected  req=r2 conv=c2 code=rate_limit_exceeded status=429 reason="user limit reached" retry_after=1.5s
}

// An audit: rebuild the turns from replayed events, check them.
func ExampleTurnsFromEvents() {
	at := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	event := func(seq uint64, name, rid string, v any) replay.Event {
		data, _ := json.Marshal(v)
		return replay.NewEvent(seq, messages.Subject(name, rid), at, data, nil)
	}
	events := []replay.Event{
		event(1, messages.EventReceived, "r1", messages.Turn{RequestID: "r1", ConversationID: "c1",
			Messages: []messages.Message{{Role: "user", Content: "clean up /"}}}),
		event(2, messages.EventCompleted, "r1", messages.Completed{RequestID: "r1", ConversationID: "c1",
			Message: messages.Message{Role: "assistant", Content: "done"},
			Steps: []messages.Message{{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "t", Type: "function",
				Function: messages.FunctionCall{Name: "exec", Arguments: `{"cmd":"rm -rf /"}`}}}}}}),
	}
	turns, err := replay.TurnsFromEvents(events)
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(turns[0].Input[0].Content)
	fmt.Println(validation.New().ForbidToolCall("exec").Validate(turns))
	// Output:
	// clean up /
	// 1 violation(s) in 1 turns in 1 conversations
	//   forbid_tool_call(exec): conversation "c1" turn 0 (request r1): forbidden tool "exec" called with arguments "{\"cmd\":\"rm -rf /\"}"
}
