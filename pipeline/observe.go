package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Observability of the runtime: every handled message is counted and
// timed per stage and event (Prometheus, when Config.Metrics is set; the
// micro STATS always), and traced (one span per stage step, when
// Config.Tracer is set) with its W3C trace context carried from event to
// event in the traceparent and tracestate headers. Handles are resolved
// once per stage and event, so the hot path only adds and observes.

// Trace context headers (W3C Trace Context). Events carry them like the
// correlation id: a client's own traceparent on a turn it publishes is
// the parent of the whole turn's trace.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// TraceContext is the W3C Trace Context propagator every hop uses.
var TraceContext propagation.TextMapPropagator = propagation.TraceContext{}

// MetadataCarrier lets a propagator read and write a Watermill message's
// metadata (a consumed event's headers, an event's headers to publish).
type MetadataCarrier message.Metadata

// Get returns the value of key.
func (c MetadataCarrier) Get(key string) string { return c[key] }

// Set sets key.
func (c MetadataCarrier) Set(key, value string) { c[key] = value }

// Keys lists the keys.
func (c MetadataCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// HeaderCarrier lets a propagator read and write NATS headers (case
// sensitive: the keys are lowercase as W3C writes them).
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set sets key.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the keys.
func (c HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// InjectTrace writes ctx's span context into h (nothing without one).
func InjectTrace(ctx context.Context, h nats.Header) {
	TraceContext.Inject(ctx, HeaderCarrier(h))
}

// ExtractTrace returns ctx with the remote span context h carries, if any.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return TraceContext.Extract(ctx, HeaderCarrier(h))
}

// stageMetrics are the runtime's Prometheus metric families.
type stageMetrics struct {
	handled, failed, dead, retried *prometheus.CounterVec
	duration                       *prometheus.HistogramVec
	inflight                       *prometheus.GaugeVec
}

// DurationBuckets are the buckets of the handler duration histograms
// (seconds): from a fast guard step to a long model call.
var DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

func newStageMetrics(reg prometheus.Registerer, r *Runtime) (*stageMetrics, error) {
	labels := []string{"stage", "event"}
	m := &stageMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_stage_handled_total",
			Help: "Messages a stage handled successfully (acked), by stage and consumed event."}, labels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_stage_failed_total",
			Help: "Deliveries whose handler failed after its in-process retries (NAKed for redelivery)."}, labels),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_stage_dead_lettered_total",
			Help: "Messages moved to the dead-letter stream."}, labels),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_stage_retries_total",
			Help: "In-process handler retries (attempts beyond the first of a delivery)."}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentbus_stage_handler_duration_seconds",
			Help: "Time a stage spent on one delivery (handler, retries and publishing).", Buckets: DurationBuckets}, labels),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agentbus_stage_in_flight",
			Help: "Deliveries a stage instance is handling now."}, labels),
	}
	for _, c := range []prometheus.Collector{m.handled, m.failed, m.dead, m.retried, m.duration, m.inflight, consumerCollector{r}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// eventObs observes one stage's handling of one event: counters for the
// micro STATS (always) and resolved Prometheus handles (nil when off).
type eventObs struct {
	stage, event, subject string

	requests, errors atomic.Int64
	nanos            atomic.Int64
	lastErr          atomic.Pointer[string]

	handled, failed, dead, retried prometheus.Counter
	duration                       prometheus.Observer
	inflight                       prometheus.Gauge
	tracer                         trace.Tracer
	spanName                       string
	attrs                          []attribute.KeyValue
}

func (r *Runtime) newEventObs(stage, event string) *eventObs {
	o := &eventObs{stage: stage, event: event, subject: messages.EventFilter(event), spanName: stage + " " + event}
	if m := r.metrics; m != nil {
		o.handled = m.handled.WithLabelValues(stage, event)
		o.failed = m.failed.WithLabelValues(stage, event)
		o.dead = m.dead.WithLabelValues(stage, event)
		o.retried = m.retried.WithLabelValues(stage, event)
		o.duration = m.duration.WithLabelValues(stage, event)
		o.inflight = m.inflight.WithLabelValues(stage, event)
	}
	if r.cfg.Tracer != nil {
		o.tracer = r.cfg.Tracer.Tracer("github.com/agentbus/agentbus/pipeline")
		o.attrs = []attribute.KeyValue{
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.consumer.group.name", DurableName(stage, event)),
			attribute.String("agentbus.stage", stage),
			attribute.String("agentbus.event", event),
		}
	}
	return o
}

func (o *eventObs) onHandled() {
	if o != nil && o.handled != nil {
		o.handled.Inc()
	}
}

func (o *eventObs) onFailed(err error) {
	if o == nil {
		return
	}
	o.errors.Add(1)
	s := Redact(err.Error())
	o.lastErr.Store(&s)
	if o.failed != nil {
		o.failed.Inc()
	}
}

func (o *eventObs) onDeadLettered(reason string) {
	if o == nil {
		return
	}
	o.errors.Add(1)
	s := Redact(reason)
	o.lastErr.Store(&s)
	if o.dead != nil {
		o.dead.Inc()
	}
}

func (o *eventObs) onRetries(n int32) {
	if o != nil && n > 0 && o.retried != nil {
		o.retried.Add(float64(n))
	}
}

// observe wraps a stage's whole handling of one delivery: in flight,
// duration, and the step's span (a child of the span context the message
// carries, set on the message's context for the handler and publishing).
func (o *eventObs) observe(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if o.inflight != nil {
			o.inflight.Inc()
		}
		var span trace.Span
		if o.tracer != nil {
			ctx := TraceContext.Extract(msg.Context(), MetadataCarrier(msg.Metadata))
			ctx, span = o.tracer.Start(ctx, o.spanName, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(o.attrs...))
			if span.IsRecording() {
				span.SetAttributes(
					attribute.String("messaging.destination.name", msg.Metadata.Get(MetaSubject)),
					attribute.String("messaging.message.id", msg.UUID),
					attribute.String("agentbus.request_id", msg.Metadata.Get(messages.HeaderCorrelationID)),
					attribute.Int("agentbus.delivery", int(Delivered(msg))),
				)
			}
			msg.SetContext(ctx)
		}
		start := time.Now()
		out, err := h(msg)
		d := time.Since(start)
		o.requests.Add(1)
		o.nanos.Add(int64(d))
		if o.duration != nil {
			o.duration.Observe(d.Seconds())
		}
		if o.inflight != nil {
			o.inflight.Dec()
		}
		if span != nil {
			switch {
			case err == nil:
			case errors.Is(err, errDraining) || errors.Is(err, ErrStepBusy):
				span.SetAttributes(attribute.String("agentbus.outcome", "handed_back"))
			default:
				span.RecordError(err)
				span.SetStatus(codes.Error, Redact(err.Error()))
			}
			span.End()
		}
		return out, err
	}
}

// propagateTrace gives an event to publish the trace context of the step
// that produced it: the step's span when tracing is on, else the consumed
// message's own traceparent passed through unchanged (a process without
// tracing does not break a trace).
func propagateTrace(consumed, out *message.Message) {
	if out.Metadata.Get(HeaderTraceparent) != "" {
		return
	}
	if sc := trace.SpanContextFromContext(consumed.Context()); sc.IsValid() {
		TraceContext.Inject(consumed.Context(), MetadataCarrier(out.Metadata))
		return
	}
	if tp := consumed.Metadata.Get(HeaderTraceparent); tp != "" {
		out.Metadata.Set(HeaderTraceparent, tp)
		if ts := consumed.Metadata.Get(HeaderTracestate); ts != "" {
			out.Metadata.Set(HeaderTracestate, ts)
		}
	}
}

// consumerCollector reports each consumer's backlog from JetStream at
// scrape time: messages not yet delivered (pending) and delivered but not
// yet acknowledged (ack pending), for all replicas together.
type consumerCollector struct{ r *Runtime }

var (
	pendingDesc = prometheus.NewDesc("agentbus_consumer_pending_messages",
		"Messages of a stage's durable consumer not yet delivered (JetStream num_pending).", []string{"stage", "event"}, nil)
	ackPendingDesc = prometheus.NewDesc("agentbus_consumer_ack_pending_messages",
		"Messages delivered to a stage's durable consumer and not yet acknowledged (JetStream num_ack_pending).", []string{"stage", "event"}, nil)
)

func (c consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- ackPendingDesc
}

func (c consumerCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.mu.Lock()
	consumers := append([]*consumer(nil), c.r.consumers...)
	c.r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, cons := range consumers {
		if cons.obs == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := cons.cons.Info(ctx)
			if err != nil {
				return // absent from this scrape: the consumer is unreachable
			}
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(info.NumPending), cons.obs.stage, cons.obs.event)
			ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, float64(info.NumAckPending), cons.obs.stage, cons.obs.event)
		}()
	}
	wg.Wait()
}

// endpointStats is what the micro STATS show for one consumed event.
type endpointStats struct {
	Name, Subject, Queue string
	Requests, Errors     int64
	Processing           time.Duration
	LastError            string
}

func (o *eventObs) stats() endpointStats {
	s := endpointStats{Name: o.event, Subject: o.subject, Queue: DurableName(o.stage, o.event),
		Requests: o.requests.Load(), Errors: o.errors.Load(), Processing: time.Duration(o.nanos.Load())}
	if p := o.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}
