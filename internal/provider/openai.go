package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentbus/agentbus/messages"
)

// OpenAIConfig configures an [OpenAI] provider. A zero field takes its
// default.
type OpenAIConfig struct {
	// Name identifies the provider (Response.Provider, breaker, logs).
	// Default: Kind.
	Name string
	// Kind selects the key rules and default BaseURL (see ValidateKey).
	// Default "openai".
	Kind string
	// BaseURL is the API root, without /chat/completions. Default
	// DefaultBaseURL(Kind), e.g. https://api.openai.com/v1.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>" when non-empty. It
	// is redacted from logs (LogValue) and never appears in errors.
	APIKey string
	// Model is used when a Request names none. Default "gpt-4o-mini".
	Model string
	// HTTPClient makes the calls. Default: a client on
	// http.DefaultTransport without a timeout (the ctx bounds each call).
	// It must not retry: retries live in Failover.
	HTTPClient *http.Client
	// StreamIdleTimeout fails a stream that sends nothing (not even a
	// keep-alive comment) for this long. Default 60s.
	StreamIdleTimeout time.Duration
	// MaxResponseBytes bounds a non-streamed response body. Default 8 MiB.
	MaxResponseBytes int64
	// Headers are extra request headers (e.g. OpenRouter's HTTP-Referer).
	// Default none.
	Headers map[string]string
}

// Defaults of OpenAIConfig.
const (
	DefaultOpenAIModel       = "gpt-4o-mini"
	DefaultStreamIdleTimeout = 60 * time.Second
	DefaultMaxResponseBytes  = 8 << 20
)

// WithDefaults returns c with every zero field set to its default.
func (c OpenAIConfig) WithDefaults() OpenAIConfig {
	if c.Kind == "" {
		c.Kind = KindOpenAI
	}
	if c.Name == "" {
		c.Name = c.Kind
	}
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL(c.Kind)
	}
	if c.Model == "" {
		c.Model = DefaultOpenAIModel
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
func (c OpenAIConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: provider %q: %s", ErrInvalidConfig, c.Name, fmt.Sprintf(format, a...)))
	}
	if c.Kind == KindOffline {
		bad("kind offline is not an OpenAI provider (use NewOffline)")
	}
	if err := ValidateKey(c.Kind, c.APIKey); err != nil {
		errs = append(errs, fmt.Errorf("provider %q: %w", c.Name, err))
	}
	if c.BaseURL == "" {
		bad("base_url is required for kind %q", c.Kind)
	} else if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("base_url must be an absolute http(s) URL")
	} else if u.User != nil {
		bad("base_url must not carry credentials (use api_key_env)")
	}
	if c.StreamIdleTimeout < 0 {
		bad("stream idle timeout must not be negative")
	}
	if c.MaxResponseBytes < 0 {
		bad("max response bytes must not be negative")
	}
	return errors.Join(errs...)
}

// LogValue logs the configuration with the API key redacted.
func (c OpenAIConfig) LogValue() slog.Value {
	key := "(none)"
	if c.APIKey != "" {
		key = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("name", c.Name), slog.String("kind", c.Kind),
		slog.String("base_url", c.BaseURL), slog.String("model", c.Model),
		slog.String("api_key", key))
}

// OpenAI is a Provider for the OpenAI Chat Completions API and every server
// that speaks it (OpenRouter, Ollama, vLLM, llama.cpp, ...), over plain
// net/http: no SDK, no hidden retries.
type OpenAI struct {
	cfg      OpenAIConfig
	endpoint string
}

// NewOpenAI validates cfg and returns the provider.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	return &OpenAI{cfg: cfg, endpoint: strings.TrimSuffix(cfg.BaseURL, "/") + "/chat/completions"}, nil
}

// Name returns the configured name.
func (p *OpenAI) Name() string { return p.cfg.Name }

// Model returns the default model.
func (p *OpenAI) Model() string { return p.cfg.Model }

// LogValue logs the provider's configuration, key redacted.
func (p *OpenAI) LogValue() slog.Value { return p.cfg.LogValue() }

type chatTool struct {
	Type     string   `json:"type"`
	Function ToolSpec `json:"function"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatRequest struct {
	Model               string             `json:"model"`
	Messages            []messages.Message `json:"messages"`
	Tools               []chatTool         `json:"tools,omitempty"`
	ToolChoice          any                `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool              `json:"parallel_tool_calls,omitempty"`
	Temperature         *float64           `json:"temperature,omitempty"`
	TopP                *float64           `json:"top_p,omitempty"`
	MaxTokens           *int               `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int               `json:"max_completion_tokens,omitempty"`
	Stop                []string           `json:"stop,omitempty"`
	Seed                *int64             `json:"seed,omitempty"`
	ResponseFormat      any                `json:"response_format,omitempty"`
	Logprobs            bool               `json:"logprobs,omitempty"`
	TopLogprobs         *int               `json:"top_logprobs,omitempty"`
	User                string             `json:"user,omitempty"`
	Stream              bool               `json:"stream,omitempty"`
	StreamOptions       *streamOptions     `json:"stream_options,omitempty"`
}

type chatResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message      messages.Message `json:"message"`
		FinishReason string           `json:"finish_reason"`
		Logprobs     json.RawMessage  `json:"logprobs"`
	} `json:"choices"`
	Usage *messages.Usage `json:"usage"`
}

// openAIToolChoice is tool_choice as OpenAI takes it.
func openAIToolChoice(tc *messages.ToolChoice) any {
	if tc == nil {
		return nil
	}
	if tc.Mode == messages.ToolChoiceFunction {
		return map[string]any{"type": "function", "function": map[string]string{"name": tc.Function}}
	}
	return tc.Mode
}

// openAIResponseFormat is response_format as OpenAI takes it.
func openAIResponseFormat(rf *messages.ResponseFormat) any {
	if rf == nil {
		return nil
	}
	if rf.Type != messages.FormatJSONSchema || rf.JSONSchema == nil {
		return map[string]string{"type": rf.Type}
	}
	return map[string]any{"type": rf.Type, "json_schema": rf.JSONSchema}
}

func (p *OpenAI) body(req Request, stream bool) ([]byte, string, error) {
	model := req.Model
	if model == "" {
		model = p.cfg.Model
	}
	pa := req.Params
	cr := chatRequest{
		Model: model, Messages: req.Messages,
		Temperature: pa.Temperature, TopP: pa.TopP, MaxTokens: pa.MaxTokens, MaxCompletionTokens: pa.MaxCompletionTokens,
		Stop: pa.Stop, Seed: pa.Seed, ResponseFormat: openAIResponseFormat(pa.ResponseFormat),
		Logprobs: pa.Logprobs, TopLogprobs: pa.TopLogprobs, User: req.EndUser(), Stream: stream,
	}
	if stream {
		cr.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	for _, t := range req.Tools {
		cr.Tools = append(cr.Tools, chatTool{Type: "function", Function: t})
	}
	if len(cr.Tools) > 0 {
		// OpenAI refuses both without tools.
		cr.ToolChoice, cr.ParallelToolCalls = openAIToolChoice(pa.ToolChoice), pa.ParallelToolCalls
	}
	b, err := json.Marshal(cr)
	if err == nil && len(pa.OpenAI)+len(pa.Extra) > 0 {
		b, err = mergeParams(b, pa.OpenAI, pa.Extra)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: provider %s: encoding request: %w", ErrBadRequest, p.cfg.Name, err)
	}
	return b, model, nil
}

// mergeParams adds verbatim top-level fields to an encoded request body;
// a field the body already has is kept (a passed-through parameter never
// overrides one agentbus sets).
func mergeParams(body []byte, extra ...map[string]json.RawMessage) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	for _, e := range extra {
		for k, v := range e {
			if _, set := m[k]; !set {
				m[k] = v
			}
		}
	}
	return json.Marshal(m)
}

// Complete calls POST {BaseURL}/chat/completions. With onDelta it streams
// (stream: true, include_usage) and calls onDelta with every content delta;
// tool-call deltas are accumulated by index. A stream that ends before
// [DONE] (or a finish_reason) returns an error wrapping ErrUnavailable.
func (p *OpenAI) Complete(ctx context.Context, req Request, onDelta func(string)) (Response, error) {
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
	if onDelta != nil {
		hreq.Header.Set("Accept", "text/event-stream")
	} else {
		hreq.Header.Set("Accept", "application/json")
	}
	for k, v := range p.cfg.Headers {
		hreq.Header.Set(k, v)
	}
	if p.cfg.APIKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	}
	resp, err := p.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return Response{}, p.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return Response{}, p.httpError(resp)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if onDelta != nil && mt == "text/event-stream" {
		out, err := p.readStream(ctx, cancel, resp.Body, onDelta)
		if err != nil {
			return Response{}, err
		}
		if out.Model == "" {
			out.Model = model
		}
		return out, nil
	}
	out, err := p.readJSON(ctx, resp.Body)
	if err != nil {
		return Response{}, err
	}
	if out.Model == "" {
		out.Model = model
	}
	if onDelta != nil && out.Message.Content != "" { // server ignored stream: true
		onDelta(out.Message.Content)
	}
	return out, nil
}

func (p *OpenAI) transportError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		if errors.Is(cause, errStreamIdle) {
			return fmt.Errorf("provider %s: %w: %w", p.cfg.Name, ErrUnavailable, cause)
		}
		// The caller's context ended: report it as such.
		return fmt.Errorf("provider %s: %w", p.cfg.Name, cause)
	}
	return fmt.Errorf("provider %s: %w: %s", p.cfg.Name, ErrUnavailable, redact(err.Error(), p.cfg.APIKey))
}

func (p *OpenAI) readJSON(ctx context.Context, r io.Reader) (Response, error) {
	b, err := io.ReadAll(io.LimitReader(r, p.cfg.MaxResponseBytes+1))
	if err != nil {
		return Response{}, p.transportError(ctx, err)
	}
	if int64(len(b)) > p.cfg.MaxResponseBytes {
		return Response{}, fmt.Errorf("provider %s: %w: response larger than %d bytes", p.cfg.Name, ErrUnavailable, p.cfg.MaxResponseBytes)
	}
	var cr chatResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		return Response{}, fmt.Errorf("provider %s: %w: malformed response: %v", p.cfg.Name, ErrUnavailable, err)
	}
	if len(cr.Choices) == 0 {
		return Response{}, fmt.Errorf("provider %s: %w: response has no choices", p.cfg.Name, ErrUnavailable)
	}
	c := cr.Choices[0]
	msg := c.Message
	msg.Role = messages.RoleAssistant
	msg.Parts = nil
	fixToolCalls(msg.ToolCalls)
	out := Response{Message: msg, Model: cr.Model, FinishReason: NormalizeFinishReason(c.FinishReason, len(msg.ToolCalls) > 0), Provider: p.cfg.Name}
	if l := bytes.TrimSpace(c.Logprobs); len(l) > 0 && string(l) != "null" {
		out.Logprobs = l
	}
	if cr.Usage != nil {
		out.Usage = *cr.Usage
	}
	return out, nil
}

func fixToolCalls(tcs []messages.ToolCall) {
	for i := range tcs {
		if tcs[i].Type == "" {
			tcs[i].Type = "function"
		}
		if tcs[i].ID == "" {
			tcs[i].ID = "call_" + strconv.Itoa(i)
		}
	}
}

var errStreamIdle = errors.New("stream idle timeout")

type streamChunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   string `json:"content"`
			Refusal   string `json:"refusal"`
			ToolCalls []struct {
				Index    *int   `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *messages.Usage `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// toolAcc accumulates streamed tool calls by index.
type toolAcc struct {
	calls map[int]*messages.ToolCall
	remap map[int]int // provider index -> slot, when a provider reuses an index
	next  int
}

func (a *toolAcc) add(index *int, id, typ, name, args string) {
	if a.calls == nil {
		a.calls, a.remap = map[int]*messages.ToolCall{}, map[int]int{}
	}
	idx := a.next // no index: a new call unless it carries no id
	if index != nil {
		idx = *index
	} else if id == "" && a.next > 0 {
		idx = a.next - 1
	}
	slot, ok := a.remap[idx]
	if !ok {
		slot = idx
	}
	tc := a.calls[slot]
	if tc != nil && id != "" && tc.ID != "" && id != tc.ID {
		// Same index, different id: a new call.
		slot = a.maxSlot() + 1
		a.remap[idx] = slot
		tc = nil
	}
	if tc == nil {
		tc = &messages.ToolCall{}
		a.calls[slot] = tc
	}
	if slot >= a.next {
		a.next = slot + 1
	}
	if id != "" {
		tc.ID = id
	}
	if typ != "" {
		tc.Type = typ
	}
	tc.Function.Name += name
	tc.Function.Arguments += args
}

func (a *toolAcc) maxSlot() int {
	m := -1
	for k := range a.calls {
		m = max(m, k)
	}
	return m
}

func (a *toolAcc) result() []messages.ToolCall {
	if len(a.calls) == 0 {
		return nil
	}
	keys := make([]int, 0, len(a.calls))
	for k := range a.calls {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	out := make([]messages.ToolCall, 0, len(keys))
	for _, k := range keys {
		out = append(out, *a.calls[k])
	}
	fixToolCalls(out)
	return out
}

func (p *OpenAI) readStream(ctx context.Context, cancel context.CancelCauseFunc, body io.Reader, onDelta func(string)) (Response, error) {
	idle := time.AfterFunc(p.cfg.StreamIdleTimeout, func() { cancel(errStreamIdle) })
	defer idle.Stop()
	sr := newSSEReader(body, func() { idle.Reset(p.cfg.StreamIdleTimeout) })
	var (
		out      = Response{Provider: p.cfg.Name}
		content  strings.Builder
		refusal  strings.Builder
		tools    toolAcc
		finished bool
	)
	for {
		data, err := sr.next()
		if errors.Is(err, io.EOF) && finished {
			break // no [DONE], but the model had finished
		}
		if errors.Is(err, io.EOF) {
			return Response{}, fmt.Errorf("provider %s: %w: stream ended before [DONE]: %w", p.cfg.Name, ErrUnavailable, io.ErrUnexpectedEOF)
		}
		if err != nil {
			if ctx.Err() != nil {
				return Response{}, p.transportError(ctx, err)
			}
			return Response{}, fmt.Errorf("provider %s: %w: reading stream: %w", p.cfg.Name, ErrUnavailable, err)
		}
		if data == "[DONE]" {
			break
		}
		var ch streamChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return Response{}, fmt.Errorf("provider %s: %w: malformed stream chunk: %v", p.cfg.Name, ErrUnavailable, err)
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			return Response{}, p.newError(0, nil, ch.Error)
		}
		if ch.Model != "" {
			out.Model = ch.Model
		}
		if ch.Usage != nil {
			out.Usage = *ch.Usage
		}
		for _, c := range ch.Choices {
			if c.Index != 0 {
				continue
			}
			if c.Delta.Content != "" {
				content.WriteString(c.Delta.Content)
				onDelta(c.Delta.Content)
			}
			refusal.WriteString(c.Delta.Refusal)
			for _, tc := range c.Delta.ToolCalls {
				tools.add(tc.Index, tc.ID, tc.Type, tc.Function.Name, tc.Function.Arguments)
			}
			if c.FinishReason != nil && *c.FinishReason != "" {
				out.FinishReason = *c.FinishReason
				finished = true
			}
		}
	}
	out.Message = messages.Message{Role: messages.RoleAssistant, Content: content.String(), Refusal: refusal.String(), ToolCalls: tools.result()}
	out.FinishReason = NormalizeFinishReason(out.FinishReason, len(out.Message.ToolCalls) > 0)
	return out, nil
}

// errorPayload is an OpenAI-style error object, or a plain string.
type errorPayload struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

func parseErrorPayload(raw json.RawMessage) (msg, code string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", ""
	}
	if raw[0] == '"' {
		_ = json.Unmarshal(raw, &msg)
		return msg, ""
	}
	var ep errorPayload
	if json.Unmarshal(raw, &ep) != nil {
		return "", ""
	}
	code = strings.Trim(string(ep.Code), `"`)
	if code == "null" {
		code = ""
	}
	if code == "" {
		code = ep.Type
	}
	return ep.Message, code
}

func (p *OpenAI) httpError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	var raw json.RawMessage
	if json.Unmarshal(b, &body) == nil {
		switch {
		case len(body.Error) > 0 && string(body.Error) != "null":
			raw = body.Error
		case body.Message != "":
			raw, _ = json.Marshal(body.Message)
		case len(body.Detail) > 0:
			raw = body.Detail
			if raw[0] != '"' {
				raw, _ = json.Marshal(string(body.Detail))
			}
		}
	}
	if raw == nil {
		raw, _ = json.Marshal(strings.TrimSpace(string(b)))
	}
	return p.newError(resp.StatusCode, resp.Header, raw)
}

// newError builds an *Error from a status and an error payload.
func (p *OpenAI) newError(status int, h http.Header, payload json.RawMessage) *Error {
	msg, code := parseErrorPayload(payload)
	e := &Error{
		Provider:   p.cfg.Name,
		Status:     status,
		Code:       truncate(redact(code, p.cfg.APIKey), 64),
		Message:    truncate(redact(msg, p.cfg.APIKey), 512),
		RetryAfter: parseRetryAfter(h, time.Now()),
	}
	e.kind = classifyStatus(status, e.Code, e.Message)
	return e
}

func classifyStatus(status int, code, msg string) error {
	lower := strings.ToLower(msg)
	isCtx := code == "context_length_exceeded" || strings.Contains(lower, "context length") ||
		strings.Contains(lower, "maximum context") || strings.Contains(lower, "context window")
	switch {
	case status == http.StatusTooManyRequests || code == "rate_limit_exceeded":
		return ErrRateLimited
	case code == "model_not_found" && (status == 0 || status/100 == 4):
		return ErrModelNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ErrAuth
	case isCtx && (status == 0 || status/100 == 4):
		return ErrContextLength
	case status == http.StatusRequestTimeout:
		return ErrUnavailable
	case status/100 == 4:
		return ErrBadRequest
	}
	return ErrUnavailable // 5xx, 3xx, stream error events
}

// parseRetryAfter reads retry-after-ms (OpenAI) or Retry-After (seconds
// or HTTP date), capped at one hour.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	var d time.Duration
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			d = time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); d == 0 && v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil {
			if s > 0 {
				d = time.Duration(s * float64(time.Second))
			}
		} else if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
		}
	}
	return min(max(d, 0), time.Hour)
}

var keyLike = regexp.MustCompile(`(?i)(sk-[A-Za-z0-9_\-*.]{4,}|bearer\s+\S+)`)

// redact removes the key and anything that looks like an API key.
func redact(s, key string) string {
	if key != "" {
		s = strings.ReplaceAll(s, key, "[redacted]")
	}
	return keyLike.ReplaceAllString(s, "[redacted]")
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
