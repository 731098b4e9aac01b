package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/tools"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// States of a server.
const (
	StateConnecting = "connecting"
	StateUp         = "up"
	StateDown       = "down"
	StateStopped    = "stopped"
)

// Limits on what a server may publish.
const (
	// MaxDescriptionBytes bounds a tool's description: it is sent with
	// every model call.
	MaxDescriptionBytes = 8 << 10
	// MaxSchemaBytes bounds a tool's input schema.
	MaxSchemaBytes = 64 << 10
	// MaxTools bounds the tools listed by one server.
	MaxTools = 512
)

// Errors.
var (
	// ErrConfig is wrapped by configuration problems found by New (an
	// environment variable that is not set).
	ErrConfig = errors.New("mcp: invalid configuration")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("mcp: manager closed")
)

// DescriptionScanner judges a tool's description (and the descriptions
// inside its schema) for prompt injection: "allow", "flag" or "block",
// and the rules that fired.
type DescriptionScanner interface {
	ScanDescription(text string) (verdict string, rules []string)
}

// Options configure a Manager.
type Options struct {
	// Servers are the declared servers by name (the tools file's
	// mcp_servers). Required (may be empty: the manager does nothing).
	Servers map[string]firewall.MCPServer
	// Declared reports whether a policy is declared in the tools file
	// under an offered name; such a tool is allowed besides the server's
	// allow patterns. Default: none is.
	Declared func(name string) bool
	// Getenv resolves secrets ({env: NAME}) and the inherited variables of
	// commands. Default os.Getenv.
	Getenv func(string) string
	// Scanner judges tool descriptions. Default nil: not scanned (only
	// for tests; agentbus always passes the sanitizer).
	Scanner DescriptionScanner
	// OnChange is called, never concurrently, after the set of tools or
	// their availability changed (a server came up, went down, or listed
	// other tools). Default none.
	OnChange func()
	// Log receives the servers' lifecycle. Default: discarded.
	Log *slog.Logger
	// Version is the client version sent in the handshake. Default "dev".
	Version string
}

// Manager runs the declared servers' supervisors.
type Manager struct {
	opts    Options
	servers []*server // sorted by name
	notify  sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	started bool
	closed  bool
	lastSig string
}

// Validate reports every problem of the servers' configuration (as the
// tools file's validation does), joined.
func (o Options) Validate() error {
	return firewall.Config{MCPServers: o.Servers}.Validate()
}

// New checks the configuration (valid, and every secret resolves) and
// returns a manager; Start connects.
func New(opts Options) (*Manager, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if opts.Getenv == nil {
		opts.Getenv = getenvOS
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Declared == nil {
		opts.Declared = func(string) bool { return false }
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	m := &Manager{opts: opts}
	var errs []error
	names := make([]string, 0, len(opts.Servers))
	for n := range opts.Servers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		cfg := opts.Servers[name].WithDefaults()
		s := &server{m: m, name: name, cfg: cfg, state: StateConnecting, tools: map[string]*Tool{},
			refused: map[string]string{}, failures: make(chan failure, 1), relist: make(chan struct{}, 1), first: make(chan struct{})}
		var err error
		if s.env, err = resolveAll(cfg.Env, opts.Getenv); err != nil {
			errs = append(errs, fmt.Errorf("%w: mcp_servers.%s.env: %w", ErrConfig, name, err))
		}
		if s.headers, err = resolveAll(cfg.Headers, opts.Getenv); err != nil {
			errs = append(errs, fmt.Errorf("%w: mcp_servers.%s.headers: %w", ErrConfig, name, err))
		}
		m.servers = append(m.servers, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func resolveAll(in map[string]firewall.MCPSecret, getenv func(string) string) (secretMap, error) {
	out := secretMap{}
	var errs []error
	for k, v := range in {
		r, err := v.Resolve(getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		out[k] = r
	}
	return out, errors.Join(errs...)
}

// secretMap holds resolved header or environment values; it logs only
// its keys.
type secretMap map[string]string

// LogValue lists the names, never the values.
func (s secretMap) LogValue() slog.Value {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return slog.AnyValue(keys)
}

// Start launches every server's supervisor and waits until each has
// finished its first attempt to connect and list its tools (at most its
// connect timeout): a server that is up by then is offered from the
// first turn; one that is not is retried in the background.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if m.started {
		m.mu.Unlock()
		return nil
	}
	m.started = true
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	for _, s := range m.servers {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			s.run(rctx)
		}()
	}
	m.mu.Unlock()
	for _, s := range m.servers {
		t := time.NewTimer(s.cfg.ConnectTimeout + time.Second)
		select {
		case <-s.first:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
	return nil
}

// Close stops every supervisor, closes the sessions and stops the
// commands (stdin closed, then SIGTERM, then SIGKILL of the process
// group), and waits for them.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	m.wg.Wait()
	return nil
}

// Tools returns every tool the model may be offered by a server whose
// last listing offered it, sorted by name, available or not (a server
// that is down keeps its tools here, with Available false, so that a
// call to one fails as unavailable rather than as unknown).
func (m *Manager) Tools() []*Tool {
	var out []*Tool
	for _, s := range m.servers {
		s.mu.Lock()
		for _, t := range s.tools {
			out = append(out, t)
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec.Name < out[j].spec.Name })
	return out
}

// ServerStatus is a server's state for health reports and logs.
type ServerStatus struct {
	Name      string `json:"name"`
	Transport string `json:"transport"`
	State     string `json:"state"`
	// Since is when the server entered State.
	Since time.Time `json:"since"`
	// Restarts counts reconnections (command restarts) after a session
	// ended.
	Restarts int `json:"restarts"`
	// LastError is why the server is down (without its secrets).
	LastError string `json:"last_error,omitempty"`
	// Retries counts the waits before reconnecting since the server was
	// last up; RetryIn is the current wait (exponential backoff, 0 when
	// up).
	Retries int           `json:"retries,omitempty"`
	RetryIn time.Duration `json:"retry_in_ns,omitempty"`
	// Offered are the tools offered while it is up.
	Offered []string `json:"offered"`
	// Refused maps the server's tools that are not offered to the reason.
	Refused map[string]string `json:"refused,omitempty"`
	// Flagged are offered tools whose description the scanner flagged.
	Flagged []string `json:"flagged,omitempty"`
}

// Status reports every server, sorted by name.
func (m *Manager) Status() []ServerStatus {
	out := make([]ServerStatus, 0, len(m.servers))
	for _, s := range m.servers {
		s.mu.Lock()
		st := ServerStatus{Name: s.name, Transport: s.cfg.Transport(), State: s.state, Since: s.since, Restarts: s.restarts,
			LastError: s.lastErr, Offered: []string{}, Flagged: slices.Clone(s.flagged), Retries: s.attemptsFailed, RetryIn: s.retryIn}
		for n := range s.tools {
			st.Offered = append(st.Offered, n)
		}
		sort.Strings(st.Offered)
		if len(s.refused) > 0 {
			st.Refused = make(map[string]string, len(s.refused))
			for k, v := range s.refused {
				st.Refused[k] = v
			}
		}
		s.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// changed calls OnChange when the offered set (names, specs,
// availability) differs from the last call.
func (m *Manager) changed() {
	m.notify.Lock()
	defer m.notify.Unlock()
	var b strings.Builder
	for _, t := range m.Tools() {
		p, _ := json.Marshal(t.spec)
		fmt.Fprintf(&b, "%s %t %s\n", t.spec.Name, t.Available(), p)
	}
	sig := b.String()
	if sig == m.lastSig {
		return
	}
	m.lastSig = sig
	if m.opts.OnChange != nil {
		m.opts.OnChange()
	}
}

// Tool is one offered tool of an MCP server.
type Tool struct {
	srv    *server
	remote string // the server's name for it
	spec   tools.Spec
}

// LogValue names the tool and its server.
func (t *Tool) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", t.spec.Name), slog.String("server", t.srv.name))
}

// Spec is how the model sees the tool: name "<server>__<tool>".
func (t *Tool) Spec() tools.Spec { return t.spec }

// Server names the tool's server.
func (t *Tool) Server() string { return t.srv.name }

// RemoteName is the server's own name of the tool.
func (t *Tool) RemoteName() string { return t.remote }

// Available reports whether the tool's server is up.
func (t *Tool) Available() bool { return t.srv.up() }

// Limits are the server's declared limits (zero fields: the executor's
// defaults).
func (t *Tool) Limits() tools.Limits {
	return tools.Limits{Timeout: t.srv.cfg.Timeout, MaxConcurrent: t.srv.cfg.MaxConcurrent, MaxOutputBytes: t.srv.cfg.MaxOutputBytes}
}

// Call runs the tool with the arguments (a JSON object, passed through
// unchanged: the firewall's canonical encoding). A result with isError
// and a protocol error come back as the text the model sees ("error:
// ..."); a server that is down, or a connection that broke during the
// call, is an error wrapping tools.ErrUnavailable.
func (t *Tool) Call(ctx context.Context, args json.RawMessage) (string, error) {
	cs, gen := t.srv.session()
	if cs == nil {
		return "", fmt.Errorf("%w: MCP server %q is down", tools.ErrUnavailable, t.srv.name)
	}
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	res, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: t.remote, Arguments: args})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if isProtocolError(err) {
			return "error: " + t.srv.redactError(err), nil
		}
		t.srv.fail(gen, err)
		return "", fmt.Errorf("%w: MCP server %q: the connection broke during the call", tools.ErrUnavailable, t.srv.name)
	}
	out := render(res)
	if res.IsError {
		return "error: " + out, nil
	}
	return out, nil
}

// render turns a result into the text the model sees: text parts as
// they are, other parts described, structured content as JSON when there
// is no text.
func render(res *mcpsdk.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		switch x := c.(type) {
		case *mcpsdk.TextContent:
			parts = append(parts, x.Text)
		case *mcpsdk.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, %d bytes]", x.MIMEType, len(x.Data)))
		case *mcpsdk.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s, %d bytes]", x.MIMEType, len(x.Data)))
		case *mcpsdk.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource %s %s]", x.URI, x.Name))
		case *mcpsdk.EmbeddedResource:
			if x.Resource != nil && x.Resource.Text != "" {
				parts = append(parts, x.Resource.Text)
			} else if x.Resource != nil {
				parts = append(parts, fmt.Sprintf("[resource %s %s, %d bytes]", x.Resource.URI, x.Resource.MIMEType, len(x.Resource.Blob)))
			}
		default:
			parts = append(parts, "[unsupported content]")
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			return string(b)
		}
	}
	return strings.Join(parts, "\n")
}
