// Package validation checks what an agent did against constraints: how many
// turns a conversation took, which tools the model called, what the answers
// said. The same constraints run in a Go test, over turns recorded while
// the test drives the agent, and in an audit, over turns replayed from the
// JetStream stream (see `agentbus audit`).
//
// A [Turn] is the view of one chat turn the constraints see. Build it from
// the pipeline's terminal events with [FromCompleted], [FromRejected] and
// [FromFailed], or collect it in a test with a [Recorder]:
//
//	v := validation.New().
//		MaxTurns(10).
//		ForbidToolCall("exec").
//		Add(validation.LastTurn(validation.ResponseMustContain("391")))
//	rep := v.Validate(rec.Turns())
//	if !rep.OK() {
//		t.Fatal(rep) // one line per violation
//	}
//
// Built-in constraints: [MaxTurns], [RequireToolCall], [ForbidToolCall],
// [MaxToolCalls], [ResponseMustContain], [ResponseMustNotContain],
// [MaxResponseLength], [MinResponseLength], [NoRefusals], [Custom] and
// [CustomConversation]; [LastTurn] and [OnTurn] narrow any constraint to one
// turn of each conversation. Any type implementing [Constraint] can be
// added. For quick checks in tests there are [AssertToolCalled],
// [AssertToolCallCount], [AssertResponseContains], [AssertNoToolCalls] and
// [AssertValid].
//
// Guarantees:
//   - Validate is deterministic: conversations in order of first appearance,
//     turns by Index, violations by turn then by constraint order.
//   - Tool names compare case-insensitively ("exec" catches "Exec"), as the
//     tool firewall does; substrings compare case-sensitively.
//   - A refused turn has no response: ResponseMustContain and
//     MinResponseLength report it; ResponseMustNotContain and
//     MaxResponseLength let it pass.
//   - A constraint built with invalid arguments never passes silently:
//     Validate reports it as a [ConfigConstraint] violation.
//   - The package depends only on messages; it does no I/O.
package validation
