package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
)

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
