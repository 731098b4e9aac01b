// Package app wires agentbus's stages from one Options value: it is what
// cmd/agentbus (all stages in one process) and cmd/<stage> (one stage per
// process) call after reading flags and environment. It holds no logic of
// its own beyond choosing and connecting the parts.
package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/agentbus/agentbus/internal/cache/kvstore"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	apikv "github.com/agentbus/agentbus/internal/apikey/kvstore"
	"github.com/agentbus/agentbus/internal/dirlock"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/quota"
	"github.com/agentbus/agentbus/internal/ratelimit"
	rlkv "github.com/agentbus/agentbus/internal/ratelimit/kvstore"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/internal/stage/guard"
	"github.com/agentbus/agentbus/internal/stage/ingest"
	"github.com/agentbus/agentbus/internal/stage/llm"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/internal/stage/toolexec"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stage names (messages.Stages).
const (
	StageIngest   = messages.StageIngest
	StageGuard    = messages.StageGuard
	StageLLM      = messages.StageLLM
	StageToolexec = messages.StageToolexec
	StagePersist  = messages.StagePersist
)

// AllStages lists every stage of StageTable, in pipeline order.
var AllStages = stageNames(StageTable)

// KV buckets shared by replicas.
const (
	KeysBucket      = apikv.Bucket
	RateLimitBucket = guard.RateLimitBucket
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
	// Stages to run in this process: names of Table's rows. Default
	// AllStages.
	Stages []string
	// Table is the stage table the process may run. Default StageTable;
	// a test (or a program embedding agentbus) adds a stage with one more
	// row.
	Table []StageSpec
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
	// LLM configures the llm stage (its HandlerTimeout is LLMTimeout).
	LLM llm.Config
	// LLMTimeout bounds one run of the llm handler (the provider chain's
	// timeouts, retries and failover together): the llm stage's
	// HandlerTimeout. Default 120s.
	LLMTimeout time.Duration
	// Toolexec configures the toolexec stage (what a tool result the
	// scanner blocks becomes, how long step results are kept).
	Toolexec toolexec.Config
	// Quota sets daily request and token quotas per user and per model.
	// Default unlimited.
	Quota quota.Config
	// Cache bounds the llm stage's response cache (a KV bucket). Default
	// kvstore.DefaultConfig(): 1h, 256 MiB, 100,000 entries, 1 MiB each;
	// a zero TTL turns the cache off. Whether a turn uses it is the key's
	// or the request's choice (docs/operations.md, "Response cache").
	Cache kvstore.Config
	// CacheShared lets tenants share cache entries. Default false.
	CacheShared bool
	// Persist configures the persist stage.
	Persist persist.Config
	// Ingest configures the HTTP entry (Addr is taken from HTTPAddr).
	Ingest ingest.Config
	// NATSAuth makes the embedded server require credentials: one
	// identity per role, minted from the authority in <DataDir>/auth
	// (created on first start). Default true; false is refused unless the
	// server listens on loopback only.
	NATSAuth bool
	// NATSCreds is a credentials file every connection of this process
	// uses (`agentbus nats creds` writes one). Default "": with the
	// embedded server, or an authority in DataDir, each stage gets its own
	// identity; else connections are anonymous.
	NATSCreds string
	// Observe configures metrics, tracing and spend (see ObserveOptions).
	Observe ObserveOptions
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
		Toolexec:   toolexec.DefaultConfig(),
		Persist:    persist.DefaultConfig(),
		Ingest:     ingest.DefaultConfig(),
		LLMTimeout: llm.DefaultHandlerTimeout,
		Cache:      kvstore.DefaultConfig(),
		Sanitizer:  sanitize.Config{},
		NATSAuth:   true,
		Observe:    DefaultObserveOptions(),
	}
	// /health expects the stages of the table Start runs (buildIngest).
	o.Ingest.Stages = nil
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
	names := stageNames(o.table())
	for _, s := range o.Stages {
		if !slices.Contains(names, s) {
			errs = append(errs, fmt.Errorf("unknown stage %q (want one of %v)", s, names))
		}
	}
	errs = append(errs, validateTable(o.table()))
	if o.Store != "sqlite" && o.Store != "files" {
		errs = append(errs, fmt.Errorf("store %q: want sqlite or files", o.Store))
	}
	if o.LLMTimeout <= 0 {
		errs = append(errs, errors.New("llm timeout must be positive"))
	}
	if o.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if o.Cache.TTL != 0 {
		errs = append(errs, o.Cache.Validate())
	}
	errs = append(errs, o.Quota.Validate(), o.LLM.Validate(), o.Toolexec.Validate(), o.Persist.Validate(), o.Ingest.Validate(), o.Sanitizer.Validate(), o.Firewall.Validate(), o.Observe.Validate())
	return errors.Join(errs...)
}

// System is a running process: the runtime, its stages and (with ingest)
// the HTTP server.
type System struct {
	Runtime *pipeline.Runtime
	// HTTPAddr is the address ingest listens on ("" without ingest).
	HTTPAddr string
	// Keys is the API key store (KV-backed), on the process's own
	// connection; nil unless the process runs ingest or guard.
	Keys apikey.Store
	// Authority is the NATS authority in the data directory, when this
	// process holds it (always with the embedded server).
	Authority *natsauth.Authority
	// DataDir is the process's data directory.
	DataDir string
	// MetricsAddr is the address serving GET /metrics apart from the
	// HTTP listener ("" without Observe.MetricsListen).
	MetricsAddr string

	log      *slog.Logger
	httpSrv  *http.Server
	closers  []func()
	runDone  chan struct{}
	cancel   context.CancelFunc
	stopOnce bool
}

func (o *Options) has(stage string) bool { return slices.Contains(o.Stages, stage) }

// AuthDir is where the NATS authority and the operator credential live in
// a data directory.
func AuthDir(dataDir string) string { return filepath.Join(dataDir, "auth") }

// OperatorCreds is the operator credential `agentbus serve` writes for the
// CLI on the same host.
func OperatorCreds(dataDir string) string { return filepath.Join(AuthDir(dataDir), "operator.creds") }

// setupNATSAuth decides the process's NATS identities: a credentials file
// when one is given; else, with the embedded server or an authority in the
// data directory, one identity per stage minted from the authority; else
// anonymous (an external server without authentication).
func (o *Options) setupNATSAuth(log *slog.Logger) (*natsauth.Authority, error) {
	if o.Pipeline.Credentials != nil {
		return nil, nil
	}
	embedded := o.Pipeline.NATSURL == ""
	var a *natsauth.Authority
	var err error
	switch {
	case embedded && !o.NATSAuth:
		log.Warn("the embedded NATS server accepts anonymous connections (--nats-auth=false): anyone on this host controls the bus")
	case embedded:
		if a, err = natsauth.LoadOrCreate(AuthDir(o.DataDir)); err != nil {
			return nil, err
		}
		o.Pipeline.Embedded.Auth = a
	case o.NATSCreds == "":
		if a, err = natsauth.Load(AuthDir(o.DataDir)); errors.Is(err, natsauth.ErrNoAuthority) {
			a, err = nil, nil
			log.Warn("no NATS credentials (--nats-creds) and no authority in the data directory: connecting anonymously")
		} else if err != nil {
			return nil, err
		}
	}
	if o.NATSCreds != "" {
		o.Pipeline.Credentials = pipeline.CredsFile(o.NATSCreds)
	} else if a != nil {
		o.Pipeline.Credentials = natsauth.NewIssuer(a, func(role string) (string, pipeline.Grant, error) {
			if role == "" {
				g, err := Grant(RoleOperator, "serve", GrantOptions{})
				return "serve", g, err
			}
			g, err := grant(o.table(), role, role, GrantOptions{ResponseTTL: o.responseTTL(role)})
			return role, g, err
		})
	}
	if a != nil && embedded {
		if err := writeOperatorCreds(a, o.DataDir); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// responseTTL is how long a stage may answer a request it received: ingest
// streams a turn's answer for up to its reply timeout.
func (o *Options) responseTTL(role string) time.Duration {
	if role == StageIngest {
		return max(o.Ingest.ReplyTimeout+time.Minute, 15*time.Minute)
	}
	return 0
}

// writeOperatorCreds writes the operator credential the CLI finds on this
// host (mode 0600), unless it exists.
func writeOperatorCreds(a *natsauth.Authority, dataDir string) error {
	path := OperatorCreds(dataDir)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	g, err := Grant(RoleOperator, "operator", GrantOptions{})
	if err != nil {
		return err
	}
	b, err := a.Creds("operator", g, 0)
	if err != nil {
		return err
	}
	if err := natsauth.WriteSecret(path, b); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("operator credential: %w", err)
	}
	return nil
}

// Start builds and starts the process's stages. Stop it with Close.
func Start(ctx context.Context, o Options, log *slog.Logger) (*System, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
	// One process owns a data directory that holds state (the embedded
	// server's store, the conversation store): a second one fails now,
	// before it can corrupt either.
	var unlock func() error
	if o.Pipeline.NATSURL == "" || o.has(StagePersist) {
		var err error
		if unlock, err = dirlock.Lock(filepath.Join(o.DataDir, "agentbus.lock")); err != nil {
			return nil, fmt.Errorf("data directory %s is in use by another agentbus process: %w", o.DataDir, err)
		}
	}
	release := func() {
		if unlock != nil {
			_ = unlock()
		}
	}
	authority, err := o.setupNATSAuth(log)
	if err != nil {
		release()
		return nil, fmt.Errorf("nats auth: %w", err)
	}
	ob, flush, err := o.setupObserve(ctx)
	if err != nil {
		release()
		return nil, err
	}
	rt, err := pipeline.New(ctx, o.Pipeline, log)
	if err != nil {
		flush()
		release()
		return nil, err
	}
	sys := &System{Runtime: rt, log: log, runDone: make(chan struct{}), Authority: authority, DataDir: o.DataDir}
	sys.closers = append(sys.closers, release, flush)
	fail := func(err error) (*System, error) {
		rt.Close()
		sys.closeParts()
		return nil, err
	}
	if o.has(StageIngest) || o.has(StageGuard) {
		kv, err := kvBucket(rt.JetStream(), KeysBucket, "agentbus API keys (hashes only)", 0, o.Pipeline.Streams.Replicas)
		if err != nil {
			return fail(err)
		}
		sys.Keys = apikv.New(kv)
	}
	p := &Parts{o: &o, table: o.table(), rt: rt, sys: sys, log: log, ob: ob}
	if o.has(StageGuard) || o.has(StageToolexec) {
		if p.san, err = sanitize.New(o.Sanitizer); err != nil {
			return fail(err)
		}
	}
	if o.has(StageLLM) || o.has(StageToolexec) {
		// Remote tools are called by toolexec: discover them on its
		// connection (llm only needs their specs).
		owner := StageToolexec
		if !o.has(owner) {
			owner = StageLLM
		}
		nc, _, err := p.conn(owner)
		if err != nil {
			return fail(err)
		}
		// A remote tool declared in the tools file (remote: true) is
		// allowed as if named in --remote-tools.
		tc := o.Tools
		for _, name := range o.Firewall.RemoteTools() {
			if !slices.Contains(tc.RemoteAllow, name) {
				tc.RemoteAllow = append(slices.Clone(tc.RemoteAllow), name)
			}
		}
		if p.tools, err = buildTools(tc, nc, log); err != nil {
			return fail(err)
		}
		if err := p.startMCP(ctx); err != nil {
			return fail(err)
		}
	}
	for _, row := range p.table {
		name := row.Contract.Stage
		if !o.has(name) {
			continue
		}
		st, err := row.Build(ctx, p)
		if err == nil {
			_, err = rt.AddStage(st)
		}
		if err != nil {
			return fail(fmt.Errorf("stage %s: %w", name, err))
		}
	}
	for _, start := range p.started {
		if err := start(); err != nil {
			return fail(err)
		}
	}
	p.watchTools()
	if err := ob.serveMetrics(o.Observe.MetricsListen, sys); err != nil {
		return fail(err)
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

// watchTools offers a remote tool service started later (and allowed by
// the operator) without a restart.
func (p *Parts) watchTools() {
	if p.tools == nil {
		return
	}
	wctx, stop := context.WithCancel(context.Background())
	p.sys.closers = append(p.sys.closers, stop)
	// MCP changes made while the stages were built.
	p.toolsReady.Store(true)
	if p.tools.mcp != nil {
		p.mcpChanged()
	}
	go p.tools.watch(wctx, p.toolsChanged)
	if p.llmH != nil && p.tool == nil {
		// The MCP tools of a toolexec in another process.
		go p.tools.watchCatalog(wctx, p.toolsChanged)
	}
}

// Connect opens a client connection to the system's NATS server (over its
// client port, as another process would) with the credential of this
// process's data directory: the operator's, unless opts override it.
func (s *System) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.Name(name)}
	if p := OperatorCreds(s.DataDir); s.Authority != nil {
		co, err := pipeline.CredsFile(p).ConnectOptions("")
		if err != nil {
			return nil, err
		}
		base = append(base, co...)
	}
	return nats.Connect(s.Runtime.URL(), append(base, opts...)...)
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

func kvBucket(js jetstream.JetStream, name, desc string, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	return pipeline.EnsureKV(js, jetstream.KeyValueConfig{Bucket: name, Description: desc, TTL: ttl, History: 1, Replicas: max(replicas, 1)})
}

func (o *Options) limiter(js jetstream.JetStream, replicas int) (*ratelimit.Limiter, error) {
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
const QuotaBucket = llm.QuotaBucket

// quota returns the shared daily quota, or nil when no quota is set.
func (o *Options) quota(js jetstream.JetStream, replicas int) (llm.Quota, error) {
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
