package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/validation"
)

// ErrDecode is wrapped by the error of an event whose payload does not
// decode.
var ErrDecode = errors.New("replay: undecodable event")

// Collector rebuilds validation turns from replayed events, for audits:
// feed it events in stream order with Add, then validate Turns. A turn is
// emitted by its terminal event (completed, rejected or failed); its Input
// comes from its received event if that was replayed too. Each conversation's
// turns are numbered in the order their terminal events were stored. A
// terminal event seen twice for the same request is counted once.
//
// Memory: the input of a turn is held from its received event to its
// terminal event; the turns themselves are kept until Turns is called.
// A Collector is not safe for concurrent use.
type Collector struct {
	inputs map[string]pendingInput // by request id, until terminal
	done   map[string]struct{}     // request ids already emitted
	next   map[string]int          // next turn index per conversation
	turns  []validation.Turn
}

type pendingInput struct {
	conv string
	msgs []messages.Message
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector {
	return &Collector{inputs: map[string]pendingInput{}, done: map[string]struct{}{}, next: map[string]int{}}
}

// Add takes one event. Events other than received and the terminal ones
// are ignored. A payload that does not decode is skipped and reported with
// an error wrapping ErrDecode; the Collector stays usable.
func (c *Collector) Add(ev Event) error {
	switch ev.Event {
	case messages.EventReceived:
		var t messages.Turn
		if err := json.Unmarshal(ev.Data, &t); err != nil {
			return decodeErr(ev, err)
		}
		if _, seen := c.done[t.RequestID]; !seen {
			c.inputs[t.RequestID] = pendingInput{conv: t.ConversationID, msgs: t.Messages}
		}
		return nil
	case messages.EventCompleted:
		var m messages.Completed
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			return decodeErr(ev, err)
		}
		c.emit(m.RequestID, m.ConversationID, func(i int) validation.Turn { return validation.FromCompleted(m, i) })
	case messages.EventRejected:
		var m messages.Rejected
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			return decodeErr(ev, err)
		}
		c.emit(m.RequestID, m.ConversationID, func(i int) validation.Turn { return validation.FromRejected(m, i) })
	case messages.EventFailed:
		var m messages.Failed
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			return decodeErr(ev, err)
		}
		c.emit(m.RequestID, m.ConversationID, func(i int) validation.Turn { return validation.FromFailed(m, i) })
	}
	return nil
}

func (c *Collector) emit(rid, conv string, build func(index int) validation.Turn) {
	if _, seen := c.done[rid]; seen {
		return
	}
	c.done[rid] = struct{}{}
	t := build(c.next[conv])
	c.next[conv]++
	if in, ok := c.inputs[rid]; ok {
		t.Input = in.msgs
		delete(c.inputs, rid)
	}
	c.turns = append(c.turns, t)
}

func decodeErr(ev Event, err error) error {
	return fmt.Errorf("%w: #%d %s: %w", ErrDecode, ev.Seq, ev.Subject, err)
}

// Turns returns the turns collected so far, in the order their terminal
// events were stored.
func (c *Collector) Turns() []validation.Turn { return slices.Clone(c.turns) }

// Pending returns the request ids that were received but have no terminal
// event yet (in flight when the replay stopped, or lost), sorted.
func (c *Collector) Pending() []string {
	ids := make([]string, 0, len(c.inputs))
	for id := range c.inputs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TurnsFromEvents collects the turns of a list of events (see
// [Collector]). Undecodable events are skipped and their errors joined; the
// turns that could be built are returned either way.
func TurnsFromEvents(events []Event) ([]validation.Turn, error) {
	c := NewCollector()
	var errs []error
	for _, ev := range events {
		if err := c.Add(ev); err != nil {
			errs = append(errs, err)
		}
	}
	return c.Turns(), errors.Join(errs...)
}
