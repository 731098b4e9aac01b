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
	"github.com/nats-io/nats.go/jetstream"
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
func EnsureStreams(js jetstream.StreamManager, cfg StreamConfig, log *slog.Logger) error {
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	streams := []jetstream.StreamConfig{
		{
			Name:        messages.StreamTurns,
			Description: "agentbus turn events: the system of record",
			Subjects:    []string{messages.TurnSubjects},
			Storage:     storage,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.MaxAge,
			MaxBytes:    orUnlimited(cfg.MaxBytes),
			Duplicates:  cfg.Duplicates,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
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
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
		},
	}
	// Retried while a cluster forms: every process may start at once.
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
	defer cancel()
	for _, sc := range streams {
		var info *jetstream.StreamInfo
		created := false
		err := retryProvisioning(ctx, func() error {
			ctx := context.WithoutCancel(ctx) // bounded per call, as by the legacy MaxWait
			s, err := js.Stream(ctx, sc.Name)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				if _, err := js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
					return fmt.Errorf("create stream %s: %w", sc.Name, err)
				}
				created = true
				return nil
			}
			if err != nil {
				return err
			}
			info = s.CachedInfo()
			return nil
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		if created {
			continue
		}
		diff := streamDiff(info.Config, sc)
		if diff == "" {
			continue
		}
		uctx, ucancel := context.WithTimeout(context.Background(), 3*time.Second) // the legacy MaxWait(3s)
		_, err = js.UpdateStream(uctx, sc)
		ucancel()
		if err != nil {
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
func streamDiff(have, want jetstream.StreamConfig) string {
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

// consumerConfig is the push consumer (deliver subject and group) the
// Watermill subscriber of newPubSub attaches to.
func consumerConfig(stage, event string, cc ConsumerConfig) jetstream.ConsumerConfig {
	durable := DurableName(stage, event)
	return jetstream.ConsumerConfig{
		Durable:        durable,
		Description:    "agentbus " + stage + " stage, " + event + " events",
		DeliverSubject: "_agentbus.deliver." + durable,
		DeliverGroup:   durable,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cc.AckWait,
		// Unlimited deliveries on the server: the stage's dead-letter
		// middleware bounds them, so a message that cannot even be
		// dead-lettered is retried, never dropped by the server.
		MaxDeliver:    -1,
		FilterSubject: messages.EventFilter(event),
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		MaxAckPending: cc.MaxAckPending,
	}
}

// ensurePushConsumer creates or updates the durable push consumer of a
// stage (consumerConfig) on stream with a deliver group, so N subscribers
// of the group split its messages.
func ensurePushConsumer(js jetstream.JetStream, stream, stage, event string, cc ConsumerConfig) error {
	cfg := consumerConfig(stage, event, cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := js.PushConsumer(ctx, stream, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, err := js.CreatePushConsumer(ctx, stream, cfg); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
			return fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("consumer %s: %w", cfg.Durable, err)
	}
	if _, err := js.UpdatePushConsumer(ctx, stream, cfg); err != nil {
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
// retrying while a cluster forms (every process may start at once). It
// looks the bucket up first (STREAM.INFO) and creates it only when missing
// (STREAM.CREATE, never STREAM.UPDATE): a stage identity may create its
// buckets but not change them.
func EnsureKV(js jetstream.KeyValueManager, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
	defer cancel()
	var kv jetstream.KeyValue
	err := retryProvisioning(ctx, func() error {
		ctx := context.WithoutCancel(ctx) // bounded per call, as by the legacy MaxWait
		var err error
		kv, err = js.KeyValue(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, cfg)
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, cfg.Bucket) // created meanwhile by another process
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}
