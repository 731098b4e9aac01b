package ingest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// sse writes OpenAI-format server-sent events. Headers are sent with the
// first event, so an error before any content is still a plain HTTP error.
type sse struct {
	usage   bool // stream_options.include_usage
	w       http.ResponseWriter
	t       *messages.Turn
	started bool
	sent    strings.Builder
	model   string
}

func (s *sse) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	s.chunk(chunkDelta{Role: messages.RoleAssistant}, nil, nil)
}

func (s *sse) chunk(d chunkDelta, finish *string, usage *messages.Usage) {
	c := chunk{ID: "chatcmpl-" + s.t.RequestID, Object: "chat.completion.chunk", Created: s.t.CreatedAt.Unix(), Model: s.model,
		Choices: []chunkChoice{{Index: 0, Delta: d, FinishReason: finish}}, Usage: usage}
	if usage != nil {
		c.Choices = []chunkChoice{}
	}
	b, _ := json.Marshal(c)
	s.write(b)
}

func (s *sse) write(b []byte) {
	fmt.Fprintf(s.w, "data: %s\n\n", b)
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *sse) content(text string) {
	if text == "" {
		return
	}
	s.start()
	s.sent.WriteString(text)
	s.chunk(chunkDelta{Content: text}, nil, nil)
}

func (s *sse) done() { fmt.Fprint(s.w, "data: [DONE]\n\n"); s.flush() }

func (s *sse) flush() {
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// fail ends the stream with an OpenAI-style error event, or with a plain
// HTTP error if nothing was sent yet.
func (s *sse) fail(status int, code, msg string) {
	if !s.started {
		writeError(s.w, status, code, msg, nil)
		return
	}
	b, _ := json.Marshal(apiError{Error: errorBody{Message: msg, Type: errorType(status), Code: code}})
	s.write(b)
	s.done()
}

// delta writes one streamed chunk; false means the stream ended with an
// error event.
func (s *sse) delta(m *nats.Msg) bool {
	var d messages.Delta
	if json.Unmarshal(m.Data, &d) != nil {
		return true
	}
	if d.Error != "" {
		s.fail(http.StatusBadGateway, messages.CodeProviderError, "the model stream failed: "+d.Error)
		return false
	}
	// Core NATS keeps the order of one publisher, and the model calls of a
	// turn follow each other: write in arrival order.
	s.content(d.Content)
	return true
}

func (srv *Server) stream(ctx interface{ Done() <-chan struct{} }, w http.ResponseWriter, t *messages.Turn, includeUsage bool, events, deltas chan *nats.Msg) {
	out := &sse{w: w, t: t, model: t.Model, usage: includeUsage}
	for {
		select {
		case <-ctx.Done():
			out.fail(http.StatusGatewayTimeout, messages.CodeTimeout, fmt.Sprintf("no answer within %s", srv.cfg.ReplyTimeout))
			return
		case m := <-deltas:
			if !out.delta(m) {
				return
			}
		case m := <-events:
			event, _, err := messages.ParseSubject(m.Subject)
			if err != nil || !messages.Terminal(event) {
				continue
			}
			// Deltas published before the terminal event are already in
			// their channel (one connection delivers in order); select
			// picks at random, so write them first.
			for drained := false; !drained; {
				select {
				case d := <-deltas:
					if !out.delta(d) {
						return
					}
				default:
					drained = true
				}
			}
			switch event {
			case messages.EventCompleted:
				var c messages.Completed
				if err := json.Unmarshal(m.Data, &c); err != nil {
					out.fail(http.StatusInternalServerError, messages.CodeInternal, "undecodable completion")
					return
				}
				out.model = c.Model
				out.start()
				// Whatever the deltas did not carry (a tool round, a
				// reused result after redelivery, a lost core message).
				if final := c.Message.Content; strings.HasPrefix(final, out.sent.String()) {
					out.content(final[out.sent.Len():])
				}
				stop := "stop"
				out.chunk(chunkDelta{}, &stop, nil)
				if out.usage {
					u := c.Usage
					out.chunk(chunkDelta{}, nil, &u)
				}
				out.done()
			case messages.EventRejected:
				var rj messages.Rejected
				_ = json.Unmarshal(m.Data, &rj)
				if !out.started {
					setRetryHeaders(w, rj.RetryAfterMS, rj.RateLimit)
				}
				out.fail(statusOr(rj.Status, 400), rj.Code, rj.Reason)
			case messages.EventFailed:
				var f messages.Failed
				_ = json.Unmarshal(m.Data, &f)
				if !out.started {
					setRetryHeaders(w, f.RetryAfterMS, nil)
				}
				out.fail(statusOr(f.Status, 500), f.Code, f.Reason)
			}
			return
		}
	}
}
