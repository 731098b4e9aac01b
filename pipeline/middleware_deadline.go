package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
)

// late runs h, unless the turn's deadline has passed: then the turn ends
// with deadline_exceeded (once: the claim decides), except that the stage
// that completed the turn runs again to publish its completed event
// (persist committed, then crashed before the event went out). A handler's
// context never outlives the deadline (dispatch sets it), so late work
// never calls a provider.
func (r *Runtime) late(stage string, produces []string, conn *stageConn, msg *message.Message, h message.HandlerFunc) ([]*message.Message, error) {
	dl, ok := Deadline(msg)
	if !ok || time.Now().Before(dl) {
		return h(msg)
	}
	_, rid, _ := messages.ParseSubject(msg.Metadata.Get(MetaSubject))
	terms, err := conn.terminals(r.cfg.Streams.Replicas)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), 10*time.Second)
	defer cancel()
	outcome, found, err := terms.Outcome(ctx, rid)
	if err != nil {
		return nil, err
	}
	if found {
		if outcome == messages.EventCompleted && slices.Contains(produces, outcome) {
			m := msg.Copy()
			m.SetContext(ctx)
			return h(m)
		}
		return nil, nil // the turn is over: nothing to do
	}
	var t messages.Turn
	if err := json.Unmarshal(msg.Payload, &t); err != nil || !messages.ValidID(t.RequestID) {
		return nil, Permanent(fmt.Errorf("late event on %s whose turn cannot be named", msg.Metadata.Get(MetaSubject)))
	}
	f, err := FailedEvent(stage, &t, messages.CodeDeadlineExceeded, http.StatusGatewayTimeout,
		"the turn's deadline ("+dl.UTC().Format(time.RFC3339)+") passed before it completed", 0)
	if err != nil {
		return nil, err
	}
	return []*message.Message{f}, nil
}

// Deadline returns the turn deadline a consumed message carries.
func Deadline(msg *message.Message) (time.Time, bool) {
	s := msg.Metadata.Get(messages.HeaderDeadline)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}
