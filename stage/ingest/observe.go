package ingest

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/internal/obs"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Observe is the entry's observability: request metrics, GET /metrics, a
// span per chat request (the root of the turn's trace, or a child of the
// client's own traceparent) and the access log.
type Observe struct {
	// Metrics counts requests by entry and status; nil: none.
	Metrics *obs.Metrics
	// MetricsHandler serves GET /metrics; nil: no such route.
	MetricsHandler http.Handler
	// Tracer traces chat requests; nil: no spans (a client's traceparent
	// still travels with the turn).
	Tracer trace.TracerProvider
	// AccessLog gets one line per request; nil: the stage's logger.
	AccessLog *slog.Logger
}

// access is one request's access log line, filled in as the request goes.
type access struct {
	mu    sync.Mutex
	entry string
	start time.Time

	status                           int
	code                             string
	rid, conv, user, key, model      string
	provider, guard, cache, finish   string
	inTokens, outTokens, totalTokens int
	cost                             float64
}

type accessKey struct{}

func accessFrom(ctx context.Context) *access {
	a, _ := ctx.Value(accessKey{}).(*access)
	return a
}

func (a *access) set(f func(a *access)) {
	if a == nil {
		return
	}
	a.mu.Lock()
	f(a)
	a.mu.Unlock()
}

// observedReply records the answer's status and error code.
type observedReply struct {
	reply
	a *access
}

func (o *observedReply) json(status int, v any) {
	o.a.set(func(a *access) { a.status = status })
	o.reply.json(status, v)
}

func (o *observedReply) error(status int, code, msg string, param *string) {
	o.a.set(func(a *access) {
		if a.status == 0 || !o.reply.streaming() {
			a.status = status
		}
		a.code = code
	})
	o.reply.error(status, code, msg, param)
}

func (o *observedReply) chunk(b []byte) {
	if !o.reply.streaming() {
		o.a.set(func(a *access) { a.status = http.StatusOK })
	}
	o.reply.chunk(b)
}

// observed wraps out so that the request's access record sees its answer.
func (s *Server) observed(ctx context.Context, out reply) reply {
	a := accessFrom(ctx)
	if a == nil {
		return out
	}
	return &observedReply{reply: out, a: a}
}

func accessOf(out reply) *access {
	if o, ok := out.(*observedReply); ok {
		return o.a
	}
	return nil
}

// noteTurn records who asks for what.
func noteTurn(ctx context.Context, out reply, t *messages.Turn) {
	accessOf(out).set(func(a *access) {
		a.rid, a.conv, a.user, a.key, a.model = t.RequestID, t.ConversationID, t.User, t.KeyID, t.Model
	})
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("agentbus.request_id", t.RequestID), attribute.String("agentbus.conversation_id", t.ConversationID),
			attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.request.model", t.Model))
	}
}

// noteCompleted records a completed turn's outcome.
func noteCompleted(out reply, c *messages.Completed) {
	accessOf(out).set(func(a *access) {
		a.model, a.provider, a.guard, a.finish = c.Model, c.Provider, c.Guard.Action, c.FinishReason
		a.inTokens, a.outTokens, a.totalTokens, a.cost = c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens, c.CostUSD
		if a.cache == "" {
			a.cache = c.Cache.Status()
		}
	})
}

// noteRejected records a turn the guard refused.
func noteRejected(out reply, r *messages.Rejected) {
	accessOf(out).set(func(a *access) { a.guard = "rejected:" + r.Code })
}

// noteCache records what answered the request besides a new turn: a
// replay of an earlier request's turn (Idempotency-Key).
func noteCache(out reply, what string) {
	accessOf(out).set(func(a *access) { a.cache = what })
}

// statusWriter remembers the status an HTTP handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

const chatPath = "/v1/chat/completions"

// serveObserved serves one HTTP request with its access record, span
// (chat requests) and metrics.
func (s *Server) serveObserved(w http.ResponseWriter, r *http.Request, rid string) {
	a := &access{entry: "http", start: time.Now(), rid: rid}
	ctx := context.WithValue(r.Context(), accessKey{}, a)
	chat := r.URL.Path == chatPath
	var span trace.Span
	if chat && s.tracer != nil {
		ctx = pipeline.TraceContext.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = s.tracer.Start(ctx, "ingest chat", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", chatPath),
				attribute.String("agentbus.entry", "http"), attribute.String("agentbus.request_id", rid)))
	}
	sw := &statusWriter{ResponseWriter: w}
	s.mux.ServeHTTP(sw, r.WithContext(ctx))
	a.set(func(a *access) {
		if sw.status != 0 {
			a.status = sw.status
		}
	})
	if span != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", a.status))
		if a.status >= 500 {
			span.SetStatus(codes.Error, a.code)
		}
		span.End()
	}
	s.logAccess(a, r.Method, r.URL.Path, chat)
}

// natsObserved returns the context of a NATS entry request (its access
// record and span) and the function that ends it.
func (s *Server) natsObserved(ctx context.Context, rid string, h http.Header) (context.Context, func()) {
	a := &access{entry: "nats", start: time.Now(), rid: rid}
	ctx = context.WithValue(ctx, accessKey{}, a)
	var span trace.Span
	if s.tracer != nil {
		ctx = pipeline.TraceContext.Extract(ctx, propagation.HeaderCarrier(h))
		ctx, span = s.tracer.Start(ctx, "ingest chat", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("agentbus.entry", "nats"), attribute.String("agentbus.request_id", rid)))
	}
	return ctx, func() {
		if span != nil {
			span.SetAttributes(attribute.Int("agentbus.status", a.status))
			if a.status >= 500 {
				span.SetStatus(codes.Error, a.code)
			}
			span.End()
		}
		s.logAccess(a, "", messages.SubjectChat, true)
	}
}

// logAccess writes the access line and counts the request.
func (s *Server) logAccess(a *access, method, path string, chat bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := time.Since(a.start)
	if chat {
		s.observe.Metrics.Request(a.entry, a.status, d)
	}
	log := s.observe.AccessLog
	if log == nil {
		log = s.log
	}
	level := slog.LevelInfo
	if strings.HasPrefix(path, "/health") || path == "/metrics" {
		level = slog.LevelDebug // probes and scrapes: every few seconds
	}
	if !log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("entry", a.entry), slog.Int("status", a.status), slog.Float64("latency_ms", float64(d.Microseconds())/1000),
		slog.String("request_id", a.rid),
	}
	if method != "" {
		attrs = append(attrs, slog.String("method", method))
	}
	attrs = append(attrs, slog.String("path", path))
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	str("code", a.code)
	str("conversation_id", a.conv)
	str("user", a.user)
	str("key_id", a.key)
	str("model", a.model)
	str("provider", a.provider)
	str("finish_reason", a.finish)
	if chat && a.user != "" {
		attrs = append(attrs, slog.Int("input_tokens", a.inTokens), slog.Int("output_tokens", a.outTokens), slog.Int("total_tokens", a.totalTokens))
		if a.cost > 0 {
			attrs = append(attrs, slog.Float64("cost_usd", a.cost))
		}
		cache := a.cache
		if cache == "" {
			cache = "off"
		}
		attrs = append(attrs, slog.String("cache", cache))
		str("guard", a.guard)
	}
	log.LogAttrs(context.Background(), level, "access", attrs...)
}
