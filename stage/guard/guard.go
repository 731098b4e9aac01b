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
const Stage = "guard"

// RateLimitBucket holds the rate-limit buckets shared by guard replicas.
const RateLimitBucket = rlkv.Bucket

// Contract is what the guard stage does on the bus: it judges received
// turns into admitted or rejected ones, reconciles token limits from
// completed turns, writes the shared rate-limit state and reads API key
// records (per-key limits).
var Contract = pipeline.Contract{
	Stage:    Stage,
	Consumes: []string{messages.EventReceived, messages.EventCompleted},
	Produces: []string{messages.EventAdmitted, messages.EventRejected, messages.EventFailed},
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

// Handler holds the guard's dependencies. Nil Sanitizer or Limiter skips
// that check.
type Handler struct {
	Sanitizer Sanitizer
	Limiter   Limiter
	// Reconcile consumes completed turns to correct token limits with the
	// provider's usage; set it when a tokens limit is configured.
	Reconcile bool
	Log       *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics counts verdicts by rule and rate-limit rejections by tier;
	// nil: none.
	Metrics *obs.Metrics
}

// Stage returns the pipeline stage.
func (h *Handler) Stage() pipeline.Stage {
	handlers := map[string]message.HandlerFunc{messages.EventReceived: h.Handle}
	if h.Limiter != nil && h.Reconcile {
		handlers[messages.EventCompleted] = h.HandleCompleted
	}
	return pipeline.Stage{Name: Stage, Handlers: handlers, Produces: Contract.Produces}
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
	if err := h.Limiter.Reconcile(msg.Context(), &c); err != nil {
		return nil, fmt.Errorf("reconcile %s: %w", c.RequestID, err)
	}
	return nil, nil
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
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
		t.CreatedAt = h.now().UTC()
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
	if h.Limiter != nil {
		ok, retry, tier, headers, err := h.Limiter.Allow(msg.Context(), &t, v.EstimatedTokens)
		if err != nil {
			return h.reject(&t, messages.CodeUnavailable, http.StatusServiceUnavailable, "rate limiter unavailable: "+err.Error(), nil, 0, nil)
		}
		if !ok {
			return h.rejectRate(&t, tier, retry, headers)
		}
	}
	if h.Sanitizer != nil {
		j := h.Sanitizer.Check(t.Messages)
		h.Metrics.GuardVerdict(j.Verdict, j.Rules)
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
			if h.Log != nil {
				h.Log.Info("turn flagged", append([]any{"request_id", t.RequestID, "user", t.User, "score", j.Score, "rules", j.Rules}, passageAttrs(j.Passage)...)...)
			}
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
	h.Metrics.LimitRejected(Stage, obs.LimitRate, tier)
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
	r.At = h.now().UTC()
	if h.Log != nil {
		h.Log.Info("turn rejected", append([]any{"request_id", t.RequestID, "user", t.User, "code", r.Code, "rules", r.Rules}, passageAttrs(r.Passage)...)...)
	}
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
