package obs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/agentbus/agentbus/internal/breaker"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/messages"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Provider wraps one provider of a failover chain: each call attempt is
// counted by outcome, timed (latency, time to first token when streamed),
// its tokens recorded as gen_ai.client.token.usage and its duration as
// gen_ai.client.operation.duration, and traced as a client span
// "chat <model>" with the GenAI attributes (the prompt and the answer
// only when TraceContent).
type Provider struct {
	Inner        provider.Provider
	Metrics      *Metrics
	Tracer       trace.Tracer
	TraceContent bool

	once                   sync.Once
	ok, rateLimited        prometheus.Counter
	timeout, unavailable   prometheus.Counter
	badRequest, other, cxl prometheus.Counter
	latency, ttft          prometheus.Observer
}

// Name is the inner provider's.
func (p *Provider) Name() string { return p.Inner.Name() }

// Outcomes of agentbus_provider_calls_total.
const (
	OutcomeOK          = "ok"
	OutcomeRateLimited = "rate_limited"
	OutcomeTimeout     = "timeout"
	OutcomeUnavailable = "unavailable"
	OutcomeBadRequest  = "bad_request"
	OutcomeError       = "error"
	OutcomeCanceled    = "canceled"
)

func (p *Provider) handles() {
	if p.Metrics == nil {
		return
	}
	name := p.Inner.Name()
	c := p.Metrics.providerCalls
	p.ok, p.rateLimited = c.WithLabelValues(name, OutcomeOK), c.WithLabelValues(name, OutcomeRateLimited)
	p.timeout, p.unavailable = c.WithLabelValues(name, OutcomeTimeout), c.WithLabelValues(name, OutcomeUnavailable)
	p.badRequest, p.other, p.cxl = c.WithLabelValues(name, OutcomeBadRequest), c.WithLabelValues(name, OutcomeError), c.WithLabelValues(name, OutcomeCanceled)
	p.latency = p.Metrics.providerLatency.WithLabelValues(name)
	p.ttft = p.Metrics.providerTTFT.WithLabelValues(name)
}

// Outcome classifies a call's error for agentbus_provider_calls_total.
func Outcome(ctx context.Context, err error) string {
	if err == nil {
		return OutcomeOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return OutcomeCanceled
	}
	status, code := provider.Classify(err)
	switch {
	case code == messages.CodeRateLimited:
		return OutcomeRateLimited
	case code == messages.CodeTimeout || errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	case code == messages.CodeProviderUnavailable:
		return OutcomeUnavailable
	case status >= 400 && status < 500:
		return OutcomeBadRequest
	}
	return OutcomeError
}

// Complete calls the inner provider and observes the call.
func (p *Provider) Complete(ctx context.Context, req provider.Request, onDelta func(string)) (provider.Response, error) {
	p.once.Do(p.handles)
	name := p.Inner.Name()
	var span trace.Span
	if p.Tracer != nil {
		ctx, span = p.Tracer.Start(ctx, "chat "+req.Model, trace.WithSpanKind(trace.SpanKindClient))
		if span.IsRecording() {
			span.SetAttributes(
				attribute.String("gen_ai.operation.name", "chat"),
				attribute.String("gen_ai.provider.name", name),
				attribute.String("gen_ai.request.model", req.Model),
			)
			if p.TraceContent {
				span.SetAttributes(attribute.String("gen_ai.input.messages", contentJSON(req.Messages)))
			}
		}
	}
	start := time.Now()
	fn := onDelta
	if onDelta != nil {
		first := true
		fn = func(d string) {
			if first {
				first = false
				ttft := time.Since(start)
				if p.ttft != nil {
					p.ttft.Observe(ttft.Seconds())
				}
				if span != nil {
					span.AddEvent("gen_ai.first_token", trace.WithAttributes(attribute.Float64("gen_ai.server.time_to_first_token", ttft.Seconds())))
				}
			}
			onDelta(d)
		}
	}
	resp, err := p.Inner.Complete(ctx, req, fn)
	d := time.Since(start)
	outcome := Outcome(ctx, err)
	if p.Metrics != nil {
		p.latency.Observe(d.Seconds())
		switch outcome {
		case OutcomeOK:
			p.ok.Inc()
		case OutcomeRateLimited:
			p.rateLimited.Inc()
		case OutcomeTimeout:
			p.timeout.Inc()
		case OutcomeUnavailable:
			p.unavailable.Inc()
		case OutcomeBadRequest:
			p.badRequest.Inc()
		case OutcomeCanceled:
			p.cxl.Inc()
		default:
			p.other.Inc()
		}
		model := p.Metrics.models.Value(req.Model)
		errType := ""
		if err != nil {
			errType = outcome
		}
		p.Metrics.genaiDuration.WithLabelValues("chat", name, model, errType).Observe(d.Seconds())
		if err == nil {
			p.Metrics.genaiTokens.WithLabelValues("chat", name, model, "input").Observe(float64(resp.Usage.PromptTokens))
			p.Metrics.genaiTokens.WithLabelValues("chat", name, model, "output").Observe(float64(resp.Usage.CompletionTokens))
		}
	}
	if span != nil {
		if span.IsRecording() {
			if err != nil {
				span.SetAttributes(attribute.String("error.type", outcome))
				span.SetStatus(codes.Error, provider.ClientMessage(err))
			} else {
				span.SetAttributes(
					attribute.String("gen_ai.response.model", resp.Model),
					attribute.Int("gen_ai.usage.input_tokens", resp.Usage.PromptTokens),
					attribute.Int("gen_ai.usage.output_tokens", resp.Usage.CompletionTokens),
					attribute.StringSlice("gen_ai.response.finish_reasons", []string{provider.NormalizeFinishReason(resp.FinishReason, len(resp.Message.ToolCalls) > 0)}),
				)
				if p.TraceContent {
					span.SetAttributes(attribute.String("gen_ai.output.messages", contentJSON([]messages.Message{resp.Message})))
				}
			}
		}
		span.End()
	}
	return resp, err
}

// InstrumentProviders wraps every provider of f (before its first call).
func (m *Metrics) InstrumentProviders(f *provider.Failover, tracer trace.Tracer, traceContent bool) {
	if m == nil && tracer == nil {
		return
	}
	f.WrapProviders(func(p provider.Provider) provider.Provider {
		return &Provider{Inner: p, Metrics: m, Tracer: tracer, TraceContent: traceContent}
	})
	if m != nil {
		m.breakerCollector.add(f)
	}
}

// breakerCollector reports each provider's breaker state at scrape time.
type breakerCollector struct {
	mu   sync.Mutex
	sets []*provider.Failover
}

var breakerDesc = prometheus.NewDesc("agentbus_provider_breaker_state",
	"Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.", []string{"provider"}, nil)

func (b *breakerCollector) add(f *provider.Failover) {
	b.mu.Lock()
	b.sets = append(b.sets, f)
	b.mu.Unlock()
}

func (b *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerDesc }

func (b *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	sets := append([]*provider.Failover(nil), b.sets...)
	b.mu.Unlock()
	for _, f := range sets {
		for _, s := range f.Snapshot() {
			if s.Breaker == nil {
				continue
			}
			v := 0.0
			switch s.Breaker.State {
			case breaker.HalfOpen:
				v = 1
			case breaker.Open:
				v = 2
			}
			ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, v, s.Name)
		}
	}
}
