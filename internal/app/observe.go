package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/agentbus/agentbus/internal/obs"
	"github.com/agentbus/agentbus/internal/spend"
	"github.com/agentbus/agentbus/internal/stage/llm"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
)

// ObserveOptions configure metrics, tracing, the access log and spend.
type ObserveOptions struct {
	// Metrics collects Prometheus metrics even when nothing serves them
	// (a benchmark). Default false: metrics are on when the process runs
	// ingest (GET /metrics on the HTTP listener) or MetricsListen is set.
	Metrics bool
	// MetricsListen is an extra listen address serving GET /metrics (the
	// stage binaries' --metrics-listen). Default "": none.
	MetricsListen string
	// Labels bounds the metrics' user, model and tool labels. Default
	// obs.DefaultConfig() (the first 20 users, 50 models, 50 tools).
	Labels obs.Config
	// Tracer, when set, is the tracer provider (tests). Default nil: the
	// OTEL_* environment decides (obs.TracingFromEnv; off when it names
	// no exporter).
	Tracer trace.TracerProvider
	// TraceContent puts prompts and answers on the model call spans
	// (gen_ai.input.messages, gen_ai.output.messages). Default false.
	TraceContent bool
	// PricesFile is the price table (JSON, see internal/spend); empty: no
	// cost. Default "".
	PricesFile string
	// BudgetUSD is each API key's daily spend limit in US dollars (needs
	// PricesFile); 0: none. Default 0.
	BudgetUSD float64
}

// DefaultObserveOptions returns the documented defaults.
func DefaultObserveOptions() ObserveOptions { return ObserveOptions{Labels: obs.DefaultConfig()} }

// Validate reports every problem of the options.
func (o ObserveOptions) Validate() error {
	var errs []error
	errs = append(errs, o.Labels.Validate())
	if o.BudgetUSD < 0 {
		errs = append(errs, errors.New("budget_usd must not be negative"))
	}
	if o.BudgetUSD > 0 && o.PricesFile == "" {
		errs = append(errs, errors.New("a daily budget (--budget-usd) needs a price table (--prices)"))
	}
	return errors.Join(errs...)
}

// SpendTTL is how long the spend ledger keeps a day's entries.
const SpendTTL = 400 * 24 * time.Hour

// observability is a process's metrics, tracer and spend, shared by its
// stages.
type observability struct {
	metrics *obs.Metrics
	tracer  trace.TracerProvider
	prices  *spend.Prices
}

// setupObserve builds the process's observability before the runtime
// starts (the runtime registers its metrics and traces with them). The
// returned function flushes the tracer.
func (o *Options) setupObserve(ctx context.Context) (*observability, func(), error) {
	ob := &observability{}
	done := func() {}
	if o.Observe.Metrics || o.has(StageIngest) || o.Observe.MetricsListen != "" {
		m, err := obs.New(o.Observe.Labels)
		if err != nil {
			return nil, done, err
		}
		ob.metrics = m
		o.Pipeline.Metrics = m.Registry
	}
	ob.tracer = o.Observe.Tracer
	if ob.tracer == nil {
		tp, shutdown, err := obs.TracingFromEnv(ctx, o.Getenv, o.Pipeline.Name, o.Pipeline.Version)
		if err != nil {
			return nil, done, err
		}
		if tp != nil {
			ob.tracer = tp
			done = func() {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = shutdown(sctx)
			}
		}
	}
	o.Pipeline.Tracer = ob.tracer
	if o.Observe.PricesFile != "" {
		p, err := spend.LoadPrices(o.Observe.PricesFile)
		if err != nil {
			return nil, done, err
		}
		ob.prices = p
	}
	return ob, done, nil
}

// serveMetrics serves GET /metrics on MetricsListen.
func (ob *observability) serveMetrics(addr string, sys *System) error {
	if addr == "" || ob.metrics == nil {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", ob.handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	sys.MetricsAddr = ln.Addr().String()
	go func() { _ = hs.Serve(ln) }()
	sys.closers = append(sys.closers, func() { _ = hs.Close() })
	sys.log.Info("metrics listening", "addr", sys.MetricsAddr)
	return nil
}

func (ob *observability) handler() http.Handler {
	if ob.metrics == nil {
		return nil
	}
	return promhttp.HandlerFor(ob.metrics.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// tracerFor is the tracer of agentbus's own spans, or nil.
func (ob *observability) tracerFor(name string) trace.Tracer {
	if ob.tracer == nil {
		return nil
	}
	return ob.tracer.Tracer(name)
}

// llmSpend is the llm stage's price table and ledger (nil without a
// price table).
func (p *Parts) llmSpend(js jetstream.JetStream) (*llm.Spend, error) {
	if p.ob.prices == nil {
		return nil, nil
	}
	kv, err := kvBucket(js, spend.Bucket, "agentbus spend per day, API key, user and model", SpendTTL, p.o.Pipeline.Streams.Replicas)
	if err != nil {
		return nil, err
	}
	return &llm.Spend{Prices: p.ob.prices, Ledger: &spend.Ledger{KV: kv, Budget: p.o.Observe.BudgetUSD}}, nil
}
