package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// deadLetterMiddleware moves a message to the stage's dead-letter subject
// when it is permanent, has used its deliveries (cc.MaxDeliveries), or
// was delivered more often than that without completing (a crash loop);
// it counts successes and failures, and hands back (without counting a
// failure) a message refused during shutdown or busy in another replica.
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
	// Not the message's context, which may have ended: the JetStream
	// API's default timeout bounds the publish.
	if _, err := conn.js.PublishMsg(context.Background(), nm); err != nil {
		log.Error("dead-letter publish failed; message will be redelivered", "msg_id", msg.UUID, "err", err)
		return fmt.Errorf("dead-letter publish: %w", err)
	}
	stats.DeadLettered.Add(1)
	obs.onDeadLettered(dl.Reason)
	log.Error("message dead-lettered", "msg_id", msg.UUID, "subject", dl.Subject, "attempts", attempts, "deliveries", dl.Deliveries, "reason", dl.Reason)
	return nil
}
