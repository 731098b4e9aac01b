package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/agentbus/agentbus/internal/breaker"
	"github.com/agentbus/agentbus/messages"
)

// ToolSpec describes a tool the model may call.
type ToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Parameters is the JSON Schema of the tool's arguments.
	Parameters json.RawMessage `json:"parameters,omitempty"`
	// Strict is OpenAI's strict function calling (the arguments follow
	// Parameters exactly), as a client declared it for its own tool: sent
	// to OpenAI-compatible providers; others do not take it (the tool
	// firewall checks a client tool's arguments against Parameters either
	// way).
	Strict *bool `json:"strict,omitempty"`
}

// Request is one model call.
type Request struct {
	// Model to use; empty means the provider's default.
	Model    string             `json:"model,omitempty"`
	Messages []messages.Message `json:"messages"`
	Tools    []ToolSpec         `json:"tools,omitempty"`
	Params   messages.Params    `json:"params,omitzero"`
	// User is an opaque end-user id forwarded to the provider (abuse
	// tracking), never a secret: the client's Params.User when it sent
	// one.
	User string `json:"user,omitempty"`
}

// EndUser is the end-user id to forward: the client's own (Params.User),
// else User.
func (r *Request) EndUser() string {
	if r.Params.User != "" {
		return r.Params.User
	}
	return r.User
}

// Response is a model's answer.
type Response struct {
	// Message is the assistant message: content and/or tool calls.
	Message messages.Message `json:"message"`
	Usage   messages.Usage   `json:"usage"`
	// Model is the model that answered, as the provider reports it.
	Model string `json:"model"`
	// FinishReason is OpenAI's: "stop", "length", "tool_calls" or
	// "content_filter" (see NormalizeFinishReason).
	FinishReason string `json:"finish_reason"`
	// Logprobs is the answer's log probabilities as OpenAI's
	// choices[].logprobs object, when the request asked for them.
	Logprobs json.RawMessage `json:"logprobs,omitempty"`
	// Provider names the provider that answered (set by Failover and by
	// every provider of this package).
	Provider string `json:"provider,omitempty"`
}

// Provider calls a language model.
type Provider interface {
	// Name identifies the provider in logs, metrics and Response.Provider.
	Name() string
	// Complete calls the model. If onDelta != nil the call streams (SSE)
	// and onDelta receives each content delta in order; the full Response
	// is still returned at the end. onDelta is called on the caller's
	// goroutine and must not block for long.
	Complete(ctx context.Context, req Request, onDelta func(delta string)) (Response, error)
}

// NormalizeFinishReason maps a provider's finish reason to one of
// OpenAI's ("stop", "length", "tool_calls", "content_filter"): those pass
// unchanged; "function_call" and anything unknown become "tool_calls" when
// the answer calls tools, else "stop".
func NormalizeFinishReason(reason string, toolCalls bool) string {
	switch reason {
	case "stop", "length", "content_filter":
		return reason
	case "tool_calls":
		return reason
	}
	if toolCalls {
		return "tool_calls"
	}
	return "stop"
}

// Sentinel errors; test with errors.Is.
var (
	// ErrRateLimited: the provider answered 429. Back-pressure, not a
	// breaker failure; see RetryAfter.
	ErrRateLimited = errors.New("provider rate limited")
	// ErrBadRequest: the provider rejected the request (4xx other than
	// 401/403/408/429). Retrying or failing over will not help.
	ErrBadRequest = errors.New("provider rejected the request")
	// ErrContextLength: the prompt does not fit the model's context
	// window. Also wraps ErrBadRequest.
	ErrContextLength = fmt.Errorf("context length exceeded (%w)", ErrBadRequest)
	// ErrAuth: the provider refused our credentials (401/403).
	ErrAuth = errors.New("provider authentication failed")
	// ErrUnavailable: 5xx, connection refused/reset, timeouts, malformed
	// or truncated responses, open breaker.
	ErrUnavailable = errors.New("provider unavailable")
	// ErrAllProvidersUnavailable: Failover found no provider able to
	// answer. Also wraps ErrUnavailable.
	ErrAllProvidersUnavailable = fmt.Errorf("all providers unavailable (%w)", ErrUnavailable)
	// ErrInvalidConfig is wrapped by every configuration error.
	ErrInvalidConfig = errors.New("invalid provider config")
	// ErrInvalidKey is wrapped by every ValidateKey error.
	ErrInvalidKey = errors.New("invalid API key")
)

// Error is an error answer (HTTP status >= 400, or an error event inside a
// stream) from a provider. It never contains the API key.
type Error struct {
	// Provider is the name of the provider that answered.
	Provider string
	// Status is the HTTP status (0 for an error event inside a stream).
	Status int
	// Code is the provider's error code, e.g. "context_length_exceeded".
	Code string
	// Message is the provider's text, truncated to 512 bytes, with
	// anything that looks like an API key redacted.
	Message string
	// RetryAfter is the provider's Retry-After (or retry-after-ms), if any.
	RetryAfter time.Duration

	kind error
}

func (e *Error) Error() string {
	s := "provider " + e.Provider + ": "
	if e.Status != 0 {
		s += fmt.Sprintf("HTTP %d", e.Status)
	} else {
		s += "stream error"
	}
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Unwrap returns the sentinel the error is classified as.
func (e *Error) Unwrap() error { return e.kind }

// IsBreakerFailure reports whether err says the provider is unhealthy and
// should count against its circuit breaker: 5xx, timeouts, connection
// errors, malformed or truncated responses, and any error it does not
// recognise. It is false for nil, 4xx (bad request, context length, auth),
// 429, an already-open breaker, and context.Canceled (the client gave up).
func IsBreakerFailure(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled),
		errors.Is(err, ErrAllProvidersUnavailable),
		errors.Is(err, breaker.ErrOpen),
		errors.Is(err, ErrRateLimited),
		errors.Is(err, ErrBadRequest),
		errors.Is(err, ErrAuth):
		return false
	}
	return true
}

// RetryAfter returns the back-off hint carried by err: an *Error's
// RetryAfter, a *FailoverError's shortest RetryAfter, or an open breaker's
// time to the next probe.
func RetryAfter(err error) (time.Duration, bool) {
	var fe *FailoverError
	if errors.As(err, &fe) && fe.RetryAfter > 0 {
		return fe.RetryAfter, true
	}
	var pe *Error
	if errors.As(err, &pe) && pe.RetryAfter > 0 {
		return pe.RetryAfter, true
	}
	var oe *breaker.OpenError
	if errors.As(err, &oe) {
		return oe.RetryAfter, true
	}
	return 0, false
}

// Classify maps a Complete error to the HTTP status and messages.Code* the
// client should see:
//
//	ErrContextLength            400 context_length_exceeded
//	ErrModelNotFound            404 model_not_found
//	ErrUnsupported              400 unsupported_parameter
//	ErrBadRequest               400 invalid_request
//	ErrRateLimited (all)        429 rate_limit_exceeded
//	ErrUnavailable / all open   503 provider_unavailable
//	context.DeadlineExceeded    504 timeout
//	ErrAuth, anything else      502 provider_error (our credentials, not the client's)
//
// A *FailoverError maps to 429 only when every provider tried was
// rate-limited, else 503.
func Classify(err error) (status int, code string) {
	var fe *FailoverError
	switch {
	case err == nil:
		return http.StatusOK, ""
	case errors.Is(err, ErrContextLength):
		return http.StatusBadRequest, messages.CodeContextLength
	case errors.Is(err, ErrModelNotFound):
		return http.StatusNotFound, messages.CodeModelNotFound
	case errors.Is(err, ErrUnsupported):
		return http.StatusBadRequest, messages.CodeUnsupportedParameter
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, messages.CodeInvalidRequest
	case errors.As(err, &fe):
		if fe.onlyRateLimited() {
			return http.StatusTooManyRequests, messages.CodeRateLimited
		}
		return http.StatusServiceUnavailable, messages.CodeProviderUnavailable
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests, messages.CodeRateLimited
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, messages.CodeTimeout
	case errors.Is(err, ErrUnavailable), errors.Is(err, breaker.ErrOpen):
		return http.StatusServiceUnavailable, messages.CodeProviderUnavailable
	}
	return http.StatusBadGateway, messages.CodeProviderError
}
