// Package app wires agentbus's stages from one Options value: it is what
// cmd/agentbus (all stages in one process) and cmd/<stage> (one stage per
// process) call after reading flags and environment. It holds no logic of
// its own beyond choosing and connecting the parts.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	apikv "github.com/agentbus/agentbus/internal/apikey/kvstore"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/quota"
	"github.com/agentbus/agentbus/internal/ratelimit"
	rlkv "github.com/agentbus/agentbus/internal/ratelimit/kvstore"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/agentbus/agentbus/stage/guard"
	"github.com/agentbus/agentbus/stage/ingest"
	"github.com/agentbus/agentbus/stage/llm"
	"github.com/agentbus/agentbus/stage/persist"
	"github.com/agentbus/agentbus/stage/toolexec"
	"github.com/nats-io/nats.go"
)

// Stage names.
const (
	StageIngest   = "ingest"
	StageGuard    = guard.Stage
	StageLLM      = llm.Stage
	StageToolexec = toolexec.Stage
	StagePersist  = persist.Stage
)

// AllStages lists every stage in pipeline order.
var AllStages = []string{StageIngest, StageGuard, StageLLM, StageToolexec, StagePersist}

// KV buckets shared by replicas.
const (
	KeysBucket      = "agentbus_apikeys"
	RateLimitBucket = "agentbus_ratelimit"
)

// Options configures a process. Every field's default is what `agentbus
// serve` uses; main fills them from flags and environment.
type Options struct {
	// Pipeline is the shared runtime configuration (NATS URL or embedded
	// server, streams, consumers).
	Pipeline pipeline.Config
	// DataDir holds the embedded server's store and the conversation
	// store. Default "./data".
	DataDir string
	// Stages to run in this process. Default AllStages.
	Stages []string
	// HTTPAddr is ingest's listen address. Default "127.0.0.1:8080".
	HTTPAddr string
	// Auth requires API keys on /v1/*. Default true.
	Auth bool
	// Store is the conversation store: "sqlite" (default) or "files".
	Store string
	// SQLite configures the SQLite store. An empty Synchronous follows the
	// durability switch Pipeline.Embedded.SyncAlways: FULL with it (every
	// commit fsynced, like the stream), NORMAL without (commits survive a
	// process crash, not a power loss, like JetStream's default). See
	// docs/decisions/0002-durability.md.
	SQLite memory.SQLiteConfig
	// ProvidersFile is a JSON provider configuration; empty means the
	// OPENAI_* environment, or the offline model when that is unset.
	ProvidersFile string
	// Getenv reads provider secrets (api_key_env). Default os.Getenv.
	Getenv func(string) string
	// Limits are the rate limits enforced by guard.
	Limits ratelimit.Config
	// Sanitizer configures the input sanitizer (guard and tool results).
	Sanitizer sanitize.Config
	// Firewall configures the tool firewall.
	Firewall firewall.Config
	// Tools configures the built-in tools.
	Tools ToolsConfig
	// LLM configures the llm stage.
	LLM llm.Config
	// LLMTimeout bounds one run of the llm handler (the provider chain's
	// timeouts, retries and failover together). Default 120s.
	LLMTimeout time.Duration
	// Quota sets daily request and token quotas per user and per model.
	// Default unlimited.
	Quota quota.Config
	// Persist configures the persist stage.
	Persist persist.Config
	// Ingest configures the HTTP entry (Addr is taken from HTTPAddr).
	Ingest ingest.Config
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	o := Options{
		Pipeline:   pipeline.DefaultConfig(),
		DataDir:    "data",
		Stages:     AllStages,
		HTTPAddr:   "127.0.0.1:8080",
		Auth:       true,
		Store:      "sqlite",
		Getenv:     os.Getenv,
		Limits:     DefaultLimits(),
		Firewall:   firewall.Config{},
		Tools:      DefaultToolsConfig(),
		LLM:        llm.DefaultConfig(),
		Persist:    persist.DefaultConfig(),
		Ingest:     ingest.DefaultConfig(),
		LLMTimeout: 120 * time.Second,
		Sanitizer:  sanitize.Config{},
	}
	// The llm stage calls providers with retries and failover: give its
	// handler more time than the pipeline default.
	return o
}

// DefaultLimits: 120 requests and 200,000 estimated tokens per user per
// minute; no global or endpoint limit.
func DefaultLimits() ratelimit.Config {
	return ratelimit.Config{User: ratelimit.TierLimits{Requests: ratelimit.PerMinute(120), Tokens: ratelimit.PerMinute(200_000)}}
}

// Validate reports every problem of the options.
func (o Options) Validate() error {
	var errs []error
	if len(o.Stages) == 0 {
		errs = append(errs, errors.New("no stage to run"))
	}
	for _, s := range o.Stages {
		if !slices.Contains(AllStages, s) {
			errs = append(errs, fmt.Errorf("unknown stage %q (want one of %v)", s, AllStages))
		}
	}
	if o.Store != "sqlite" && o.Store != "files" {
		errs = append(errs, fmt.Errorf("store %q: want sqlite or files", o.Store))
	}
	if o.LLMTimeout <= 0 {
		errs = append(errs, errors.New("llm timeout must be positive"))
	}
	if o.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	errs = append(errs, o.Quota.Validate(), o.LLM.Validate(), o.Persist.Validate(), o.Ingest.Validate(), o.Sanitizer.Validate(), o.Firewall.Validate())
	return errors.Join(errs...)
}

// System is a running process: the runtime, its stages and (with ingest)
// the HTTP server.
type System struct {
	Runtime *pipeline.Runtime
	// HTTPAddr is the address ingest listens on ("" without ingest).
	HTTPAddr string
	// Keys is the API key store (KV-backed).
	Keys apikey.Store

	log      *slog.Logger
	httpSrv  *http.Server
	closers  []func()
	runDone  chan struct{}
	cancel   context.CancelFunc
	stopOnce bool
}

func (o *Options) has(stage string) bool { return slices.Contains(o.Stages, stage) }

// Start builds and starts the process's stages. Stop it with Close.
func Start(ctx context.Context, o Options, log *slog.Logger) (*System, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Pipeline.NATSURL == "" && o.Pipeline.Embedded.StoreDir == "" {
		o.Pipeline.Embedded.StoreDir = filepath.Join(o.DataDir, "nats")
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	rt, err := pipeline.New(ctx, o.Pipeline, log)
	if err != nil {
		return nil, err
	}
	sys := &System{Runtime: rt, log: log, runDone: make(chan struct{})}
	fail := func(err error) (*System, error) {
		sys.closeParts()
		rt.Close()
		return nil, err
	}
	js := rt.JetStream()
	replicas := o.Pipeline.Streams.Replicas

	keysKV, err := kvBucket(js, KeysBucket, "agentbus API keys (hashes only)", 0, replicas)
	if err != nil {
		return fail(err)
	}
	sys.Keys = apikv.New(keysKV)

	var san *sanitize.Sanitizer
	if o.has(StageGuard) || o.has(StageToolexec) {
		if san, err = sanitize.New(o.Sanitizer); err != nil {
			return fail(err)
		}
	}
	var registry *toolset
	if o.has(StageLLM) || o.has(StageToolexec) {
		if registry, err = buildTools(o.Tools, rt.Conn(), log); err != nil {
			return fail(err)
		}
	}

	if o.has(StageGuard) {
		limiter, err := o.limiter(js, replicas)
		if err != nil {
			return fail(err)
		}
		h := &guard.Handler{Sanitizer: sanitizerAdapter{san}, Limiter: &limiterAdapter{l: limiter, keys: sys.Keys}, Reconcile: hasTokenLimits(o.Limits) || o.Auth,
			Log: log.With("stage", StageGuard)}
		if _, err := rt.AddStage(h.Stage()); err != nil {
			return fail(err)
		}
	}
	var llmH *llm.Handler
	var toolH *toolexec.Handler
	if o.has(StageLLM) {
		fo, err := o.providers()
		if err != nil {
			return fail(err)
		}
		q, err := o.quota(js, replicas)
		if err != nil {
			return fail(err)
		}
		llmH, err = llm.New(o.LLM, llm.Deps{
			Quota:          q,
			Provider:       fo,
			Tools:          registry.specs(),
			History:        &persist.Client{NC: rt.Conn()},
			ProviderHealth: providerHealth(fo),
			Replicas:       replicas,
		}, rt.Conn(), js, log.With("stage", StageLLM))
		if err != nil {
			return fail(err)
		}
		st := llmH.Stage()
		cc := o.Pipeline.Consumer
		// Model calls take long: the handler may use the provider chain's
		// whole budget (timeouts x attempts x providers).
		cc.HandlerTimeout = o.LLMTimeout
		cc.AckWait = max(cc.AckWait, cc.HandlerTimeout*time.Duration(cc.Retries+1)+2*time.Second)
		st.Consumer = &cc
		if _, err := rt.AddStage(st); err != nil {
			return fail(err)
		}
	}
	if o.has(StageToolexec) {
		fw, err := firewall.New(o.Firewall, registry.schemas())
		if err != nil {
			return fail(err)
		}
		toolH, err = toolexec.New(toolexec.DefaultConfig(), fw, registry, resultScanner{san}, js, replicas, log.With("stage", StageToolexec))
		if err != nil {
			return fail(err)
		}
		if _, err := rt.AddStage(toolH.Stage()); err != nil {
			return fail(err)
		}
	}
	if registry != nil {
		// A remote tool service started later is offered and allowed
		// without a restart.
		wctx, stop := context.WithCancel(context.Background())
		sys.closers = append(sys.closers, stop)
		go registry.watch(wctx, func() {
			if llmH != nil {
				llmH.SetTools(registry.specs())
			}
			if toolH != nil {
				fw, err := firewall.New(o.Firewall, registry.schemas())
				if err != nil {
					log.Error("firewall rebuild after tool discovery", "err", err)
					return
				}
				toolH.SetFirewall(fw)
			}
		})
	}
	if o.has(StagePersist) {
		store, err := o.openStore(ctx)
		if err != nil {
			return fail(err)
		}
		gc := memory.NewGroupCommitter(store, 256)
		sys.closers = append(sys.closers, func() { _ = gc.Close(); _ = store.Close() })
		h, err := persist.New(o.Persist, store, gc, rt.Conn(), log.With("stage", StagePersist))
		if err != nil {
			return fail(err)
		}
		sys.closers = append(sys.closers, h.Close)
		if _, err := rt.AddStage(h.Stage()); err != nil {
			return fail(err)
		}
	}
	if o.has(StageIngest) {
		var auth ingest.Authenticator
		if o.Auth {
			v, err := apikey.NewVerifier(sys.Keys, apikey.VerifierConfig{})
			if err != nil {
				return fail(err)
			}
			auth = keyAuth{v}
		}
		icfg := o.Ingest
		icfg.Addr = o.HTTPAddr
		icfg.Models = o.models()
		srv, err := ingest.New(icfg, rt.Conn(), js, auth, log.With("stage", StageIngest))
		if err != nil {
			return fail(err)
		}
		ln, err := net.Listen("tcp", o.HTTPAddr)
		if err != nil {
			return fail(fmt.Errorf("ingest listen %s: %w", o.HTTPAddr, err))
		}
		sys.HTTPAddr = ln.Addr().String()
		sys.httpSrv = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := sys.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
			}
		}()
		log.Info("ingest listening", "addr", sys.HTTPAddr, "auth", o.Auth)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	sys.cancel = cancel
	go func() {
		defer close(sys.runDone)
		if err := rt.Run(runCtx); err != nil {
			log.Error("router stopped", "err", err)
		}
	}()
	if len(o.Stages) > 1 || !o.has(StageIngest) {
		select {
		case <-rt.Running():
		case <-time.After(30 * time.Second):
			sys.Close()
			return nil, errors.New("stages did not start within 30s")
		}
	}
	return sys, nil
}

// Close stops the HTTP server (in-flight requests finish), drains the
// stages, then closes the stores and the connection.
func (s *System) Close() {
	if s.stopOnce {
		return
	}
	s.stopOnce = true
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
	}
	s.cancel()
	<-s.runDone
	s.closeParts()
}

func (s *System) closeParts() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// Run starts the process and blocks until ctx is done, then shuts down
// gracefully.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	sys, err := Start(ctx, o, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("signal received; shutting down")
	sys.Close()
	return nil
}

func kvBucket(js nats.JetStreamContext, name, desc string, ttl time.Duration, replicas int) (nats.KeyValue, error) {
	kv, err := js.KeyValue(name)
	if errors.Is(err, nats.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(&nats.KeyValueConfig{Bucket: name, Description: desc, TTL: ttl, History: 1, Replicas: max(replicas, 1)})
	}
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", name, err)
	}
	return kv, nil
}

func (o *Options) limiter(js nats.JetStreamContext, replicas int) (*ratelimit.Limiter, error) {
	// The bucket's TTL must outlive a bucket's refill time.
	probe, err := ratelimit.New(o.Limits, ratelimit.NewMemoryStore(16), nil)
	if err != nil {
		return nil, err
	}
	kv, err := kvBucket(js, RateLimitBucket, "agentbus rate-limit buckets (shared by guard replicas)", probe.StateTTL(), replicas)
	if err != nil {
		return nil, err
	}
	return ratelimit.New(o.Limits, rlkv.New(kv), nil)
}

// QuotaBucket holds the daily quota counters shared by llm replicas.
const QuotaBucket = "agentbus_quota"

// quota returns the shared daily quota, or nil when no quota is set.
func (o *Options) quota(js nats.JetStreamContext, replicas int) (llm.Quota, error) {
	c := o.Quota
	if c.PerUserRequests == 0 && c.PerUserTokens == 0 && c.PerModelRequests == 0 && c.PerModelTokens == 0 {
		return nil, nil
	}
	kv, err := kvBucket(js, QuotaBucket, "agentbus daily quotas (shared by llm replicas)", 48*time.Hour, replicas)
	if err != nil {
		return nil, err
	}
	return quota.NewShared(c, rlkv.New(kv), nil)
}

func (o *Options) providers() (*provider.Failover, error) {
	var fc provider.FileConfig
	var err error
	if o.ProvidersFile != "" {
		if fc, err = provider.LoadConfig(o.ProvidersFile); err != nil {
			return nil, err
		}
	} else {
		fc = provider.FromEnv(o.Getenv)
	}
	return provider.Build(fc, o.Getenv)
}

func (o *Options) models() []string {
	fo, err := o.providers()
	if err != nil {
		return []string{provider.OfflineName}
	}
	seen := map[string]bool{}
	var out []string
	for _, st := range fo.Snapshot() {
		ms := st.Models
		if len(ms) == 0 {
			ms = []string{st.Name}
		}
		for _, m := range ms {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

func (o *Options) openStore(ctx context.Context) (memory.Store, error) {
	if o.Store == "files" {
		return memory.OpenFiles(filepath.Join(o.DataDir, "conversations"))
	}
	cfg := o.SQLite
	if cfg.Synchronous == "" {
		cfg.Synchronous = memory.SyncNormal
		if o.Pipeline.Embedded.SyncAlways {
			cfg.Synchronous = memory.SyncFull
		}
	}
	return memory.OpenSQLite(ctx, filepath.Join(o.DataDir, "agentbus.db"), cfg)
}

// LimitsFrom builds rate limits from per-minute numbers (0 = unlimited).
func LimitsFrom(globalRPM, userRPM, userTPM int) ratelimit.Config {
	var c ratelimit.Config
	if globalRPM > 0 {
		c.Global.Requests = ratelimit.PerMinute(float64(globalRPM))
	}
	if userRPM > 0 {
		c.User.Requests = ratelimit.PerMinute(float64(userRPM))
	}
	if userTPM > 0 {
		c.User.Tokens = ratelimit.PerMinute(float64(userTPM))
	}
	return c
}

// hasTokenLimits reports whether any tier limits tokens (then completed
// turns are reconciled; API keys may carry their own TPM, hence also with
// auth on).
func hasTokenLimits(c ratelimit.Config) bool {
	if c.Global.Tokens.Enabled() || c.Endpoint.Tokens.Enabled() || c.User.Tokens.Enabled() {
		return true
	}
	for _, t := range c.Users {
		if t.Tokens.Enabled() {
			return true
		}
	}
	for _, t := range c.Endpoints {
		if t.Tokens.Enabled() {
			return true
		}
	}
	return false
}
