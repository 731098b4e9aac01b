package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Config configures the shared runtime of a stage process.
type Config struct {
	// NATSURL is the server to connect to. Empty means: start an embedded
	// server (see Embedded). Default "".
	NATSURL string
	// Embedded configures the in-process server used when NATSURL is empty.
	Embedded EmbeddedConfig
	// Credentials authenticate the process's connections, one identity
	// per stage (natsauth.Issuer) or one for all (CredsFile). Nil connects
	// anonymously, which only a server without authentication accepts.
	Credentials Credentials
	// TLS configures TLS towards an external server (NATSURL tls://...).
	TLS ClientTLS
	// Streams configures the provisioned streams.
	Streams StreamConfig
	// Consumer configures every stage's durable consumer.
	Consumer ConsumerConfig
	// Version is reported by the micro services. Default "dev".
	Version string
	// Name identifies the process in NATS connection names. Default "agentbus".
	Name string
	// Metrics, when set, gets the stages' Prometheus metrics
	// (agentbus_stage_*, agentbus_consumer_*). Default nil: none (the
	// micro STATS still count).
	Metrics prometheus.Registerer
	// Tracer, when set, traces every handled message: one span per stage
	// step, a child of the trace context the event carries (traceparent).
	// Default nil: no spans (a traceparent is passed on unchanged).
	Tracer trace.TracerProvider
}

// StreamConfig configures the turn and dead-letter streams.
type StreamConfig struct {
	// Replicas of each stream: 1 for one server, 3 in a cluster. Default 1.
	Replicas int
	// MaxAge of turn events; 0 keeps them until MaxBytes pushes them out
	// (the stream is the system of record; the conversation store keeps
	// what it holds). Default 0.
	MaxAge time.Duration
	// MaxBytes bounds the turn stream; beyond it the oldest events are
	// dropped. With the embedded server it is at most half the server's
	// storage. Default 8 GiB.
	MaxBytes int64
	// DLQMaxAge of dead letters. Default 30 days.
	DLQMaxAge time.Duration
	// DLQMaxBytes bounds the dead-letter stream (oldest dropped first).
	// Default 512 MiB.
	DLQMaxBytes int64
	// Duplicates is the de-duplication window for Nats-Msg-Id. Default 2m.
	Duplicates time.Duration
	// Memory stores streams in memory instead of files (tests, benchmarks).
	// Default false.
	Memory bool
}

// ConsumerConfig configures stage consumers and the handler middleware.
type ConsumerConfig struct {
	// AckWait is how long JetStream waits for an ack (or an in-progress
	// ack, which a running handler sends every AckWait/3) before it
	// redelivers: how soon a crashed replica's work moves to another.
	// Default 30s.
	AckWait time.Duration
	// HandlerTimeout bounds one handler run. Default 20s.
	HandlerTimeout time.Duration
	// Retries is how many times a failed handler run is retried in-process
	// (with exponential backoff) before the delivery counts as failed.
	// Default 2.
	Retries int
	// RetryInterval is the first backoff interval. Default 50ms.
	RetryInterval time.Duration
	// MaxDeliveries is how many JetStream deliveries a message gets before
	// it is dead-lettered without running the handler again (protects
	// against crash loops). Default 5.
	MaxDeliveries int
	// NakDelay is the base redelivery delay after a failed delivery; it
	// doubles per delivery up to 30s. Default 500ms.
	NakDelay time.Duration
	// MaxAckPending bounds in-flight messages per consumer (all replicas
	// together). Default 256.
	MaxAckPending int
	// Concurrency is the number of parallel handler runs per stage
	// instance. Default 8.
	Concurrency int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Embedded: DefaultEmbeddedConfig(),
		Streams:  StreamConfig{Replicas: 1, Duplicates: 2 * time.Minute, MaxBytes: 8 << 30, DLQMaxAge: 30 * 24 * time.Hour, DLQMaxBytes: 512 << 20},
		Consumer: ConsumerConfig{
			AckWait:        30 * time.Second,
			HandlerTimeout: 20 * time.Second,
			Retries:        2,
			RetryInterval:  50 * time.Millisecond,
			MaxDeliveries:  5,
			NakDelay:       500 * time.Millisecond,
			MaxAckPending:  256,
			Concurrency:    8,
		},
		Version: "dev",
		Name:    "agentbus",
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.NATSURL == "" {
		errs = append(errs, c.Embedded.Validate())
	}
	errs = append(errs, c.TLS.validate())
	if c.Streams.Replicas < 1 || c.Streams.Replicas > 5 {
		errs = append(errs, fmt.Errorf("streams.replicas must be 1..5, got %d", c.Streams.Replicas))
	}
	if c.Streams.Duplicates <= 0 {
		errs = append(errs, errors.New("streams.duplicates must be positive"))
	}
	if c.Streams.MaxAge < 0 || c.Streams.DLQMaxAge < 0 {
		errs = append(errs, errors.New("streams max age must not be negative"))
	}
	if c.Streams.MaxBytes < 0 || c.Streams.DLQMaxBytes < 0 {
		errs = append(errs, errors.New("streams max bytes must not be negative (0: unlimited)"))
	}
	cc := c.Consumer
	if cc.HandlerTimeout <= 0 {
		errs = append(errs, errors.New("consumer.handler_timeout must be positive"))
	}
	if cc.Retries < 0 {
		errs = append(errs, errors.New("consumer.retries must not be negative"))
	}
	if cc.AckWait < 3*time.Second {
		errs = append(errs, fmt.Errorf("consumer.ack_wait (%s) must be at least 3s (in-progress acks go every ack_wait/3)", cc.AckWait))
	}
	if cc.MaxDeliveries < 1 {
		errs = append(errs, errors.New("consumer.max_deliveries must be at least 1"))
	}
	if cc.Concurrency < 1 || cc.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("consumer.concurrency must be 1..1024, got %d", cc.Concurrency))
	}
	if cc.MaxAckPending < cc.Concurrency {
		errs = append(errs, errors.New("consumer.max_ack_pending must be at least concurrency"))
	}
	if cc.NakDelay < 0 || cc.RetryInterval < 0 {
		errs = append(errs, errors.New("consumer delays must not be negative"))
	}
	return errors.Join(errs...)
}
