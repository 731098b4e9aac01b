package ingest

import (
	"context"
	"net/http"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go/micro"
)

// Stage is the ingest stage for the runtime: it consumes nothing; its micro
// service "agentbus-ingest" carries health, readiness and liveness like
// every stage's, and the NATS entry (endpoint "chat" on
// messages.SubjectChat).
func (s *Server) Stage() pipeline.Stage {
	return pipeline.Stage{Name: Stage, Endpoints: s.endpoints}
}

func (s *Server) endpoints(svc micro.Service) error {
	return svc.AddEndpoint("chat", micro.HandlerFunc(s.natsChat), micro.WithEndpointSubject(messages.SubjectChat),
		micro.WithEndpointMetadata(map[string]string{"description": "OpenAI chat completions request; API key in the Authorization header; answers on the reply subject"}))
}

// natsChat serves one NATS entry request. The wait for the outcome runs on
// its own goroutine (a micro handler runs on the subscription's goroutine,
// which would serialise every request), bounded by MaxNATSInFlight.
func (s *Server) natsChat(req micro.Request) {
	out := &natsReply{nc: s.nc, subject: req.Reply()}
	if out.subject == "" {
		return // nobody to answer
	}
	ctx, rid := withRequestID(context.Background())
	out.setHeader("X-Request-Id", rid)
	select {
	case s.inflight <- struct{}{}:
	default:
		out.error(http.StatusServiceUnavailable, messages.CodeUnavailable, "too many NATS requests in flight; retry later", nil)
		return
	}
	h := req.Headers()
	body := req.Data()
	ctx, end := s.natsObserved(ctx, rid, http.Header(h))
	go func() {
		defer end()
		defer func() { <-s.inflight }()
		ctx, cancel := context.WithTimeout(ctx, s.cfg.ReplyTimeout+10*time.Second)
		defer cancel()
		var id Identity
		if s.auth == nil {
			id = Identity{User: "anonymous"}
		} else {
			var err error
			if id, err = s.auth.Authenticate(ctx, h.Get(HeaderAuthorization)); err != nil {
				out.error(http.StatusUnauthorized, "invalid_api_key", err.Error(), nil)
				return
			}
		}
		if int64(len(body)) > s.cfg.MaxBodyBytes {
			out.error(http.StatusRequestEntityTooLarge, "request_too_large", "request body too large", nil)
			return
		}
		s.serveTurn(ctx, id, body, optionsFrom(h.Get), "nats", out)
	}()
}
