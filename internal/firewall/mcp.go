package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MCP servers are declared in the tools file under mcp_servers: the
// toolexec stage connects to each (package mcpclient), lists its tools
// and offers the model only those the operator allowed. The firewall
// itself treats an MCP tool like any other: its name is
// MCPToolName(server, tool), its schema is the one the server publishes,
// and a policy declared under that name in Tools applies to its
// arguments.

// Defaults of MCPServer.
const (
	DefaultMCPConnectTimeout = 10 * time.Second
	DefaultMCPPingInterval   = 15 * time.Second
	DefaultMCPBackoffInitial = 500 * time.Millisecond
	DefaultMCPBackoffMax     = 30 * time.Second
	DefaultMCPStopTimeout    = 2 * time.Second
)

// MCPNameSeparator joins a server's name and its tool's name into the name
// the model calls ("files__read_file").
const MCPNameSeparator = "__"

// MCPToolName is the name an MCP server's tool is offered under:
// "<server>__<tool>".
func MCPToolName(server, tool string) string { return server + MCPNameSeparator + tool }

// ErrMissingEnv is wrapped when a secret names an environment variable that
// is not set.
var ErrMissingEnv = errors.New("environment variable is not set")

// MCPServer declares one MCP server: how to reach it (exactly one of
// Command, for a local server agentbus starts and supervises over stdio,
// and URL, for a streamable HTTP server) and which of its tools the model
// may be offered.
type MCPServer struct {
	// Command is the program and its arguments (stdio transport). agentbus
	// starts it, restarts it with exponential backoff when it exits, and
	// stops it on shutdown.
	Command []string `json:"command,omitempty" yaml:"command,omitempty"`
	// Dir is the command's working directory. Default: agentbus's.
	Dir string `json:"dir,omitempty" yaml:"dir,omitempty"`
	// Env is the command's environment besides PATH, HOME, LANG, TMPDIR
	// and USER, which it inherits; nothing else of agentbus's environment
	// (its provider keys) reaches it. A value is a literal string or
	// {env: NAME} (read from agentbus's environment at start). Default:
	// none.
	Env map[string]MCPSecret `json:"env,omitempty" yaml:"env,omitempty"`
	// URL is the endpoint of a streamable HTTP server (http or https).
	URL string `json:"url,omitempty" yaml:"url,omitempty"`
	// Headers are sent with every HTTP request (authentication): a literal
	// or {env: NAME, prefix: "Bearer "}. Values are never logged. Default:
	// none.
	Headers map[string]MCPSecret `json:"headers,omitempty" yaml:"headers,omitempty"`
	// AllowHTTP permits headers over plain http to a host other than the
	// loopback (they would travel in clear). Default false.
	AllowHTTP bool `json:"allow_http,omitempty" yaml:"allow_http,omitempty"`
	// Allow lists the server's tools the model may be offered: exact names
	// or path.Match patterns ("read_*", "*"), matched against the name
	// the server gives the tool. A tool declared in Tools under its
	// offered name ("files__read_file") is allowed too. Default: none,
	// nothing is offered (deny by default).
	Allow []string `json:"allow,omitempty" yaml:"allow,omitempty"`
	// Timeout bounds one call of this server's tools (and the wait for a
	// concurrency slot). Default: the executor's (10s). Keep it below the
	// toolexec handler timeout.
	Timeout time.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// MaxConcurrent bounds the calls of each of its tools running at once.
	// Default: the executor's (4).
	MaxConcurrent int `json:"max_concurrent,omitempty" yaml:"max_concurrent,omitempty"`
	// MaxOutputBytes bounds each result the model sees (cut and marked).
	// Default: the executor's (64 KiB).
	MaxOutputBytes int `json:"max_output_bytes,omitempty" yaml:"max_output_bytes,omitempty"`
	// ConnectTimeout bounds starting (or reaching) the server and the MCP
	// handshake. Default 10s.
	ConnectTimeout time.Duration `json:"connect_timeout,omitempty" yaml:"connect_timeout,omitempty"`
	// PingInterval is how often a connected server is pinged; a failed ping
	// marks it down and reconnects. Default 15s.
	PingInterval time.Duration `json:"ping_interval,omitempty" yaml:"ping_interval,omitempty"`
	// BackoffInitial and BackoffMax bound the wait before reconnecting (or
	// restarting the command): it doubles after each failure from
	// BackoffInitial up to BackoffMax and starts over once a connection
	// stayed up for BackoffMax. Defaults 500ms and 30s.
	BackoffInitial time.Duration `json:"backoff_initial,omitempty" yaml:"backoff_initial,omitempty"`
	BackoffMax     time.Duration `json:"backoff_max,omitempty" yaml:"backoff_max,omitempty"`
	// StopTimeout is how long a command has to exit after its stdin closed
	// before it is sent SIGTERM (and as long again before SIGKILL).
	// Default 2s.
	StopTimeout time.Duration `json:"stop_timeout,omitempty" yaml:"stop_timeout,omitempty"`
}

// MCPSecret is a configuration value that may be a secret: a literal
// (Value) or the value of an environment variable (Env), with an optional
// Prefix ("Bearer "). In YAML: a plain string, or {env: NAME, prefix: P},
// or {value: V}. It never logs its value.
type MCPSecret struct {
	Value  string `json:"value,omitempty" yaml:"value,omitempty"`
	Env    string `json:"env,omitempty" yaml:"env,omitempty"`
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
}

// UnmarshalYAML accepts a string (a literal) or a mapping with env,
// prefix and value; unknown keys are errors.
func (s *MCPSecret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&s.Value)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a string or {env: NAME}", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		var dst *string
		switch k {
		case "value":
			dst = &s.Value
		case "env":
			dst = &s.Env
		case "prefix":
			dst = &s.Prefix
		default:
			return fmt.Errorf("line %d: field %s not found in a secret (want env, prefix or value)", n.Content[i].Line, k)
		}
		if err := v.Decode(dst); err != nil {
			return err
		}
	}
	return nil
}

// LogValue names where the value comes from, never the value.
func (s MCPSecret) LogValue() slog.Value {
	if s.Env != "" {
		return slog.StringValue("env:" + s.Env)
	}
	return slog.StringValue("[redacted]")
}

// MarshalJSON and MarshalYAML keep the value out of any dump of the
// configuration: a literal becomes "[redacted]", an env secret keeps its
// variable's name and prefix.
func (s MCPSecret) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }

// MarshalYAML: see MarshalJSON.
func (s MCPSecret) MarshalYAML() (any, error) { return s.redacted(), nil }

func (s MCPSecret) redacted() any {
	if s.Env != "" {
		return map[string]string{"env": s.Env, "prefix": s.Prefix}
	}
	return "[redacted]"
}

// String never shows the value either.
func (s MCPSecret) String() string { return s.LogValue().String() }

// Resolve returns the value, reading Env with getenv. An unset or empty
// variable is an error wrapping ErrMissingEnv.
func (s MCPSecret) Resolve(getenv func(string) string) (string, error) {
	if s.Env == "" {
		return s.Prefix + s.Value, nil
	}
	v := getenv(s.Env)
	if v == "" {
		return "", fmt.Errorf("%w: %s", ErrMissingEnv, s.Env)
	}
	return s.Prefix + v, nil
}

// Transport is "stdio" or "http".
func (m MCPServer) Transport() string {
	if len(m.Command) > 0 {
		return "stdio"
	}
	return "http"
}

// LogValue describes the server without secrets: the program (not its
// arguments, which may carry tokens), the URL without user info or query,
// and the names of headers and variables.
func (m MCPServer) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("transport", m.Transport())}
	if len(m.Command) > 0 {
		attrs = append(attrs, slog.String("program", m.Command[0]))
	}
	if m.URL != "" {
		attrs = append(attrs, slog.String("url", RedactURL(m.URL)))
	}
	if len(m.Headers) > 0 {
		attrs = append(attrs, slog.Any("headers", sortedKeys(m.Headers)))
	}
	if len(m.Env) > 0 {
		attrs = append(attrs, slog.Any("env", sortedKeys(m.Env)))
	}
	return slog.GroupValue(attrs...)
}

// RedactURL drops the user info, query and fragment of a URL (tokens).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparsable url]"
	}
	u.User, u.RawQuery, u.Fragment, u.RawFragment = nil, "", "", ""
	return u.String()
}

// Allows reports whether the server's tool called tool may be offered by
// its Allow patterns (the caller also admits tools declared in Tools).
func (m MCPServer) Allows(tool string) bool {
	for _, p := range m.Allow {
		if ok, err := path.Match(p, tool); err == nil && ok {
			return true
		}
	}
	return false
}

// WithDefaults fills in the documented defaults.
func (m MCPServer) WithDefaults() MCPServer {
	if m.ConnectTimeout == 0 {
		m.ConnectTimeout = DefaultMCPConnectTimeout
	}
	if m.PingInterval == 0 {
		m.PingInterval = DefaultMCPPingInterval
	}
	if m.BackoffInitial == 0 {
		m.BackoffInitial = DefaultMCPBackoffInitial
	}
	if m.BackoffMax == 0 {
		m.BackoffMax = max(DefaultMCPBackoffMax, m.BackoffInitial)
	}
	if m.StopTimeout == 0 {
		m.StopTimeout = DefaultMCPStopTimeout
	}
	return m
}

var (
	mcpServerName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]|_[A-Za-z0-9-])*$`)
	headerName    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// headers agentbus or the MCP transport sets itself.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Content-Type": true, "Accept": true, "Connection": true,
	"Transfer-Encoding": true, "Mcp-Session-Id": true, "Mcp-Protocol-Version": true, "Last-Event-Id": true,
}

func (m MCPServer) validate(p *problems, at string) {
	switch {
	case len(m.Command) > 0 && m.URL != "":
		p.at(at, "set command (stdio) or url (HTTP), not both")
	case len(m.Command) == 0 && m.URL == "":
		p.at(at, "set command (stdio) or url (HTTP)")
	}
	if len(m.Command) > 0 && strings.TrimSpace(m.Command[0]) == "" {
		p.at(at+".command[0]", "the program is empty")
	}
	if len(m.Command) == 0 {
		if m.Dir != "" {
			p.at(at+".dir", "only for a command")
		}
		if len(m.Env) > 0 {
			p.at(at+".env", "only for a command")
		}
	}
	for _, k := range sortedKeys(m.Env) {
		if !envName.MatchString(k) {
			p.at(at+".env."+k, "not a variable name")
		}
		m.Env[k].validate(p, at+".env."+k)
	}
	if m.URL != "" {
		u, err := url.Parse(m.URL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			p.at(at+".url", "want an absolute http or https URL")
		case u.User != nil:
			p.at(at+".url", "user info in the URL: use headers")
		case u.Scheme == "http" && len(m.Headers) > 0 && !m.AllowHTTP && !loopback(u.Hostname()):
			p.at(at+".url", "headers would travel in clear over http to %s: use https (or set allow_http)", u.Hostname())
		}
	}
	if len(m.Headers) > 0 && m.URL == "" {
		p.at(at+".headers", "only for a url")
	}
	for _, k := range sortedKeys(m.Headers) {
		if !headerName.MatchString(k) {
			p.at(at+".headers."+k, "not a header name")
		} else if reservedHeaders[http.CanonicalHeaderKey(k)] {
			p.at(at+".headers."+k, "set by the transport")
		}
		m.Headers[k].validate(p, at+".headers."+k)
	}
	for i, a := range m.Allow {
		if _, err := path.Match(a, ""); err != nil || a == "" {
			p.at(fmt.Sprintf("%s.allow[%d]", at, i), "%q is not a name or pattern", a)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", m.Timeout}, {"connect_timeout", m.ConnectTimeout}, {"ping_interval", m.PingInterval},
		{"backoff_initial", m.BackoffInitial}, {"backoff_max", m.BackoffMax}, {"stop_timeout", m.StopTimeout}} {
		if d.v < 0 {
			p.at(at+"."+d.name, "%s is negative", d.v)
		}
	}
	if m.BackoffMax > 0 && m.BackoffInitial > m.BackoffMax {
		p.at(at+".backoff_initial", "%s is more than backoff_max %s", m.BackoffInitial, m.BackoffMax)
	}
	if m.MaxConcurrent < 0 {
		p.at(at+".max_concurrent", "%d is negative", m.MaxConcurrent)
	}
	if m.MaxOutputBytes < 0 {
		p.at(at+".max_output_bytes", "%d is negative", m.MaxOutputBytes)
	}
}

func (s MCPSecret) validate(p *problems, at string) {
	if s.Env != "" && s.Value != "" {
		p.at(at, "set env or value, not both")
	}
	if s.Env != "" && !envName.MatchString(s.Env) {
		p.at(at+".env", "%q is not a variable name", s.Env)
	}
	if strings.ContainsAny(s.Value+s.Prefix, "\r\n\x00") {
		p.at(at, "control characters in the value")
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateMCPServers(p *problems, servers map[string]MCPServer) {
	for _, name := range sortedKeys(servers) {
		at := "mcp_servers." + name
		if len(name) > 32 || !mcpServerName.MatchString(name) {
			p.at(at, "a server name is 1-32 characters of [A-Za-z0-9-] and single underscores, starting with a letter or digit")
		}
		servers[name].validate(p, at)
	}
}

// MCPServerNames returns the declared MCP servers' names, sorted.
func (c Config) MCPServerNames() []string {
	out := make([]string, 0, len(c.MCPServers))
	for n := range c.MCPServers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Declared reports whether a tool is declared in Tools under name
// (compared after NormalizeName).
func (c Config) Declared(name string) bool {
	key := NormalizeName(name)
	for n := range c.Tools {
		if NormalizeName(n) == key {
			return true
		}
	}
	return false
}

// CheckSchema reports whether a tool's JSON Schema is one the firewall
// can enforce (see New): an error wrapping ErrSchema otherwise.
func CheckSchema(raw []byte) error {
	_, err := compileSchema(raw)
	return err
}
