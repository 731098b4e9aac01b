package firewall

import (
	"errors"
	"fmt"
)

// Modes of a Firewall.
const (
	// ModeAllowlist admits only known tools: those named in Config.Allow, or,
	// when Allow is empty, those that have a schema. It is the default.
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
// code and command execution. Append to it to extend it.
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
// a default.
type Config struct {
	// Mode is ModeAllowlist (default, "") or ModeBlocklist.
	Mode string `json:"mode,omitempty"`
	// Allow names the tools admitted in allowlist mode. Empty (default)
	// admits every tool that has a schema passed to New. Deny wins over
	// Allow.
	Allow []string `json:"allow,omitempty"`
	// Deny names tools that are always refused (rule "tool.denied"), in
	// every mode. Names are compared after NormalizeName and without
	// separators ("Run-Command" matches "run_command"). A tool that is not
	// in Allow is also refused when a multi-word Deny entry, or an
	// execution word (exec, execute, eval, shell, bash, sh, zsh,
	// powershell, pwsh, subprocess, popen, spawn), occurs among its words
	// ("execute_python", "BashTool", "my_run_command"). nil (default) means
	// DefaultDeny(); an empty non-nil slice denies nothing.
	Deny []string `json:"deny,omitempty"`
	// ShellTools names tools whose string arguments are all shell commands
	// (strictest checks). Default: none; tools whose name contains a word
	// such as shell, terminal, command or ssh are treated the same way.
	ShellTools []string `json:"shell_tools,omitempty"`
	// SQLTools names tools whose string arguments are all SQL. Default:
	// none; tools whose name contains sql, sqlite, postgres, mysql,
	// database or db are treated the same way.
	SQLTools []string `json:"sql_tools,omitempty"`
	// AllowChaining lets command arguments chain commands ("npm ci && npm
	// test"); every chained command is still checked by the dangerous-
	// command rules. Default false: chaining in a command argument is
	// blocked ("shell.chain").
	AllowChaining bool `json:"allow_chaining,omitempty"`
	// MaxCallsPerTurn bounds the tool calls of one model response (default
	// 10); CheckTurn blocks every call of a response that asks for more.
	MaxCallsPerTurn int `json:"max_calls_per_turn,omitempty"`
	// MaxRounds bounds the tool rounds of a turn (default 5): CheckTurn
	// blocks every call of round >= MaxRounds (rounds count from 0).
	MaxRounds int `json:"max_rounds,omitempty"`
	// MaxArgBytes bounds the raw arguments of one call (default 64 KiB, at
	// most 16 MiB).
	MaxArgBytes int `json:"max_arg_bytes,omitempty"`
}

// Validate reports every problem of the configuration, joined; each wraps
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
	}
	switch c.Mode {
	case "", ModeAllowlist, ModeBlocklist:
	default:
		bad("mode %q: want %q or %q", c.Mode, ModeAllowlist, ModeBlocklist)
	}
	if c.MaxCallsPerTurn < 0 {
		bad("max_calls_per_turn %d is negative", c.MaxCallsPerTurn)
	}
	if c.MaxRounds < 0 {
		bad("max_rounds %d is negative", c.MaxRounds)
	}
	if c.MaxArgBytes < 0 || c.MaxArgBytes > maxMaxArgBytes {
		bad("max_arg_bytes %d: want 0 (default) to %d", c.MaxArgBytes, maxMaxArgBytes)
	}
	for _, l := range []struct {
		field string
		names []string
	}{{"allow", c.Allow}, {"deny", c.Deny}, {"shell_tools", c.ShellTools}, {"sql_tools", c.SQLTools}} {
		for i, n := range l.names {
			if skeleton(n) == "" {
				bad("%s[%d] %q is empty after normalisation", l.field, i, n)
			}
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeAllowlist
	}
	if c.Deny == nil {
		c.Deny = DefaultDeny()
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
