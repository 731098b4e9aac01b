package llm

import (
	"errors"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go/micro"
)

// cataloger is a provider that can list its models (provider.Failover).
type cataloger interface {
	Catalog() provider.Catalog
}

// endpoints serves the model catalog on messages.SubjectModels: what this
// instance's providers serve, so that ingest lists and checks exactly what
// the llm stage can call (also in split deployments, where ingest has no
// provider configuration).
func (h *Handler) endpoints(svc micro.Service) error {
	c, ok := h.provider.(cataloger)
	if !ok {
		return nil
	}
	return svc.AddEndpoint("models", micro.HandlerFunc(func(r micro.Request) {
		_ = r.RespondJSON(c.Catalog())
	}), micro.WithEndpointSubject(messages.SubjectModels),
		micro.WithEndpointMetadata(map[string]string{"description": "the models this llm stage serves and the parameters each provider honours (provider.Catalog)"}))
}

// errParam is the request parameter a provider error names, if any.
func errParam(err error) string {
	var ue *provider.UnsupportedError
	if errors.As(err, &ue) {
		return ue.Param
	}
	if errors.Is(err, provider.ErrModelNotFound) {
		return "model"
	}
	return ""
}

// failParam ends the turn with a Failed event naming the request
// parameter at fault.
func (h *Handler) failParam(g *messages.Generation, code string, status int, reason, param string, retry time.Duration) ([]*message.Message, error) {
	if status < http.StatusBadRequest {
		status = http.StatusInternalServerError
	}
	f := messages.Failed{
		SchemaVersion:  messages.SchemaVersion,
		RequestID:      g.RequestID,
		ConversationID: g.ConversationID,
		User:           g.User,
		Stage:          Stage,
		Code:           code,
		Status:         status,
		Reason:         pipeline.Redact(reason),
		Param:          param,
		RetryAfterMS:   retry.Milliseconds(),
		At:             time.Now().UTC(),
	}
	m, err := pipeline.NewEvent(messages.EventFailed, g.RequestID, 0, f)
	if err != nil {
		return nil, err
	}
	return []*message.Message{m}, nil
}
