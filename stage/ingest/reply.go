package ingest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// reply is where a turn's outcome goes: an HTTP response or a NATS inbox.
// Headers set before the first write go out with it.
type reply interface {
	setHeader(k, v string)
	// json answers a plain request (a completion).
	json(status int, body any)
	// error answers with an OpenAI-style error body; once a stream has
	// started it ends the stream with an error event (the last event, as
	// in OpenAI's failing streams: no [DONE] follows).
	error(status int, code, msg string, param *string)
	// chunk sends one streamed chunk (the first one starts the stream).
	chunk(b []byte)
	// done ends a stream.
	done()
	// streaming reports whether a stream has started.
	streaming() bool
}

// httpReply writes OpenAI's HTTP responses and server-sent events.
type httpReply struct {
	w       http.ResponseWriter
	started bool
}

func (h *httpReply) setHeader(k, v string)  { h.w.Header().Set(k, v) }
func (h *httpReply) json(status int, v any) { writeJSON(h.w, status, v) }
func (h *httpReply) streaming() bool        { return h.started }

func (h *httpReply) error(status int, code, msg string, param *string) {
	if !h.started {
		writeError(h.w, status, code, msg, param)
		return
	}
	b, _ := json.Marshal(apiError{Error: errorBody{Message: msg, Type: errorType(status), Param: param, Code: code}})
	h.event(b)
}

func (h *httpReply) chunk(b []byte) {
	if !h.started {
		h.started = true
		hd := h.w.Header()
		hd.Set("Content-Type", "text/event-stream")
		hd.Set("Cache-Control", "no-cache")
		hd.Set("Connection", "keep-alive")
		hd.Set("X-Accel-Buffering", "no")
		h.w.WriteHeader(http.StatusOK)
	}
	h.event(b)
}

func (h *httpReply) event(b []byte) {
	fmt.Fprintf(h.w, "data: %s\n\n", b)
	h.flush()
}

func (h *httpReply) done() { fmt.Fprint(h.w, "data: [DONE]\n\n"); h.flush() }

func (h *httpReply) flush() {
	if f, ok := h.w.(http.Flusher); ok {
		f.Flush()
	}
}

// NATS entry reply headers.
const (
	// HeaderReplyEvent says what a reply message is: "completion" (the
	// answer of a plain request), "chunk" (one streamed chunk), "done"
	// (the stream ended), "error" (an OpenAI-style error body; last).
	HeaderReplyEvent = "Agentbus-Event"
	// HeaderStatus is the HTTP status the same request would have got.
	HeaderStatus = "Agentbus-Status"
	// HeaderAuthorization carries the API key ("Bearer <key>").
	HeaderAuthorization = "Authorization"
	// HeaderConversation continues a conversation (as X-Conversation-Id).
	HeaderConversation = "X-Conversation-Id"
	// HeaderCache, on an answer of a turn that may use the response
	// cache: "hit" (every model call answered from the cache), "miss" or
	// "bypass" (see messages.CacheUse.Status). A stream's describes its
	// first model call.
	HeaderCache = "X-Cache"
	// HeaderCacheControl, on a request: "no-cache" answers from the
	// provider and refreshes the cache; "no-store" neither reads nor
	// writes it.
	HeaderCacheControl = "Cache-Control"
)

// natsReply answers a NATS entry request on its reply subject: one message
// for a plain request, one per chunk and a final "done" for a stream. An
// error also carries the micro error headers (Nats-Service-Error[-Code]).
type natsReply struct {
	nc      *nats.Conn
	subject string
	mu      sync.Mutex
	headers nats.Header
	started bool
}

func (n *natsReply) setHeader(k, v string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.headers == nil {
		n.headers = nats.Header{}
	}
	n.headers.Set(k, v)
}

func (n *natsReply) streaming() bool { return n.started }

func (n *natsReply) send(event string, status int, body []byte) {
	m := nats.NewMsg(n.subject)
	n.mu.Lock()
	for k, v := range n.headers {
		m.Header[k] = v
	}
	n.headers = nil // sent once, with the first message
	n.mu.Unlock()
	m.Header.Set(HeaderReplyEvent, event)
	if status != 0 {
		m.Header.Set(HeaderStatus, strconv.Itoa(status))
	}
	m.Data = body
	_ = n.nc.PublishMsg(m)
}

func (n *natsReply) json(status int, v any) {
	b, _ := json.Marshal(v)
	n.send("completion", status, b)
}

func (n *natsReply) error(status int, code, msg string, param *string) {
	b, _ := json.Marshal(apiError{Error: errorBody{Message: msg, Type: errorType(status), Param: param, Code: code}})
	n.setHeader(micro.ErrorCodeHeader, strconv.Itoa(status))
	n.setHeader(micro.ErrorHeader, msg)
	n.send("error", status, b)
}

func (n *natsReply) chunk(b []byte) {
	st := 0
	if !n.started {
		n.started, st = true, http.StatusOK
	}
	n.send("chunk", st, b)
}

func (n *natsReply) done() { n.send("done", 0, nil) }
