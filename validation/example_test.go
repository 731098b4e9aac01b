package validation_test

import (
	"fmt"

	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/validation"
)

// A test drives the agent, records each turn and checks the constraints at
// the end.
func Example_recorded() {
	rec := validation.NewRecorder()
	// In a real test these come from the agent's answers.
	rec.Record(validation.Turn{ConversationID: "c1", Response: "Let me compute that.",
		ToolCalls: []messages.ToolCall{{ID: "1", Type: "function",
			Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expr":"17*23"}`}}}})
	rec.Record(validation.Turn{ConversationID: "c1", Response: "17 × 23 = 391"})

	v := validation.New().
		MaxTurns(10).
		ForbidToolCall("exec").
		RequireToolCall("calculator").
		Add(validation.LastTurn(validation.ResponseMustContain("391")))
	fmt.Println(v.Validate(rec.Turns()))
	// Output:
	// ok: 2 turns in 1 conversations
}

// An audit rebuilds turns from the completed events read back from the
// stream and reports every violation.
func Example_replayed() {
	events := []messages.Completed{
		{RequestID: "r1", ConversationID: "c1", Message: messages.Message{Role: "assistant", Content: "391"},
			Steps: []messages.Message{{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "t1", Type: "function",
				Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expr":"17*23"}`}}}}}},
		{RequestID: "r2", ConversationID: "c2", Message: messages.Message{Role: "assistant", Content: "done"},
			Steps: []messages.Message{{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "t2", Type: "function",
				Function: messages.FunctionCall{Name: "Exec", Arguments: `{"cmd":"rm -rf /"}`}}}}}},
	}
	index := map[string]int{}
	var turns []validation.Turn
	for _, c := range events {
		turns = append(turns, validation.FromCompleted(c, index[c.ConversationID]))
		index[c.ConversationID]++
	}
	rep := validation.New().ForbidToolCall("exec").ResponseMustContain("391").Validate(turns)
	fmt.Println(rep)
	// Output:
	// 2 violation(s) in 2 turns in 2 conversations
	//   forbid_tool_call(exec): conversation "c2" turn 0 (request r2): forbidden tool "Exec" called with arguments "{\"cmd\":\"rm -rf /\"}"
	//   response_must_contain("391"): conversation "c2" turn 0 (request r2): response "done" does not contain "391"
}

// Strict stops at the first violation.
func ExampleValidator_Strict() {
	turns := []validation.Turn{
		{ConversationID: "c1", Index: 0, Response: "a"},
		{ConversationID: "c1", Index: 1, Response: "b"},
		{ConversationID: "c1", Index: 2, Response: "c"},
	}
	rep := validation.New().MaxTurns(1).MinResponseLength(2).Strict().Validate(turns)
	fmt.Println(len(rep.Violations), rep.Violations[0].Constraint)
	// Output:
	// 1 min_response_length(2)
}
