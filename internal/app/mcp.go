package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/mcpclient"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/internal/tools"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/agentbus/agentbus/stage/toolexec"
	"github.com/nats-io/nats.go"
)

// MCP servers (docs/mcp.md) run in the process that runs toolexec: it
// starts (or reaches) them, registers their allowed tools in the toolset
// next to the built-in and remote tools, and rebuilds the firewall and
// the llm stage's offer whenever a server comes, goes or lists other
// tools. A tool of a server that is down stays known to the firewall and
// the executor (a call fails as unavailable, not as unknown) but is not
// offered to the model. An llm stage in another process learns the
// offered MCP tools from toolexec's catalog (messages.SubjectToolCatalog)
// when it refreshes its tools.

// descriptionScanner judges MCP tool descriptions with the sanitizer's
// tool-result thresholds: a description reaches the model's context like
// a tool result does.
type descriptionScanner struct{ s *sanitize.Sanitizer }

func (d descriptionScanner) ScanDescription(text string) (string, []string) {
	v := d.s.CheckResult(text)
	return v.Verdict, v.Rules
}

// startMCP connects to the tools file's MCP servers (toolexec's process
// only) and registers their tools; changed is called after every later
// change of their tools.
func (p *parts) startMCP(ctx context.Context) error {
	if len(p.o.Firewall.MCPServers) == 0 || !p.o.has(StageToolexec) {
		return nil
	}
	m, err := mcpclient.New(mcpclient.Options{
		Servers:  p.o.Firewall.MCPServers,
		Declared: p.o.Firewall.Declared,
		Getenv:   p.o.Getenv,
		Scanner:  descriptionScanner{p.san},
		OnChange: p.mcpChanged,
		Log:      p.log.With("stage", StageToolexec),
		Version:  p.o.Pipeline.Version,
	})
	if err != nil {
		return err
	}
	p.tools.mcp = m
	p.sys.closers = append(p.sys.closers, func() { _ = m.Close() })
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("mcp: %w", err)
	}
	p.tools.syncMCP()
	return nil
}

// mcpChanged re-registers the MCP tools and rebuilds the firewall and the
// llm stage's offer.
func (p *parts) mcpChanged() {
	if p.tools == nil || p.tools.mcp == nil {
		return
	}
	p.tools.syncMCP()
	if p.toolsReady.Load() {
		p.toolsChanged()
	}
}

// toolsChanged rebuilds what depends on the tool set: the tools offered
// by the llm stage and the toolexec stage's firewall.
func (p *parts) toolsChanged() {
	p.toolsMu.Lock()
	defer p.toolsMu.Unlock()
	if p.llm != nil {
		p.llm.SetTools(p.tools.specs())
	}
	if p.tool != nil {
		fw, err := firewall.New(p.firewallConfig(), p.tools.schemas())
		if err != nil {
			p.log.Error("firewall rebuild after a tool change", "err", err)
			return
		}
		p.tool.SetFirewall(fw)
	}
}

// firewallConfig is the tools file's firewall configuration; when it
// has an allow list, the MCP tools the servers' allow patterns admit are
// added to it (the operator allowed them there).
func (p *parts) firewallConfig() firewall.Config {
	c := p.o.Firewall
	if len(c.Allow) == 0 || p.tools == nil {
		return c
	}
	c.Allow = slices.Clone(c.Allow)
	p.tools.mu.Lock()
	for name := range p.tools.mcpTools {
		c.Allow = append(c.Allow, name)
	}
	p.tools.mu.Unlock()
	return c
}

// syncMCP makes the registry hold exactly the MCP tools the manager
// knows (a changed spec is registered again).
func (t *toolset) syncMCP() {
	if t.mcp == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mcpTools == nil {
		t.mcpTools = map[string]*mcpclient.Tool{}
	}
	seen := map[string]bool{}
	for _, mt := range t.mcp.Tools() {
		name := mt.Spec().Name
		seen[name] = true
		if old, ok := t.mcpTools[name]; ok && old == mt {
			continue
		}
		t.reg.Unregister(name)
		if err := t.reg.Register(mt); err != nil {
			t.log.Warn("MCP tool not registered", "tool", name, "err", err)
			continue
		}
		t.mcpTools[name] = mt
	}
	for name := range t.mcpTools {
		if !seen[name] {
			t.reg.Unregister(name)
			delete(t.mcpTools, name)
		}
	}
}

// mcpHealth reports each MCP server: one that is not up makes toolexec
// degraded, never unhealthy (the other tools still work).
func (t *toolset) mcpHealth(context.Context) (map[string]pipeline.Check, map[string]any) {
	if t.mcp == nil {
		return nil, nil
	}
	checks := map[string]pipeline.Check{}
	sts := t.mcp.Status()
	for _, s := range sts {
		c := pipeline.Check{Status: pipeline.Healthy, Detail: fmt.Sprintf("%s, %d tools offered", s.State, len(s.Offered))}
		if s.State != mcpclient.StateUp {
			c = pipeline.Check{Status: pipeline.Degraded, Detail: s.State + " since " + s.Since.UTC().Format(time.RFC3339)}
			if s.LastError != "" {
				c.Detail += ": " + s.LastError
			}
			if s.Retries > 0 {
				c.Detail += fmt.Sprintf(" (retry %d in %s)", s.Retries, s.RetryIn)
			}
		}
		checks["mcp "+s.Name] = c
	}
	return checks, map[string]any{"mcp_servers": sts}
}

// mcpCatalog is what toolexec serves to an llm stage in another process:
// the MCP tools offered now.
func (t *toolset) mcpCatalog() []tools.Spec {
	if t.mcp == nil {
		return nil
	}
	var out []tools.Spec
	for _, mt := range t.mcp.Tools() {
		if mt.Available() {
			out = append(out, mt.Spec())
		}
	}
	return out
}

// fetchCatalog asks a toolexec instance (another process) for its MCP
// tools and reports whether the offer changed. An error keeps the last
// answer.
func (t *toolset) fetchCatalog(ctx context.Context) (bool, error) {
	if t.nc == nil {
		return false, nil
	}
	rctx, cancel := context.WithTimeout(ctx, max(t.cfg.RemoteWait, time.Second))
	defer cancel()
	m, err := t.nc.RequestWithContext(rctx, messages.SubjectToolCatalog, nil)
	if err != nil {
		if err == nats.ErrNoResponders {
			return false, nil // no toolexec yet
		}
		return false, err
	}
	var c toolexec.Catalog
	if err := json.Unmarshal(m.Data, &c); err != nil {
		return false, fmt.Errorf("tool catalog: %w", err)
	}
	var ok []tools.Spec
	for _, s := range c.Tools {
		if _, dup := t.reg.Lookup(s.Name); dup {
			continue // a built-in or remote tool's name: never shadowed
		}
		if _, err := tools.NewRegistry(tools.Func{S: s}); err != nil {
			continue
		}
		ok = append(ok, s)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if specsEqual(t.catalog, ok) {
		return false, nil
	}
	t.catalog = ok
	return true, nil
}

func specsEqual(a, b []tools.Spec) bool {
	return slices.EqualFunc(a, b, func(x, y tools.Spec) bool {
		return x.Name == y.Name && x.Description == y.Description && string(x.Parameters) == string(y.Parameters)
	})
}

// watchCatalog refreshes the MCP tools of a toolexec in another process
// every RemoteRefresh (llm without toolexec).
func (t *toolset) watchCatalog(ctx context.Context, changed func()) {
	if t.cfg.RemoteRefresh <= 0 {
		return
	}
	if ch, err := t.fetchCatalog(ctx); err != nil {
		t.log.Warn("MCP tool catalog", "err", err)
	} else if ch {
		changed()
	}
	tick := time.NewTicker(t.cfg.RemoteRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if ch, err := t.fetchCatalog(ctx); err != nil {
				t.log.Warn("MCP tool catalog", "err", err)
			} else if ch {
				changed()
			}
		}
	}
}
