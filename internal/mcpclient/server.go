package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/tools"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

var getenvOS = os.Getenv

// inherited are the variables a command gets from agentbus's
// environment; everything else must be declared.
var inherited = []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"}

// failure is a broken call reported to the supervisor.
type failure struct {
	gen uint64
	err error
}

// server is one declared server and its supervisor's state.
type server struct {
	m       *Manager
	name    string
	cfg     firewall.MCPServer
	env     secretMap
	headers secretMap

	failures chan failure
	relist   chan struct{}
	first    chan struct{}
	once     sync.Once

	mu       sync.Mutex
	cs       *mcpsdk.ClientSession // nil unless up
	gen      uint64
	state    string
	since    time.Time
	restarts int
	lastErr  string
	tools    map[string]*Tool  // by offered name
	refused  map[string]string // server's tool name -> reason
	flagged  []string
	logged   map[string]string // refusals already logged (name -> reason)
	// attemptsFailed counts the waits since the last connection; retryIn
	// is the current wait.
	attemptsFailed int
	retryIn        time.Duration
}

// LogValue describes the server without its secrets.
func (s *server) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.name), slog.Any("config", s.cfg), slog.Any("headers", s.headers), slog.Any("env", s.env))
}

func (s *server) up() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cs != nil
}

func (s *server) session() (*mcpsdk.ClientSession, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cs, s.gen
}

// fail reports a call that broke the connection of generation gen: the
// server is withdrawn at once and the supervisor reconnects.
func (s *server) fail(gen uint64, err error) {
	s.mu.Lock()
	current := s.gen == gen && s.cs != nil
	if current {
		s.cs = nil
		s.setState(StateDown, "call failed: "+s.redactError(err))
	}
	s.mu.Unlock()
	if !current {
		return
	}
	s.m.changed()
	select {
	case s.failures <- failure{gen, err}:
	default:
	}
}

// setState records a state change; s.mu is held.
func (s *server) setState(state, lastErr string) {
	if s.state != state {
		s.since = time.Now()
	}
	s.state = state
	if lastErr != "" || state == StateUp {
		s.lastErr = lastErr
	}
}

func (s *server) markFirst() { s.once.Do(func() { close(s.first) }) }

// run connects, serves and reconnects with exponential backoff until ctx
// ends.
func (s *server) run(ctx context.Context) {
	log := s.m.opts.Log.With("mcp_server", s.name)
	backoff := s.cfg.BackoffInitial
	wait := func() bool {
		s.mu.Lock()
		s.attemptsFailed++
		s.retryIn = backoff
		s.mu.Unlock()
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(backoff*2, s.cfg.BackoffMax)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	defer func() {
		s.mu.Lock()
		s.cs = nil
		s.setState(StateStopped, "")
		s.mu.Unlock()
		s.markFirst()
	}()
	for attempt := 0; ctx.Err() == nil; attempt++ {
		cs, cmd, err := s.connect(ctx)
		if err == nil {
			err = s.list(ctx, cs)
		}
		if err != nil {
			if cs != nil {
				_ = cs.Close()
			}
			stop(cmd)
			if ctx.Err() != nil {
				return
			}
			reason := s.redactError(err)
			s.mu.Lock()
			s.setState(StateDown, reason)
			s.mu.Unlock()
			s.markFirst()
			s.m.changed()
			log.Warn("MCP server unavailable; retrying", "server", s.cfg, "err", reason, "retry_in", backoff)
			if !wait() {
				return
			}
			continue
		}
		s.mu.Lock()
		s.gen++
		gen := s.gen
		s.cs = cs
		s.setState(StateUp, "")
		s.attemptsFailed, s.retryIn = 0, 0
		offered := len(s.tools)
		s.mu.Unlock()
		s.markFirst()
		s.m.changed()
		log.Info("MCP server up", "server", s.cfg, "tools_offered", offered, "attempt", attempt)
		started := time.Now()
		reason := s.serve(ctx, cs, gen)
		_ = cs.Close()
		stop(cmd)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.cs = nil
		s.restarts++
		s.setState(StateDown, reason)
		s.mu.Unlock()
		s.m.changed()
		if time.Since(started) >= s.cfg.BackoffMax {
			backoff = s.cfg.BackoffInitial
		}
		log.Warn("MCP server down; its tools are withdrawn until it is back", "err", reason, "restart_in", backoff)
		if !wait() {
			return
		}
	}
}

// serve waits for the session to end (the command exited, a ping or a
// call failed) and lists the tools again when the server says they
// changed. It returns why the session ended.
func (s *server) serve(ctx context.Context, cs *mcpsdk.ClientSession, gen uint64) string {
	done := make(chan error, 1)
	go func() { done <- cs.Wait() }()
	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return "stopped"
		case err := <-done:
			if err == nil || errors.Is(err, mcpsdk.ErrConnectionClosed) || errors.Is(err, io.EOF) {
				return "the server closed the connection"
			}
			return "connection closed: " + s.redactError(err)
		case f := <-s.failures:
			if f.gen != gen {
				continue // a call of an earlier session
			}
			if s.cfg.Transport() == "stdio" || !s.pingOK(ctx, cs) {
				return "call failed: " + s.redactError(f.err)
			}
			// An HTTP request failed but the server answers: keep the
			// session, offer the tools again.
			s.mu.Lock()
			if s.cs == nil {
				s.gen++
				gen = s.gen
				s.cs = cs
				s.setState(StateUp, "")
			}
			s.mu.Unlock()
			s.m.changed()
		case <-s.relist:
			if err := s.list(ctx, cs); err != nil {
				return "listing tools: " + s.redactError(err)
			}
			s.m.changed()
		case <-ping.C:
			if !s.pingOK(ctx, cs) {
				return "ping failed"
			}
		}
	}
}

func (s *server) pingOK(ctx context.Context, cs *mcpsdk.ClientSession) bool {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	return cs.Ping(pctx, nil) == nil
}

// connect starts the command or reaches the URL and runs the handshake
// within the connect timeout.
func (s *server) connect(ctx context.Context) (*mcpsdk.ClientSession, *exec.Cmd, error) {
	client := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "agentbus", Version: s.m.opts.Version}, &mcpsdk.ClientOptions{
		Capabilities: &mcpsdk.ClientCapabilities{},
		ToolListChangedHandler: func(context.Context, *mcpsdk.ToolListChangedRequest) {
			select {
			case s.relist <- struct{}{}:
			default:
			}
		},
	})
	var t mcpsdk.Transport
	var cmd *exec.Cmd
	if len(s.cfg.Command) > 0 {
		cmd = s.command()
		t = &mcpsdk.CommandTransport{Command: cmd, TerminateDuration: s.cfg.StopTimeout}
	} else {
		t = &mcpsdk.StreamableClientTransport{Endpoint: s.cfg.URL, MaxRetries: -1,
			HTTPClient: &http.Client{Transport: &headerTransport{base: http.DefaultTransport, headers: s.headers}}}
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	cs, err := client.Connect(cctx, t, nil)
	if err != nil {
		return nil, cmd, fmt.Errorf("connect: %w", err)
	}
	return cs, cmd, nil
}

// stop kills what is left of a command's process group once its session
// is closed (the SDK stops the command itself: stdin closed, SIGTERM,
// SIGKILL).
func stop(cmd *exec.Cmd) {
	if cmd != nil {
		killGroup(cmd)
	}
}

// command builds the server's process: a minimal environment, its own
// process group (stopped as a whole), stderr to the debug log.
func (s *server) command() *exec.Cmd {
	cmd := exec.Command(s.cfg.Command[0], s.cfg.Command[1:]...)
	cmd.Dir = s.cfg.Dir
	var env []string
	for _, k := range inherited {
		if _, declared := s.env[k]; !declared {
			if v := s.m.opts.Getenv(k); v != "" {
				env = append(env, k+"="+v)
			}
		}
	}
	for k, v := range s.env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	cmd.Env = env
	cmd.Stderr = &stderrLog{s: s}
	cmd.WaitDelay = s.cfg.StopTimeout
	setupProcess(cmd)
	return cmd
}

// stderrLog writes a command's stderr lines to the debug log (a server
// may print secrets there: not at a level shown by default).
type stderrLog struct {
	s   *server
	buf []byte
}

func (w *stderrLog) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			if len(w.buf) > 4096 {
				w.flush(w.buf)
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.flush(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *stderrLog) flush(line []byte) {
	if len(line) > 1024 {
		line = line[:1024]
	}
	w.s.m.opts.Log.Debug("MCP server stderr", "mcp_server", w.s.name, "line", string(line))
}

// headerTransport adds the declared headers to every request.
type headerTransport struct {
	base    http.RoundTripper
	headers secretMap
}

func (h *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(h.headers) > 0 {
		r = r.Clone(r.Context())
		for k, v := range h.headers {
			r.Header.Set(k, v)
		}
	}
	return h.base.RoundTrip(r)
}

// list fetches the server's tools (every page) and decides which are
// offered.
func (s *server) list(ctx context.Context, cs *mcpsdk.ClientSession) error {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	var listed []*mcpsdk.Tool
	for t, err := range cs.Tools(lctx, nil) {
		if err != nil {
			return fmt.Errorf("tools/list: %w", err)
		}
		if len(listed) == MaxTools {
			return fmt.Errorf("tools/list: more than %d tools", MaxTools)
		}
		listed = append(listed, t)
	}
	offered := map[string]*Tool{}
	refused := map[string]string{}
	var flagged []string
	for _, t := range listed {
		tool, reason, flag := s.judge(t)
		if tool == nil {
			refused[t.Name] = reason
			continue
		}
		if _, dup := offered[tool.spec.Name]; dup {
			refused[t.Name] = "listed twice"
			continue
		}
		offered[tool.spec.Name] = tool
		if flag != "" {
			flagged = append(flagged, tool.spec.Name)
		}
	}
	slices.Sort(flagged)
	s.mu.Lock()
	s.tools, s.refused, s.flagged = offered, refused, flagged
	if s.logged == nil {
		s.logged = map[string]string{}
	}
	var newly [][2]string
	for n, r := range refused {
		if s.logged[n] != r {
			s.logged[n] = r
			newly = append(newly, [2]string{n, r})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(newly, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	for _, r := range newly {
		level := s.m.opts.Log.Info
		if !strings.HasPrefix(r[1], "not allowed") {
			level = s.m.opts.Log.Warn
		}
		level("MCP tool not offered", "mcp_server", s.name, "tool", r[0], "reason", r[1])
	}
	for _, n := range flagged {
		s.m.opts.Log.Warn("MCP tool description flagged by the prompt-injection scanner; offered", "mcp_server", s.name, "tool", n)
	}
	return nil
}

// judge decides whether a listed tool is offered: the tool, or the
// reason it is not; flag is set when its description was flagged.
func (s *server) judge(t *mcpsdk.Tool) (tool *Tool, reason, flag string) {
	name := firewall.MCPToolName(s.name, t.Name)
	if !s.cfg.Allows(t.Name) && !s.m.opts.Declared(name) {
		return nil, "not allowed (add it to the server's allow list)", ""
	}
	schema := json.RawMessage(`{"type":"object"}`)
	if t.InputSchema != nil {
		b, err := json.Marshal(t.InputSchema)
		if err != nil {
			return nil, "schema: " + err.Error(), ""
		}
		schema = b
	}
	spec := tools.Spec{Name: name, Description: t.Description, Parameters: schema}
	if _, err := tools.NewRegistry(tools.Func{S: spec}); err != nil {
		return nil, "name: " + strings.TrimPrefix(err.Error(), tools.ErrInvalidSpec.Error()+": "), ""
	}
	if len(schema) > MaxSchemaBytes {
		return nil, fmt.Sprintf("schema: larger than %d bytes", MaxSchemaBytes), ""
	}
	if err := firewall.CheckSchema(schema); err != nil {
		return nil, "schema: " + err.Error(), ""
	}
	text := describe(t)
	if len(t.Description) > MaxDescriptionBytes {
		return nil, fmt.Sprintf("description: longer than %d bytes", MaxDescriptionBytes), ""
	}
	if sc := s.m.opts.Scanner; sc != nil {
		v, rules := sc.ScanDescription(text)
		switch v {
		case "block":
			return nil, "description: looks like a prompt injection (" + strings.Join(rules, ", ") + ")", ""
		case "flag":
			flag = strings.Join(rules, ", ")
		}
	}
	return &Tool{srv: s, remote: t.Name, spec: spec}, "", flag
}

// describe is every text of a tool the model reads: its title,
// description and the titles and descriptions inside its input schema.
func describe(t *mcpsdk.Tool) string {
	parts := []string{t.Title, t.Description}
	if t.Annotations != nil {
		parts = append(parts, t.Annotations.Title)
	}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 32 {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "description" || k == "title") {
					parts = append(parts, s)
					continue
				}
				walk(e, depth+1)
			}
		case []any:
			for _, e := range x {
				walk(e, depth+1)
			}
		}
	}
	var schema any
	if b, err := json.Marshal(t.InputSchema); err == nil {
		_ = json.Unmarshal(b, &schema)
	}
	walk(schema, 0)
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n")
}

// isProtocolError reports whether err is the server's JSON-RPC answer (an
// unknown tool, invalid parameters): the connection is fine.
func isProtocolError(err error) bool {
	var we *jsonrpc.Error
	return errors.As(err, &we)
}

// redact removes the server's secrets from a text: the values of its
// headers and variables, and its URL's query (which may carry a token).
func (s *server) redact(text string) string {
	if s.cfg.URL != "" {
		text = strings.ReplaceAll(text, s.cfg.URL, firewall.RedactURL(s.cfg.URL))
	}
	for _, m := range []secretMap{s.headers, s.env} {
		for _, v := range m {
			if len(v) >= 4 {
				text = strings.ReplaceAll(text, v, "[REDACTED]")
			}
		}
	}
	if len(text) > 1000 {
		text = text[:1000] + "…"
	}
	return text
}

func (s *server) redactError(err error) string { return s.redact(err.Error()) }
