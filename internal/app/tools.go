package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/internal/mcpclient"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/tools"
	"github.com/agentbus/agentbus/stage/toolexec"
	"github.com/nats-io/nats.go"
)

// ToolsConfig configures the tools offered to the model.
type ToolsConfig struct {
	// FetchAllowHosts enables http_fetch for these hosts. Default none
	// (the tool is not registered).
	FetchAllowHosts []string
	// Remote discovers tools served over NATS (toolexec.RemoteToolsService)
	// at start. Default true.
	Remote bool
	// RemoteAllow names the remote tools the operator allows: a discovered
	// tool is offered to the model (and its calls let through) only when
	// its name is listed here or declared remote in the tools file
	// (firewall.Config.RemoteTools); discovery alone allows nothing.
	// Default none.
	RemoteAllow []string
	// RemoteWait bounds discovery. Default 250ms.
	RemoteWait time.Duration
	// RemoteTimeout bounds one remote tool call. Default 10s.
	RemoteTimeout time.Duration
	// RemoteRefresh is how often remote tools are discovered again, so a
	// tool service started later is offered without a restart. 0 disables.
	// Default 15s.
	RemoteRefresh time.Duration
}

// DefaultToolsConfig returns the documented defaults.
func DefaultToolsConfig() ToolsConfig {
	return ToolsConfig{Remote: true, RemoteWait: 250 * time.Millisecond, RemoteTimeout: 10 * time.Second, RemoteRefresh: 15 * time.Second}
}

// toolset is the registry plus the executor the toolexec stage uses.
type toolset struct {
	reg  *tools.Registry
	exec *tools.Executor
	cfg  ToolsConfig
	nc   *nats.Conn
	log  *slog.Logger
	// refused are discovered tools the operator did not allow (logged once).
	refused map[string]bool

	mu sync.Mutex // guards the fields below
	// mcp runs the tools file's MCP servers (toolexec's process only).
	mcp *mcpclient.Manager
	// mcpTools are the MCP tools registered in reg, by name.
	mcpTools map[string]*mcpclient.Tool
	// catalog are the MCP tools a toolexec in another process offers
	// (llm without toolexec).
	catalog []tools.Spec
}

// builtins returns the built-in tools for cfg.
func builtins(cfg ToolsConfig) ([]tools.Tool, error) {
	calc, err := tools.NewCalculator(tools.CalculatorConfig{})
	if err != nil {
		return nil, err
	}
	clock, err := tools.NewClock(tools.ClockConfig{})
	if err != nil {
		return nil, err
	}
	out := []tools.Tool{calc, clock}
	if len(cfg.FetchAllowHosts) > 0 {
		f, err := tools.NewHTTPFetch(tools.HTTPFetchConfig{AllowHosts: cfg.FetchAllowHosts})
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// Tools returns the schemas of the built-in tools (for the firewall CLI).
func Tools(cfg ToolsConfig) (map[string]json.RawMessage, error) {
	b, err := builtins(cfg)
	if err != nil {
		return nil, err
	}
	reg, err := tools.NewRegistry(b...)
	if err != nil {
		return nil, err
	}
	return reg.Schemas(), nil
}

func buildTools(cfg ToolsConfig, nc *nats.Conn, log *slog.Logger) (*toolset, error) {
	b, err := builtins(cfg)
	if err != nil {
		return nil, err
	}
	reg, err := tools.NewRegistry(b...)
	if err != nil {
		return nil, err
	}
	exec, err := tools.NewExecutor(reg, tools.ExecutorConfig{})
	if err != nil {
		return nil, err
	}
	t := &toolset{reg: reg, exec: exec, cfg: cfg, nc: nc, log: log, refused: map[string]bool{}}
	if _, err := t.discover(context.Background()); err != nil {
		return nil, err
	}
	return t, nil
}

// discover registers the remote tools that are not registered yet and
// reports how many it added.
func (t *toolset) discover(ctx context.Context) (int, error) {
	if !t.cfg.Remote || t.nc == nil {
		return 0, nil
	}
	remote, err := toolexec.DiscoverRemoteTools(ctx, t.nc, t.cfg.RemoteWait, t.cfg.RemoteTimeout)
	if err != nil {
		return 0, fmt.Errorf("discover remote tools: %w", err)
	}
	added := 0
	for _, r := range remote {
		name := r.Spec().Name
		if _, ok := t.reg.Lookup(name); ok {
			continue
		}
		if !slices.Contains(t.cfg.RemoteAllow, name) {
			if !t.refused[name] {
				t.refused[name] = true
				t.log.Warn("remote tool discovered but not allowed; it is not offered to the model (allow it with --remote-tools)", "tool", name)
			}
			continue
		}
		if err := t.reg.Register(r); err != nil {
			t.log.Warn("remote tool not registered", "tool", r.Spec().Name, "err", err)
			continue
		}
		added++
		t.log.Info("remote tool registered", "tool", r.Spec().Name, "subject", r.Subject())
	}
	return added, nil
}

// watch discovers remote tools every RemoteRefresh until ctx ends and
// calls changed after each discovery that added some.
func (t *toolset) watch(ctx context.Context, changed func()) {
	if !t.cfg.Remote || t.cfg.RemoteRefresh <= 0 {
		return
	}
	tick := time.NewTicker(t.cfg.RemoteRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if n, err := t.discover(ctx); err != nil {
				t.log.Warn("remote tool discovery", "err", err)
			} else if n > 0 {
				changed()
			}
		}
	}
}

// specs are the tools offered to the model: the registered ones, without
// the MCP tools whose server is down, and the MCP tools of a toolexec in
// another process.
func (t *toolset) specs() []provider.ToolSpec {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []provider.ToolSpec
	for _, s := range t.reg.Specs() {
		if mt, ok := t.mcpTools[s.Name]; ok && !mt.Available() {
			continue
		}
		out = append(out, provider.ToolSpec{Name: s.Name, Description: s.Description, Parameters: s.Parameters})
	}
	for _, s := range t.catalog {
		out = append(out, provider.ToolSpec{Name: s.Name, Description: s.Description, Parameters: s.Parameters})
	}
	slices.SortFunc(out, func(a, b provider.ToolSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (t *toolset) schemas() map[string]json.RawMessage { return t.reg.Schemas() }

// Execute implements toolexec.Executor.
func (t *toolset) Execute(ctx context.Context, name string, args json.RawMessage) (string, error) {
	// Result.Output is what the model sees, "error: ..." included; an
	// unavailable tool (its MCP server down) ends the turn instead.
	res := t.exec.Execute(ctx, name, args)
	if errors.Is(res.Err, tools.ErrUnavailable) {
		return res.Output, res.Err
	}
	return res.Output, nil
}
