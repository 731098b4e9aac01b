package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/ratelimit"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/internal/stage/guard"
	"github.com/agentbus/agentbus/internal/stage/ingest"
	"github.com/agentbus/agentbus/internal/stage/llm"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
)

// sanitizerAdapter lets the guard stage use the sanitizer.
type sanitizerAdapter struct{ s *sanitize.Sanitizer }

func (a sanitizerAdapter) Check(msgs []messages.Message) guard.Judgement {
	v, i := a.s.CheckMessages(asClientInput(msgs))
	j := guard.Judgement{Verdict: v.Verdict, Score: v.Score, Rules: v.Rules, Reason: v.Reason}
	if v.Verdict != sanitize.VerdictAllow {
		j.Passage = passage(v.Passage, i)
	}
	return j
}

// asClientInput returns a turn's messages as the guard judges them. The
// client wrote every one of them, "assistant" turns included (an SDK
// resends the whole conversation, and anyone can write an assistant
// message): an assistant message's content, its refusal (the refusal
// field and refusal parts, which the model reads too) and its tool calls'
// arguments are judged as user input, one message per assistant message.
func asClientInput(msgs []messages.Message) []messages.Message {
	out := make([]messages.Message, len(msgs))
	for i, m := range msgs {
		if m.Role != messages.RoleAssistant {
			out[i] = m
			continue
		}
		var b strings.Builder
		b.WriteString(m.Content)
		if r := m.RefusalText(); r != "" {
			b.WriteString("\n")
			b.WriteString(r)
		}
		for _, tc := range m.ToolCalls {
			b.WriteString("\n")
			b.WriteString(tc.Function.Arguments)
		}
		out[i] = messages.Message{Role: messages.RoleUser, Content: b.String()}
	}
	return out
}

// passage converts the sanitizer's deciding passage of message i (-1: a
// tool result).
func passage(p *sanitize.Passage, i int) *messages.Passage {
	if p == nil {
		return nil
	}
	return &messages.Passage{Message: i, Start: p.Start, End: p.End, Rule: p.Rule, Score: p.Score}
}

// resultScanner scans tool results with the same sanitizer, with the tool
// result thresholds and size limit.
type resultScanner struct{ s *sanitize.Sanitizer }

func (r resultScanner) ScanResult(text string) (string, []string, *messages.Passage) {
	if r.s == nil {
		return sanitize.VerdictAllow, nil, nil
	}
	v := r.s.CheckResult(text)
	if v.Verdict == sanitize.VerdictAllow {
		return v.Verdict, v.Rules, nil
	}
	return v.Verdict, v.Rules, passage(v.Passage, -1)
}

// limiterAdapter charges a turn against the shared limiter, with the API
// key's own limits as the key tier.
type limiterAdapter struct {
	l    *ratelimit.Limiter
	keys apikey.Store
}

func (a *limiterAdapter) request(ctx context.Context, t *messages.Turn, tokens int) ratelimit.Request {
	r := ratelimit.Request{User: t.User, Endpoint: t.Endpoint, KeyID: t.KeyID, Cost: t.Cost, Tokens: float64(tokens)}
	if t.KeyID != "" && a.keys != nil {
		if rec, err := a.keys.Get(ctx, t.KeyID); err == nil && (rec.RPM > 0 || rec.TPM > 0) {
			r.Overrides = &ratelimit.KeyLimits{RPM: rec.RPM, TPM: rec.TPM}
		}
	}
	return r
}

func (a *limiterAdapter) Allow(ctx context.Context, t *messages.Turn, tokens int) (bool, time.Duration, string, map[string]string, error) {
	d, err := a.l.Allow(ctx, a.request(ctx, t, tokens))
	if err != nil {
		return false, 0, "", nil, err
	}
	h := rateHeaders(d)
	if d.Allowed {
		return true, 0, "", h, nil
	}
	tier := d.Tier + "." + d.Resource
	if d.TooLarge {
		tier += ".too_large"
	}
	return false, d.RetryAfter, tier, h, nil
}

// Peek implements ingest.RateCheck: Allow's decision without spending.
func (a *limiterAdapter) Peek(ctx context.Context, t *messages.Turn, tokens int) (bool, time.Duration, string, map[string]string, error) {
	d, err := a.l.Peek(ctx, a.request(ctx, t, tokens))
	if err != nil {
		return false, 0, "", nil, err
	}
	if d.Allowed {
		return true, 0, "", nil, nil
	}
	tier := d.Tier + "." + d.Resource
	if d.TooLarge {
		tier += ".too_large"
	}
	return false, d.RetryAfter, tier, rateHeaders(d), nil
}

func (a *limiterAdapter) Reconcile(ctx context.Context, c *messages.Completed) error {
	if c.Usage.TotalTokens == 0 {
		return nil
	}
	t := messages.Turn{User: c.User, Endpoint: c.Endpoint, KeyID: c.KeyID}
	return a.l.Reconcile(ctx, a.request(ctx, &t, c.Guard.EstimatedTokens), float64(c.Usage.TotalTokens))
}

// rateHeaders are the x-ratelimit-* headers OpenAI clients know.
func rateHeaders(d ratelimit.Decision) map[string]string {
	h := map[string]string{}
	put := func(res string, q ratelimit.Quota) {
		if q.Tier == "" {
			return
		}
		h["x-ratelimit-limit-"+res] = strconv.FormatFloat(math.Floor(q.Limit), 'f', -1, 64)
		h["x-ratelimit-remaining-"+res] = strconv.FormatFloat(math.Max(0, math.Floor(q.Remaining)), 'f', -1, 64)
		h["x-ratelimit-reset-"+res] = fmt.Sprintf("%.3fs", q.Reset.Seconds())
	}
	put("requests", d.Requests)
	put("tokens", d.Tokens)
	return h
}

// keyAuth authenticates HTTP callers with API keys.
type keyAuth struct{ v *apikey.Verifier }

func (k keyAuth) Authenticate(ctx context.Context, authorization string) (ingest.Identity, error) {
	rec, err := k.v.Verify(ctx, authorization)
	if err != nil {
		return ingest.Identity{}, err
	}
	return ingest.Identity{User: rec.User, KeyID: rec.ID, Models: rec.Models, Cache: rec.Cache}, nil
}

// providerHealth turns breaker states into a health status: any breaker
// open = degraded, all open = unhealthy.
func providerHealth(f *provider.Failover) func() (string, map[string]any) {
	return func() (string, map[string]any) {
		snap := f.Snapshot()
		open := 0
		for _, s := range snap {
			if s.Breaker != nil && s.Breaker.State.String() != "closed" {
				open++
			}
		}
		status := pipeline.Healthy
		switch {
		case len(snap) > 0 && open == len(snap):
			status = pipeline.Unhealthy
		case open > 0:
			status = pipeline.Degraded
		}
		return status, map[string]any{"providers": snap}
	}
}

var _ = errors.New

// conversations adapts the persist client to ingest's and llm's views of
// ownership: persist's 404 (unknown, or another user's) is their
// ErrConversationNotFound.
type conversations struct{ c *persist.Client }

func (c conversations) Owns(ctx context.Context, conv, user string) error {
	return notFound(c.c.Owns(ctx, conv, user), ingest.ErrConversationNotFound)
}

func (c conversations) History(ctx context.Context, conv, user, model string) ([]messages.Message, error) {
	msgs, err := c.c.History(ctx, conv, user, model)
	return msgs, notFound(err, llm.ErrConversationNotFound)
}

func notFound(err, as error) error {
	if errors.Is(err, persist.ErrNotFound) {
		return fmt.Errorf("%w: %w", as, err)
	}
	return err
}
