// Package guard is the guard stage: it decides whether a received turn may
// enter the pipeline. It validates the payload against the wire contract,
// runs the input sanitizer over every user-controlled message and takes
// tokens from the shared rate limiter, then publishes the turn as admitted,
// or a rejection event with a code, a reason and the rules that fired.
//
// A rejection is an ordinary, auditable event on the stream; the guard
// never logs prompts or API keys.
package guard

import (
	"context"
	"errors"
	"fmt"
	apikv "github.com/agentbus/agentbus/internal/apikey/kvstore"
	rlkv "github.com/agentbus/agentbus/internal/ratelimit/kvstore"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/obs"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
)

// Stage is the stage name.
const Stage = messages.StageGuard

// RateLimitBucket holds the rate-limit buckets shared by guard replicas.
const RateLimitBucket = rlkv.Bucket

// Contract is what the guard stage does on the bus: it judges received
// turns into admitted or rejected ones, reconciles token limits from
// completed turns, writes the shared rate-limit state and reads API key
// records (per-key limits).
var Contract = pipeline.Contract{
	Stage:    Stage,
	Consumes: messages.ConsumedBy(Stage),
	Produces: messages.ProducedBy(Stage),
	KV:       []pipeline.KVUse{{Bucket: RateLimitBucket, Write: true}, {Bucket: apikv.Bucket}},
}

// Sanitizer judges a turn's messages.
type Sanitizer interface {
	Check(msgs []messages.Message) Judgement
}

// Judgement is a sanitizer's verdict on a turn.
type Judgement struct {
	Verdict string // "allow", "flag" or "block"
	Score   float64
	Rules   []string
	// Reason is for the client: it never echoes the input and holds no
	// offsets.
	Reason string
	// Passage locates what decided a "flag" or "block" (message index,
	// byte offsets, rule), for the audit event and the log; nil if none.
	Passage *messages.Passage
}

// Limiter takes rate-limit tokens for a turn.
type Limiter interface {
	// Allow returns ok=false with retryAfter and headers when a tier is
	// exhausted; err when the shared state cannot be reached.
	Allow(ctx context.Context, t *messages.Turn, estimatedTokens int) (ok bool, retryAfter time.Duration, tier string, headers map[string]string, err error)
	// Reconcile corrects the token tiers once the provider reported the
	// turn's real usage.
	Reconcile(ctx context.Context, c *messages.Completed) error
}

// Config configures the guard stage. The zero value is usable.
type Config struct {
	// Reconcile consumes completed turns to correct the token rate limits
	// with the provider's usage (admission only estimated it); set it when
	// a token limit is configured or API keys may carry their own. It
	// needs a Limiter. Default false.
	Reconcile bool
	// HandlerTimeout bounds one handler run. Default 0: the runtime's
	// handler timeout.
	HandlerTimeout time.Duration
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.HandlerTimeout < 0 {
		errs = append(errs, errors.New("guard.handler_timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Metrics is what the guard counts (obs.Metrics).
type Metrics interface {
	// GuardVerdict counts a sanitizer verdict and the rules that fired.
	GuardVerdict(verdict string, rules []string)
	// LimitRejected counts a rejection by a limit of kind at tier.
	LimitRejected(stage, kind, tier string)
}

// Deps are the guard's collaborators. Every field is optional.
type Deps struct {
	// Sanitizer judges a turn's messages; nil: no sanitizer check.
	Sanitizer Sanitizer
	// Limiter takes rate-limit tokens; nil: no rate limits (and nothing
	// to reconcile).
	Limiter Limiter
	// Metrics counts verdicts by rule and rate-limit rejections by tier;
	// nil: none.
	Metrics Metrics
	// Log gets rejections and flags (never prompts or keys); nil: discard.
	Log *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Handler is the guard stage.
type Handler struct {
	cfg Config
	d   Deps
}

// New builds the guard.
func New(cfg Config, d Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Metrics == nil {
		d.Metrics = noMetrics{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Handler{cfg: cfg, d: d}, nil
}

type noMetrics struct{}

func (noMetrics) GuardVerdict(string, []string)        {}
func (noMetrics) LimitRejected(string, string, string) {}

// Stage returns the pipeline stage: received turns, and completed ones
// when Config.Reconcile is set and there is a Limiter.
func (h *Handler) Stage() pipeline.Stage {
	handlers := map[string]message.HandlerFunc{messages.EventReceived: h.Handle}
	if h.d.Limiter != nil && h.cfg.Reconcile {
		handlers[messages.EventCompleted] = h.HandleCompleted
	}
	return pipeline.Stage{Contract: Contract, Handlers: handlers, HandlerTimeout: h.cfg.HandlerTimeout}
}

// HandleCompleted reconciles the token rate limits with the usage the
// provider reported for a completed turn (admission only estimated it).
// It is at-least-once: a redelivery may correct twice, which errs on the
// side of the estimate, never lets more through than the limits.
func (h *Handler) HandleCompleted(msg *message.Message) ([]*message.Message, error) {
	c, err := pipeline.Decode[messages.Completed](msg)
	if err != nil {
		return nil, err
	}
	if err := h.d.Limiter.Reconcile(msg.Context(), &c); err != nil {
		return nil, fmt.Errorf("reconcile %s: %w", c.RequestID, err)
	}
	return nil, nil
}

// Handle judges one received turn.
func (h *Handler) Handle(msg *message.Message) ([]*message.Message, error) {
	_, rid, err := messages.ParseSubject(msg.Metadata.Get(pipeline.MetaSubject))
	if err != nil || !messages.ValidID(rid) {
		// Without a request id nobody can be answered: dead-letter it.
		return nil, pipeline.Permanent(fmt.Errorf("received event on a subject without a valid request id: %q", msg.Metadata.Get(pipeline.MetaSubject)))
	}
	t, err := pipeline.Decode[messages.Turn](msg)
	if err != nil {
		return h.reject(&messages.Turn{RequestID: rid}, messages.CodeInvalidRequest, http.StatusBadRequest, "payload is not a valid Turn: "+err.Error(), nil, 0, nil)
	}
	if t.RequestID != rid {
		return h.reject(&messages.Turn{RequestID: rid, ConversationID: t.ConversationID, User: t.User}, messages.CodeInvalidRequest, http.StatusBadRequest,
			"request_id in the payload does not match the subject", nil, 0, nil)
	}
	if t.SchemaVersion == 0 {
		t.SchemaVersion = messages.SchemaVersion
	}
	// Clients publishing straight to NATS may leave these out.
	if t.CreatedAt.IsZero() {
		t.CreatedAt = h.d.Now().UTC()
	}
	if t.Endpoint == "" {
		t.Endpoint = "nats"
	}
	if err := t.Validate(); err != nil {
		return h.reject(&t, messages.CodeInvalidRequest, http.StatusBadRequest, oneLine(err), nil, 0, nil)
	}
	// Rate limits first: every request counts against its key and user,
	// including one the sanitizer refuses next (else a key could flood
	// the stream with requests that are always refused).
	v := messages.Verdict{Action: "allow"}
	v.EstimatedTokens = t.EstimatedTokens()
	if h.d.Limiter != nil {
		ok, retry, tier, headers, err := h.d.Limiter.Allow(msg.Context(), &t, v.EstimatedTokens)
		if err != nil {
			return h.reject(&t, messages.CodeUnavailable, http.StatusServiceUnavailable, "rate limiter unavailable: "+err.Error(), nil, 0, nil)
		}
		if !ok {
			return h.rejectRate(&t, tier, retry, headers)
		}
	}
	if h.d.Sanitizer != nil {
		j := h.d.Sanitizer.Check(t.Messages)
		h.d.Metrics.GuardVerdict(j.Verdict, j.Rules)
		v.Score, v.Rules = j.Score, j.Rules
		switch j.Verdict {
		case "block":
			code := messages.CodeInjectionDetected
			if !isInjection(j.Rules) {
				code = messages.CodeInvalidRequest
			}
			return h.rejectSanitized(&t, code, j)
		case "flag":
			v.Action = "flag"
			v.Passage = j.Passage
			h.d.Log.Info("turn flagged", append([]any{"request_id", t.RequestID, "user", t.User, "score", j.Score, "rules", j.Rules}, passageAttrs(j.Passage)...)...)
		}
	}
	out, err := pipeline.NewEvent(messages.EventAdmitted, t.RequestID, 0, messages.Admitted{Turn: t, Guard: v})
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}

func isInjection(rules []string) bool {
	for _, r := range rules {
		if !strings.HasPrefix(r, "limit.") && !strings.HasPrefix(r, "encoding.") {
			return true
		}
	}
	return false
}

// rejectSanitized rejects a turn the sanitizer blocked: the deciding
// passage goes to the audit event and the log, never to the reason.
func (h *Handler) rejectSanitized(t *messages.Turn, code string, j Judgement) ([]*message.Message, error) {
	return h.rejectWith(t, messages.Rejected{Code: code, Status: http.StatusBadRequest, Reason: j.Reason, Rules: j.Rules, Score: j.Score, Passage: j.Passage})
}

// passageAttrs are the log attributes of a deciding passage.
func passageAttrs(p *messages.Passage) []any {
	if p == nil {
		return nil
	}
	return []any{"passage_message", p.Message, "passage_start", p.Start, "passage_end", p.End, "passage_rule", p.Rule}
}

func (h *Handler) rejectRate(t *messages.Turn, tier string, retry time.Duration, headers map[string]string) ([]*message.Message, error) {
	h.d.Metrics.LimitRejected(Stage, obs.LimitRate, tier)
	reason := fmt.Sprintf("rate limit exceeded (%s); retry after %.1fs", tier, retry.Seconds())
	return h.reject(t, messages.CodeRateLimited, http.StatusTooManyRequests, reason, []string{"ratelimit." + tier}, 0, headers, retry)
}

func (h *Handler) reject(t *messages.Turn, code string, status int, reason string, rules []string, score float64, headers map[string]string, retry ...time.Duration) ([]*message.Message, error) {
	r := messages.Rejected{Code: code, Status: status, Reason: reason, Rules: rules, Score: score, RateLimit: headers}
	if len(retry) > 0 {
		r.RetryAfterMS = retry[0].Milliseconds()
	}
	return h.rejectWith(t, r)
}

// rejectWith publishes r, the turn's identifiers, time and schema version
// filled in and its reason redacted, and logs it.
func (h *Handler) rejectWith(t *messages.Turn, r messages.Rejected) ([]*message.Message, error) {
	r.SchemaVersion = messages.SchemaVersion
	r.RequestID, r.ConversationID, r.User = t.RequestID, t.ConversationID, t.User
	r.Reason = pipeline.Redact(r.Reason)
	r.At = h.d.Now().UTC()
	h.d.Log.Info("turn rejected", append([]any{"request_id", t.RequestID, "user", t.User, "code", r.Code, "rules", r.Rules}, passageAttrs(r.Passage)...)...)
	out, err := pipeline.NewEvent(messages.EventRejected, t.RequestID, 0, r)
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", "; ")
	if len(s) > 1000 {
		s = s[:1000] + "…"
	}
	return s
}
