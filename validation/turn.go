package validation

import (
	"slices"
	"sync"

	"github.com/agentbus/agentbus/messages"
)

// Turn is one chat turn as the constraints see it: what went in, which tools
// the model called, and what came out. Build it with [FromCompleted],
// [FromRejected] or [FromFailed], or fill it by hand in a test.
type Turn struct {
	// ConversationID groups turns into conversations; turns with the same
	// id are one conversation ("" is a conversation too).
	ConversationID string
	// RequestID identifies the turn (messages.Turn.RequestID).
	RequestID string
	// User is the authenticated user who sent the turn.
	User string
	// Index is the 0-based turn number within its conversation.
	Index int
	// Input holds the turn's input messages, if known (a completed event
	// does not carry them; the received event does).
	Input []messages.Message
	// Response is the final assistant text; empty for a refused turn.
	Response string
	// ToolCalls lists every tool call the model made in the turn, in
	// order, including calls the firewall blocked.
	ToolCalls []messages.ToolCall
	// Refused is true for a turn that ended rejected or failed.
	Refused bool
	// Code is the rejection or failure code (messages.Code*), if Refused.
	Code string
	// Reason is the human-readable rejection or failure reason, if Refused.
	Reason string
	// Usage is the token usage the provider reported for the turn.
	Usage messages.Usage
}

// FromCompleted converts a completed event into a Turn with the given index:
// the tool calls of every assistant step become ToolCalls and the final
// message becomes Response. Input stays empty (the completed event does not
// carry it).
func FromCompleted(c messages.Completed, index int) Turn {
	return Turn{
		ConversationID: c.ConversationID,
		RequestID:      c.RequestID,
		User:           c.User,
		Index:          index,
		Response:       c.Message.Content,
		ToolCalls:      toolCalls(c.Steps),
		Usage:          c.Usage,
	}
}

// FromRejected converts a guard rejection into a refused Turn.
func FromRejected(r messages.Rejected, index int) Turn {
	return Turn{
		ConversationID: r.ConversationID,
		RequestID:      r.RequestID,
		User:           r.User,
		Index:          index,
		Refused:        true,
		Code:           r.Code,
		Reason:         r.Reason,
	}
}

// FromFailed converts a failed event into a refused Turn; the tool calls
// made before the failure (e.g. the one the firewall blocked) are kept.
func FromFailed(f messages.Failed, index int) Turn {
	return Turn{
		ConversationID: f.ConversationID,
		RequestID:      f.RequestID,
		User:           f.User,
		Index:          index,
		ToolCalls:      toolCalls(f.Steps),
		Refused:        true,
		Code:           f.Code,
		Reason:         f.Reason,
	}
}

func toolCalls(steps []messages.Message) []messages.ToolCall {
	var out []messages.ToolCall
	for _, s := range steps {
		if s.Role == messages.RoleAssistant {
			out = append(out, s.ToolCalls...)
		}
	}
	return out
}

// Recorder collects turns in a test, in the order they are recorded. It is
// safe for concurrent use. The zero value is ready to use.
type Recorder struct {
	mu    sync.Mutex
	turns []Turn
	next  map[string]int
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Record appends a turn and sets its Index to the number of turns recorded
// before it in the same conversation, so turns recorded in order are
// numbered 0, 1, 2, ... per conversation.
func (r *Recorder) Record(t Turn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		r.next = make(map[string]int)
	}
	t.Index = r.next[t.ConversationID]
	r.next[t.ConversationID]++
	r.turns = append(r.turns, t)
}

// RecordCompleted records a completed event (see [FromCompleted]).
func (r *Recorder) RecordCompleted(c messages.Completed) { r.Record(FromCompleted(c, 0)) }

// Turns returns a copy of the recorded turns, in recording order.
func (r *Recorder) Turns() []Turn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.turns)
}

// Conversation returns a copy of the recorded turns of one conversation.
func (r *Recorder) Conversation(id string) []Turn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Turn
	for _, t := range r.turns {
		if t.ConversationID == id {
			out = append(out, t)
		}
	}
	return out
}

// Reset forgets every recorded turn.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.turns, r.next = nil, nil
}
