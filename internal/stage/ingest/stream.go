package ingest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// sse turns a turn's deltas and outcome into OpenAI chat.completion.chunk
// events on a reply (server-sent events over HTTP, messages over NATS).
// The stream starts with the first content, so an error before any
// content is still a plain error with the status a plain request gets;
// an error after it ends the stream with an error event, as OpenAI's
// streams end when they fail (no finish chunk, no usage chunk, no
// [DONE]).
type sse struct {
	usage bool // stream_options.include_usage
	out   reply
	t     *messages.Turn
	sent  strings.Builder
	model string
}

func (s *sse) start() {
	if s.out.streaming() {
		return
	}
	empty := ""
	s.chunk(chunkDelta{Role: messages.RoleAssistant, Content: &empty}, nil, nil)
}

var nullJSON = json.RawMessage("null")

func (s *sse) chunk(d chunkDelta, finish *string, usage *messages.Usage) {
	c := chunk{ID: "chatcmpl-" + s.t.RequestID, Object: "chat.completion.chunk", Created: s.t.CreatedAt.Unix(), Model: s.model,
		Choices: []chunkChoice{{Index: 0, Delta: d, Logprobs: nullJSON, FinishReason: finish}}, Usage: usage}
	if usage != nil {
		c.Choices = []chunkChoice{}
	}
	b, _ := json.Marshal(c)
	s.out.chunk(b)
}

func (s *sse) content(text string) {
	if text == "" {
		return
	}
	s.start()
	s.sent.WriteString(text)
	s.chunk(chunkDelta{Content: &text}, nil, nil)
}

// delta writes one streamed chunk. A delta reporting a failed model call
// is not written: the turn's failed event follows and carries the status
// and code the client gets (the same as for a plain request).
func (s *sse) delta(m *nats.Msg) {
	var d messages.Delta
	if json.Unmarshal(m.Data, &d) != nil || d.Error != "" {
		return
	}
	if d.Cache != "" && !s.out.streaming() {
		// The stream's headers describe its first model call.
		s.out.setHeader(HeaderCache, d.Cache)
	}
	// Core NATS keeps the order of one publisher, and the model calls of a
	// turn follow each other: write in arrival order.
	s.content(d.Content)
}

func (srv *Handler) stream(ctx interface{ Done() <-chan struct{} }, out reply, t *messages.Turn, includeUsage bool, events, deltas chan *nats.Msg, settle func() *nats.Msg) {
	s := &sse{out: out, t: t, model: t.Model, usage: includeUsage}
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			if m = settle(); m == nil {
				out.error(http.StatusGatewayTimeout, messages.CodeTimeout, fmt.Sprintf("no answer within %s", srv.cfg.ReplyTimeout), nil)
				return
			}
		case d := <-deltas:
			s.delta(d)
			continue
		case m = <-events:
		}
		{
			event, _, err := messages.ParseSubject(m.Subject)
			if err != nil || !messages.Terminal(event) {
				continue
			}
			// Deltas published before the terminal event reached this
			// connection before it; once their subscription has caught
			// up they are in their channel (select picks at random, so
			// write them first).
			if deltas != nil {
				srv.waiters.caughtUp(100 * time.Millisecond)
			}
			for drained := false; !drained; {
				select {
				case d := <-deltas:
					s.delta(d)
				default:
					drained = true
				}
			}
			switch event {
			case messages.EventCompleted:
				var c messages.Completed
				if err := json.Unmarshal(m.Data, &c); err != nil {
					out.error(http.StatusInternalServerError, messages.CodeInternal, "undecodable completion", nil)
					return
				}
				noteCompleted(out, &c)
				s.model = c.Model
				if st := c.Cache.Status(); st != "" && !out.streaming() {
					out.setHeader(HeaderCache, st)
				}
				s.start()
				// Whatever the deltas did not carry (a tool round, a
				// reused result after redelivery, a lost core message).
				if final := c.Message.Content; strings.HasPrefix(final, s.sent.String()) {
					s.content(final[s.sent.Len():])
				}
				if r := c.Message.Refusal; r != "" {
					s.chunk(chunkDelta{Refusal: &r}, nil, nil)
				}
				if len(c.Message.ToolCalls) > 0 {
					// Calls to the client's own tools end the turn.
					calls := make([]chunkToolCall, len(c.Message.ToolCalls))
					for i, tc := range c.Message.ToolCalls {
						calls[i] = chunkToolCall{Index: i, ID: tc.ID, Type: "function", Function: tc.Function}
					}
					s.chunk(chunkDelta{ToolCalls: calls}, nil, nil)
				}
				finish := finishReason(&c)
				s.chunk(chunkDelta{}, &finish, nil)
				if s.usage {
					u := c.Usage
					s.chunk(chunkDelta{}, nil, &u)
				}
				out.done()
			case messages.EventRejected:
				var rj messages.Rejected
				_ = json.Unmarshal(m.Data, &rj)
				noteRejected(out, &rj)
				if !out.streaming() {
					setRetryHeaders(out, rj.RetryAfterMS, rj.RateLimit)
				}
				out.error(statusOr(rj.Status, 400), rj.Code, rj.Reason, paramOrNil(rj.Param))
			case messages.EventFailed:
				var f messages.Failed
				_ = json.Unmarshal(m.Data, &f)
				if !out.streaming() {
					setRetryHeaders(out, f.RetryAfterMS, nil)
				}
				out.error(statusOr(f.Status, 500), f.Code, f.Reason, paramOrNil(f.Param))
			}
			return
		}
	}
}
