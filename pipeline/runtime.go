package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// Stage describes one pipeline stage: a handler per consumed event, plus
// optional health checks and extra micro endpoints.
type Stage struct {
	// Name is the stage name ("guard", "llm", ...): it names the durable
	// consumers, the DLQ subject and the micro service.
	Name string
	// Handlers maps a consumed event (messages.Event*) to its handler.
	// Each handler returns the events to publish (built with NewEvent).
	Handlers map[string]message.HandlerFunc
	// Consumer overrides the runtime's consumer configuration.
	Consumer *ConsumerConfig
	// Health adds stage-specific checks and details (breaker states, ...).
	Health func(ctx context.Context) (map[string]Check, map[string]any)
	// Endpoints adds request-reply endpoints to the stage's micro service.
	Endpoints func(svc micro.Service) error
}

type stageRuntime struct {
	stage Stage
	stats *Stats
	svc   micro.Service
}

// Runtime is what every stage process shares: the NATS connection (or the
// embedded server), the provisioned streams, the Watermill router with the
// middleware stack, the dead-letter queue and the health services.
type Runtime struct {
	cfg      Config
	log      *slog.Logger
	srv      *server.Server
	url      string
	nc       *nats.Conn
	js       nats.JetStreamContext
	router   *message.Router
	pub      message.Publisher
	wlog     watermill.LoggerAdapter
	mu       sync.Mutex
	stages   []*stageRuntime
	subConns []*nats.Conn
	draining atomic.Bool
	started  time.Time
	closed   bool
	// paused are consumers paused until this process's subscriptions exist.
	paused []string
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
	r := &Runtime{cfg: cfg, log: log, url: cfg.NATSURL, started: time.Now(), wlog: WatermillLogger(log)}
	if r.url == "" {
		srv, err := StartEmbedded(ctx, cfg.Embedded, log)
		if err != nil {
			return nil, err
		}
		r.srv = srv
		r.url = srv.ClientURL()
		log.Info("embedded NATS started", "url", r.url, "store", cfg.Embedded.StoreDir)
	}
	nc, err := Connect(r.url, cfg.Name, log)
	if err != nil {
		r.shutdownServer()
		return nil, err
	}
	r.nc = nc
	if r.js, err = nc.JetStream(); err != nil {
		r.Close()
		return nil, err
	}
	if err := EnsureStreams(r.js, cfg.Streams); err != nil {
		r.Close()
		return nil, err
	}
	wpub, err := wmnats.NewPublisherWithNatsConn(nc, PublisherConfig(), r.wlog)
	if err != nil {
		r.Close()
		return nil, err
	}
	r.pub = subjectPublisher{wpub}
	r.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: cfg.Consumer.AckWait}, r.wlog)
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// URL is the NATS URL in use (the embedded server's when embedded).
func (r *Runtime) URL() string { return r.url }

// Conn is the runtime's shared NATS connection (publishing, KV, micro).
func (r *Runtime) Conn() *nats.Conn { return r.nc }

// JetStream is the runtime's JetStream context.
func (r *Runtime) JetStream() nats.JetStreamContext { return r.js }

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
	if st.Name == "" || len(st.Handlers) == 0 {
		return nil, errors.New("stage needs a name and at least one handler")
	}
	cc := r.cfg.Consumer
	if st.Consumer != nil {
		cc = *st.Consumer
		if err := (Config{NATSURL: "x", Streams: r.cfg.Streams, Consumer: cc}).Validate(); err != nil {
			return nil, fmt.Errorf("stage %s: %w", st.Name, err)
		}
	}
	srt := &stageRuntime{stage: st, stats: &Stats{}}
	log := r.log.With("stage", st.Name)
	events := make([]string, 0, len(st.Handlers))
	for ev := range st.Handlers {
		events = append(events, ev)
	}
	sort.Strings(events)
	for _, ev := range events {
		durable := DurableName(st.Name, ev)
		if err := EnsureConsumer(r.js, st.Name, ev, cc); err != nil {
			return nil, err
		}
		r.holdBacklog(durable, log)
		// Each subscriber drains (and so closes) its connection on Close:
		// give it its own.
		// Drain may take as long as a handler run: nats.go's default
		// 30 s drain timeout would cut shutdown short and lose acks.
		sc, err := Connect(r.url, r.cfg.Name+"-"+durable, log, nats.DrainTimeout(cc.AckWait))
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.subConns = append(r.subConns, sc)
		r.mu.Unlock()
		sub, err := wmnats.NewSubscriberWithNatsConn(sc, SubscriberConfig(messages.StreamTurns, durable, cc), r.wlog)
		if err != nil {
			return nil, err
		}
		h := r.handlerMiddleware(st.Name, cc, srt.stats, log.With("event", ev), st.Handlers[ev])
		r.router.AddHandler(durable, messages.EventFilter(ev), sub, "", r.pub, h)
	}
	if err := r.addService(srt); err != nil {
		return nil, fmt.Errorf("stage %s micro service: %w", st.Name, err)
	}
	r.mu.Lock()
	r.stages = append(r.stages, srt)
	r.mu.Unlock()
	log.Info("stage added", "events", events, "concurrency", cc.Concurrency)
	return srt.stats, nil
}

// backlogHold bounds how long a consumer stays paused if this process
// dies before it resumes it.
const backlogHold = 10 * time.Second

// holdBacklog pauses a consumer that has messages waiting and no
// subscriber yet. A push consumer hands its backlog (up to MaxAckPending)
// to the first subscription that appears, and watermill-nats handles one
// message per subscription at a time: the backlog would run one by one
// while the stage's other subscriptions idle. Paused until all of this
// process's subscriptions exist (releaseBacklog), it is spread over them.
func (r *Runtime) holdBacklog(durable string, log *slog.Logger) {
	info, err := r.js.ConsumerInfo(messages.StreamTurns, durable)
	if err != nil || info.PushBound || info.NumPending == 0 {
		return
	}
	js, err := jetstream.New(r.nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = js.PauseConsumer(ctx, messages.StreamTurns, durable, time.Now().Add(backlogHold))
		cancel()
	}
	if err != nil {
		log.Debug("backlog hold not available", "consumer", durable, "err", err)
		return
	}
	r.mu.Lock()
	r.paused = append(r.paused, durable)
	r.mu.Unlock()
	log.Info("consumer has a backlog; paused until every subscription is ready", "consumer", durable, "pending", info.NumPending)
}

func (r *Runtime) releaseBacklog() {
	r.mu.Lock()
	paused := r.paused
	r.paused = nil
	r.mu.Unlock()
	if len(paused) == 0 {
		return
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		return // the pause expires on its own
	}
	for _, d := range paused {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := js.ResumeConsumer(ctx, messages.StreamTurns, d); err != nil {
			r.log.Warn("resume consumer (it resumes by itself shortly)", "consumer", d, "err", err)
		}
		cancel()
	}
}

// Running is closed once the router runs (all subscriptions are live).
func (r *Runtime) Running() chan struct{} { return r.router.Running() }

// Run runs the stages until ctx is done, then shuts down gracefully: new
// messages are NAKed to other replicas, in-flight messages finish and are
// acked, subscriptions drain, then the connection and the embedded server
// close.
func (r *Runtime) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- r.router.Run(context.Background()) }()
	go func() {
		select {
		case <-r.router.Running():
			r.releaseBacklog()
		case <-ctx.Done():
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	r.Shutdown()
	return nil
}

// Shutdown stops taking work, lets in-flight handlers finish and ack, and
// closes everything. It is safe to call more than once.
func (r *Runtime) Shutdown() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	conns := append([]*nats.Conn(nil), r.subConns...)
	stages := append([]*stageRuntime(nil), r.stages...)
	r.mu.Unlock()

	r.log.Info("shutting down: draining stages")
	r.draining.Store(true)
	for _, st := range stages {
		if st.svc != nil {
			_ = st.svc.Stop()
		}
	}
	// Drain: the server stops delivering; messages already buffered pass
	// the gate (NAKed for another replica); handlers in flight finish and
	// their acks are flushed before each connection closes.
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c *nats.Conn) {
			defer wg.Done()
			closed := make(chan struct{})
			c.SetClosedHandler(func(*nats.Conn) { close(closed) })
			if err := c.Drain(); err != nil {
				c.Close()
				return
			}
			select {
			case <-closed:
			case <-time.After(r.cfg.Consumer.AckWait):
				c.Close()
			}
		}(c)
	}
	wg.Wait()
	if r.router != nil {
		if err := r.router.Close(); err != nil {
			r.log.Warn("router close", "err", err)
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
	for _, c := range r.subConns {
		c.Close()
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
