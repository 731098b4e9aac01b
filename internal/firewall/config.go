package firewall

import (
	"errors"
	"fmt"
	"sort"
)

// Modes of a Firewall.
const (
	// ModeAllowlist admits only known tools: those declared in Config.Tools
	// or named in Config.Allow, or, when Allow is empty, those that have a
	// schema passed to New. It is the default.
	ModeAllowlist = "allowlist"
	// ModeBlocklist admits every tool that is not denied.
	ModeBlocklist = "blocklist"
)

// Defaults of Config.
const (
	DefaultMaxCallsPerTurn = 10
	DefaultMaxRounds       = 5
	DefaultMaxArgBytes     = 64 << 10
	maxMaxArgBytes         = 16 << 20
)

// DefaultDeny returns the tool names denied when Config.Deny is nil: generic
// code and command execution. The default list does not apply to tools
// declared in Config.Tools (their policy says what they may do); an
// explicit Deny list applies to every tool. Append to it to extend it.
func DefaultDeny() []string {
	return []string{
		"exec", "execute", "system", "eval", "shell", "bash", "sh", "zsh", "cmd",
		"powershell", "pwsh", "run_command", "run_shell", "subprocess", "os_exec",
		"popen", "spawn", "terminal", "execute_command", "shell_exec", "exec_command",
		"run_code", "execute_code", "run_script",
	}
}

// ErrInvalidConfig is wrapped by every Config.Validate error.
var ErrInvalidConfig = errors.New("firewall: invalid config")

// Config configures a Firewall. The zero value is usable: every field has
// a default. It is what a tools file holds (see ParseConfig).
type Config struct {
	// Mode is ModeAllowlist (default, "") or ModeBlocklist.
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty"`
	// Allow names tools admitted in allowlist mode besides those declared
	// in Tools. When both Allow and Tools are empty (default), every tool
	// that has a schema passed to New is admitted. Deny wins over Allow.
	Allow []string `json:"allow,omitempty" yaml:"allow,omitempty"`
	// Deny names tools that are always refused (rule "tool.denied"), in
	// every mode. Names are compared after NormalizeName and without
	// separators ("Run-Command" matches "run_command"). A tool that is
	// neither declared nor allowed is also refused when a multi-word Deny
	// entry, or an execution word (exec, execute, eval, shell, bash, sh,
	// zsh, powershell, pwsh, subprocess, popen, spawn), occurs among its
	// words ("execute_python", "BashTool"). nil (default) means
	// DefaultDeny(), which spares the tools declared in Tools; an empty
	// non-nil slice denies nothing.
	Deny []string `json:"deny,omitempty" yaml:"deny,omitempty"`
	// Tools declares tools by name (compared after NormalizeName) with the
	// policy of each of their arguments. A declared tool is admitted; its
	// arguments are checked against its policy and an argument it does not
	// declare is refused. Tools that are not declared are checked against
	// their schema only, and refused when their name or an argument says
	// they run commands, code or SQL (rule "policy.required"). Default:
	// none.
	Tools map[string]ToolPolicy `json:"tools,omitempty" yaml:"tools,omitempty"`
	// MaxCallsPerTurn bounds the tool calls of one model response (default
	// 10); CheckTurn blocks every call of a response that asks for more.
	MaxCallsPerTurn int `json:"max_calls_per_turn,omitempty" yaml:"max_calls_per_turn,omitempty"`
	// MaxRounds bounds the tool rounds of a turn (default 5): CheckTurn
	// blocks every call of round >= MaxRounds (rounds count from 0).
	MaxRounds int `json:"max_rounds,omitempty" yaml:"max_rounds,omitempty"`
	// MaxArgBytes bounds the raw arguments of one call (default 64 KiB, at
	// most 16 MiB).
	MaxArgBytes int `json:"max_arg_bytes,omitempty" yaml:"max_arg_bytes,omitempty"`
	// MCPServers declares Model Context Protocol servers by name: the
	// toolexec stage connects to each and offers the model the tools its
	// Allow patterns admit, as "<server>__<tool>" (see MCPServer and
	// docs/mcp.md). Default: none.
	MCPServers map[string]MCPServer `json:"mcp_servers,omitempty" yaml:"mcp_servers,omitempty"`
}

// Validate reports every problem of the configuration, joined; each wraps
// ErrInvalidConfig and names the field ("tools.terminal.arguments.command.
// shell.roots[0]: ...").
func (c Config) Validate() error {
	var p problems
	switch c.Mode {
	case "", ModeAllowlist, ModeBlocklist:
	default:
		p.add("mode %q: want %q or %q", c.Mode, ModeAllowlist, ModeBlocklist)
	}
	if c.MaxCallsPerTurn < 0 {
		p.add("max_calls_per_turn %d is negative", c.MaxCallsPerTurn)
	}
	if c.MaxRounds < 0 {
		p.add("max_rounds %d is negative", c.MaxRounds)
	}
	if c.MaxArgBytes < 0 || c.MaxArgBytes > maxMaxArgBytes {
		p.add("max_arg_bytes %d: want 0 (default) to %d", c.MaxArgBytes, maxMaxArgBytes)
	}
	for _, l := range []struct {
		field string
		names []string
	}{{"allow", c.Allow}, {"deny", c.Deny}} {
		for i, n := range l.names {
			if skeleton(n) == "" {
				p.add("%s[%d] %q is empty after normalisation", l.field, i, n)
			}
		}
	}
	seen := map[string]string{}
	for _, name := range sortedKeys(c.Tools) {
		key := NormalizeName(name)
		if key == "" || len(name) > 256 {
			p.add("tools[%q]: the name is empty after normalisation or too long", name)
			continue
		}
		if prev, dup := seen[key]; dup {
			p.add("tools[%q] and tools[%q] are the same tool after normalisation", prev, name)
			continue
		}
		seen[key] = name
		c.Tools[name].validate(&p, "tools."+name)
	}
	validateMCPServers(&p, c.MCPServers)
	return p.err()
}

// RemoteTools returns the names of the declared tools marked remote, sorted:
// the remote tools (served over NATS) the operator allows to be offered.
func (c Config) RemoteTools() []string {
	var out []string
	for name, t := range c.Tools {
		if t.Remote {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeAllowlist
	}
	if c.MaxCallsPerTurn == 0 {
		c.MaxCallsPerTurn = DefaultMaxCallsPerTurn
	}
	if c.MaxRounds == 0 {
		c.MaxRounds = DefaultMaxRounds
	}
	if c.MaxArgBytes == 0 {
		c.MaxArgBytes = DefaultMaxArgBytes
	}
	return c
}

// problems collects configuration errors, each wrapping ErrInvalidConfig.
type problems struct{ errs []error }

func (p *problems) add(format string, a ...any) {
	p.errs = append(p.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
}

func (p *problems) at(field, format string, a ...any) {
	p.add(field+": "+format, a...)
}

func (p *problems) err() error { return errors.Join(p.errs...) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
