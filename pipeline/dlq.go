package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// Stats counts what a stage instance did. All fields are safe for
// concurrent use.
type Stats struct {
	Processed    atomic.Int64 // handler runs that succeeded (message acked)
	Failed       atomic.Int64 // deliveries that failed and were NAKed for redelivery
	DeadLettered atomic.Int64 // messages moved to the dead-letter stream
	Panics       atomic.Int64 // handler panics recovered
}

// Snapshot returns the counters as a map for STATS and health output.
func (s *Stats) Snapshot() map[string]int64 {
	return map[string]int64{
		"processed":     s.Processed.Load(),
		"failed":        s.Failed.Load(),
		"dead_lettered": s.DeadLettered.Load(),
		"panics":        s.Panics.Load(),
	}
}

var secretPattern = regexp.MustCompile(`(?i)(sk-[a-z0-9_\-]{6,}|ab-[a-z0-9]{6,}_[a-z0-9_\-]{8,}|bearer\s+[a-z0-9._\-]{6,}|api[_-]?key["'=:\s]+[a-z0-9._\-]{6,})`)

// Redact removes anything that looks like a credential from s and bounds
// its length. It is applied to every dead-letter reason.
func Redact(s string) string {
	s = secretPattern.ReplaceAllString(s, "[REDACTED]")
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

type attemptsKey struct{}

// handlerMiddleware wraps a stage handler with, from outside in: gate (stop
// taking work during shutdown), correlation id, dead letters, retry with
// backoff, timeout, panic recovery. With recovery innermost a panic is an
// ordinary error: it is retried and then dead-lettered, never NAKed forever.
func (r *Runtime) handlerMiddleware(stage string, js nats.JetStreamContext, cc ConsumerConfig, stats *Stats, log *slog.Logger, h message.HandlerFunc) message.HandlerFunc {
	recoverer := func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (out []*message.Message, err error) {
			if p, ok := msg.Context().Value(attemptsKey{}).(*atomic.Int32); ok {
				p.Add(1)
			}
			defer func() {
				if v := recover(); v != nil {
					stats.Panics.Add(1)
					log.Error("handler panic", "msg_id", msg.UUID, "panic", fmt.Sprint(v))
					out, err = nil, fmt.Errorf("panic: %v", v)
				}
			}()
			return h(msg)
		}
	}
	retry := middleware.Retry{
		MaxRetries:          cc.Retries,
		InitialInterval:     cc.RetryInterval,
		MaxInterval:         2 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.3,
		ResetContextOnRetry: true,
		ShouldRetry: func(p middleware.RetryParams) bool {
			return !errors.Is(p.Err, ErrPermanent)
		},
	}
	timeout := middleware.Timeout(cc.HandlerTimeout)
	inner := retry.Middleware(timeout(recoverer(h)))
	dlq := r.deadLetterMiddleware(stage, js, cc, stats, log)
	return r.gate(correlation(dlq(inner)))
}

// gate NAKs messages that arrive once shutdown began, so they go to another
// replica instead of starting work this process will not finish.
func (r *Runtime) gate(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if r.draining.Load() {
			return nil, errDraining
		}
		return h(msg)
	}
}

var errDraining = errors.New("stage is shutting down")

func correlation(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if id := msg.Metadata.Get(messages.HeaderCorrelationID); id != "" {
			for _, m := range out {
				if m.Metadata.Get(messages.HeaderCorrelationID) == "" {
					m.Metadata.Set(messages.HeaderCorrelationID, id)
				}
			}
		}
		return out, err
	}
}

func (r *Runtime) deadLetterMiddleware(stage string, js nats.JetStreamContext, cc ConsumerConfig, stats *Stats, log *slog.Logger) func(message.HandlerFunc) message.HandlerFunc {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			delivered := Delivered(msg)
			if delivered > uint64(cc.MaxDeliveries) {
				// Earlier deliveries never finished (crash, kill, ack lost):
				// do not run it again.
				reason := fmt.Sprintf("delivered %d times without completing (limit %d)", delivered, cc.MaxDeliveries)
				return nil, r.deadLetter(js, msg, stage, 0, reason, stats, log)
			}
			attempts := new(atomic.Int32)
			msg.SetContext(context.WithValue(msg.Context(), attemptsKey{}, attempts))
			out, err := h(msg)
			if err == nil {
				stats.Processed.Add(1)
				return out, nil
			}
			if errors.Is(err, errDraining) {
				return nil, err
			}
			if errors.Is(err, ErrPermanent) || delivered >= uint64(cc.MaxDeliveries) {
				return nil, r.deadLetter(js, msg, stage, int(attempts.Load()), err.Error(), stats, log)
			}
			stats.Failed.Add(1)
			log.Warn("handler failed; will be redelivered", "msg_id", msg.UUID, "delivery", delivered, "err", Redact(err.Error()))
			return nil, err
		}
	}
}

// deadLetter publishes msg to the stage's DLQ subject and returns nil (ack
// the original) or the publish error (NAK: a DLQ failure is never a loss).
func (r *Runtime) deadLetter(js nats.JetStreamContext, msg *message.Message, stage string, attempts int, reason string, stats *Stats, log *slog.Logger) error {
	headers := map[string]string{}
	for k, v := range msg.Metadata {
		if strings.HasPrefix(k, "Agentbus-") && k != MetaSubject && k != MetaDelivered && k != MetaStreamSeq && k != MetaTimestamp {
			headers[k] = v
		}
	}
	dl := messages.DeadLetter{
		SchemaVersion: messages.SchemaVersion,
		Stage:         stage,
		Subject:       msg.Metadata.Get(MetaSubject),
		MsgID:         msg.UUID,
		Attempts:      attempts,
		Deliveries:    Delivered(msg),
		Reason:        Redact(reason),
		Payload:       msg.Payload,
		Headers:       headers,
		At:            time.Now().UTC(),
	}
	b, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	nm := nats.NewMsg(messages.DLQSubject(stage))
	nm.Data = b
	nm.Header.Set(nats.MsgIdHdr, "dlq/"+stage+"/"+msg.UUID)
	if _, err := js.PublishMsg(nm); err != nil {
		log.Error("dead-letter publish failed; message will be redelivered", "msg_id", msg.UUID, "err", err)
		return fmt.Errorf("dead-letter publish: %w", err)
	}
	stats.DeadLettered.Add(1)
	log.Error("message dead-lettered", "msg_id", msg.UUID, "subject", dl.Subject, "attempts", attempts, "deliveries", dl.Deliveries, "reason", dl.Reason)
	return nil
}
