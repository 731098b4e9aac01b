package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Metadata keys set on every consumed message (they are not forwarded).
const (
	// MetaSubject is the subject the message was consumed from; on an
	// outgoing message it is the subject to publish to.
	MetaSubject = "Agentbus-Subject"
	// MetaDelivered is JetStream's delivery count of the message.
	MetaDelivered = "Agentbus-Delivered"
	// MetaStreamSeq is the message's sequence in its stream.
	MetaStreamSeq = "Agentbus-Stream-Seq"
	// MetaTimestamp is when the stream stored the message (RFC 3339 nano).
	MetaTimestamp = "Agentbus-Timestamp"
)

// watermillUUIDHdr is the header Watermill publishers carry the message id in.
const watermillUUIDHdr = wmnats.WatermillUUIDHdr

// ErrPermanent marks an error that no retry can fix (a malformed payload, a
// bug): the message goes to the dead-letter queue at once.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ error }

func (p permanentError) Unwrap() []error { return []error{p.error, ErrPermanent} }

// unmarshaler decodes JetStream messages into Watermill messages. Unlike
// watermill-nats' NATSMarshaler alone it never fails on a payload (a bad
// payload must reach the handler, and from there the DLQ), takes the
// message id from Nats-Msg-Id when the publisher was not Watermill (any
// other language), and records subject and delivery count.
type unmarshaler struct{ inner wmnats.NATSMarshaler }

func (u *unmarshaler) Marshal(topic string, msg *message.Message) (*nats.Msg, error) {
	m, err := u.inner.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{MetaSubject, MetaDelivered, MetaStreamSeq, MetaTimestamp} {
		m.Header.Del(k)
	}
	return m, nil
}

func (u *unmarshaler) Unmarshal(nm *nats.Msg) (*message.Message, error) {
	id := nm.Header.Get(wmnats.WatermillUUIDHdr)
	if id == "" {
		id = nm.Header.Get(nats.MsgIdHdr)
	}
	md := make(message.Metadata, len(nm.Header)+4)
	for k, v := range nm.Header {
		switch k {
		case wmnats.WatermillUUIDHdr, nats.MsgIdHdr, nats.ExpectedLastMsgIdHdr, nats.ExpectedStreamHdr, nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastSeqHdr:
			continue
		}
		if len(v) > 0 {
			md.Set(k, v[len(v)-1])
		}
	}
	md.Set(MetaSubject, nm.Subject)
	if meta, err := nm.Metadata(); err == nil {
		md.Set(MetaDelivered, strconv.FormatUint(meta.NumDelivered, 10))
		md.Set(MetaStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
		md.Set(MetaTimestamp, meta.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	if id == "" {
		id = nm.Subject + "@" + md.Get(MetaStreamSeq)
	}
	msg := message.NewMessage(id, nm.Data)
	msg.Metadata = md
	return msg, nil
}

// Decode decodes a message payload into T. A payload that is not valid JSON
// for T is a permanent error.
func Decode[T any](msg *message.Message) (T, error) {
	var v T
	if err := json.Unmarshal(msg.Payload, &v); err != nil {
		return v, Permanent(fmt.Errorf("decode %T from %s: %w", v, msg.Metadata.Get(MetaSubject), err))
	}
	return v, nil
}

// NewEvent builds an outgoing event message: JSON payload, deterministic id
// MsgID(requestID, event, round), the subject to publish on, and the
// correlation header.
func NewEvent(event, requestID string, round int, payload any) (*message.Message, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", event, err)
	}
	m := message.NewMessage(messages.MsgID(requestID, event, round), b)
	m.Metadata.Set(MetaSubject, messages.Subject(event, requestID))
	m.Metadata.Set(messages.HeaderEvent, event)
	m.Metadata.Set(messages.HeaderCorrelationID, requestID)
	return m, nil
}

// Delivered returns the JetStream delivery count of a consumed message.
func Delivered(msg *message.Message) uint64 {
	n, _ := strconv.ParseUint(msg.Metadata.Get(MetaDelivered), 10, 64)
	return n
}

// subjectPublisher publishes each message on the subject in its
// MetaSubject metadata (the router's fixed topic is only a fallback), so a
// handler can route to several next stages with one publisher. It
// publishes with nats.go/jetstream: the message id as Nats-Msg-Id (the
// stream's duplicate window drops a re-publish) and in Watermill's uuid
// header, the metadata as headers (without the Meta* keys). The messages
// of one Publish are sent together and their acks awaited together; an
// error means some may be stored (a retry publishes them again, and the
// stream drops the duplicates).
type subjectPublisher struct{ js jetstream.JetStream }

// publishAckWait bounds the wait for the stream's acks of one Publish.
const publishAckWait = 10 * time.Second

func (p subjectPublisher) Publish(topic string, msgs ...*message.Message) error {
	var m unmarshaler
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	subjects := make([]string, 0, len(msgs))
	for _, msg := range msgs {
		subj := msg.Metadata.Get(MetaSubject)
		if subj == "" {
			subj = topic
		}
		if subj == "" {
			return fmt.Errorf("message %s has no subject", msg.UUID)
		}
		nm, err := m.Marshal(subj, msg)
		if err != nil {
			return fmt.Errorf("publish %s: %w", subj, err)
		}
		f, err := p.js.PublishMsgAsync(nm, jetstream.WithMsgID(msg.UUID))
		if err != nil {
			return fmt.Errorf("publish %s: %w", subj, err)
		}
		futures = append(futures, f)
		subjects = append(subjects, subj)
	}
	timeout := time.NewTimer(publishAckWait)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", subjects[i], err)
		case <-timeout.C:
			return fmt.Errorf("publish %s: %w", subjects[i], nats.ErrTimeout)
		}
	}
	return nil
}

func (p subjectPublisher) Close() error { return nil }

// FailedEvent builds the terminal Failed event of a request.
func FailedEvent(stage string, t *messages.Turn, code string, status int, reason string, retryAfter time.Duration) (*message.Message, error) {
	f := messages.Failed{
		SchemaVersion:  messages.SchemaVersion,
		RequestID:      t.RequestID,
		ConversationID: t.ConversationID,
		User:           t.User,
		Stage:          stage,
		Code:           code,
		Status:         status,
		Reason:         Redact(reason),
		RetryAfterMS:   retryAfter.Milliseconds(),
		At:             time.Now().UTC(),
	}
	return NewEvent(messages.EventFailed, t.RequestID, 0, f)
}
