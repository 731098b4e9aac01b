package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// IdempotencyBucket maps (user, Idempotency-Key) to the turn it started.
const IdempotencyBucket = "agentbus_idempotency"

// Request headers of both entries (HTTP and NATS).
const (
	// HeaderIdempotencyKey names a request: sent again (after a timeout,
	// a lost connection), the same key gets the first request's turn and
	// its real outcome, never a second run. Kept for pipeline.TerminalTTL.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderRequestTimeout shortens the wait for this request (seconds, or
	// a duration such as 30s): it becomes the turn's deadline, after which
	// the turn ends with deadline_exceeded and is not stored. At most
	// Config.ReplyTimeout.
	HeaderRequestTimeout = "X-Request-Timeout"
)

// requestOptions are what a request's headers ask for.
type requestOptions struct {
	Conversation   string
	IdempotencyKey string
	Timeout        string
	CacheControl   string
}

func optionsFrom(get func(string) string) requestOptions {
	return requestOptions{Conversation: get(HeaderConversation), IdempotencyKey: get(HeaderIdempotencyKey), Timeout: get(HeaderRequestTimeout),
		CacheControl: get(HeaderCacheControl)}
}

// cacheFor is the turn's use of the response cache: the request's "cache"
// field when present, else the key's setting; Cache-Control no-store
// turns it off, no-cache makes it refresh.
func cacheFor(id Identity, body *bool, cacheControl string) *messages.CacheRequest {
	var c *messages.CacheRequest
	switch {
	case body != nil && *body:
		c = &messages.CacheRequest{Explicit: true}
	case body == nil && id.Cache:
		c = &messages.CacheRequest{}
	}
	for d := range strings.SplitSeq(strings.ToLower(cacheControl), ",") {
		switch strings.TrimSpace(d) {
		case "no-store":
			return nil
		case "no-cache":
			if c != nil {
				c.Refresh = true
			}
		}
	}
	return c
}

// timeout is how long the request may take: X-Request-Timeout when set
// and shorter, else ReplyTimeout.
func (s *Handler) timeoutFor(o requestOptions) (time.Duration, error) {
	if o.Timeout == "" {
		return s.cfg.ReplyTimeout, nil
	}
	d, err := time.ParseDuration(o.Timeout)
	if err != nil {
		secs, ferr := strconv.ParseFloat(o.Timeout, 64)
		if ferr != nil || secs <= 0 {
			return 0, fmt.Errorf("%s must be seconds or a duration such as 30s", HeaderRequestTimeout)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s must be positive", HeaderRequestTimeout)
	}
	return min(d, s.cfg.ReplyTimeout), nil
}

// idemEntry is what an Idempotency-Key maps to.
type idemEntry struct {
	RequestID      string    `json:"request_id"`
	ConversationID string    `json:"conversation_id"`
	Model          string    `json:"model,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	Deadline       time.Time `json:"deadline"`
}

// idemKey is the bucket key of a user's Idempotency-Key: keys of different
// users never collide, and the client's text never becomes a subject.
func idemKey(user, key string) string {
	sum := sha256.Sum256([]byte(user + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// reserve records e under (user, key) unless the key was used before, and
// returns the earlier entry then.
func (s *Handler) reserve(ctx context.Context, user, key string, e idemEntry) (prior idemEntry, fresh bool, err error) {
	if s.idem == nil {
		return idemEntry{}, false, errors.New("idempotency keys are not available")
	}
	b, _ := json.Marshal(e)
	k := idemKey(user, key)
	// As with the legacy API: the calls keep ctx's values, not its
	// cancellation (the JetStream client's default timeout bounds them).
	cctx := context.WithoutCancel(ctx)
	_, err = s.idem.Create(cctx, k, b)
	if err == nil {
		return e, true, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return idemEntry{}, false, err
	}
	got, err := s.idem.Get(cctx, k)
	if err != nil {
		return idemEntry{}, false, err
	}
	if err := json.Unmarshal(got.Value(), &prior); err != nil {
		return idemEntry{}, false, err
	}
	return prior, false, nil
}

// resume answers a request whose Idempotency-Key started a turn before:
// that turn's outcome (waiting for it when it has none yet), never a
// second run.
func (s *Handler) resume(ctx context.Context, out reply, prior idemEntry, stream, usage bool) {
	noteCache(out, "idempotent_replay")
	out.setHeader("X-Request-Id", prior.RequestID)
	out.setHeader("X-Conversation-Id", prior.ConversationID)
	t := messages.Turn{RequestID: prior.RequestID, ConversationID: prior.ConversationID, Model: prior.Model, CreatedAt: prior.CreatedAt, Deadline: prior.Deadline, Stream: stream}
	events, done := s.waiters.wait(t.RequestID)
	defer done()
	if outcome, found, err := s.terms.Outcome(ctx, t.RequestID); err == nil && found {
		if m := s.stored(ctx, t.RequestID, outcome); m != nil {
			events <- m
		}
	}
	// Wait for it until the first request's deadline, but at least this
	// request's own timeout.
	wait := max(time.Until(prior.Deadline), 0)
	if d, _ := s.timeoutFor(requestOptions{}); wait == 0 {
		wait = min(d, 5*time.Second)
	}
	s.await(ctx, out, &t, usage, events, nil, time.Now().Add(wait))
}

// await answers with the turn's terminal event, streaming deltas when the
// turn streams, until deadline; then it settles the turn's outcome.
func (s *Handler) await(ctx context.Context, out reply, t *messages.Turn, usage bool, events, deltas chan *nats.Msg, deadline time.Time) {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	settle := func() *nats.Msg {
		if ctx.Err() != nil {
			s.cancel(t) // the client went away
			return nil
		}
		return s.settle(t, events)
	}
	if t.Stream {
		s.stream(wctx, out, t, usage, events, deltas, settle)
		return
	}
	for {
		select {
		case <-wctx.Done():
			if m := settle(); m != nil {
				s.answer(out, t, m)
			} else if ctx.Err() == nil {
				s.timeout(out, t.RequestID)
			}
			return
		case m := <-events:
			if done := s.answer(out, t, m); done {
				return
			}
		}
	}
}

// settle decides the outcome of a turn whose deadline passed while the
// client waited: ingest claims it as failed (deadline_exceeded) and
// publishes that, so the turn can no longer complete and is not stored;
// or, when the turn ended first (its claim won), it returns that event
// (arriving, or read back from the stream). nil: unknown (the bus is
// unreachable).
func (s *Handler) settle(t *messages.Turn, events chan *nats.Msg) *nats.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.terms == nil {
		return nil
	}
	outcome, created, err := s.terms.ClaimNew(ctx, t.RequestID, messages.EventFailed)
	if err != nil {
		s.log.Warn("could not settle a late turn", "request_id", t.RequestID, "err", err)
		return nil
	}
	if created {
		reason := "no answer by the turn's deadline; the turn was stopped and is not stored"
		if !t.Deadline.IsZero() {
			reason = fmt.Sprintf("no answer by the turn's deadline (%s); the turn was stopped and is not stored", t.Deadline.UTC().Format(time.RFC3339))
		}
		f := messages.Failed{SchemaVersion: messages.SchemaVersion, RequestID: t.RequestID, ConversationID: t.ConversationID, User: t.User,
			Stage: Stage, Code: messages.CodeDeadlineExceeded, Status: http.StatusGatewayTimeout, Reason: reason, At: time.Now().UTC()}
		b, _ := json.Marshal(f)
		m := nats.NewMsg(messages.Subject(messages.EventFailed, t.RequestID))
		m.Data = b
		m.Header.Set(nats.MsgIdHdr, messages.MsgID(t.RequestID, messages.EventFailed, 0))
		m.Header.Set(messages.HeaderCorrelationID, t.RequestID)
		m.Header.Set(messages.HeaderEvent, messages.EventFailed)
		if _, err := s.js.PublishMsg(ctx, m); err != nil {
			s.log.Warn("deadline failure not published", "request_id", t.RequestID, "err", err)
		}
		return m
	}
	// The turn ended as outcome: its event is on its way, or stored.
	wait := time.NewTimer(2 * time.Second)
	defer wait.Stop()
	for {
		select {
		case m := <-events:
			if ev, _, _ := messages.ParseSubject(m.Subject); ev == outcome {
				return m
			}
		case <-wait.C:
			return s.stored(ctx, t.RequestID, outcome)
		}
	}
}

// cancel ends the turn of a client that went away (unless the operator
// lets such turns complete): the outcome is claimed as client_cancelled,
// recorded on the stream, and the llm stage is told to abort the model
// call. A turn that already ended keeps its outcome.
func (s *Handler) cancel(t *messages.Turn) {
	if s.cfg.CompleteOnDisconnect || s.terms == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, created, err := s.terms.ClaimNew(ctx, t.RequestID, messages.EventFailed)
	if err != nil || !created {
		return
	}
	f := messages.Failed{SchemaVersion: messages.SchemaVersion, RequestID: t.RequestID, ConversationID: t.ConversationID, User: t.User,
		Stage: Stage, Code: messages.CodeClientCancelled, Status: 499, Reason: "the client went away before the answer; the turn was cancelled and is not stored", At: time.Now().UTC()}
	b, _ := json.Marshal(f)
	m := nats.NewMsg(messages.Subject(messages.EventFailed, t.RequestID))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, messages.MsgID(t.RequestID, messages.EventFailed, 0))
	m.Header.Set(messages.HeaderCorrelationID, t.RequestID)
	m.Header.Set(messages.HeaderEvent, messages.EventFailed)
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		s.log.Warn("cancellation not recorded", "request_id", t.RequestID, "err", err)
	}
	_ = s.nc.Publish(messages.CancelSubject(t.RequestID), nil)
	s.log.Info("client went away; turn cancelled", "request_id", t.RequestID)
}

// stored reads a turn's terminal event back from the stream (STREAM.INFO,
// then STREAM.MSG.GET: the turn stream does not allow direct gets).
func (s *Handler) stored(ctx context.Context, rid, outcome string) *nats.Msg {
	stream, err := s.js.Stream(ctx, messages.StreamTurns)
	if err != nil {
		return nil
	}
	raw, err := stream.GetLastMsgForSubject(ctx, messages.Subject(outcome, rid))
	if err != nil {
		return nil
	}
	return &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: raw.Header}
}

// validIdemKey accepts what clients send (a UUID, a hash, any token).
func validIdemKey(k string) bool {
	return len(k) <= 255 && strings.TrimSpace(k) == k && k != ""
}
