package messages_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/messages"
)

func ExampleSubject() {
	fmt.Println(messages.Subject(messages.EventReceived, "req_42"))
	fmt.Println(messages.Subject(messages.EventCompleted, "req_42"))
	fmt.Println(messages.EventFilter(messages.EventAdmitted))
	fmt.Println(messages.StreamSubject("req_42"))
	fmt.Println(messages.DLQSubject("guard"))
	// Output:
	// agentbus.turn.received.req_42
	// agentbus.turn.completed.req_42
	// agentbus.turn.admitted.*
	// agentbus.stream.req_42
	// agentbus.dlq.guard
}

// Subscribe to ReplyFilter before publishing the turn; the last event
// that arrives is the terminal one.
func ExampleReplyFilter() {
	filter := messages.ReplyFilter("req_42")
	fmt.Println(filter)
	for _, e := range messages.Events {
		fmt.Printf("%-9s terminal=%v\n", e, messages.Terminal(e))
	}
	// Output:
	// agentbus.turn.*.req_42
	// received  terminal=false
	// admitted  terminal=false
	// rejected  terminal=true
	// toolcalls terminal=false
	// tooled    terminal=false
	// generated terminal=false
	// completed terminal=true
	// failed    terminal=true
}

// The id of a step depends only on the request, the event and the round
// (the output is exact: nothing random or time-based goes into it), so a
// re-publish carries the same Nats-Msg-Id and the stream drops it.
func ExampleMsgID() {
	fmt.Println(messages.HeaderMsgID+":", messages.MsgID("req_42", messages.EventReceived, 0))
	fmt.Println(messages.MsgID("req_42", messages.EventToolCalls, 0))
	fmt.Println(messages.MsgID("req_42", messages.EventToolCalls, 1))
	// Output:
	// Nats-Msg-Id: req_42/received/0
	// req_42/toolcalls/0
	// req_42/toolcalls/1
}

func ExampleParseSubject() {
	event, rid, err := messages.ParseSubject("agentbus.turn.completed.req_42")
	fmt.Println(event, rid, err)
	_, _, err = messages.ParseSubject("agentbus.stream.req_42")
	fmt.Println(err, errors.Is(err, messages.ErrInvalid))
	// Output:
	// completed req_42 <nil>
	// invalid message: "agentbus.stream.req_42" is not a turn subject true
}

func ExampleTurn_Validate() {
	turn := messages.Turn{
		SchemaVersion:  messages.SchemaVersion,
		RequestID:      "req_42",
		ConversationID: "conv_1",
		User:           "alice",
		Endpoint:       "nats",
		Messages:       []messages.Message{{Role: messages.RoleUser, Content: "Hello"}},
		CreatedAt:      time.Now().UTC(),
	}
	fmt.Println("valid:", turn.Validate())

	turn.RequestID = "req.42" // a dot would split the subject
	turn.Messages = append(turn.Messages, messages.Message{Role: messages.RoleTool, Content: "42"})
	err := turn.Validate()
	fmt.Println(errors.Is(err, messages.ErrInvalid))
	var fe *messages.FieldError
	if errors.As(err, &fe) {
		fmt.Println("first field:", fe.Field)
	}
	fmt.Println(err)
	// Output:
	// valid: <nil>
	// true
	// first field: request_id
	// request_id: must be 1-128 characters of [A-Za-z0-9_-]
	// messages[1].tool_call_id: required for role tool
}
