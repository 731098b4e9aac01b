package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// Connect opens a NATS connection that reconnects forever and logs its
// state changes. name shows in the server's connection list.
func Connect(url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", RedactURL(url), err)
	}
	return nc, nil
}

// RedactURL hides the credentials of a NATS URL (user:password@).
func RedactURL(u string) string {
	// nats URLs may carry user:password@; never print them.
	for i := 0; i < len(u); i++ {
		if u[i] == '@' {
			for j := 0; j < i; j++ {
				if u[j:j+1] == "/" && j+1 < len(u) && u[j+1] == '/' {
					return u[:j+2] + "***@" + u[i+1:]
				}
			}
			return "***@" + u[i+1:]
		}
	}
	return u
}

// EnsureStreams creates the turn and dead-letter streams when they are
// missing and updates them only where their configuration differs from
// cfg. It is idempotent and run once at start, never per publish. A stage
// identity may create but not update streams: when it finds a stream that
// differs it logs a warning and goes on with the stream as it is (an
// operator or `agentbus serve` updates it).
func EnsureStreams(js nats.JetStreamManager, cfg StreamConfig, log *slog.Logger) error {
	storage := nats.FileStorage
	if cfg.Memory {
		storage = nats.MemoryStorage
	}
	streams := []*nats.StreamConfig{
		{
			Name:        messages.StreamTurns,
			Description: "agentbus turn events: the system of record",
			Subjects:    []string{messages.TurnSubjects},
			Storage:     storage,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.MaxAge,
			MaxBytes:    orUnlimited(cfg.MaxBytes),
			Duplicates:  cfg.Duplicates,
			Retention:   nats.LimitsPolicy,
			Discard:     nats.DiscardOld,
		},
		{
			Name:        messages.StreamDLQ,
			Description: "agentbus dead letters, one subject per stage",
			Subjects:    []string{messages.DLQSubjects},
			Storage:     storage,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.DLQMaxAge,
			MaxBytes:    orUnlimited(cfg.DLQMaxBytes),
			Duplicates:  cfg.Duplicates,
			Retention:   nats.LimitsPolicy,
			Discard:     nats.DiscardOld,
		},
	}
	// Retried while a cluster forms: every process may start at once.
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
	defer cancel()
	for _, sc := range streams {
		var info *nats.StreamInfo
		created := false
		err := retryProvisioning(ctx, func() error {
			var err error
			info, err = js.StreamInfo(sc.Name)
			if errors.Is(err, nats.ErrStreamNotFound) {
				if _, err := js.AddStream(sc); err != nil && !errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
					return fmt.Errorf("create stream %s: %w", sc.Name, err)
				}
				created = true
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		if created {
			continue
		}
		diff := streamDiff(info.Config, *sc)
		if diff == "" {
			continue
		}
		if _, err := js.UpdateStream(sc, nats.MaxWait(3*time.Second)); err != nil {
			if log != nil {
				log.Warn("stream configuration differs from this process's and could not be updated; running with the stream as it is",
					"stream", sc.Name, "differs", diff, "err", err)
			}
			continue
		}
		if log != nil {
			log.Info("stream updated", "stream", sc.Name, "changed", diff)
		}
	}
	return nil
}

// orUnlimited is JetStream's spelling of "no limit" for 0.
func orUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// streamDiff names the settings of want that have differs from have.
func streamDiff(have, want nats.StreamConfig) string {
	var d []string
	if !slices.Equal(have.Subjects, want.Subjects) {
		d = append(d, "subjects")
	}
	if have.MaxAge != want.MaxAge {
		d = append(d, "max_age")
	}
	if have.MaxBytes != want.MaxBytes {
		d = append(d, "max_bytes")
	}
	if have.Duplicates != want.Duplicates {
		d = append(d, "duplicate_window")
	}
	if have.Replicas != want.Replicas {
		d = append(d, "replicas")
	}
	if have.Discard != want.Discard {
		d = append(d, "discard")
	}
	if have.Description != want.Description {
		d = append(d, "description")
	}
	if have.Storage != want.Storage || have.Retention != want.Retention {
		d = append(d, "storage/retention (cannot change in place)")
	}
	return strings.Join(d, ",")
}

// DurableName is the durable consumer of a stage for one event.
func DurableName(stage, event string) string { return "agentbus-" + stage + "-" + event }

func consumerConfig(stage, event string, cc ConsumerConfig) *nats.ConsumerConfig {
	durable := DurableName(stage, event)
	return &nats.ConsumerConfig{
		Durable:        durable,
		Description:    "agentbus " + stage + " stage, " + event + " events",
		DeliverSubject: "_agentbus.deliver." + durable,
		DeliverGroup:   durable,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        cc.AckWait,
		// Unlimited deliveries on the server: the stage's dead-letter
		// middleware bounds them, so a message that cannot even be
		// dead-lettered is retried, never dropped by the server.
		MaxDeliver:    -1,
		FilterSubject: messages.EventFilter(event),
		ReplayPolicy:  nats.ReplayInstantPolicy,
		MaxAckPending: cc.MaxAckPending,
	}
}

// EnsureConsumer creates or updates a stage's durable push consumer with
// a deliver group, so N replicas of the stage split its messages.
func EnsureConsumer(js nats.JetStreamManager, stage, event string, cc ConsumerConfig) error {
	cfg := consumerConfig(stage, event, cc)
	if _, err := js.ConsumerInfo(messages.StreamTurns, cfg.Durable); errors.Is(err, nats.ErrConsumerNotFound) {
		if _, err := js.AddConsumer(messages.StreamTurns, cfg); err != nil && !errors.Is(err, nats.ErrConsumerNameAlreadyInUse) {
			return fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("consumer %s: %w", cfg.Durable, err)
	}
	if _, err := js.UpdateConsumer(messages.StreamTurns, cfg); err != nil {
		return fmt.Errorf("update consumer %s: %w", cfg.Durable, err)
	}
	return nil
}

// Provision runs f, a step of provisioning (creating a stream, a bucket,
// a consumer), until it succeeds or fails for good, retrying for up to a
// minute while a cluster forms: every process may start at once.
func Provision(f func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
	defer cancel()
	return retryProvisioning(ctx, f)
}

// EnsureKV opens the KV bucket cfg names, creating it when it is missing,
// retrying while a cluster forms (every process may start at once).
func EnsureKV(js nats.JetStreamContext, cfg nats.KeyValueConfig) (nats.KeyValue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
	defer cancel()
	var kv nats.KeyValue
	err := retryProvisioning(ctx, func() error {
		var err error
		kv, err = js.KeyValue(cfg.Bucket)
		if errors.Is(err, nats.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(&cfg)
			if errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
				kv, err = js.KeyValue(cfg.Bucket) // created meanwhile by another process
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}
