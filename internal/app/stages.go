package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/agentbus/agentbus/internal/apikey"
	apikv "github.com/agentbus/agentbus/internal/apikey/kvstore"
	"github.com/agentbus/agentbus/internal/cache"
	"github.com/agentbus/agentbus/internal/cache/kvstore"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/internal/obs"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/internal/stage/guard"
	"github.com/agentbus/agentbus/internal/stage/ingest"
	"github.com/agentbus/agentbus/internal/stage/llm"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/internal/stage/toolexec"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StageSpec is one row of the stage table: a stage's contract (its name,
// its consumers and what it may publish, from messages.Routes; its NATS
// identity's permissions derive from it) and the function that builds it
// from the process's shared parts. Build wires the stage package's
// Config and Deps, calls its New and returns its declarative
// pipeline.Stage; Start adds it to the runtime.
type StageSpec struct {
	Contract pipeline.Contract
	Build    func(ctx context.Context, p *Parts) (pipeline.Stage, error)
}

// StageTable lists the stages agentbus runs, in pipeline order. A new
// stage is a package (Config, Deps, New, Contract, Stage) and one row
// here.
var StageTable = []StageSpec{
	{Contract: ingest.Contract, Build: buildIngest},
	{Contract: guard.Contract, Build: buildGuard},
	{Contract: llm.Contract, Build: buildLLM},
	{Contract: toolexec.Contract, Build: buildToolexec},
	{Contract: persist.Contract, Build: buildPersist},
}

func stageNames(table []StageSpec) []string {
	out := make([]string, len(table))
	for i, r := range table {
		out[i] = r.Contract.Stage
	}
	return out
}

// validateTable reports every problem of a stage table: a bad contract, a
// row without a builder, a name used twice or taken by another role.
func validateTable(table []StageSpec) error {
	var errs []error
	seen := map[string]bool{}
	for _, r := range table {
		name := r.Contract.Stage
		if err := r.Contract.Validate(); err != nil {
			errs = append(errs, err)
		}
		if r.Build == nil {
			errs = append(errs, fmt.Errorf("stage %s: no builder", name))
		}
		if seen[name] || name == RoleTool || name == RoleClient || name == RoleOperator {
			errs = append(errs, fmt.Errorf("stage %s: name used twice", name))
		}
		seen[name] = true
	}
	return errors.Join(errs...)
}

func (o *Options) table() []StageSpec {
	if o.Table == nil {
		return StageTable
	}
	return o.Table
}

// Parts is what Start builds once and the stage builders share: the
// options, the runtime (and each stage's connection under its own
// identity), the logger, observability, the sanitizer and the tools.
type Parts struct {
	o     *Options
	table []StageSpec
	rt    *pipeline.Runtime
	sys   *System
	log   *slog.Logger
	san   *sanitize.Sanitizer
	tools *toolset
	llmH  *llm.Handler
	tool  *toolexec.Handler
	ob    *observability
	// started run once every stage was added (ingest's HTTP listener).
	started []func() error
	// toolsMu serialises rebuilds after a tool change; toolsReady is set
	// once the stages exist (changes before it are picked up then).
	toolsMu    sync.Mutex
	toolsReady atomic.Bool
}

// Options are the process's options.
func (p *Parts) Options() Options { return *p.o }

// Runtime is the process's runtime.
func (p *Parts) Runtime() *pipeline.Runtime { return p.rt }

// Log is the logger of stage.
func (p *Parts) Log(stage string) *slog.Logger { return p.log.With("stage", stage) }

// Conn is the NATS connection of stage, under the stage's own identity.
func (p *Parts) Conn(stage string) (*nats.Conn, error) { return p.rt.StageConn(stage) }

// Metrics are the process's metrics; nil (whose methods do nothing)
// without.
func (p *Parts) Metrics() *obs.Metrics { return p.ob.metrics }

// OnClose runs f when the system closes, after the stages stopped (the
// last registered first).
func (p *Parts) OnClose(f func()) { p.sys.closers = append(p.sys.closers, f) }

// conn returns a stage's connection and its JetStream API.
func (p *Parts) conn(stage string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := p.rt.StageConn(stage)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	return nc, js, err
}

// limits is the shared rate limiter with the API keys' own limits, on a
// stage's connection (guard spends it, ingest only reads it).
func (p *Parts) limits(js jetstream.JetStream) (*limiterAdapter, error) {
	limiter, err := p.o.limiter(js, p.o.Pipeline.Streams.Replicas)
	if err != nil {
		return nil, err
	}
	kv, err := kvBucket(js, KeysBucket, "agentbus API keys (hashes only)", 0, p.o.Pipeline.Streams.Replicas)
	if err != nil {
		return nil, err
	}
	return &limiterAdapter{l: limiter, keys: apikv.New(kv)}, nil
}

func buildGuard(_ context.Context, p *Parts) (pipeline.Stage, error) {
	_, js, err := p.conn(StageGuard)
	if err != nil {
		return pipeline.Stage{}, err
	}
	limits, err := p.limits(js)
	if err != nil {
		return pipeline.Stage{}, err
	}
	h, err := guard.New(guard.Config{Reconcile: hasTokenLimits(p.o.Limits) || p.o.Auth},
		guard.Deps{Sanitizer: sanitizerAdapter{p.san}, Limiter: limits, Metrics: p.ob.metrics, Log: p.Log(StageGuard)})
	if err != nil {
		return pipeline.Stage{}, err
	}
	return h.Stage(), nil
}

func buildLLM(_ context.Context, p *Parts) (pipeline.Stage, error) {
	nc, js, err := p.conn(StageLLM)
	if err != nil {
		return pipeline.Stage{}, err
	}
	fo, err := p.o.providers()
	if err != nil {
		return pipeline.Stage{}, err
	}
	q, err := p.o.quota(js, p.o.Pipeline.Streams.Replicas)
	if err != nil {
		return pipeline.Stage{}, err
	}
	var rc llm.Cache
	if p.o.Cache.TTL > 0 {
		cc := p.o.Cache
		cc.Replicas = p.o.Pipeline.Streams.Replicas
		st, err := kvstore.Open(js, cc, p.Log(StageLLM))
		if err != nil {
			return pipeline.Stage{}, err
		}
		rc = cache.New(st, cache.Config{Shared: p.o.CacheShared}, p.Log(StageLLM))
	}
	p.ob.metrics.InstrumentProviders(fo, p.ob.tracerFor("github.com/agentbus/agentbus/provider"), p.o.Observe.TraceContent)
	sp, err := p.llmSpend(js)
	if err != nil {
		return pipeline.Stage{}, err
	}
	cfg := p.o.LLM
	// Model calls take long: the handler may use the provider chain's
	// whole budget (timeouts x attempts x providers).
	cfg.HandlerTimeout = p.o.LLMTimeout
	steps, err := pipeline.NewStepCache(js, llm.ResultsBucket, cfg.WithDefaults().ResultTTL, p.o.Pipeline.Streams.Replicas)
	if err != nil {
		return pipeline.Stage{}, err
	}
	p.llmH, err = llm.New(cfg, llm.Deps{
		Provider:       fo,
		Steps:          pipeline.StepsOf(steps),
		Tools:          p.tools.specs(),
		History:        conversations{&persist.Client{NC: nc}},
		Quota:          q,
		Cache:          rc,
		Deltas:         nc,
		Cancels:        pipeline.CoreNATS(nc),
		ProviderHealth: providerHealth(fo),
		Spend:          sp,
		Metrics:        p.ob.metrics,
		Log:            p.Log(StageLLM),
	})
	if err != nil {
		return pipeline.Stage{}, err
	}
	return p.llmH.Stage(), nil
}

func buildToolexec(_ context.Context, p *Parts) (pipeline.Stage, error) {
	_, js, err := p.conn(StageToolexec)
	if err != nil {
		return pipeline.Stage{}, err
	}
	fw, err := firewall.New(p.firewallConfig(), p.tools.schemas())
	if err != nil {
		return pipeline.Stage{}, err
	}
	cfg := p.o.Toolexec
	steps, err := pipeline.NewStepCache(js, toolexec.ResultsBucket, cfg.WithDefaults().ResultTTL, p.o.Pipeline.Streams.Replicas)
	if err != nil {
		return pipeline.Stage{}, err
	}
	p.tool, err = toolexec.New(cfg, toolexec.Deps{
		Firewall: toolexec.FirewallOf(fw),
		Executor: p.tools,
		Steps:    pipeline.StepsOf(steps),
		Scanner:  resultScanner{p.san},
		Health:   p.tools.mcpHealth,
		Catalog:  p.tools.mcpCatalog,
		Metrics:  p.ob.metrics,
		Log:      p.Log(StageToolexec),
	})
	if err != nil {
		return pipeline.Stage{}, err
	}
	return p.tool.Stage(), nil
}

func buildPersist(ctx context.Context, p *Parts) (pipeline.Stage, error) {
	nc, _, err := p.conn(StagePersist)
	if err != nil {
		return pipeline.Stage{}, err
	}
	store, err := p.o.openStore(ctx)
	if err != nil {
		return pipeline.Stage{}, err
	}
	var committed memory.Store = store
	if p.ob.metrics != nil {
		committed = obs.Store{Store: store, Metrics: p.ob.metrics}
	}
	gc := memory.NewGroupCommitter(committed, 256)
	p.OnClose(func() { _ = gc.Close(); _ = store.Close() })
	outcomes, err := p.rt.Terminals(StagePersist)
	if err != nil {
		return pipeline.Stage{}, err
	}
	h, err := persist.New(p.o.Persist, persist.Deps{Store: store, Appender: gc, Completed: pipeline.CoreNATS(nc), Outcomes: outcomes, Log: p.Log(StagePersist)})
	if err != nil {
		return pipeline.Stage{}, err
	}
	p.OnClose(h.Close)
	return h.Stage(), nil
}

func buildIngest(_ context.Context, p *Parts) (pipeline.Stage, error) {
	nc, js, err := p.conn(StageIngest)
	if err != nil {
		return pipeline.Stage{}, err
	}
	var auth ingest.Authenticator
	if p.o.Auth {
		kv, err := kvBucket(js, KeysBucket, "agentbus API keys (hashes only)", 0, p.o.Pipeline.Streams.Replicas)
		if err != nil {
			return pipeline.Stage{}, err
		}
		v, err := apikey.NewVerifier(apikv.New(kv), apikey.VerifierConfig{})
		if err != nil {
			return pipeline.Stage{}, err
		}
		auth = keyAuth{v}
	}
	icfg := p.o.Ingest
	icfg.Addr = p.o.HTTPAddr
	if icfg.Stages == nil {
		// /health expects every other stage of the table.
		icfg.Stages = slices.DeleteFunc(stageNames(p.table), func(s string) bool { return s == StageIngest })
	}
	limits, err := p.limits(js)
	if err != nil {
		return pipeline.Stage{}, err
	}
	outcomes, err := p.rt.Terminals(StageIngest)
	if err != nil {
		return pipeline.Stage{}, err
	}
	idem, err := kvBucket(js, ingest.IdempotencyBucket, "agentbus Idempotency-Keys (user+key hash -> request)", pipeline.TerminalTTL, p.o.Pipeline.Streams.Replicas)
	if err != nil {
		return pipeline.Stage{}, err
	}
	h, err := ingest.New(icfg, ingest.Deps{NC: nc, JS: js, Auth: auth, Conversations: conversations{&persist.Client{NC: nc}}, Limits: limits,
		Outcomes: outcomes, Idempotency: idem,
		Observe: ingest.Observe{Metrics: p.ob.metrics, MetricsHandler: p.ob.handler(), Tracer: p.ob.tracer},
		Log:     p.Log(StageIngest)})
	if err != nil {
		return pipeline.Stage{}, err
	}
	// The HTTP entry opens once every stage of the process was added.
	p.started = append(p.started, func() error {
		ln, err := net.Listen("tcp", p.o.HTTPAddr)
		if err != nil {
			return fmt.Errorf("ingest listen %s: %w", p.o.HTTPAddr, err)
		}
		p.sys.HTTPAddr = ln.Addr().String()
		hs, errc := h.Serve(ln)
		p.sys.httpSrv = hs
		go func() {
			if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("http server", "err", err)
			}
		}()
		p.log.Info("ingest listening", "addr", p.sys.HTTPAddr, "auth", p.o.Auth)
		return nil
	})
	return h.Stage(), nil
}
