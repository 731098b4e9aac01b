package provider

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/agentbus/agentbus/messages"
)

// Capabilities say which request parameters a provider honours. A request
// using one the provider cannot honour is refused (400
// unsupported_parameter, naming the parameter) instead of being sent with
// the parameter silently dropped. Sampling parameters (temperature, top_p),
// the answer's token bound and the end-user id are honoured, or harmlessly
// ignored (the deterministic Offline model), by every provider.
type Capabilities struct {
	// Images: image_url content parts.
	Images bool `json:"images"`
	// JSONObject and JSONSchema: response_format json_object and
	// json_schema.
	JSONObject bool `json:"json_object"`
	JSONSchema bool `json:"json_schema"`
	// Seed: deterministic sampling with seed.
	Seed bool `json:"seed"`
	// Logprobs: logprobs and top_logprobs.
	Logprobs bool `json:"logprobs"`
	// ToolChoice: tool_choice none, required or a named function (auto is
	// always honoured).
	ToolChoice bool `json:"tool_choice"`
	// ParallelToolCalls: parallel_tool_calls false.
	ParallelToolCalls bool `json:"parallel_tool_calls"`
	// Stop: stop sequences.
	Stop bool `json:"stop"`
	// OpenAIParams: the OpenAI-only parameters agentbus forwards verbatim
	// (frequency_penalty, presence_penalty, logit_bias, reasoning_effort,
	// verbosity, moderation; hints such as store or prompt_cache_key are
	// dropped for providers without it).
	OpenAIParams bool `json:"openai_params"`
	// MaxTemperature is the highest temperature accepted (OpenAI 2,
	// Anthropic 1).
	MaxTemperature float64 `json:"max_temperature"`
}

// CapabilityNames are the keys of a provider's "capabilities" object in
// the config file.
var CapabilityNames = []string{"images", "json_object", "json_schema", "seed", "logprobs", "tool_choice", "parallel_tool_calls", "stop", "openai_params"}

// set changes one capability by its config name.
func (c *Capabilities) set(name string, v bool) bool {
	switch name {
	case "images":
		c.Images = v
	case "json_object":
		c.JSONObject = v
	case "json_schema":
		c.JSONSchema = v
	case "seed":
		c.Seed = v
	case "logprobs":
		c.Logprobs = v
	case "tool_choice":
		c.ToolChoice = v
	case "parallel_tool_calls":
		c.ParallelToolCalls = v
	case "stop":
		c.Stop = v
	case "openai_params":
		c.OpenAIParams = v
	default:
		return false
	}
	return true
}

// KindCapabilities returns what a provider kind honours by default:
//
//	openai, openrouter, compatible       everything
//	ollama, vllm, llamacpp, local        everything but images (set "images": true for a vision model)
//	anthropic                            images, tool_choice, parallel_tool_calls, stop; temperature <= 1
//	offline                              seed (it is deterministic), tool_choice, parallel_tool_calls, stop
func KindCapabilities(kind string) Capabilities {
	all := Capabilities{Images: true, JSONObject: true, JSONSchema: true, Seed: true, Logprobs: true, ToolChoice: true,
		ParallelToolCalls: true, Stop: true, OpenAIParams: true, MaxTemperature: 2}
	switch kind {
	case KindOllama, KindVLLM, KindLlamaCpp, KindLocal:
		all.Images = false
		return all
	case KindAnthropic:
		return Capabilities{Images: true, ToolChoice: true, ParallelToolCalls: true, Stop: true, MaxTemperature: 1}
	case KindOffline:
		return Capabilities{Seed: true, ToolChoice: true, ParallelToolCalls: true, Stop: true, MaxTemperature: 2}
	}
	return all
}

// OpenAI-only request parameters ingest keeps in messages.Params.OpenAI.
// Hints change nothing in the answer and are dropped for a provider that
// does not take OpenAI parameters; the others change the answer, so such
// a provider refuses them.
var (
	HintParams     = []string{"metadata", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "safety_identifier", "service_tier", "store"}
	SemanticParams = []string{"frequency_penalty", "logit_bias", "moderation", "presence_penalty", "reasoning_effort", "verbosity"}
)

// ErrUnsupported is wrapped by a *UnsupportedError: the provider cannot
// honour a parameter of the request. It also wraps ErrBadRequest (retrying
// or failing over to the same provider will not help).
var ErrUnsupported = fmt.Errorf("unsupported parameter (%w)", ErrBadRequest)

// UnsupportedError says which parameter a provider cannot honour.
type UnsupportedError struct {
	// Provider is the provider's name; Param the parameter in OpenAI's
	// form ("response_format", "messages.[0].content.[1]").
	Provider, Param string
	// Reason is the sentence shown to the client.
	Reason string
}

func (e *UnsupportedError) Error() string { return e.Reason }

// Unwrap returns ErrUnsupported.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// Check returns a *UnsupportedError for the first parameter of req the
// provider (called name, serving model) cannot honour, nil when it honours
// them all.
func (c Capabilities) Check(name, model string, req *Request) error {
	refuse := func(param, what string) error {
		return &UnsupportedError{Provider: name, Param: param,
			Reason: fmt.Sprintf("%s is not supported by model %s", what, model)}
	}
	p := req.Params
	if rf := p.ResponseFormat; rf != nil {
		switch {
		case rf.Type == messages.FormatJSONObject && !c.JSONObject:
			return refuse("response_format", "response_format json_object")
		case rf.Type == messages.FormatJSONSchema && !c.JSONSchema:
			return refuse("response_format", "response_format json_schema")
		}
	}
	if p.Seed != nil && !c.Seed {
		return refuse("seed", "seed")
	}
	if p.Logprobs && !c.Logprobs {
		return refuse("logprobs", "logprobs")
	}
	if p.TopLogprobs != nil && !c.Logprobs {
		return refuse("top_logprobs", "top_logprobs")
	}
	if tc := p.ToolChoice; tc != nil && tc.Mode != messages.ToolChoiceAuto && !c.ToolChoice {
		return refuse("tool_choice", "tool_choice "+tc.Mode)
	}
	if p.ParallelToolCalls != nil && !*p.ParallelToolCalls && !c.ParallelToolCalls {
		return refuse("parallel_tool_calls", "parallel_tool_calls false")
	}
	if len(p.Stop) > 0 && !c.Stop {
		return refuse("stop", "stop")
	}
	if p.Temperature != nil && c.MaxTemperature > 0 && *p.Temperature > c.MaxTemperature {
		return &UnsupportedError{Provider: name, Param: "temperature",
			Reason: fmt.Sprintf("temperature above %g is not supported by model %s", c.MaxTemperature, model)}
	}
	if !c.OpenAIParams {
		keys := make([]string, 0, len(p.OpenAI))
		for k := range p.OpenAI {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !slices.Contains(HintParams, k) {
				return refuse(k, k)
			}
		}
	}
	if !c.Images {
		for i, m := range req.Messages {
			for j, part := range m.Parts {
				if part.Type == messages.PartImage {
					return refuse(fmt.Sprintf("messages.[%d].content.[%d]", i, j), "image input")
				}
			}
		}
	}
	return nil
}

// ModelNotFoundError: no provider serves the requested model.
type ModelNotFoundError struct {
	Model string
	// Served lists the models that can be called, for the message.
	Served []string
}

// ErrModelNotFound is wrapped by *ModelNotFoundError (and by a provider's
// own 404 model_not_found). It also wraps ErrBadRequest.
var ErrModelNotFound = fmt.Errorf("model not found (%w)", ErrBadRequest)

func (e *ModelNotFoundError) Error() string {
	msg := fmt.Sprintf("The model '%s' does not exist or you do not have access to it.", truncate(e.Model, 128))
	if len(e.Served) > 0 && len(e.Served) <= 20 {
		msg += " Models served: " + strings.Join(e.Served, ", ") + "."
	}
	return msg
}

// Unwrap returns ErrModelNotFound.
func (e *ModelNotFoundError) Unwrap() error { return ErrModelNotFound }

// ClientMessage is the text a client may see for a Complete error: the
// provider's own words for a request it refused (400-class, scrubbed of
// URLs), a plain sentence otherwise. The provider's URL, network errors and
// other internal detail stay in the logs.
func ClientMessage(err error) string {
	var ue *UnsupportedError
	var mnf *ModelNotFoundError
	var pe *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ue):
		return ue.Reason
	case errors.As(err, &mnf):
		return mnf.Error()
	case errors.Is(err, ErrModelNotFound):
		return "The model does not exist or you do not have access to it."
	case errors.Is(err, ErrContextLength):
		if errors.As(err, &pe) && pe.Message != "" {
			return scrubURLs(pe.Message)
		}
		return "The request does not fit the model's context window."
	case errors.Is(err, ErrBadRequest):
		if errors.As(err, &pe) && pe.Message != "" {
			return "The model provider refused the request: " + scrubURLs(pe.Message)
		}
		return "The model provider refused the request."
	}
	status, _ := Classify(err)
	retry := ""
	if d, ok := RetryAfter(err); ok && d > 0 {
		retry = fmt.Sprintf(" Retry after %s.", d.Round(timeRound(d)))
	}
	switch status {
	case 429:
		return "The model provider is rate limiting requests." + retry
	case 503:
		return "The model provider is unavailable." + retry
	case 504:
		return "The model did not answer in time."
	}
	return "The model provider failed to answer."
}

var urlLike = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>]+`)

// scrubURLs replaces URLs in a provider's message (its own endpoints,
// documentation links with account ids) with "[url]".
func scrubURLs(s string) string { return urlLike.ReplaceAllString(s, "[url]") }

func timeRound(d time.Duration) time.Duration {
	if d >= time.Second {
		return time.Second
	}
	return time.Millisecond
}
