// Package ingest is the entry of the pipeline: an OpenAI-compatible HTTP
// API (POST /v1/chat/completions, GET /v1/models) plus health endpoints.
// It authenticates the caller, turns the request into a messages.Turn,
// publishes it on JetStream and answers when the turn's terminal event
// arrives: completed (after persist committed it), rejected or failed.
//
//	h, _ := ingest.New(cfg, ingest.Deps{NC: nc, JS: js, Auth: auth, Conversations: owners})
//	hs, errc := h.Serve(ln) // and rt.AddStage(h.Stage()) for the NATS entry
//
// Guarantees: every error is an OpenAI-style JSON body with a 4xx or 5xx
// status (401 bad key, 400 bad input, 429 rate limited with Retry-After,
// 503 no provider, 504 no answer in time); a 200 means the turn is
// persisted, so the next turn of the conversation sees it. The same turn
// can be published straight to NATS; see docs/nats-clients.md.
package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	apikv "github.com/agentbus/agentbus/internal/apikey/kvstore"
	"github.com/agentbus/agentbus/internal/obs"
	rlkv "github.com/agentbus/agentbus/internal/ratelimit/kvstore"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// Stage is the stage name.
const Stage = messages.StageIngest

// Contract is what the ingest stage does on the bus: it publishes received
// turns (and the deadline_exceeded failure of a turn whose client stopped
// waiting), reads API key records and the rate-limit state, follows its
// requests' events and deltas, reads a turn's outcome back from the stream,
// records Idempotency-Keys, serves the NATS entry (answering each request
// with a stream of chunks for up to 15 minutes) and gathers the other
// stages' health.
var Contract = pipeline.Contract{
	Stage:         Stage,
	Produces:      messages.ProducedBy(Stage),
	KV:            []pipeline.KVUse{{Bucket: apikv.Bucket}, {Bucket: rlkv.Bucket}, {Bucket: IdempotencyBucket, Write: true}},
	Requests:      []string{"agentbus.health.>", messages.SubjectOwner, messages.CancelSubject("*"), "$JS.API.STREAM.MSG.GET." + messages.StreamTurns, messages.SubjectModels},
	Subscribes:    []string{messages.TurnSubjects, messages.StreamSubjectTo("*", "*"), messages.SubjectChat},
	ManyResponses: true,
	ResponseTTL:   15 * time.Minute,
}

// Config configures the HTTP entry.
type Config struct {
	// Addr is the listen address. Default "127.0.0.1:8080".
	Addr string
	// MaxBodyBytes bounds a request body (413 beyond). Default 1 MiB.
	MaxBodyBytes int64
	// MaxTurnBytes bounds the received event a request becomes, as
	// encoded for the bus (JSON escapes can make it larger than the
	// body): every later event of the turn (the model's answers, tool
	// results) must still fit in pipeline.MaxPayload. 413
	// payload_too_large beyond. Default 512 KiB.
	MaxTurnBytes int
	// ReplyTimeout bounds the wait for a turn's outcome (then 504).
	// Default 120s.
	ReplyTimeout time.Duration
	// AllowUnknownParams lets request parameters OpenAI does not define
	// through to the providers (verbatim, as top-level request fields)
	// instead of answering 400 unknown_parameter as OpenAI does. Default
	// false.
	AllowUnknownParams bool
	// CatalogTTL is how long the llm stage's model catalog (what
	// /v1/models lists and requests are checked against) is kept before
	// it is asked again. Default 5s.
	CatalogTTL time.Duration
	// CatalogTimeout bounds one catalog request. Default 2s.
	CatalogTimeout time.Duration
	// Stages are the stages /health expects. Default all five.
	Stages []string
	// HealthTimeout bounds the scatter-gather of stage health. Default 300ms.
	HealthTimeout time.Duration
	// MaxNATSInFlight bounds the NATS entry's requests waiting for their
	// outcome; more are answered 503 at once. Default 1024.
	MaxNATSInFlight int
	// CompleteOnDisconnect lets a turn whose HTTP client went away run to
	// the end and be stored. Default false: the turn is cancelled (its
	// model call aborted) and recorded as client_cancelled.
	CompleteOnDisconnect bool
	// ReadTimeout bounds reading a whole request, body included: a client
	// that sends its body slower than this is disconnected. Default 30s.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long. Default 120s.
	IdleTimeout time.Duration
	// MaxConns bounds the open HTTP connections; more wait in the
	// listen backlog until one closes. Default 1024.
	MaxConns int
	// MaxHeaderBytes bounds a request's headers. Default 64 KiB.
	MaxHeaderBytes int
}

// DefaultConfig returns the documented defaults (what the zero value
// means).
func DefaultConfig() Config { return Config{}.WithDefaults() }

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxTurnBytes == 0 {
		c.MaxTurnBytes = 512 << 10
	}
	def(&c.ReplyTimeout, 120*time.Second)
	def(&c.CatalogTTL, 5*time.Second)
	def(&c.CatalogTimeout, 2*time.Second)
	if c.Stages == nil {
		c.Stages = slices.DeleteFunc(slices.Clone(messages.Stages), func(s string) bool { return s == Stage })
	}
	def(&c.HealthTimeout, 300*time.Millisecond)
	if c.MaxNATSInFlight == 0 {
		c.MaxNATSInFlight = 1024
	}
	def(&c.ReadTimeout, 30*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	return c
}

// Validate reports every problem of the configuration (zero fields take
// their defaults and are valid).
func (c Config) Validate() error {
	var errs []error
	c = c.WithDefaults()
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("ingest.max_body_bytes must be at least 1024"))
	}
	if c.ReplyTimeout <= 0 {
		errs = append(errs, errors.New("ingest.reply_timeout must be positive"))
	}
	if c.ReadTimeout <= 0 || c.IdleTimeout <= 0 {
		errs = append(errs, errors.New("ingest: read and idle timeouts must be positive"))
	}
	if c.MaxConns < 1 {
		errs = append(errs, errors.New("ingest.max_conns must be at least 1"))
	}
	if c.MaxHeaderBytes < 4096 {
		errs = append(errs, errors.New("ingest.max_header_bytes must be at least 4096"))
	}
	if c.MaxTurnBytes < 1024 || c.MaxTurnBytes > pipeline.MaxPayload/2 {
		errs = append(errs, fmt.Errorf("ingest.max_turn_bytes must be 1024..%d (half the bus's max payload: the rest is for the answer)", pipeline.MaxPayload/2))
	}
	if c.MaxNATSInFlight < 0 {
		errs = append(errs, errors.New("ingest.max_nats_in_flight must not be negative"))
	}
	if c.HealthTimeout <= 0 {
		errs = append(errs, errors.New("ingest.health_timeout must be positive"))
	}
	if c.CatalogTTL <= 0 || c.CatalogTimeout <= 0 {
		errs = append(errs, errors.New("ingest: catalog ttl and timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Identity is an authenticated caller.
type Identity struct {
	User  string
	KeyID string
	// Models, when set, are the only models the caller may use (and
	// list); empty: every model.
	Models []string
	// Cache lets the caller's turns use the response cache (for
	// deterministic calls, unless a request asks for it explicitly).
	Cache bool
}

// Authenticator checks the Authorization header. Its errors are shown to
// the caller (401) and must never contain the key.
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (Identity, error)
}

// ErrConversationNotFound is what Conversations.Owns returns (wrapped)
// for a conversation that does not exist or that another user owns.
var ErrConversationNotFound = errors.New("conversation not found")

// Conversations tells who owns a stored conversation.
type Conversations interface {
	// Owns returns nil when user owns the conversation, an error wrapping
	// ErrConversationNotFound when it does not exist or another user owns
	// it, any other error when the answer is unknown (the store is
	// unreachable).
	Owns(ctx context.Context, conversationID, user string) error
}

// Outcomes are the turns' recorded outcomes (pipeline.Terminals).
type Outcomes interface {
	// Outcome returns the recorded outcome of request rid, if any.
	Outcome(ctx context.Context, rid string) (event string, found bool, err error)
	// ClaimNew records event as the outcome of rid unless it has one,
	// returns the outcome and whether this call recorded it.
	ClaimNew(ctx context.Context, rid, event string) (outcome string, created bool, err error)
}

var _ Outcomes = (*pipeline.Terminals)(nil)

// Deps are the ingest stage's dependencies.
type Deps struct {
	// NC and JS are the stage's NATS connection and its JetStream API:
	// ingest publishes turns, follows their events and deltas, asks the
	// llm stage's model catalog and gathers the stages' health. Required.
	NC *nats.Conn
	JS jetstream.JetStream
	// Auth checks API keys; nil means no authentication (every caller is
	// user "anonymous"): for tests and trusted networks only.
	Auth Authenticator
	// Conversations checks that a request continuing a conversation
	// comes from its owner. Nil refuses every X-Conversation-Id.
	Conversations Conversations
	// Outcomes are the turns' recorded outcomes: at a request's deadline
	// ingest ends its turn there, and an Idempotency-Key retry reads its
	// turn's outcome. Nil: a late turn is answered 504 and may still
	// complete.
	Outcomes Outcomes
	// Idempotency is the IdempotencyBucket; nil: Idempotency-Key is
	// refused.
	Idempotency jetstream.KeyValue
	// Limits, when set, is asked before a request is stored whether its
	// key and user have room now (reading the shared limiter state, never
	// spending it): a request the guard would reject for its rate limits
	// is refused here with 429 and never reaches the stream. Nil: the
	// guard alone decides.
	Limits RateCheck
	// Observe is the entry's metrics, tracing and access log.
	Observe Observe
	// Log gets the entry's errors and, without Observe.AccessLog, its
	// access log; nil: discard.
	Log *slog.Logger
}

// RateCheck reads the shared rate-limit state without spending it.
type RateCheck interface {
	// Peek reports whether t (estimated at tokens) has room now; when not,
	// how long to wait, the tier that refuses and the x-ratelimit-*
	// headers.
	Peek(ctx context.Context, t *messages.Turn, tokens int) (ok bool, retryAfter time.Duration, tier string, headers map[string]string, err error)
}

// Handler is the ingest stage: the HTTP entry (it implements
// http.Handler) and the NATS entry (its Stage's micro endpoint).
type Handler struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	auth  Authenticator
	convs Conversations
	rate  RateCheck
	terms Outcomes
	idem  jetstream.KeyValue
	log   *slog.Logger
	mux   *http.ServeMux
	// inflight bounds the NATS entry's waiting requests.
	inflight chan struct{}
	// waiters route terminal events to the requests waiting for them.
	waiters *waiters
	// catalog is the llm stage's model catalog.
	catalog *catalog
	observe Observe
	tracer  trace.Tracer
}

// New builds the stage.
func New(cfg Config, d Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.NC == nil || d.JS == nil {
		return nil, errors.New("ingest: a NATS connection and its JetStream API are required")
	}
	cfg = cfg.WithDefaults()
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Handler{cfg: cfg, nc: d.NC, js: d.JS, auth: d.Auth, convs: d.Conversations, rate: d.Limits, idem: d.Idempotency, log: log, mux: http.NewServeMux(), inflight: make(chan struct{}, cfg.MaxNATSInFlight),
		catalog: &catalog{nc: d.NC, ttl: cfg.CatalogTTL, timeout: cfg.CatalogTimeout}}
	if d.Outcomes != nil {
		s.terms = d.Outcomes
	}
	s.observe = d.Observe
	if d.Observe.Tracer != nil {
		s.tracer = d.Observe.Tracer.Tracer("github.com/agentbus/agentbus/internal/stage/ingest")
	}
	var err error
	if s.waiters, err = newWaiters(d.NC); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Serve serves HTTP on ln until Shutdown, with the configured timeouts and
// at most MaxConns connections at once. It returns the http.Server (for
// Shutdown) and the error channel of its Serve.
func (s *Handler) Serve(ln net.Listener) (*http.Server, <-chan error) {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: min(10*time.Second, s.cfg.ReadTimeout),
		ReadTimeout:       s.cfg.ReadTimeout,
		// A plain answer waits up to ReplyTimeout; a stream ends by then.
		WriteTimeout:   s.cfg.ReplyTimeout + 30*time.Second,
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxHeaderBytes: s.cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(limitListener(ln, s.cfg.MaxConns)) }()
	return hs, errc
}

// NewID returns a fresh id with a prefix, safe as a subject token.
func NewID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, param *string) {
	writeJSON(w, status, apiError{Error: errorBody{Message: msg, Type: errorType(status), Param: param, Code: code}})
}

func strp(s string) *string { return &s }

func (s *Handler) authenticate(r *http.Request) (Identity, error) {
	if s.auth == nil {
		return Identity{User: "anonymous"}, nil
	}
	return s.auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
}

// chat serves POST /v1/chat/completions.
func (s *Handler) chat(w http.ResponseWriter, r *http.Request) {
	id, err := s.authenticate(r)
	if err != nil {
		// Answered without reading the body; the connection is not
		// reused, so its body is never read either.
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusUnauthorized, "invalid_api_key", err.Error(), nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes), nil)
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "could not read the request body", nil)
		return
	}
	s.serveTurn(r.Context(), id, body, optionsFrom(r.Header.Get), "chat.completions", &httpReply{w: w})
}

// serveTurn runs one chat request from either entry (HTTP or NATS): it
// decodes and checks the body, builds the turn with the caller's verified
// identity, publishes it and answers out with the outcome (a completion, a
// stream of chunks, or an OpenAI-style error).
func (s *Handler) serveTurn(ctx context.Context, id Identity, body []byte, opt requestOptions, endpoint string, out reply) {
	out = s.observed(ctx, out)
	conv := opt.Conversation
	timeout, err := s.timeoutFor(opt)
	if err != nil {
		out.error(http.StatusBadRequest, "invalid_request", err.Error(), strp(HeaderRequestTimeout))
		return
	}
	if opt.IdempotencyKey != "" && !validIdemKey(opt.IdempotencyKey) {
		out.error(http.StatusBadRequest, "invalid_request", HeaderIdempotencyKey+" must be 1-255 characters without surrounding spaces", strp(HeaderIdempotencyKey))
		return
	}
	deadline := time.Now().Add(timeout)
	req, perr := parseChat(body, parseOptions{allowUnknown: s.cfg.AllowUnknownParams, requireModel: endpoint == "chat.completions"})
	if perr == nil {
		perr = s.checkModel(ctx, id, &req)
	}
	if perr != nil {
		out.error(perr.status, perr.code, perr.msg, paramOrNil(perr.param))
		return
	}
	rid := requestID(ctx)
	useHistory := conv != ""
	if !useHistory {
		// New conversations get server-issued ids.
		conv = NewID("conv_")
	} else if !messages.ValidID(conv) {
		out.error(http.StatusBadRequest, "invalid_conversation_id", "X-Conversation-Id must be 1-128 characters of [A-Za-z0-9_-]", nil)
		return
	} else if !s.owns(ctx, out, conv, id.User) {
		return
	}
	turn := messages.Turn{
		SchemaVersion:  messages.SchemaVersion,
		RequestID:      rid,
		ConversationID: conv,
		UseHistory:     useHistory,
		User:           id.User,
		KeyID:          id.KeyID,
		Endpoint:       endpoint,
		Model:          req.Model,
		Params:         req.Params,
		ClientTools:    req.Tools,
		Cache:          cacheFor(id, req.Cache, opt.CacheControl),
		Messages:       req.Messages,
		Stream:         req.Stream,
		StreamTo:       s.waiters.streamTo(req.Stream),
		CreatedAt:      time.Now().UTC(),
		Deadline:       deadline.UTC(),
	}
	if err := turn.Validate(); err != nil {
		e := validationError(err)
		out.error(e.status, e.code, e.msg, paramOrNil(e.param))
		return
	}
	noteTurn(ctx, out, &turn)
	encoded, err := json.Marshal(&turn)
	if err != nil {
		out.error(http.StatusBadRequest, "invalid_request", "the request cannot be encoded", nil)
		return
	}
	if len(encoded) > s.cfg.MaxTurnBytes {
		out.error(http.StatusRequestEntityTooLarge, messages.CodePayloadTooLarge,
			fmt.Sprintf("the request is %d bytes once encoded for the pipeline; the limit is %d", len(encoded), s.cfg.MaxTurnBytes), nil)
		return
	}
	out.setHeader("X-Request-Id", rid)
	out.setHeader("X-Conversation-Id", conv)
	if s.rate != nil {
		ok, retry, tier, headers, err := s.rate.Peek(ctx, &turn, turn.EstimatedTokens())
		switch {
		case err != nil:
			// The guard decides (and fails closed or open as configured).
			s.log.Debug("rate-limit pre-check unavailable", "request_id", rid, "err", err)
		case !ok:
			s.observe.Metrics.LimitRejected(Stage, obs.LimitRate, tier)
			setRetryHeaders(out, retry.Milliseconds(), headers)
			out.error(http.StatusTooManyRequests, messages.CodeRateLimited, "rate limit exceeded ("+tier+"); retry after "+retry.Round(time.Millisecond).String(), nil)
			return
		}
	}

	usage := req.IncludeUsage
	if opt.IdempotencyKey != "" {
		prior, fresh, err := s.reserve(ctx, id.User, opt.IdempotencyKey, idemEntry{RequestID: rid, ConversationID: conv, Model: turn.Model, CreatedAt: turn.CreatedAt, Deadline: turn.Deadline})
		if err != nil {
			s.log.Warn("idempotency key not recorded", "request_id", rid, "err", err)
			out.error(http.StatusServiceUnavailable, messages.CodeUnavailable, "could not record the Idempotency-Key; retry later", nil)
			return
		}
		if !fresh {
			s.resume(ctx, out, prior, turn.Stream, usage)
			return
		}
	}
	events, done := s.waiters.wait(rid)
	defer done()
	var deltas chan *nats.Msg
	if turn.Stream {
		var stop func()
		deltas, stop = s.waiters.stream(rid)
		defer stop()
	}
	if err := publishEncoded(ctx, s.js, rid, encoded, turn.Deadline); err != nil {
		s.log.Error("publish turn", "request_id", rid, "err", err)
		out.error(http.StatusServiceUnavailable, "unavailable", "could not enqueue the request; try again", nil)
		return
	}
	s.await(ctx, out, &turn, usage, events, deltas, deadline)
}

// owns answers the request and reports false unless user owns the stored
// conversation conv. Another user's conversation and one that does not
// exist get the same 404, so ids cannot be probed; a client cannot name a
// new conversation (the server issues their ids).
func (s *Handler) owns(ctx context.Context, out reply, conv, user string) bool {
	err := errors.New("no conversation store")
	if s.convs != nil {
		err = s.convs.Owns(ctx, conv, user)
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrConversationNotFound) || s.convs == nil:
		out.error(http.StatusNotFound, messages.CodeConversationNotFound,
			"conversation "+conv+" not found; omit X-Conversation-Id to start a new conversation", nil)
	default:
		s.log.Warn("conversation owner check failed", "conversation_id", conv, "err", err)
		out.error(http.StatusServiceUnavailable, messages.CodeUnavailable, "the conversation store is unavailable; retry later", nil)
	}
	return false
}

// Publish puts a turn on the pipeline with its deterministic message id.
func Publish(ctx context.Context, js jetstream.JetStream, t *messages.Turn) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return publishEncoded(ctx, js, t.RequestID, b, t.Deadline)
}

func publishEncoded(ctx context.Context, js jetstream.JetStream, rid string, b []byte, deadline time.Time) error {
	m := nats.NewMsg(messages.Subject(messages.EventReceived, rid))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, messages.MsgID(rid, messages.EventReceived, 0))
	m.Header.Set(messages.HeaderCorrelationID, rid)
	m.Header.Set(messages.HeaderEvent, messages.EventReceived)
	pipeline.InjectTrace(ctx, m.Header)
	if !deadline.IsZero() {
		m.Header.Set(messages.HeaderDeadline, deadline.UTC().Format(time.RFC3339Nano))
	}
	_, err := js.PublishMsg(ctx, m)
	return err
}

func (s *Handler) timeout(out reply, rid string) {
	out.error(http.StatusGatewayTimeout, messages.CodeTimeout,
		fmt.Sprintf("no answer within %s; the turn (request %s) may still complete and will be stored", s.cfg.ReplyTimeout, rid), nil)
}

// answer handles one event of the request; it reports whether the response
// was written (a terminal event).
func (s *Handler) answer(out reply, t *messages.Turn, m *nats.Msg) bool {
	event, _, err := messages.ParseSubject(m.Subject)
	if err != nil || !messages.Terminal(event) {
		return false
	}
	switch event {
	case messages.EventCompleted:
		var c messages.Completed
		if err := json.Unmarshal(m.Data, &c); err != nil {
			out.error(http.StatusInternalServerError, messages.CodeInternal, "undecodable completion", nil)
			return true
		}
		if st := c.Cache.Status(); st != "" {
			out.setHeader(HeaderCache, st)
		}
		noteCompleted(out, &c)
		out.json(http.StatusOK, completionResponse(&c))
	case messages.EventRejected:
		var rj messages.Rejected
		if err := json.Unmarshal(m.Data, &rj); err != nil {
			out.error(http.StatusInternalServerError, messages.CodeInternal, "undecodable rejection", nil)
			return true
		}
		noteRejected(out, &rj)
		setRetryHeaders(out, rj.RetryAfterMS, rj.RateLimit)
		out.error(statusOr(rj.Status, 400), rj.Code, rj.Reason, paramOrNil(rj.Param))
	case messages.EventFailed:
		var f messages.Failed
		if err := json.Unmarshal(m.Data, &f); err != nil {
			out.error(http.StatusInternalServerError, messages.CodeInternal, "undecodable failure", nil)
			return true
		}
		setRetryHeaders(out, f.RetryAfterMS, nil)
		out.error(statusOr(f.Status, 500), f.Code, f.Reason, paramOrNil(f.Param))
	}
	return true
}

func statusOr(s, def int) int {
	if s < 400 || s > 599 {
		return def
	}
	return s
}

func setRetryHeaders(out reply, retryMS int64, rl map[string]string) {
	if retryMS > 0 {
		out.setHeader("Retry-After", strconv.FormatInt((retryMS+999)/1000, 10))
		out.setHeader("Retry-After-Ms", strconv.FormatInt(retryMS, 10))
	}
	for k, v := range rl {
		out.setHeader(k, v)
	}
}

func completionResponse(c *messages.Completed) chatResponse {
	logprobs := c.Logprobs
	if len(logprobs) == 0 {
		logprobs = json.RawMessage("null")
	}
	return chatResponse{
		ID:      "chatcmpl-" + c.RequestID,
		Object:  "chat.completion",
		Created: c.CreatedAt.Unix(),
		Model:   c.Model,
		Choices: []choice{{Index: 0, Message: toResponseMessage(c.Message), FinishReason: finishReason(c), Logprobs: logprobs}},
		Usage:   c.Usage,
	}
}
