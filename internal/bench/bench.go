// Package bench measures the whole pipeline end to end (all stages, the
// offline model, a real embedded JetStream server and SQLite store) and,
// in the same run on the same server, a raw JetStream baseline that moves
// the same payload through the same number of hops with plain nats.go
// consumers. The ratio pipeline/baseline is the cost of agentbus itself.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/cputime"
	"github.com/agentbus/agentbus/internal/stage/ingest"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// discard is a span exporter that drops what it gets.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// Config configures a run.
type Config struct {
	// Turns to send. Default 2000.
	Turns int
	// Concurrency is the number of turns in flight. Default 16.
	Concurrency int
	// Text is the user message. Default a short question.
	Text string
	// Dir holds the server store and database. Default a temp dir.
	Dir string
	// StageConcurrency is each stage's handler concurrency. Default 16.
	StageConcurrency int
	// Store is the conversation store, "sqlite" (default) or "files".
	Store string
	// SQLiteSync is the store's synchronous setting, "" (the durability
	// default), "FULL" or "NORMAL".
	SQLiteSync string
	// NoNATSAuth runs the embedded server without authentication, to
	// measure what authentication costs. Default false (auth on, as serve).
	NoNATSAuth bool
	// Observe turns metrics and tracing on (every span recorded and
	// handed to a batch exporter that discards it), to measure what
	// observability costs. Default false.
	Observe bool
	// CPUProfile, when set, receives a CPU profile of the measured
	// pipeline run (not the warm-up, not the baseline).
	CPUProfile io.Writer
}

// Stats summarises one measured run.
type Stats struct {
	Turns       int     `json:"turns"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	TurnsPerSec float64 `json:"turns_per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	// MsgsPerTurn is how many messages the NATS server received per turn
	// (publishes, KV operations, requests, acks and fetches), when the
	// server is in process.
	MsgsPerTurn float64 `json:"server_msgs_per_turn,omitempty"`
	// CPUPerTurnUs is the process's CPU time (user and system, every
	// goroutine, the embedded server included) per turn, in microseconds:
	// steadier than throughput on a shared machine.
	CPUPerTurnUs float64 `json:"cpu_us_per_turn,omitempty"`
}

// Result is a bench run's report.
type Result struct {
	Concurrency int     `json:"concurrency"`
	Hops        int     `json:"hops"`
	Pipeline    Stats   `json:"pipeline"`
	Baseline    Stats   `json:"baseline"`
	Ratio       float64 `json:"throughput_ratio"`
	P50Ratio    float64 `json:"p50_ratio"`
}

func (c *Config) defaults() {
	if c.Turns <= 0 {
		c.Turns = 2000
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Text == "" {
		c.Text = "Hello! Can you summarise what an event-driven pipeline is?"
	}
	if c.StageConcurrency <= 0 {
		c.StageConcurrency = 16
	}
}

// Run starts a private system, measures the pipeline then the baseline.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (Result, error) {
	cfg.defaults()
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "agentbus-bench-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	o := app.DefaultOptions()
	o.DataDir = dir
	o.Stages = []string{app.StageGuard, app.StageLLM, app.StageToolexec, app.StagePersist}
	o.Pipeline.Embedded.Listen = "127.0.0.1:-1"
	o.Pipeline.Consumer.Concurrency = cfg.StageConcurrency
	o.Limits = app.LimitsFrom(0, 0, 0)
	o.Auth = false // turns enter over NATS; no key tier, nothing to reconcile
	o.Tools.Remote = false
	o.NATSAuth = !cfg.NoNATSAuth
	if cfg.Store != "" {
		o.Store = cfg.Store
	}
	o.SQLite.Synchronous = cfg.SQLiteSync
	if cfg.Observe {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		o.Observe.Metrics = true
		o.Observe.Tracer = tp
	}
	sys, err := app.Start(ctx, o, log)
	if err != nil {
		return Result{}, err
	}
	defer sys.Close()
	nc, err := sys.Connect("agentbus-bench")
	if err != nil {
		return Result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return Result{}, err
	}
	res := Result{Concurrency: cfg.Concurrency, Hops: 4}
	// Completed turns end the wait; the request id is the last token.
	w, err := newWaiter(nc, messages.EventFilter(messages.EventCompleted), lastToken)
	if err != nil {
		return res, err
	}
	defer func() { _ = w.sub.Unsubscribe() }()
	// Warm up both paths, then measure.
	if _, err := drive(ctx, min(200, cfg.Turns), cfg.Concurrency, pipelineTurn(w, js, cfg.Text)); err != nil {
		return res, err
	}
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return res, err
		}
	}
	count, cpu := inMsgs(sys.Runtime.Server()), cputime.PerOp()
	res.Pipeline, err = drive(ctx, cfg.Turns, cfg.Concurrency, pipelineTurn(w, js, cfg.Text))
	res.Pipeline.MsgsPerTurn = count(res.Pipeline.Turns)
	res.Pipeline.CPUPerTurnUs, _ = cpu(res.Pipeline.Turns)
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return res, err
	}
	base, err := newBaseline(ctx, nc, cfg.StageConcurrency, res.Hops)
	if err != nil {
		return res, err
	}
	defer base.close()
	payload, _ := json.Marshal(messages.Turn{SchemaVersion: 1, RequestID: "x", ConversationID: "c", User: "bench", Endpoint: "nats",
		Messages: []messages.Message{{Role: "user", Content: cfg.Text}}})
	if _, err := drive(ctx, min(200, cfg.Turns), cfg.Concurrency, base.turn(payload)); err != nil {
		return res, err
	}
	count, cpu = inMsgs(sys.Runtime.Server()), cputime.PerOp()
	if res.Baseline, err = drive(ctx, cfg.Turns, cfg.Concurrency, base.turn(payload)); err != nil {
		return res, err
	}
	res.Baseline.MsgsPerTurn = count(res.Baseline.Turns)
	res.Baseline.CPUPerTurnUs, _ = cpu(res.Baseline.Turns)
	if res.Baseline.TurnsPerSec > 0 {
		res.Ratio = res.Pipeline.TurnsPerSec / res.Baseline.TurnsPerSec
	}
	if res.Pipeline.P50ms > 0 {
		res.P50Ratio = res.Baseline.P50ms / res.Pipeline.P50ms
	}
	return res, nil
}

// inMsgs starts counting the messages srv receives; the returned function
// gives how many arrived per turn since (0 without an in-process server).
// Varz counts every client connection, so nothing else may run meanwhile.
func inMsgs(srv *server.Server) func(turns int) float64 {
	read := func() (int64, bool) {
		if srv == nil {
			return 0, false
		}
		v, err := srv.Varz(nil)
		if err != nil {
			return 0, false
		}
		return v.InMsgs, true
	}
	before, ok := read()
	return func(turns int) float64 {
		after, ok2 := read()
		if !ok || !ok2 || turns == 0 {
			return 0
		}
		return float64(after-before) / float64(turns)
	}
}

var seq atomic.Int64

// waiter routes replies from one wildcard subscription to the caller
// waiting for them (a subscription per turn would cost more than the turn).
type waiter struct {
	mu      sync.Mutex
	pending map[string]chan struct{}
	sub     *nats.Subscription
}

func newWaiter(nc *nats.Conn, subject string, id func(subject string) string) (*waiter, error) {
	w := &waiter{pending: map[string]chan struct{}{}}
	var err error
	w.sub, err = nc.Subscribe(subject, func(m *nats.Msg) {
		k := id(m.Subject)
		w.mu.Lock()
		ch := w.pending[k]
		delete(w.pending, k)
		w.mu.Unlock()
		if ch != nil {
			close(ch)
		}
	})
	if err != nil {
		return nil, err
	}
	w.sub.SetPendingLimits(-1, -1)
	return w, nil
}

func (w *waiter) expect(k string) chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	w.pending[k] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiter) forget(k string) {
	w.mu.Lock()
	delete(w.pending, k)
	w.mu.Unlock()
}

func (w *waiter) wait(ctx context.Context, k string, ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		w.forget(k)
		return ctx.Err()
	}
}

func lastToken(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}

func pipelineTurn(w *waiter, js jetstream.JetStream, text string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		rid := fmt.Sprintf("bench_%d_%d", os.Getpid(), seq.Add(1))
		t := messages.Turn{SchemaVersion: messages.SchemaVersion, RequestID: rid, ConversationID: "conv_" + rid, User: "bench",
			Endpoint: "nats", Messages: []messages.Message{{Role: messages.RoleUser, Content: text}}, CreatedAt: time.Now().UTC()}
		ch := w.expect(rid)
		if err := ingest.Publish(ctx, js, &t); err != nil {
			w.forget(rid)
			return err
		}
		return w.wait(ctx, rid, ch)
	}
}

// drive runs n calls of fn with c in flight and reports throughput and
// latency percentiles.
func drive(ctx context.Context, n, c int, fn func(context.Context) error) (Stats, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var errs atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				t0 := time.Now()
				err := fn(cctx)
				lat[i] = time.Since(t0)
				cancel()
				if err != nil {
					errs.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	st := Stats{Turns: n, Errors: int(errs.Load()), Seconds: el.Seconds(), TurnsPerSec: float64(n) / el.Seconds(), P50ms: pct(0.50), P90ms: pct(0.90), P99ms: pct(0.99)}
	if st.Errors > n/100 {
		return st, fmt.Errorf("%d of %d turns failed; first: %w", st.Errors, n, firstErr)
	}
	return st, nil
}

// baseline relays a payload through hops-1 durable push consumers on its
// own stream, with the same consumer settings the stages use (explicit
// ack, deliver group, async ack), and delivers the last hop to the caller.
// baseline is the plain relay agentbus is measured against: the same
// payload through the same number of JetStream hops, each hop a durable
// pull consumer fetched in batches of up to the stage concurrency, its
// next publish asynchronous, and the message acked once that publish is
// acknowledged (at-least-once, as agentbus is) - what a hand-written
// nats.go relay does at its best.
type baseline struct {
	w     *waiter
	js    jetstream.JetStream
	ccs   []jetstream.ConsumeContext
	hops  int
	close func()
}

const baseStream = "AGENTBUS_BENCH_BASELINE"

func newBaseline(ctx context.Context, nc *nats.Conn, conc, hops int) (*baseline, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	_ = js.DeleteStream(ctx, baseStream)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: baseStream, Subjects: []string{"agentbus_bench.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		return nil, err
	}
	w, err := newWaiter(nc, fmt.Sprintf("agentbus_bench.h%d.*", hops-1), lastToken)
	if err != nil {
		return nil, err
	}
	b := &baseline{w: w, js: js, hops: hops}
	for h := 0; h < hops-1; h++ {
		prefix := fmt.Sprintf("agentbus_bench.h%d.", h)
		next := fmt.Sprintf("agentbus_bench.h%d.", h+1)
		cons, err := js.CreateConsumer(ctx, baseStream, jetstream.ConsumerConfig{Durable: fmt.Sprintf("relay%d", h),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1024, FilterSubject: prefix + "*"})
		if err != nil {
			return nil, err
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			id := m.Subject()[len(prefix):]
			out := nats.NewMsg(next + id)
			out.Data = m.Data()
			out.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s/%d", id, h+1))
			f, err := js.PublishMsgAsync(out)
			if err != nil {
				_ = m.Nak()
				return
			}
			go func() {
				select {
				case <-f.Ok():
					_ = m.Ack()
				case <-f.Err():
					_ = m.Nak()
				}
			}()
		}, jetstream.PullMaxMessages(conc))
		if err != nil {
			return nil, err
		}
		b.ccs = append(b.ccs, cc)
	}
	b.close = func() {
		_ = w.sub.Unsubscribe()
		for _, cc := range b.ccs {
			cc.Stop()
		}
		_ = js.DeleteStream(context.Background(), baseStream)
	}
	return b, nil
}

func (b *baseline) turn(payload []byte) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		id := fmt.Sprintf("b%d", seq.Add(1))
		ch := b.w.expect(id)
		m := nats.NewMsg("agentbus_bench.h0." + id)
		m.Data = payload
		m.Header.Set(nats.MsgIdHdr, id+"/0")
		if _, err := b.js.PublishMsg(ctx, m); err != nil {
			b.w.forget(id)
			return err
		}
		return b.w.wait(ctx, id, ch)
	}
}
