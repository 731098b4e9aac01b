package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

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
	// RemoteWait bounds discovery. Default 250ms.
	RemoteWait time.Duration
	// RemoteTimeout bounds one remote tool call. Default 10s.
	RemoteTimeout time.Duration
}

// DefaultToolsConfig returns the documented defaults.
func DefaultToolsConfig() ToolsConfig {
	return ToolsConfig{Remote: true, RemoteWait: 250 * time.Millisecond, RemoteTimeout: 10 * time.Second}
}

// toolset is the registry plus the executor the toolexec stage uses.
type toolset struct {
	reg  *tools.Registry
	exec *tools.Executor
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
	if cfg.Remote && nc != nil {
		remote, err := toolexec.DiscoverRemoteTools(context.Background(), nc, cfg.RemoteWait, cfg.RemoteTimeout)
		if err != nil {
			return nil, fmt.Errorf("discover remote tools: %w", err)
		}
		for _, r := range remote {
			if err := reg.Register(r); err != nil {
				log.Warn("remote tool not registered", "tool", r.Spec().Name, "err", err)
				continue
			}
			log.Info("remote tool registered", "tool", r.Spec().Name, "subject", r.Subject())
		}
	}
	exec, err := tools.NewExecutor(reg, tools.ExecutorConfig{})
	if err != nil {
		return nil, err
	}
	return &toolset{reg: reg, exec: exec}, nil
}

func (t *toolset) specs() []provider.ToolSpec {
	var out []provider.ToolSpec
	for _, s := range t.reg.Specs() {
		out = append(out, provider.ToolSpec{Name: s.Name, Description: s.Description, Parameters: s.Parameters})
	}
	return out
}

func (t *toolset) schemas() map[string]json.RawMessage { return t.reg.Schemas() }

// Execute implements toolexec.Executor.
func (t *toolset) Execute(ctx context.Context, name string, args json.RawMessage) (string, error) {
	// Result.Output is what the model sees, "error: ..." included.
	return t.exec.Execute(ctx, name, args).Output, nil
}
