package pipeline

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// BenchmarkObserve is what observation adds to one delivery: off (micro
// STATS counters only), metrics, metrics and tracing (span recorded and
// batch-exported to nowhere, trace context injected into the event the
// step publishes).
func BenchmarkObserve(b *testing.B) {
	for _, mode := range []string{"off", "metrics", "metrics+tracing"} {
		b.Run(mode, func(b *testing.B) {
			r := &Runtime{}
			if mode != "off" {
				m, err := newStageMetrics(prometheus.NewRegistry(), r)
				if err != nil {
					b.Fatal(err)
				}
				r.metrics = m
			}
			if mode == "metrics+tracing" {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}))
				defer func() { _ = tp.Shutdown(context.Background()) }()
				r.cfg.Tracer = tp
			}
			o := r.newEventObs("llm", messages.EventAdmitted)
			out := message.NewMessage("out", nil)
			h := o.observe(func(msg *message.Message) ([]*message.Message, error) {
				out.Metadata = message.Metadata{}
				propagateTrace(msg, out)
				o.onHandled()
				return nil, nil
			})
			msg := message.NewMessage("req_1/admitted/0", []byte(`{}`))
			msg.Metadata.Set(MetaSubject, "agentbus.turn.admitted.req_1")
			msg.Metadata.Set(messages.HeaderCorrelationID, "req_1")
			msg.Metadata.Set(HeaderTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				msg.SetContext(ctx)
				if _, err := h(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
