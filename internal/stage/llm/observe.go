package llm

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/agentbus/agentbus/internal/obs"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/spend"
	"github.com/agentbus/agentbus/messages"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Spend prices model calls and keeps the books (spend.Prices and
// spend.Ledger): the cost of each call goes on the turn, into the daily
// ledger per key, user and model, and counts against the key's daily
// budget.
type Spend struct {
	Prices *spend.Prices
	// Ledger records spend and holds the budget (a *spend.Ledger); nil:
	// cost is computed (for the completed event and the metrics) but not
	// recorded.
	Ledger Ledger
}

// Ledger is the daily spend ledger (spend.Ledger).
type Ledger interface {
	// Check returns an error wrapping *spend.BudgetError once key has
	// spent its daily budget; another error when the ledger cannot be
	// read.
	Check(key string) error
	// Record adds a call's tokens and cost.
	Record(ctx context.Context, key, user, model string, u messages.Usage, usd float64) error
}

// cost is the price of resp's usage (the resolved model first, then the
// requested one).
func (h *Handler) cost(model string, resp provider.Response) float64 {
	if h.spend == nil {
		return 0
	}
	if model == "" {
		model = h.cfg.DefaultModel
	}
	usd, _ := h.spend.Prices.Cost(resp.Usage, resp.Model, model)
	return usd
}

// checkBudget refuses a model call once the turn's API key spent its
// daily budget: the turn fails with 429 budget_exceeded until midnight
// UTC. An unreadable ledger is an error (retried): never a call unchecked.
func (h *Handler) checkBudget(g *messages.Generation) (*stepFailure, error) {
	if h.spend == nil || h.spend.Ledger == nil {
		return nil, nil
	}
	err := h.spend.Ledger.Check(g.KeyID)
	var be *spend.BudgetError
	if errors.As(err, &be) {
		h.metrics.LimitRejected(Stage, obs.LimitBudget, "key")
		return &stepFailure{Code: messages.CodeBudgetExceeded, Status: http.StatusTooManyRequests, Reason: be.Error(), RetryAfterMS: be.RetryAfter.Milliseconds()}, nil
	}
	return nil, err
}

// account records a model call that was made: tokens and cost in the
// metrics (by model and bounded user) and in the ledger. A ledger that
// cannot be written is logged: the call is made and paid for.
func (h *Handler) account(ctx context.Context, g *messages.Generation, model string, resp provider.Response) {
	usd := h.cost(model, resp)
	h.metrics.Usage(model, g.User, resp.Usage.PromptTokens, resp.Usage.CompletionTokens, usd)
	if h.spend == nil || h.spend.Ledger == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.spend.Ledger.Record(ctx, g.KeyID, g.User, model, resp.Usage, usd); err != nil {
		h.log.Warn("spend not recorded", "request_id", g.RequestID, "err", err)
	}
}

// annotate puts the GenAI attributes of the step on the stage's span.
func annotate(ctx context.Context, model string, res *stepResult) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.request.model", model)}
	if f := res.Failure; f != nil {
		attrs = append(attrs, attribute.String("error.type", f.Code))
	} else {
		r := res.Response
		attrs = append(attrs,
			attribute.String("gen_ai.provider.name", r.Provider),
			attribute.String("gen_ai.response.model", r.Model),
			attribute.Int("gen_ai.usage.input_tokens", r.Usage.PromptTokens),
			attribute.Int("gen_ai.usage.output_tokens", r.Usage.CompletionTokens),
			attribute.StringSlice("gen_ai.response.finish_reasons", []string{provider.NormalizeFinishReason(r.FinishReason, len(r.Message.ToolCalls) > 0)}),
		)
	}
	span.SetAttributes(attrs...)
}
