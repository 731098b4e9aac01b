package toolexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/internal/tools"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// RemoteToolsService is the NATS micro service name remote tools register
// under, in any language. Each endpoint is one tool: the endpoint name is
// the tool name, its subject is where calls go (conventionally
// "agentbus.tool.<name>"), and its metadata carries "description" and
// "schema" (the JSON Schema of the arguments, as a JSON string). A call's
// request body is the arguments JSON; the reply body is the result text; a
// failed call answers with a micro error (Nats-Service-Error headers).
const RemoteToolsService = messages.ToolsService

// RemoteTool is a tool served over NATS request-reply.
type RemoteTool struct {
	nc      *nats.Conn
	spec    tools.Spec
	subject string
	timeout time.Duration
}

// Spec describes the tool.
func (r *RemoteTool) Spec() tools.Spec { return r.spec }

// Subject is where calls are sent.
func (r *RemoteTool) Subject() string { return r.subject }

// Call sends the arguments and waits for the result within the timeout.
func (r *RemoteTool) Call(ctx context.Context, args json.RawMessage) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	m, err := r.nc.RequestWithContext(ctx, r.subject, args)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return "", fmt.Errorf("remote tool %s is not running", r.spec.Name)
		}
		return "", fmt.Errorf("remote tool %s: %w", r.spec.Name, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return "", fmt.Errorf("remote tool %s failed (%s): %s", r.spec.Name, code, m.Header.Get(micro.ErrorHeader))
	}
	return string(m.Data), nil
}

// DiscoverRemoteTools asks every instance of the remote tools service for
// its endpoints (scatter-gather within wait) and returns one tool per
// distinct endpoint name. An endpoint not served on its tool subject
// (messages.ToolSubject(name)) is skipped: calls never go anywhere else.
// Discovery alone allows nothing: the caller offers only the tools the
// operator allowed.
func DiscoverRemoteTools(ctx context.Context, nc *nats.Conn, wait, callTimeout time.Duration) ([]*RemoteTool, error) {
	subj, err := micro.ControlSubject(micro.InfoVerb, RemoteToolsService, "")
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subj, inbox, nil); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*RemoteTool
	deadline := time.Now().Add(wait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return out, nil
		}
		var info micro.Info
		if json.Unmarshal(m.Data, &info) != nil {
			continue
		}
		for _, ep := range info.Endpoints {
			if seen[ep.Name] || ep.Subject != messages.ToolSubject(ep.Name) {
				continue
			}
			schema := json.RawMessage(`{"type":"object"}`)
			if s := ep.Metadata["schema"]; s != "" && json.Valid([]byte(s)) {
				schema = json.RawMessage(s)
			}
			seen[ep.Name] = true
			out = append(out, &RemoteTool{nc: nc, subject: ep.Subject, timeout: callTimeout,
				spec: tools.Spec{Name: ep.Name, Description: ep.Metadata["description"], Parameters: schema}})
		}
	}
}
