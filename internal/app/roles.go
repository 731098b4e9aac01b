package app

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
)

// NATS roles besides the five stages.
const (
	// RoleTool is a remote tool service (any language): it serves its own
	// tools' subjects and nothing else.
	RoleTool = "tool"
	// RoleClient is a program that submits turns through the NATS entry
	// (with an API key) and reads its answers on its own inbox.
	RoleClient = "client"
	// RoleOperator is the operator CLI: everything in the account (keys,
	// streams, consumers, conversations, redrive).
	RoleOperator = "operator"
)

// Roles lists every NATS role an identity can be issued for: the stages
// of StageTable, then tool, client and operator.
var Roles = append(slices.Clone(AllStages), RoleTool, RoleClient, RoleOperator)

// GrantOptions refine a role's grant.
type GrantOptions struct {
	// Tools are the tool names a tool identity may serve. Default: the
	// identity's name.
	Tools []string
	// ResponseTTL bounds how long after a request a tool or stage may
	// answer it. Default 2m (ingest: 15m, to stream a long turn).
	ResponseTTL time.Duration
}

// Grant returns the permissions of the identity name in role: a stage's
// come from its contract (StageTable); see docs/security.md for the
// matrix.
func Grant(role, name string, opt GrantOptions) (pipeline.Grant, error) {
	return grant(StageTable, role, name, opt)
}

// grant is Grant with the stages of table.
func grant(table []StageSpec, role, name string, opt GrantOptions) (pipeline.Grant, error) {
	if err := pipeline.ValidName(name); err != nil {
		return pipeline.Grant{}, fmt.Errorf("%w: %q", err, name)
	}
	if i := slices.IndexFunc(table, func(r StageSpec) bool { return r.Contract.Stage == role }); i >= 0 {
		c := table[i].Contract
		if opt.ResponseTTL > 0 {
			c.ResponseTTL = opt.ResponseTTL
		}
		return c.Grant(name), nil
	}
	inbox := pipeline.InboxPrefix(name)
	ttl := opt.ResponseTTL
	if ttl <= 0 {
		ttl = 2 * time.Minute
	}
	switch role {
	case RoleOperator:
		return pipeline.Grant{All: true, Inbox: inbox}, nil
	case RoleClient:
		return pipeline.Grant{Inbox: inbox, Pub: []string{messages.SubjectChat}, Sub: []string{inbox + ".>"}}, nil
	case RoleTool:
		toolNames := opt.Tools
		if len(toolNames) == 0 {
			toolNames = []string{name}
		}
		g := pipeline.Grant{Inbox: inbox, Sub: []string{inbox + ".>"}, Responses: 1, ResponseTTL: ttl}
		for _, t := range toolNames {
			if !messages.ValidID(t) {
				return pipeline.Grant{}, fmt.Errorf("tool name %q: want [A-Za-z0-9_-]", t)
			}
			g.Sub = append(g.Sub, messages.ToolSubject(t))
		}
		g.Sub = append(g.Sub, pipeline.MicroSubjects(messages.ToolsService)...)
		return g, nil
	}
	return pipeline.Grant{}, fmt.Errorf("unknown role %q (want one of %s)", role, strings.Join(append(stageNames(table), RoleTool, RoleClient, RoleOperator), ", "))
}
