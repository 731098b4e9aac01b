package toolexec

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/tools"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go/micro"
)

// ResultUnavailable is the result verdict of a call whose tool was
// unavailable (its MCP server down, or the connection broken during the
// call): the turn ended with service_unavailable.
const ResultUnavailable = "unavailable"

// UnavailableRetryAfter is the Retry-After of a turn that ended because a
// tool was unavailable (its server is being restarted).
const UnavailableRetryAfter = 5 * time.Second

// Catalog is the toolexec stage's answer on messages.SubjectToolCatalog:
// the MCP tools it offers right now.
type Catalog struct {
	Tools []tools.Spec `json:"tools"`
}

// mcpHooks connect the stage to the MCP servers of its process.
type mcpHooks struct {
	health  func(context.Context) (map[string]pipeline.Check, map[string]any)
	catalog func() []tools.Spec
}

// SetHealth adds stage-specific health checks (the MCP servers: a server
// that is down makes the stage degraded). Call it before the stage runs.
func (h *Handler) SetHealth(f func(context.Context) (map[string]pipeline.Check, map[string]any)) {
	h.mcp.health = f
}

// SetCatalog serves the tools f returns on messages.SubjectToolCatalog.
// Call it before the stage runs.
func (h *Handler) SetCatalog(f func() []tools.Spec) { h.mcp.catalog = f }

func (h *Handler) health(ctx context.Context) (map[string]pipeline.Check, map[string]any) {
	if h.mcp.health == nil {
		return nil, nil
	}
	return h.mcp.health(ctx)
}

func (h *Handler) endpoints(svc micro.Service) error {
	if h.mcp.catalog == nil {
		return nil
	}
	return svc.AddEndpoint("tools", micro.HandlerFunc(func(r micro.Request) {
		specs := h.mcp.catalog()
		if specs == nil {
			specs = []tools.Spec{}
		}
		_ = r.RespondJSON(Catalog{Tools: specs})
	}), micro.WithEndpointSubject(messages.SubjectToolCatalog),
		micro.WithEndpointMetadata(map[string]string{"description": "the MCP tools this toolexec stage offers now (toolexec.Catalog)"}))
}

// unavailable ends the turn whose round could not run a tool: its MCP
// server is down or broke during the call. The outcome is recorded with
// the step, so a redelivery publishes it again and never calls the tool
// twice.
func (h *Handler) unavailable(g *messages.Generation, res *stepResult) ([]*message.Message, error) {
	var names []string
	for _, v := range res.Verdicts {
		if v.ResultVerdict == ResultUnavailable {
			names = append(names, v.Tool)
		}
	}
	reason := fmt.Sprintf("tool %s is unavailable (%s); retry later", strings.Join(names, ", "), res.Unavailable)
	f := messages.Failed{
		SchemaVersion: messages.SchemaVersion, RequestID: g.RequestID, ConversationID: g.ConversationID, User: g.User,
		Stage: Stage, Code: messages.CodeUnavailable, Status: http.StatusServiceUnavailable, Reason: pipeline.Redact(reason),
		RetryAfterMS: UnavailableRetryAfter.Milliseconds(),
		Steps:        g.Steps, ToolVerdicts: append(append([]messages.ToolVerdict(nil), g.ToolVerdicts...), res.Verdicts...), At: time.Now().UTC(),
	}
	out, err := pipeline.NewEvent(messages.EventFailed, g.RequestID, 0, f)
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}
