package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// Stage describes one pipeline stage declaratively: what it does on the
// bus (its Contract), a handler per consumed event, how long one handler
// run may take, and optional health checks and micro endpoints. A stage
// package builds it (by convention `New(Config, Deps) (*Handler, error)`
// and `(*Handler).Stage()`); AddStage provisions and runs it.
type Stage struct {
	// Contract declares the stage: its name (Contract.Stage: it names the
	// durable consumers, the dead-letter subject, the micro service and
	// the stage's NATS identity, whose permissions derive from the
	// contract), the events it consumes and produces, its KV buckets and
	// subjects. A message that arrives after its turn's deadline runs only
	// to publish the turn's recorded outcome again, when it is one of
	// Contract.Produces.
	Contract Contract
	// Handlers maps a consumed event (one of Contract.Consumes) to its
	// handler. Each handler returns the events to publish (built with
	// NewEvent). A consumed event without a handler gets no consumer in
	// this process.
	Handlers map[string]message.HandlerFunc
	// HandlerTimeout bounds one handler run. Default 0: the runtime's
	// Config.Consumer.HandlerTimeout. The runtime derives the rest of the
	// stage's ack handling from it: the consumer's ack wait stays the
	// runtime's Config.Consumer.AckWait (how soon a crashed replica's
	// messages move on), because a running handler keeps its message with
	// in-progress acks every AckWait/3 for as long as this timeout (and
	// its retries) allow; a graceful shutdown waits this long plus the ack
	// wait for the stage's handlers in flight.
	HandlerTimeout time.Duration
	// Health adds stage-specific checks and details (breaker states, ...).
	Health func(ctx context.Context) (map[string]Check, map[string]any)
	// Endpoints adds request-reply endpoints to the stage's micro service.
	Endpoints func(svc micro.Service) error
}

// Name is the stage's name (Contract.Stage).
func (st Stage) Name() string { return st.Contract.Stage }

// Validate reports every problem of the stage: an invalid contract, a
// handler for an event the contract does not consume, a negative timeout,
// nothing to run.
func (st Stage) Validate() error {
	var errs []error
	if err := st.Contract.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(st.Handlers) == 0 && st.Endpoints == nil {
		errs = append(errs, fmt.Errorf("stage %s: needs at least one handler or endpoint", st.Contract.Stage))
	}
	for _, ev := range slices.Sorted(maps.Keys(st.Handlers)) {
		if !slices.Contains(st.Contract.Consumes, ev) {
			errs = append(errs, fmt.Errorf("stage %s: handler for %q, which its contract does not consume", st.Contract.Stage, ev))
		}
		if st.Handlers[ev] == nil {
			errs = append(errs, fmt.Errorf("stage %s: nil handler for %q", st.Contract.Stage, ev))
		}
	}
	if st.HandlerTimeout < 0 {
		errs = append(errs, fmt.Errorf("stage %s: negative handler timeout", st.Contract.Stage))
	}
	return errors.Join(errs...)
}

// consumerConfig is the stage's consumer configuration: the runtime's,
// with the stage's handler timeout.
func (st Stage) consumerConfig(base ConsumerConfig) ConsumerConfig {
	if st.HandlerTimeout > 0 {
		base.HandlerTimeout = st.HandlerTimeout
	}
	return base
}

type stageRuntime struct {
	stage Stage
	stats *Stats
	svc   micro.Service
	conn  *stageConn
	// events observe each consumed event (micro STATS, metrics).
	events []*eventObs
}

// stageConn is a stage's own connection: its identity publishes the
// stage's events and dead letters, serves its micro service and consumes
// its durable consumers.
type stageConn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	pub message.Publisher

	termOnce sync.Once
	terms    *Terminals
	termErr  error
}

// Runtime is what every stage process shares: the NATS connection (or the
// embedded server), the provisioned streams, a pull consumer loop per
// consumed event with the middleware stack around the Watermill handlers,
// the dead-letter queue and the health services. Each stage gets its own
// connection under its own identity (Config.Credentials).
type Runtime struct {
	cfg       Config
	log       *slog.Logger
	srv       *server.Server
	url       string
	nc        *nats.Conn
	js        jetstream.JetStream
	mu        sync.Mutex
	stages    []*stageRuntime
	conns     map[string]*stageConn
	consumers []*consumer
	running   chan struct{}
	draining  atomic.Bool
	started   time.Time
	closed    bool
	metrics   *stageMetrics
	// grace is how long Run waits at shutdown for handlers in flight: the
	// longest stage's handler timeout plus the ack wait.
	grace time.Duration
}

// New connects to NATS (starting the embedded server when cfg.NATSURL is
// empty) and provisions the streams. Stages are added with AddStage and run
// with Run.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pipeline config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{cfg: cfg, log: log, url: cfg.NATSURL, started: time.Now(), conns: map[string]*stageConn{}, running: make(chan struct{})}
	if r.url == "" {
		srv, err := StartEmbedded(ctx, cfg.Embedded, log)
		if err != nil {
			return nil, err
		}
		r.srv = srv
		r.url = srv.ClientURL()
		// A stream's max_bytes is reserved against the server's storage:
		// keep the streams within half of it, or a small disk could not
		// start the system.
		if jc := srv.JetStreamConfig(); jc != nil && jc.MaxStore > 0 {
			half := jc.MaxStore / 2
			if r.cfg.Streams.MaxBytes == 0 || r.cfg.Streams.MaxBytes > half {
				r.cfg.Streams.MaxBytes = half
			}
			if r.cfg.Streams.DLQMaxBytes == 0 || r.cfg.Streams.DLQMaxBytes > half/8 {
				r.cfg.Streams.DLQMaxBytes = half / 8
			}
		}
		log.Info("embedded NATS started", "url", r.url, "store", cfg.Embedded.StoreDir)
	}
	if cfg.Metrics != nil {
		m, err := newStageMetrics(cfg.Metrics, r)
		if err != nil {
			r.shutdownServer()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		r.metrics = m
	}
	nc, err := r.connect("", cfg.Name)
	if err != nil {
		r.shutdownServer()
		return nil, err
	}
	r.nc = nc
	if r.js, err = jetstream.New(nc); err != nil {
		r.Close()
		return nil, err
	}
	if err := EnsureStreams(r.js, r.cfg.Streams, log); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// URL is the NATS URL in use (the embedded server's when embedded).
func (r *Runtime) URL() string { return r.url }

// Conn is the process's own NATS connection (identity role ""):
// provisioning, and what the process does outside any stage.
func (r *Runtime) Conn() *nats.Conn { return r.nc }

// JetStream is the JetStream API (nats.go/jetstream) on Conn.
func (r *Runtime) JetStream() jetstream.JetStream { return r.js }

// connect opens a connection with the identity of role ("" for the
// process). To the embedded server it connects in process (no network, no
// TLS); the server still authenticates it.
func (r *Runtime) connect(role, name string, extra ...nats.Option) (*nats.Conn, error) {
	var opts []nats.Option
	if r.cfg.Credentials != nil {
		co, err := r.cfg.Credentials.ConnectOptions(role)
		if err != nil {
			return nil, fmt.Errorf("credentials for %q: %w", role, err)
		}
		opts = append(opts, co...)
	}
	url := r.url
	if r.srv != nil {
		// In process: no network, so no TLS (the server does not require
		// it of in-process clients) even when the client port has it.
		opts = append(opts, nats.InProcessServer(r.srv))
		url = strings.Replace(url, "tls://", "nats://", 1)
	} else {
		opts = append(opts, r.cfg.TLS.options()...)
	}
	return Connect(url, name, r.log, append(opts, extra...)...)
}

// StageConn is the connection of stage (opened on first use) under the
// stage's own identity: what the stage's handler needs for KV buckets,
// requests and core NATS publishes. AddStage publishes the stage's events
// and serves its micro service on it.
func (r *Runtime) StageConn(stage string) (*nats.Conn, error) {
	sc, err := r.stageConn(stage)
	if err != nil {
		return nil, err
	}
	return sc.nc, nil
}

func (r *Runtime) stageConn(stage string) (*stageConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sc, ok := r.conns[stage]; ok {
		return sc, nil
	}
	nc, err := r.connect(stage, r.cfg.Name+"-"+stage)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	sc := &stageConn{nc: nc, js: js, pub: subjectPublisher{js}}
	r.conns[stage] = sc
	return sc, nil
}

// Server is the embedded server, or nil.
func (r *Runtime) Server() *server.Server { return r.srv }

// Logger is the runtime's logger.
func (r *Runtime) Logger() *slog.Logger { return r.log }

// Config is the runtime's configuration.
func (r *Runtime) Config() Config { return r.cfg }

type expDelay struct{ base time.Duration }

func (d expDelay) WaitTime(n uint64) time.Duration {
	w := d.base
	for i := uint64(1); i < n && w < 30*time.Second; i++ {
		w *= 2
	}
	return min(w, 30*time.Second)
}

// AddStage provisions the stage's durable consumers, registers its
// handlers on the router and its micro service. It returns the stage's
// counters.
func (r *Runtime) AddStage(st Stage) (*Stats, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	name := st.Name()
	cc := st.consumerConfig(r.cfg.Consumer)
	conn, err := r.stageConn(name)
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", name, err)
	}
	srt := &stageRuntime{stage: st, stats: &Stats{}, conn: conn}
	log := r.log.With("stage", name)
	events := slices.Sorted(maps.Keys(st.Handlers))
	for _, ev := range events {
		ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
		cons, err := ensurePullConsumer(ctx, conn.js, name, ev, cc)
		cancel()
		if err != nil {
			return nil, err
		}
		durable := DurableName(name, ev)
		obs := r.newEventObs(name, ev)
		srt.events = append(srt.events, obs)
		h := r.handlerMiddleware(name, st.Contract.Produces, conn, cc, srt.stats, obs, log.With("event", ev), st.Handlers[ev])
		r.mu.Lock()
		r.consumers = append(r.consumers, &consumer{durable: durable, cons: cons, handle: h, cc: cc, log: log.With("event", ev),
			draining: r.draining.Load, slots: make(chan struct{}, cc.Concurrency), obs: obs})
		r.mu.Unlock()
	}
	if err := r.addService(srt); err != nil {
		return nil, fmt.Errorf("stage %s micro service: %w", name, err)
	}
	r.mu.Lock()
	r.stages = append(r.stages, srt)
	r.grace = max(r.grace, cc.HandlerTimeout+cc.AckWait)
	r.mu.Unlock()
	log.Info("stage added", "events", events, "concurrency", cc.Concurrency, "handler_timeout", cc.HandlerTimeout.String())
	return srt.stats, nil
}

// provisionTimeout bounds creating a stage's consumers (retried while a
// cluster forms).
const provisionTimeout = 60 * time.Second

// Running is closed once every consumer of the process is fetching.
func (r *Runtime) Running() chan struct{} { return r.running }

// Run runs the stages until ctx is done, then shuts down gracefully: no
// new message is fetched, messages fetched but not started are NAKed for
// another replica, handlers in flight finish and are acked, then the
// connections and the embedded server close.
func (r *Runtime) Run(ctx context.Context) error {
	r.mu.Lock()
	consumers := slices.Clone(r.consumers)
	grace := max(r.grace, r.cfg.Consumer.AckWait+r.cfg.Consumer.HandlerTimeout)
	r.mu.Unlock()
	fetchCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(fetchCtx)
		}()
	}
	close(r.running)
	<-ctx.Done()
	r.draining.Store(true)
	stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		r.log.Warn("handlers still running at shutdown; their messages will be redelivered")
	}
	r.Shutdown()
	return nil
}

// Shutdown stops taking work and closes everything; in-flight handlers
// have finished when Run calls it. It is safe to call more than once.
func (r *Runtime) Shutdown() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	stages := append([]*stageRuntime(nil), r.stages...)
	r.mu.Unlock()

	r.log.Info("shutting down: draining stages")
	r.draining.Store(true)
	for _, st := range stages {
		if st.svc != nil {
			_ = st.svc.Stop()
		}
	}
	r.Close()
	r.log.Info("shutdown complete")
}

// Close closes the connection and the embedded server without draining
// (use Shutdown for a graceful stop).
func (r *Runtime) Close() {
	if r.nc != nil {
		_ = r.nc.Flush()
		r.nc.Close()
	}
	r.mu.Lock()
	for _, c := range r.conns {
		_ = c.nc.Flush()
		c.nc.Close()
	}
	r.mu.Unlock()
	r.shutdownServer()
}

func (r *Runtime) shutdownServer() {
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
	}
}
