package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
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
// taking work during shutdown), dead letters, retry with backoff, timeout,
// panic recovery, and publishing of the handler's events. With recovery
// innermost a panic is an ordinary error: it is retried and then
// dead-lettered, never NAKed forever. Publishing is inside the chain, so a
// publish that fails is retried and dead-lettered like a handler error
// (never redelivered without bound), and an event too large for the bus
// becomes the turn's payload_too_large failure.
func (r *Runtime) handlerMiddleware(stage string, produces []string, conn *stageConn, cc ConsumerConfig, stats *Stats, obs *eventObs, log *slog.Logger, h message.HandlerFunc) message.NoPublishHandlerFunc {
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
			return !errors.Is(p.Err, ErrPermanent) && !errors.Is(p.Err, ErrStepBusy)
		},
	}
	timeout := middleware.Timeout(cc.HandlerTimeout)
	inner := retry.Middleware(timeout(recoverer(r.publishing(stage, produces, conn, log, h))))
	dlq := r.deadLetterMiddleware(stage, conn, cc, stats, obs, log)
	full := r.gate(dlq(inner))
	if obs != nil {
		full = obs.observe(full)
	}
	return func(msg *message.Message) error {
		_, err := full(msg)
		return err
	}
}

// eventHeadroom is what an event's NATS headers and protocol line may take
// besides its payload.
const eventHeadroom = 8 << 10

// publishing publishes what h returns, with the correlation id of the
// consumed message, before the message is acked. An event larger than the
// server's max payload is replaced by the turn's payload_too_large failed
// event (small: ids, code, sizes), so it fails cleanly instead of being
// redelivered forever.
func (r *Runtime) publishing(stage string, produces []string, conn *stageConn, log *slog.Logger, h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := r.late(stage, produces, conn, msg, h)
		if err != nil || len(out) == 0 {
			return nil, err
		}
		limit := int(conn.nc.MaxPayload()) - eventHeadroom
		id := msg.Metadata.Get(messages.HeaderCorrelationID)
		deadline := msg.Metadata.Get(messages.HeaderDeadline)
		kept := out[:0]
		for _, m := range out {
			if id != "" && m.Metadata.Get(messages.HeaderCorrelationID) == "" {
				m.Metadata.Set(messages.HeaderCorrelationID, id)
			}
			if deadline != "" && m.Metadata.Get(messages.HeaderDeadline) == "" {
				m.Metadata.Set(messages.HeaderDeadline, deadline)
			}
			propagateTrace(msg, m)
			if len(m.Payload) > limit {
				subject := m.Metadata.Get(MetaSubject)
				log.Error("event too large for the bus; the turn fails with payload_too_large", "msg_id", msg.UUID, "event_subject", subject, "bytes", len(m.Payload), "limit", limit)
				f, err := tooLarge(stage, msg, subject, len(m.Payload), limit)
				if err != nil {
					return nil, Permanent(err)
				}
				m = f
			}
			// One terminal event per turn: publish it only if its claim
			// wins (or it is this outcome again, after a redelivery).
			if ev := m.Metadata.Get(messages.HeaderEvent); messages.Terminal(ev) {
				_, rid, _ := messages.ParseSubject(m.Metadata.Get(MetaSubject))
				terms, err := conn.terminals(r.cfg.Streams.Replicas)
				if err != nil {
					return nil, err
				}
				cctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), 10*time.Second)
				won, err := terms.Claim(cctx, rid, ev)
				cancel()
				if err != nil {
					return nil, err
				}
				if won != ev {
					log.Info("turn already ended; event not published", "request_id", rid, "outcome", won, "event", ev)
					continue
				}
			}
			kept = append(kept, m)
		}
		out = kept
		if len(out) == 0 {
			return nil, nil
		}
		if err := conn.pub.Publish("", out...); err != nil {
			return nil, err
		}
		return nil, nil
	}
}

// late runs h, unless the turn's deadline has passed: then the turn ends
// with deadline_exceeded (once: the claim decides), except that the stage
// that completed the turn runs again to publish its completed event
// (persist committed, then crashed before the event went out). A handler's
// context never outlives the deadline (dispatch sets it), so late work
// never calls a provider.
func (r *Runtime) late(stage string, produces []string, conn *stageConn, msg *message.Message, h message.HandlerFunc) ([]*message.Message, error) {
	dl, ok := Deadline(msg)
	if !ok || time.Now().Before(dl) {
		return h(msg)
	}
	_, rid, _ := messages.ParseSubject(msg.Metadata.Get(MetaSubject))
	terms, err := conn.terminals(r.cfg.Streams.Replicas)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), 10*time.Second)
	defer cancel()
	outcome, found, err := terms.Outcome(ctx, rid)
	if err != nil {
		return nil, err
	}
	if found {
		if outcome == messages.EventCompleted && slices.Contains(produces, outcome) {
			m := msg.Copy()
			m.SetContext(ctx)
			return h(m)
		}
		return nil, nil // the turn is over: nothing to do
	}
	var t messages.Turn
	if err := json.Unmarshal(msg.Payload, &t); err != nil || !messages.ValidID(t.RequestID) {
		return nil, Permanent(fmt.Errorf("late event on %s whose turn cannot be named", msg.Metadata.Get(MetaSubject)))
	}
	f, err := FailedEvent(stage, &t, messages.CodeDeadlineExceeded, http.StatusGatewayTimeout,
		"the turn's deadline ("+dl.UTC().Format(time.RFC3339)+") passed before it completed", 0)
	if err != nil {
		return nil, err
	}
	return []*message.Message{f}, nil
}

// Deadline returns the turn deadline a consumed message carries.
func Deadline(msg *message.Message) (time.Time, bool) {
	s := msg.Metadata.Get(messages.HeaderDeadline)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// tooLarge builds the payload_too_large failed event of the turn msg
// belongs to (every turn event carries request_id, conversation_id, user).
func tooLarge(stage string, msg *message.Message, subject string, size, limit int) (*message.Message, error) {
	var t messages.Turn
	if err := json.Unmarshal(msg.Payload, &t); err != nil || !messages.ValidID(t.RequestID) {
		return nil, fmt.Errorf("event on %s is %d bytes (limit %d) and its turn cannot be named", subject, size, limit)
	}
	event, _, _ := messages.ParseSubject(subject)
	return FailedEvent(stage, &t, messages.CodePayloadTooLarge, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("the %s event of this turn would be %d bytes; the bus carries at most %d", event, size, limit), 0)
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

func (r *Runtime) deadLetterMiddleware(stage string, conn *stageConn, cc ConsumerConfig, stats *Stats, obs *eventObs, log *slog.Logger) func(message.HandlerFunc) message.HandlerFunc {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			delivered := Delivered(msg)
			if delivered > uint64(cc.MaxDeliveries) {
				// Earlier deliveries never finished (crash, kill, ack lost):
				// do not run it again.
				reason := fmt.Sprintf("delivered %d times without completing (limit %d)", delivered, cc.MaxDeliveries)
				return nil, r.deadLetter(conn, msg, stage, 0, reason, stats, obs, log)
			}
			attempts := new(atomic.Int32)
			msg.SetContext(context.WithValue(msg.Context(), attemptsKey{}, attempts))
			out, err := h(msg)
			obs.onRetries(attempts.Load() - 1)
			if err == nil {
				stats.Processed.Add(1)
				obs.onHandled()
				return out, nil
			}
			if errors.Is(err, errDraining) || errors.Is(err, ErrStepBusy) {
				return nil, err // handed back, not a failure
			}
			if errors.Is(err, ErrPermanent) || delivered >= uint64(cc.MaxDeliveries) {
				return nil, r.deadLetter(conn, msg, stage, int(attempts.Load()), err.Error(), stats, obs, log)
			}
			stats.Failed.Add(1)
			obs.onFailed(err)
			log.Warn("handler failed; will be redelivered", "msg_id", msg.UUID, "delivery", delivered, "err", Redact(err.Error()))
			return nil, err
		}
	}
}

// deadLetter publishes msg to the stage's DLQ subject and returns nil (ack
// the original) or the publish error (NAK: a DLQ failure is never a loss).
func (r *Runtime) deadLetter(conn *stageConn, msg *message.Message, stage string, attempts int, reason string, stats *Stats, obs *eventObs, log *slog.Logger) error {
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
		PayloadBytes:  len(msg.Payload),
	}
	dl.StreamSeq, _ = strconv.ParseUint(msg.Metadata.Get(MetaStreamSeq), 10, 64)
	b, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	if len(b) > int(conn.nc.MaxPayload())-eventHeadroom && dl.StreamSeq > 0 {
		// Too large to store again (base64 grows it by a third): keep a
		// reference to the original in the turn stream instead.
		dl.Payload, dl.PayloadOmitted = nil, true
		if b, err = json.Marshal(dl); err != nil {
			return err
		}
	}
	nm := nats.NewMsg(messages.DLQSubject(stage))
	nm.Data = b
	nm.Header.Set(nats.MsgIdHdr, "dlq/"+stage+"/"+msg.UUID)
	if _, err := conn.js.PublishMsg(nm); err != nil {
		log.Error("dead-letter publish failed; message will be redelivered", "msg_id", msg.UUID, "err", err)
		return fmt.Errorf("dead-letter publish: %w", err)
	}
	stats.DeadLettered.Add(1)
	obs.onDeadLettered(dl.Reason)
	log.Error("message dead-lettered", "msg_id", msg.UUID, "subject", dl.Subject, "attempts", attempts, "deliveries", dl.Deliveries, "reason", dl.Reason)
	return nil
}
