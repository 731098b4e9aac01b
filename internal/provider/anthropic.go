package provider

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/agentbus/agentbus/messages"
)

// AnthropicConfig configures an [Anthropic] provider. A zero field takes
// its default.
type AnthropicConfig struct {
	// Name identifies the provider. Default "anthropic".
	Name string
	// BaseURL is the API root, without /messages. Default
	// https://api.anthropic.com/v1.
	BaseURL string
	// APIKey is sent as the x-api-key header; required ("sk-ant-...").
	// It is redacted from logs and never appears in errors.
	APIKey string
	// Model is used when a Request names none; required.
	Model string
	// MaxTokens bounds an answer when the request sets no bound (the
	// Messages API requires one). Default 4096.
	MaxTokens int
	// Version is the anthropic-version header. Default "2023-06-01".
	Version string
	// HTTPClient makes the calls; it must not retry (retries live in
	// Failover). Default: a client on http.DefaultTransport.
	HTTPClient *http.Client
	// StreamIdleTimeout fails a stream silent this long (Anthropic sends
	// ping events). Default 60s.
	StreamIdleTimeout time.Duration
	// MaxResponseBytes bounds a non-streamed response. Default 8 MiB.
	MaxResponseBytes int64
	// Headers are extra request headers (e.g. anthropic-beta). Default
	// none.
	Headers map[string]string
}

// Defaults of AnthropicConfig.
const (
	DefaultAnthropicMaxTokens = 4096
	DefaultAnthropicVersion   = "2023-06-01"
)

// WithDefaults returns c with every zero field set to its default.
func (c AnthropicConfig) WithDefaults() AnthropicConfig {
	if c.Name == "" {
		c.Name = KindAnthropic
	}
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL(KindAnthropic)
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = DefaultAnthropicMaxTokens
	}
	if c.Version == "" {
		c.Version = DefaultAnthropicVersion
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.StreamIdleTimeout == 0 {
		c.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	return c
}

// Validate checks c (after defaults) and returns every problem, joined;
// each wraps ErrInvalidConfig or ErrInvalidKey. The key is never echoed.
func (c AnthropicConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: provider %q: %s", ErrInvalidConfig, c.Name, fmt.Sprintf(format, a...)))
	}
	if err := ValidateKey(KindAnthropic, c.APIKey); err != nil {
		errs = append(errs, fmt.Errorf("provider %q: %w", c.Name, err))
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("base_url must be an absolute http(s) URL")
	} else if u.User != nil {
		bad("base_url must not carry credentials (use api_key_env)")
	}
	if c.Model == "" {
		bad("a model is required")
	}
	if c.MaxTokens < 1 {
		bad("max_tokens must be at least 1")
	}
	if c.StreamIdleTimeout < 0 || c.MaxResponseBytes < 0 {
		bad("timeouts and sizes must not be negative")
	}
	return errors.Join(errs...)
}

// LogValue logs the configuration with the API key redacted.
func (c AnthropicConfig) LogValue() slog.Value {
	key := "(none)"
	if c.APIKey != "" {
		key = "[redacted]"
	}
	return slog.GroupValue(slog.String("name", c.Name), slog.String("kind", KindAnthropic),
		slog.String("base_url", c.BaseURL), slog.String("model", c.Model), slog.String("api_key", key))
}

// Anthropic is a Provider for Anthropic's Messages API over plain
// net/http (no SDK, so no hidden retries). It maps the OpenAI-shaped
// Request both ways:
//
//   - system and developer messages become the system prompt;
//   - an assistant message's tool_calls become tool_use blocks, tool
//     messages become tool_result blocks (consecutive results share one
//     user turn);
//   - image_url parts become image blocks (base64 for data: URLs, url
//     otherwise);
//   - tools become tools with input_schema; tool_choice auto/none/
//     required/function become auto/none/any/tool, parallel_tool_calls
//     false becomes disable_parallel_tool_use;
//   - stop becomes stop_sequences, the end-user id metadata.user_id;
//   - stop reasons map to OpenAI's: end_turn and stop_sequence -> stop,
//     max_tokens -> length, tool_use -> tool_calls, refusal ->
//     content_filter;
//   - usage: prompt = input + cache read + cache creation tokens.
//
// Errors are classified like the OpenAI provider's: 429 and
// rate_limit_error are back-pressure (Retry-After honoured), 529
// overloaded_error and 5xx count against the breaker, 400 is the
// client's ("prompt is too long" is a context-length error), 401/403 are
// ours.
type Anthropic struct {
	cfg      AnthropicConfig
	endpoint string
}

// NewAnthropic validates cfg and returns the provider.
func NewAnthropic(cfg AnthropicConfig) (*Anthropic, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	return &Anthropic{cfg: cfg, endpoint: strings.TrimSuffix(cfg.BaseURL, "/") + "/messages"}, nil
}

// Name returns the configured name.
func (p *Anthropic) Name() string { return p.cfg.Name }

// LogValue logs the provider's configuration, key redacted.
func (p *Anthropic) LogValue() slog.Value { return p.cfg.LogValue() }

type anthBlock struct {
	Type string `json:"type"`
	// text
	Text string `json:"text,omitempty"`
	// image
	Source *anthImageSource `json:"source,omitempty"`
	// tool_use
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
	// tool_result
	ToolUseID string `json:"tool_use_id,omitempty"`
	Content   string `json:"content,omitempty"`
}

type anthImageSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anthMessage struct {
	Role    string      `json:"role"`
	Content []anthBlock `json:"content"`
}

type anthTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type anthRequest struct {
	Model         string            `json:"model"`
	MaxTokens     int               `json:"max_tokens"`
	System        string            `json:"system,omitempty"`
	Messages      []anthMessage     `json:"messages"`
	Tools         []anthTool        `json:"tools,omitempty"`
	ToolChoice    *anthToolChoice   `json:"tool_choice,omitempty"`
	Temperature   *float64          `json:"temperature,omitempty"`
	TopP          *float64          `json:"top_p,omitempty"`
	StopSequences []string          `json:"stop_sequences,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	Stream        bool              `json:"stream,omitempty"`
}

// imageBlock maps an image_url part to an image block.
func imageBlock(u string) (anthBlock, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		mt, params, _ := strings.Cut(meta, ";")
		if !ok || params != "base64" || !strings.HasPrefix(mt, "image/") {
			return anthBlock{}, errors.New("an image data: URL must be data:image/<type>;base64,<data>")
		}
		if _, err := base64.StdEncoding.DecodeString(data); err != nil {
			return anthBlock{}, errors.New("an image data: URL does not hold valid base64")
		}
		return anthBlock{Type: "image", Source: &anthImageSource{Type: "base64", MediaType: mt, Data: data}}, nil
	}
	return anthBlock{Type: "image", Source: &anthImageSource{Type: "url", URL: u}}, nil
}

// toolInput is a tool call's arguments as a JSON object.
func toolInput(args string) json.RawMessage {
	b := bytes.TrimSpace([]byte(args))
	if len(b) > 0 && b[0] == '{' && json.Valid(b) {
		return b
	}
	return json.RawMessage(`{}`)
}

func (p *Anthropic) body(req Request, stream bool) ([]byte, string, error) {
	model := req.Model
	if model == "" {
		model = p.cfg.Model
	}
	pa := req.Params
	ar := anthRequest{Model: model, MaxTokens: p.cfg.MaxTokens, Temperature: pa.Temperature, TopP: pa.TopP,
		StopSequences: pa.Stop, Stream: stream}
	if pa.MaxCompletionTokens != nil {
		ar.MaxTokens = *pa.MaxCompletionTokens
	} else if pa.MaxTokens != nil {
		ar.MaxTokens = *pa.MaxTokens
	}
	if u := req.EndUser(); u != "" {
		ar.Metadata = map[string]string{"user_id": u}
	}
	var system []string
	// add appends blocks to the last message when it has the same role
	// (tool results and a following user message share one user turn).
	add := func(role string, blocks ...anthBlock) {
		if len(blocks) == 0 {
			return
		}
		if n := len(ar.Messages); n > 0 && ar.Messages[n-1].Role == role {
			ar.Messages[n-1].Content = append(ar.Messages[n-1].Content, blocks...)
			return
		}
		ar.Messages = append(ar.Messages, anthMessage{Role: role, Content: blocks})
	}
	for i, m := range req.Messages {
		switch m.Role {
		case messages.RoleSystem, messages.RoleDeveloper:
			if m.Content != "" {
				system = append(system, m.Content)
			}
		case messages.RoleUser:
			if m.Parts == nil {
				if m.Content != "" {
					add("user", anthBlock{Type: "text", Text: m.Content})
				}
				continue
			}
			var blocks []anthBlock
			for j, part := range m.Parts {
				switch part.Type {
				case messages.PartText:
					if part.Text != "" {
						blocks = append(blocks, anthBlock{Type: "text", Text: part.Text})
					}
				case messages.PartImage:
					if part.ImageURL == nil {
						continue
					}
					b, err := imageBlock(part.ImageURL.URL)
					if err != nil {
						return nil, "", &UnsupportedError{Provider: p.cfg.Name, Param: fmt.Sprintf("messages.[%d].content.[%d]", i, j), Reason: err.Error()}
					}
					blocks = append(blocks, b)
				}
			}
			add("user", blocks...)
		case messages.RoleAssistant:
			var blocks []anthBlock
			if m.Content != "" {
				blocks = append(blocks, anthBlock{Type: "text", Text: m.Content})
			}
			if r := m.RefusalText(); r != "" {
				// A refusal is what the assistant said: Anthropic has no
				// refusal field, so it stays in the history as text.
				blocks = append(blocks, anthBlock{Type: "text", Text: r})
			}
			for _, tc := range m.ToolCalls {
				blocks = append(blocks, anthBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: toolInput(tc.Function.Arguments)})
			}
			add("assistant", blocks...)
		case messages.RoleTool:
			content := m.Content
			if content == "" {
				content = "(no output)"
			}
			add("user", anthBlock{Type: "tool_result", ToolUseID: m.ToolCallID, Content: content})
		}
	}
	ar.System = strings.Join(system, "\n\n")
	for _, t := range req.Tools {
		schema := t.Parameters
		if len(bytes.TrimSpace(schema)) == 0 || string(schema) == "null" {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		ar.Tools = append(ar.Tools, anthTool{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	if len(ar.Tools) > 0 {
		tc := &anthToolChoice{Type: "auto"}
		if c := pa.ToolChoice; c != nil {
			switch c.Mode {
			case messages.ToolChoiceNone:
				tc.Type = "none"
			case messages.ToolChoiceRequired:
				tc.Type = "any"
			case messages.ToolChoiceFunction:
				tc.Type, tc.Name = "tool", c.Function
			}
		}
		if pa.ParallelToolCalls != nil && !*pa.ParallelToolCalls && tc.Type != "none" {
			tc.DisableParallelToolUse = true
		}
		if tc.Type != "auto" || tc.DisableParallelToolUse {
			ar.ToolChoice = tc
		}
	}
	b, err := json.Marshal(ar)
	if err == nil && len(pa.Extra) > 0 {
		b, err = mergeParams(b, pa.Extra)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: provider %s: encoding request: %w", ErrBadRequest, p.cfg.Name, err)
	}
	return b, model, nil
}

// Complete calls POST {BaseURL}/messages; with onDelta it streams and
// calls onDelta with every text delta (tool_use input deltas are
// accumulated). A stream that ends before message_stop is an error
// wrapping ErrUnavailable.
func (p *Anthropic) Complete(ctx context.Context, req Request, onDelta func(string)) (Response, error) {
	body, model, err := p.body(req, onDelta != nil)
	if err != nil {
		return Response{}, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(body))
	if err != nil {
		return Response{}, fmt.Errorf("%w: provider %s: %w", ErrInvalidConfig, p.cfg.Name, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	for k, v := range p.cfg.Headers {
		hreq.Header.Set(k, v)
	}
	hreq.Header.Set("anthropic-version", p.cfg.Version)
	hreq.Header.Set("x-api-key", p.cfg.APIKey)
	resp, err := p.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return Response{}, p.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return Response{}, p.httpError(resp)
	}
	var out Response
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if onDelta != nil && mt == "text/event-stream" {
		out, err = p.readStream(ctx, cancel, resp.Body, onDelta)
	} else {
		out, err = p.readJSON(ctx, resp.Body)
		if err == nil && onDelta != nil && out.Message.Content != "" {
			onDelta(out.Message.Content)
		}
	}
	if err != nil {
		return Response{}, err
	}
	if out.Model == "" {
		out.Model = model
	}
	return out, nil
}

func (p *Anthropic) transportError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		if errors.Is(cause, errStreamIdle) {
			return fmt.Errorf("provider %s: %w: %w", p.cfg.Name, ErrUnavailable, cause)
		}
		return fmt.Errorf("provider %s: %w", p.cfg.Name, cause)
	}
	return fmt.Errorf("provider %s: %w: %s", p.cfg.Name, ErrUnavailable, redact(err.Error(), p.cfg.APIKey))
}

type anthUsage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

func (u anthUsage) usage() messages.Usage {
	in := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
	return messages.Usage{PromptTokens: in, CompletionTokens: u.OutputTokens, TotalTokens: in + u.OutputTokens}
}

type anthResponse struct {
	Model      string      `json:"model"`
	Content    []anthBlock `json:"content"`
	StopReason string      `json:"stop_reason"`
	Usage      anthUsage   `json:"usage"`
}

// anthropicFinish maps a stop reason to OpenAI's finish reason.
func anthropicFinish(stop string, toolCalls bool) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return NormalizeFinishReason("", toolCalls)
}

func (p *Anthropic) readJSON(ctx context.Context, r io.Reader) (Response, error) {
	b, err := io.ReadAll(io.LimitReader(r, p.cfg.MaxResponseBytes+1))
	if err != nil {
		return Response{}, p.transportError(ctx, err)
	}
	if int64(len(b)) > p.cfg.MaxResponseBytes {
		return Response{}, fmt.Errorf("provider %s: %w: response larger than %d bytes", p.cfg.Name, ErrUnavailable, p.cfg.MaxResponseBytes)
	}
	var ar anthResponse
	if err := json.Unmarshal(b, &ar); err != nil {
		return Response{}, fmt.Errorf("provider %s: %w: malformed response: %v", p.cfg.Name, ErrUnavailable, err)
	}
	msg := messages.Message{Role: messages.RoleAssistant}
	var text strings.Builder
	for _, bl := range ar.Content {
		switch bl.Type {
		case "text":
			text.WriteString(bl.Text)
		case "tool_use":
			args := string(bl.Input)
			if args == "" {
				args = "{}"
			}
			msg.ToolCalls = append(msg.ToolCalls, messages.ToolCall{ID: bl.ID, Type: "function", Function: messages.FunctionCall{Name: bl.Name, Arguments: args}})
		}
	}
	msg.Content = text.String()
	fixToolCalls(msg.ToolCalls)
	return Response{Message: msg, Model: ar.Model, Usage: ar.Usage.usage(), Provider: p.cfg.Name,
		FinishReason: anthropicFinish(ar.StopReason, len(msg.ToolCalls) > 0)}, nil
}

type anthEvent struct {
	Type    string `json:"type"`
	Message *struct {
		Model string    `json:"model"`
		Usage anthUsage `json:"usage"`
	} `json:"message"`
	Index        int        `json:"index"`
	ContentBlock *anthBlock `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *anthUsage      `json:"usage"`
	Error json.RawMessage `json:"error"`
}

func (p *Anthropic) readStream(ctx context.Context, cancel context.CancelCauseFunc, body io.Reader, onDelta func(string)) (Response, error) {
	idle := time.AfterFunc(p.cfg.StreamIdleTimeout, func() { cancel(errStreamIdle) })
	defer idle.Stop()
	sr := newSSEReader(body, func() { idle.Reset(p.cfg.StreamIdleTimeout) })
	var (
		out     = Response{Provider: p.cfg.Name}
		text    strings.Builder
		usage   anthUsage
		stop    string
		tools   = map[int]*messages.ToolCall{}
		stopped bool
	)
	for !stopped {
		data, err := sr.next()
		if errors.Is(err, io.EOF) {
			return Response{}, fmt.Errorf("provider %s: %w: stream ended before message_stop: %w", p.cfg.Name, ErrUnavailable, io.ErrUnexpectedEOF)
		}
		if err != nil {
			if ctx.Err() != nil {
				return Response{}, p.transportError(ctx, err)
			}
			return Response{}, fmt.Errorf("provider %s: %w: reading stream: %w", p.cfg.Name, ErrUnavailable, err)
		}
		var ev anthEvent
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return Response{}, fmt.Errorf("provider %s: %w: malformed stream event: %v", p.cfg.Name, ErrUnavailable, err)
		}
		switch ev.Type {
		case "message_start":
			if ev.Message != nil {
				out.Model = ev.Message.Model
				usage = ev.Message.Usage
			}
		case "content_block_start":
			if b := ev.ContentBlock; b != nil && b.Type == "tool_use" {
				tools[ev.Index] = &messages.ToolCall{ID: b.ID, Type: "function", Function: messages.FunctionCall{Name: b.Name}}
			}
		case "content_block_delta":
			if ev.Delta == nil {
				continue
			}
			switch ev.Delta.Type {
			case "text_delta":
				if ev.Delta.Text != "" {
					text.WriteString(ev.Delta.Text)
					onDelta(ev.Delta.Text)
				}
			case "input_json_delta":
				if tc := tools[ev.Index]; tc != nil {
					tc.Function.Arguments += ev.Delta.PartialJSON
				}
			}
		case "message_delta":
			if ev.Delta != nil && ev.Delta.StopReason != "" {
				stop = ev.Delta.StopReason
			}
			if ev.Usage != nil {
				// Counts in message_delta are cumulative.
				usage.OutputTokens = ev.Usage.OutputTokens
				if ev.Usage.InputTokens > 0 {
					usage.InputTokens = ev.Usage.InputTokens
				}
			}
		case "message_stop":
			stopped = true
		case "error":
			return Response{}, p.newError(0, nil, ev.Error)
		}
	}
	idx := make([]int, 0, len(tools))
	for i := range tools {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	msg := messages.Message{Role: messages.RoleAssistant, Content: text.String()}
	for _, i := range idx {
		tc := *tools[i]
		if strings.TrimSpace(tc.Function.Arguments) == "" {
			tc.Function.Arguments = "{}"
		}
		msg.ToolCalls = append(msg.ToolCalls, tc)
	}
	fixToolCalls(msg.ToolCalls)
	out.Message, out.Usage = msg, usage.usage()
	out.FinishReason = anthropicFinish(stop, len(msg.ToolCalls) > 0)
	return out, nil
}

// anthropicStatus is the HTTP status Anthropic uses for an error type (an
// error event inside a stream carries only the type).
var anthropicStatus = map[string]int{
	"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
	"request_too_large": 413, "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529,
}

func (p *Anthropic) httpError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error json.RawMessage `json:"error"`
	}
	raw := json.RawMessage(nil)
	if json.Unmarshal(b, &body) == nil && len(body.Error) > 0 && string(body.Error) != "null" {
		raw = body.Error
	} else {
		raw, _ = json.Marshal(map[string]string{"message": strings.TrimSpace(string(b))})
	}
	return p.newError(resp.StatusCode, resp.Header, raw)
}

// newError builds an *Error from a status (0 inside a stream) and an
// Anthropic error object {"type", "message"}.
func (p *Anthropic) newError(status int, h http.Header, payload json.RawMessage) *Error {
	var ep struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(payload, &ep)
	if status == 0 {
		status = anthropicStatus[ep.Type]
	}
	code := ep.Type
	lower := strings.ToLower(ep.Message)
	switch {
	case ep.Type == "rate_limit_error":
		code = "rate_limit_exceeded"
	case status == http.StatusNotFound && strings.Contains(lower, "model"):
		code = "model_not_found"
	case status == http.StatusBadRequest && (strings.Contains(lower, "prompt is too long") || strings.Contains(lower, "context window")):
		code = "context_length_exceeded"
	}
	e := &Error{
		Provider:   p.cfg.Name,
		Status:     status,
		Code:       truncate(redact(code, p.cfg.APIKey), 64),
		Message:    truncate(redact(ep.Message, p.cfg.APIKey), 512),
		RetryAfter: parseRetryAfter(h, time.Now()),
	}
	e.kind = classifyStatus(status, e.Code, e.Message)
	return e
}
