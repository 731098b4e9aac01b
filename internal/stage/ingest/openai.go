package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/messages"
)

// chatRequest is an OpenAI Chat Completions request once checked: the
// parameters agentbus models, typed; OpenAI's other parameters and the
// unknown ones the operator lets through, verbatim.
type chatRequest struct {
	Model        string
	Messages     []messages.Message
	Stream       bool
	IncludeUsage bool
	Params       messages.Params
	// Tools are the client's own function tools (OpenAI's tools).
	Tools []messages.ToolDef
	// Cache is agentbus's "cache" extension: true asks for the response
	// cache (at any temperature), false refuses it; nil: the key decides.
	Cache *bool
}

// requestError is a refused request, as OpenAI words it: status, code,
// the parameter at fault (OpenAI's form, "messages.[0].role") and the
// message.
type requestError struct {
	status      int
	code, param string
	msg         string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(code, param, format string, a ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: code, param: param, msg: fmt.Sprintf(format, a...)}
}

// OpenAI's error codes for invalid parameters.
const (
	codeInvalidJSON      = "invalid_json"
	codeInvalidType      = "invalid_type"
	codeInvalidValue     = "invalid_value"
	codeMissing          = "missing_required_parameter"
	codeUnknownParam     = "unknown_parameter"
	codeUnsupportedParam = messages.CodeUnsupportedParameter
	codeUnsupportedValue = "unsupported_value"
	codeEmptyArray       = "empty_array"
	codeArrayTooLong     = "array_above_max_length"
	codeStringTooLong    = "string_above_max_length"
)

// paramKind says what ingest does with a parameter of OpenAI's request
// schema.
type paramKind int

const (
	// modeled: checked and carried typed (messages.Params, Turn fields).
	modeled paramKind = iota
	// forwarded: checked and carried verbatim in Params.OpenAI when its
	// value is not the default (OpenAI-compatible providers take it; the
	// catalog refuses it for others unless it is a mere hint).
	forwarded
	// refused: agentbus cannot honour it; accepted only with its
	// default value.
	refused
)

// openAIParams is every property of OpenAI's CreateChatCompletionRequest
// (the conformance suite checks this list against the official spec).
var openAIParams = map[string]paramKind{
	"model": modeled, "messages": modeled, "stream": modeled, "stream_options": modeled,
	"temperature": modeled, "top_p": modeled, "max_tokens": modeled, "max_completion_tokens": modeled,
	"stop": modeled, "n": modeled, "user": modeled, "seed": modeled, "response_format": modeled,
	"tool_choice": modeled, "parallel_tool_calls": modeled, "logprobs": modeled, "top_logprobs": modeled,
	"tools": modeled,

	"frequency_penalty": forwarded, "presence_penalty": forwarded, "logit_bias": forwarded,
	"reasoning_effort": forwarded, "verbosity": forwarded, "moderation": forwarded,
	"metadata": forwarded, "store": forwarded, "service_tier": forwarded, "prompt_cache_key": forwarded,
	"prompt_cache_options": forwarded, "prompt_cache_retention": forwarded, "safety_identifier": forwarded,

	"audio": refused, "modalities": refused, "prediction": refused, "web_search_options": refused,
	"functions": refused, "function_call": refused,
}

// parseOptions are the operator's choices for request checking.
type parseOptions struct {
	// allowUnknown lets parameters OpenAI does not define through to the
	// providers (Params.Extra) instead of refusing them.
	allowUnknown bool
	// requireModel refuses a request without "model" (the HTTP API, like
	// OpenAI's); the NATS entry lets it default.
	requireModel bool
}

// parseChat checks an OpenAI chat completions body as OpenAI does (the
// same status, code, param and wording where agentbus and OpenAI agree)
// and returns the request.
func parseChat(body []byte, o parseOptions) (chatRequest, *requestError) {
	var req chatRequest
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil || dec.More() {
		if err == nil || isTypeError(err) {
			return req, badRequest(codeInvalidJSON, "", "The request body must be a JSON object.")
		}
		return req, badRequest(codeInvalidJSON, "", "We could not parse the JSON body of your request. The API expects a JSON payload, but what was sent was not valid JSON: %s", err)
	}
	if fields == nil {
		return req, badRequest(codeInvalidJSON, "", "The request body must be a JSON object.")
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	p := &req.Params
	for _, k := range names {
		v := fields[k]
		if k == "cache" { // agentbus's extension, never forwarded
			if isNull(v) {
				continue
			}
			var b bool
			if json.Unmarshal(v, &b) != nil {
				return req, typeErr("cache", "a boolean", v)
			}
			req.Cache = &b
			continue
		}
		kind, known := openAIParams[k]
		switch {
		case !known && o.allowUnknown:
			if p.Extra == nil {
				p.Extra = map[string]json.RawMessage{}
			}
			p.Extra[k] = v
		case !known:
			return req, badRequest(codeUnknownParam, k, "Unrecognized request argument supplied: %s", truncate(k, 64))
		case kind == forwarded:
			keep, err := checkForwarded(k, v)
			if err != nil {
				return req, err
			}
			if keep {
				if p.OpenAI == nil {
					p.OpenAI = map[string]json.RawMessage{}
				}
				p.OpenAI[k] = v
			}
		case kind == refused:
			if err := checkRefused(k, v); err != nil {
				return req, err
			}
		}
	}
	var err *requestError
	if req.Model, err = str(fields, "model"); err != nil {
		return req, err
	}
	if req.Model == "" && o.requireModel {
		return req, badRequest(codeMissing, "model", "you must provide a model parameter")
	}
	if len(req.Model) > messages.MaxModelLen {
		return req, badRequest(codeStringTooLong, "model", "Invalid 'model': string too long. Expected a string with maximum length %d, but got a string with length %d instead.", messages.MaxModelLen, len(req.Model))
	}
	if req.Messages, err = parseMessages(fields["messages"]); err != nil {
		return req, err
	}
	if err := req.parseParams(fields); err != nil {
		return req, err
	}
	return req, nil
}

func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

// kindOf names a JSON value's type as OpenAI's messages do.
func kindOf(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(v, ".eE") {
		return "a decimal"
	}
	return "an integer"
}

func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || string(v) == "null"
}

func typeErr(param, want string, v json.RawMessage) *requestError {
	return badRequest(codeInvalidType, param, "Invalid type for '%s': expected %s, but got %s instead.", param, want, kindOf(v))
}

// str reads an optional string parameter.
func str(f map[string]json.RawMessage, k string) (string, *requestError) {
	v, ok := f[k]
	if !ok || isNull(v) {
		return "", nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", typeErr(k, "a string", v)
	}
	return s, nil
}

func boolean(param string, v json.RawMessage) (*bool, *requestError) {
	if isNull(v) {
		return nil, nil
	}
	var b bool
	if json.Unmarshal(v, &b) != nil {
		return nil, typeErr(param, "a boolean", v)
	}
	return &b, nil
}

// number reads a decimal in [lo, hi].
func number(param string, v json.RawMessage, lo, hi float64) (*float64, *requestError) {
	if isNull(v) {
		return nil, nil
	}
	var n float64
	if json.Unmarshal(v, &n) != nil {
		return nil, typeErr(param, "a decimal", v)
	}
	if n < lo {
		return nil, badRequest("decimal_below_min_value", param, "Invalid '%s': decimal below minimum value. Expected a value >= %g, but got %g instead.", param, lo, n)
	}
	if n > hi {
		return nil, badRequest("decimal_above_max_value", param, "Invalid '%s': decimal above maximum value. Expected a value <= %g, but got %g instead.", param, hi, n)
	}
	return &n, nil
}

// integer reads an integer in [lo, hi].
func integer(param string, v json.RawMessage, lo, hi int64) (*int64, *requestError) {
	if isNull(v) {
		return nil, nil
	}
	var n int64
	if json.Unmarshal(v, &n) != nil {
		var f float64
		if json.Unmarshal(v, &f) == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			n = int64(f) // 5.0
		} else {
			return nil, typeErr(param, "an integer", v)
		}
	}
	if n < lo {
		return nil, badRequest("integer_below_min_value", param, "Invalid '%s': integer below minimum value. Expected a value >= %d, but got %d instead.", param, lo, n)
	}
	if n > hi {
		return nil, badRequest("integer_above_max_value", param, "Invalid '%s': integer above maximum value. Expected a value <= %d, but got %d instead.", param, hi, n)
	}
	return &n, nil
}

func intp(n *int64) *int {
	if n == nil {
		return nil
	}
	i := int(*n)
	return &i
}

func oneOf(param, got string, allowed ...string) *requestError {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = "'" + a + "'"
	}
	list := strings.Join(q, ", ")
	if len(q) > 1 {
		list = strings.Join(q[:len(q)-1], ", ") + ", and " + q[len(q)-1]
	}
	return badRequest(codeInvalidValue, param, "Invalid value: '%s'. Supported values are: %s.", truncate(got, 64), list)
}

// checkForwarded checks the type of an OpenAI parameter agentbus forwards
// verbatim and reports whether its value differs from OpenAI's default
// (only then is it forwarded: a default needs no provider support).
func checkForwarded(k string, v json.RawMessage) (bool, *requestError) {
	if isNull(v) {
		return false, nil
	}
	switch k {
	case "frequency_penalty", "presence_penalty":
		n, err := number(k, v, -2, 2)
		return err == nil && *n != 0, err
	case "store":
		b, err := boolean(k, v)
		return err == nil && *b, err
	case "logit_bias", "metadata":
		var m map[string]json.RawMessage
		if json.Unmarshal(v, &m) != nil {
			return false, typeErr(k, "an object", v)
		}
		return len(m) > 0, nil
	case "moderation", "prompt_cache_options":
		var m map[string]json.RawMessage
		if json.Unmarshal(v, &m) != nil {
			return false, typeErr(k, "an object", v)
		}
		return true, nil
	case "service_tier":
		var s string
		if json.Unmarshal(v, &s) != nil {
			return false, typeErr(k, "a string", v)
		}
		return s != "auto", nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return false, typeErr(k, "a string", v)
	}
	return true, nil
}

// checkRefused refuses a parameter agentbus cannot honour unless it
// carries its default.
func checkRefused(k string, v json.RawMessage) *requestError {
	if isNull(v) {
		return nil
	}
	if k == "modalities" {
		var m []string
		if json.Unmarshal(v, &m) != nil {
			return typeErr(k, "an array", v)
		}
		if len(m) == 0 || (len(m) == 1 && m[0] == "text") {
			return nil
		}
		return badRequest(codeUnsupportedValue, k, "Unsupported value: 'modalities' does not support %q: agentbus answers with text only.", strings.Join(m, ","))
	}
	why := map[string]string{
		"audio":              "audio output is not supported",
		"prediction":         "predicted outputs are not supported",
		"web_search_options": "web search is not supported",
		"functions":          "client-side functions are not supported: agentbus runs the tools registered with its toolexec stage",
		"function_call":      "client-side functions are not supported: agentbus runs the tools registered with its toolexec stage",
	}[k]
	return badRequest(codeUnsupportedParam, k, "Unsupported parameter: '%s': %s.", k, why)
}

// parseParams reads the modeled parameters other than model and messages.
func (req *chatRequest) parseParams(f map[string]json.RawMessage) *requestError {
	p := &req.Params
	var err *requestError
	if s, ok := f["stream"]; ok {
		b, err := boolean("stream", s)
		if err != nil {
			return err
		}
		req.Stream = b != nil && *b
	}
	if so, ok := f["stream_options"]; ok && !isNull(so) {
		var opts map[string]json.RawMessage
		if json.Unmarshal(so, &opts) != nil {
			return typeErr("stream_options", "an object", so)
		}
		if !req.Stream {
			return badRequest(codeInvalidValue, "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
		}
		for k, v := range opts {
			switch k {
			case "include_usage", "include_obfuscation":
				b, err := boolean("stream_options."+k, v)
				if err != nil {
					return err
				}
				if k == "include_usage" {
					req.IncludeUsage = b != nil && *b
				}
			default:
				return badRequest(codeUnknownParam, "stream_options."+k, "Unrecognized request argument supplied: stream_options.%s", truncate(k, 64))
			}
		}
	}
	if p.Temperature, err = number("temperature", f["temperature"], 0, 2); err != nil {
		return err
	}
	if p.TopP, err = number("top_p", f["top_p"], 0, 1); err != nil {
		return err
	}
	mt, err := integer("max_tokens", f["max_tokens"], 1, math.MaxInt32)
	if err != nil {
		return err
	}
	mct, err := integer("max_completion_tokens", f["max_completion_tokens"], 1, math.MaxInt32)
	if err != nil {
		return err
	}
	p.MaxTokens, p.MaxCompletionTokens = intp(mt), intp(mct)
	if n, err := integer("n", f["n"], 1, 128); err != nil {
		return err
	} else if n != nil && *n != 1 {
		return badRequest(codeUnsupportedValue, "n", "Unsupported value: 'n' does not support %d: agentbus answers with one choice; send n=1 or leave it out.", *n)
	}
	if p.User, err = str(f, "user"); err != nil {
		return err
	}
	if len(p.User) > 256 {
		return badRequest(codeStringTooLong, "user", "Invalid 'user': string too long. Expected a string with maximum length 256, but got a string with length %d instead.", len(p.User))
	}
	if p.Seed, err = integer("seed", f["seed"], math.MinInt64, math.MaxInt64); err != nil {
		return err
	}
	if p.Stop, err = parseStop(f["stop"]); err != nil {
		return err
	}
	lp, err := boolean("logprobs", f["logprobs"])
	if err != nil {
		return err
	}
	p.Logprobs = lp != nil && *lp
	tl, err := integer("top_logprobs", f["top_logprobs"], 0, 20)
	if err != nil {
		return err
	}
	if p.TopLogprobs = intp(tl); tl != nil && !p.Logprobs {
		return badRequest(codeInvalidValue, "top_logprobs", "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.")
	}
	if p.Logprobs && req.Stream {
		return badRequest(codeUnsupportedValue, "logprobs", "Unsupported value: 'logprobs' is not supported with 'stream' by agentbus; ask without streaming.")
	}
	if p.ParallelToolCalls, err = boolean("parallel_tool_calls", f["parallel_tool_calls"]); err != nil {
		return err
	}
	if p.ParallelToolCalls != nil && *p.ParallelToolCalls {
		p.ParallelToolCalls = nil // the default
	}
	if p.ResponseFormat, err = parseResponseFormat(f["response_format"]); err != nil {
		return err
	}
	if p.ToolChoice, err = parseToolChoice(f["tool_choice"]); err != nil {
		return err
	}
	if t, ok := f["tools"]; ok && !isNull(t) {
		if req.Tools, err = parseTools(t); err != nil {
			return err
		}
	}
	return nil
}

// parseTools reads the client's function tools (OpenAI's tools array).
func parseTools(v json.RawMessage) ([]messages.ToolDef, *requestError) {
	var raw []json.RawMessage
	if json.Unmarshal(v, &raw) != nil {
		return nil, typeErr("tools", "an array", v)
	}
	if len(raw) > messages.MaxClientTools {
		return nil, badRequest(codeInvalidValue, "tools", "Invalid 'tools': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", messages.MaxClientTools, len(raw))
	}
	out := make([]messages.ToolDef, 0, len(raw))
	seen := map[string]bool{}
	for i, r := range raw {
		param := fmt.Sprintf("tools.[%d]", i)
		var t struct {
			Type     string `json:"type"`
			Function *struct {
				Name        string          `json:"name"`
				Description string          `json:"description"`
				Parameters  json.RawMessage `json:"parameters"`
				Strict      *bool           `json:"strict"`
			} `json:"function"`
		}
		if err := json.Unmarshal(r, &t); err != nil {
			return nil, typeErr(param, "an object", r)
		}
		if t.Type != "function" {
			return nil, badRequest(codeInvalidValue, param+".type", "Invalid value: '%s'. Supported values are: 'function'.", truncate(t.Type, 64))
		}
		if t.Function == nil || t.Function.Name == "" {
			return nil, badRequest(codeMissing, param+".function.name", "Missing required parameter: '%s.function.name'.", param)
		}
		d := messages.ToolDef{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters, Strict: t.Function.Strict}
		if isNull(d.Parameters) {
			d.Parameters = nil
		}
		if seen[d.Name] {
			return nil, badRequest(codeInvalidValue, param+".function.name", "Invalid 'tools': the function name '%s' is declared twice.", truncate(d.Name, 64))
		}
		seen[d.Name] = true
		out = append(out, d)
	}
	return out, nil
}

func parseStop(v json.RawMessage) ([]string, *requestError) {
	if isNull(v) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(v, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(v, &many) != nil {
		return nil, typeErr("stop", "a string or an array of strings", v)
	}
	if len(many) > messages.MaxStopSequences {
		return nil, badRequest(codeArrayTooLong, "stop", "Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", messages.MaxStopSequences, len(many))
	}
	return many, nil
}

var schemaName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func parseResponseFormat(v json.RawMessage) (*messages.ResponseFormat, *requestError) {
	if isNull(v) {
		return nil, nil
	}
	var rf struct {
		Type       string          `json:"type"`
		JSONSchema json.RawMessage `json:"json_schema"`
	}
	if json.Unmarshal(v, &rf) != nil || kindOf(v) != "an object" {
		return nil, typeErr("response_format", "an object", v)
	}
	switch rf.Type {
	case "":
		return nil, badRequest(codeMissing, "response_format.type", "Missing required parameter: 'response_format.type'.")
	case messages.FormatText:
		return nil, nil // the default
	case messages.FormatJSONObject:
		return &messages.ResponseFormat{Type: rf.Type}, nil
	case messages.FormatJSONSchema:
	default:
		return nil, oneOf("response_format.type", rf.Type, messages.FormatText, messages.FormatJSONObject, messages.FormatJSONSchema)
	}
	if isNull(rf.JSONSchema) {
		return nil, badRequest(codeMissing, "response_format.json_schema", "Missing required parameter: 'response_format.json_schema'.")
	}
	var js struct {
		Name        *string         `json:"name"`
		Description string          `json:"description"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict"`
	}
	if json.Unmarshal(rf.JSONSchema, &js) != nil || kindOf(rf.JSONSchema) != "an object" {
		return nil, typeErr("response_format.json_schema", "an object", rf.JSONSchema)
	}
	if js.Name == nil {
		return nil, badRequest(codeMissing, "response_format.json_schema.name", "Missing required parameter: 'response_format.json_schema.name'.")
	}
	if !schemaName.MatchString(*js.Name) {
		return nil, badRequest(codeInvalidValue, "response_format.json_schema.name", "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' (at most 64 characters).")
	}
	if !isNull(js.Schema) && kindOf(js.Schema) != "an object" {
		return nil, typeErr("response_format.json_schema.schema", "an object", js.Schema)
	}
	out := &messages.JSONSchemaFormat{Name: *js.Name, Description: js.Description, Strict: js.Strict}
	if !isNull(js.Schema) {
		out.Schema = js.Schema
	}
	return &messages.ResponseFormat{Type: rf.Type, JSONSchema: out}, nil
}

func parseToolChoice(v json.RawMessage) (*messages.ToolChoice, *requestError) {
	if isNull(v) {
		return nil, nil
	}
	var mode string
	if json.Unmarshal(v, &mode) == nil {
		switch mode {
		case messages.ToolChoiceAuto:
			return nil, nil // the default
		case messages.ToolChoiceNone, messages.ToolChoiceRequired:
			return &messages.ToolChoice{Mode: mode}, nil
		}
		return nil, oneOf("tool_choice", mode, messages.ToolChoiceNone, messages.ToolChoiceAuto, messages.ToolChoiceRequired)
	}
	var obj struct {
		Type     string `json:"type"`
		Function *struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(v, &obj) != nil || kindOf(v) != "an object" {
		return nil, typeErr("tool_choice", "a string or an object", v)
	}
	switch {
	case obj.Type == "function" && obj.Function != nil && obj.Function.Name != "":
		return &messages.ToolChoice{Mode: messages.ToolChoiceFunction, Function: obj.Function.Name}, nil
	case obj.Type == "function":
		return nil, badRequest(codeMissing, "tool_choice.function.name", "Missing required parameter: 'tool_choice.function.name'.")
	case obj.Type == "allowed_tools" || obj.Type == "custom":
		return nil, badRequest(codeUnsupportedValue, "tool_choice.type", "Unsupported value: 'tool_choice.type' does not support '%s' yet.", obj.Type)
	}
	return nil, oneOf("tool_choice.type", obj.Type, "function", "allowed_tools", "custom")
}

var roles = []string{messages.RoleSystem, messages.RoleAssistant, messages.RoleUser, "function", messages.RoleTool, messages.RoleDeveloper}

// parseMessages checks messages as OpenAI does and decodes them.
func parseMessages(v json.RawMessage) ([]messages.Message, *requestError) {
	if isNull(v) {
		return nil, badRequest(codeMissing, "messages", "Missing required parameter: 'messages'.")
	}
	var raw []json.RawMessage
	if json.Unmarshal(v, &raw) != nil {
		return nil, typeErr("messages", "an array", v)
	}
	if len(raw) == 0 {
		return nil, badRequest(codeEmptyArray, "messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	if len(raw) > messages.MaxMessages {
		return nil, badRequest(codeArrayTooLong, "messages", "Invalid 'messages': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", messages.MaxMessages, len(raw))
	}
	out := make([]messages.Message, len(raw))
	for i, r := range raw {
		at := fmt.Sprintf("messages.[%d]", i)
		var f map[string]json.RawMessage
		if json.Unmarshal(r, &f) != nil || f == nil {
			return nil, typeErr(at, "an object", r)
		}
		role, err := str(f, "role")
		if err != nil {
			return nil, typeErr(at+".role", "a string", f["role"])
		}
		switch {
		case role == "":
			return nil, badRequest(codeMissing, at+".role", "Missing required parameter: '%s.role'.", at)
		case role == "function":
			return nil, badRequest(codeUnsupportedValue, at+".role", "Unsupported value: '%s.role' does not support 'function' (deprecated): use tool messages.", at)
		case !slices.Contains(roles, role):
			return nil, oneOf(at+".role", role, roles...)
		}
		if err := checkContent(at, role, f); err != nil {
			return nil, err
		}
		if _, ok := f["name"]; ok {
			if _, err := str(f, "name"); err != nil {
				return nil, typeErr(at+".name", "a string", f["name"])
			}
		}
		if err := checkToolFields(at, role, f); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, badRequest(codeInvalidValue, at, "Invalid '%s': %s.", at, strings.TrimPrefix(err.Error(), messages.ErrInvalid.Error()+": "))
		}
	}
	return out, nil
}

// checkContent checks a message's content: a string, null (assistant
// messages with tool calls), or an array of parts.
func checkContent(at, role string, f map[string]json.RawMessage) *requestError {
	c, ok := f["content"]
	if !ok || isNull(c) {
		if role == messages.RoleAssistant {
			return nil
		}
		return badRequest(codeMissing, at+".content", "Missing required parameter: '%s.content'.", at)
	}
	switch kindOf(c) {
	case "a string":
		return nil
	case "an array":
	default:
		return typeErr(at+".content", "one of a string or array of objects", c)
	}
	var parts []map[string]json.RawMessage
	if json.Unmarshal(c, &parts) != nil {
		return typeErr(at+".content", "an array of objects", c)
	}
	for j, part := range parts {
		pat := fmt.Sprintf("%s.content.[%d]", at, j)
		if part == nil {
			return typeErr(pat, "an object", json.RawMessage("null"))
		}
		typ, err := str(part, "type")
		if err != nil {
			return typeErr(pat+".type", "a string", part["type"])
		}
		switch typ {
		case "":
			return badRequest(codeMissing, pat+".type", "Missing required parameter: '%s.type'.", pat)
		case messages.PartText:
			t, ok := part["text"]
			if !ok {
				return badRequest(codeMissing, pat+".text", "Missing required parameter: '%s.text'.", pat)
			}
			if kindOf(t) != "a string" {
				return typeErr(pat+".text", "a string", t)
			}
		case messages.PartImage:
			if role != messages.RoleUser {
				return oneOf(pat+".type", typ, partTypes(role)...)
			}
			iu, ok := part["image_url"]
			if !ok || isNull(iu) {
				return badRequest(codeMissing, pat+".image_url", "Missing required parameter: '%s.image_url'.", pat)
			}
			var img struct {
				URL    *string `json:"url"`
				Detail string  `json:"detail"`
			}
			if json.Unmarshal(iu, &img) != nil || kindOf(iu) != "an object" {
				return typeErr(pat+".image_url", "an object", iu)
			}
			if img.URL == nil {
				return badRequest(codeMissing, pat+".image_url.url", "Missing required parameter: '%s.image_url.url'.", pat)
			}
			if img.Detail != "" && img.Detail != "auto" && img.Detail != "low" && img.Detail != "high" {
				return oneOf(pat+".image_url.detail", img.Detail, "auto", "low", "high")
			}
		case messages.PartRefusal:
			if role != messages.RoleAssistant {
				return oneOf(pat+".type", typ, partTypes(role)...)
			}
			r, ok := part["refusal"]
			if !ok {
				return badRequest(codeMissing, pat+".refusal", "Missing required parameter: '%s.refusal'.", pat)
			}
			if kindOf(r) != "a string" {
				return typeErr(pat+".refusal", "a string", r)
			}
		case "input_audio", "file":
			if role != messages.RoleUser {
				return oneOf(pat+".type", typ, partTypes(role)...)
			}
			return badRequest(codeUnsupportedValue, pat+".type", "Unsupported value: '%s.type' does not support '%s': agentbus takes text and image_url parts.", pat, typ)
		default:
			return oneOf(pat+".type", typ, partTypes(role)...)
		}
	}
	return nil
}

// partTypes are the content part types OpenAI takes in a message of role.
func partTypes(role string) []string {
	switch role {
	case messages.RoleUser:
		return []string{"text", "image_url", "input_audio", "file"}
	case messages.RoleAssistant:
		return []string{"text", "refusal"}
	}
	return []string{"text"}
}

// checkToolFields checks tool_call_id (tool messages) and tool_calls
// (assistant messages).
func checkToolFields(at, role string, f map[string]json.RawMessage) *requestError {
	if role == messages.RoleTool {
		id, err := str(f, "tool_call_id")
		if err != nil {
			return typeErr(at+".tool_call_id", "a string", f["tool_call_id"])
		}
		if id == "" {
			return badRequest(codeMissing, at+".tool_call_id", "Missing required parameter: '%s.tool_call_id'.", at)
		}
	}
	tc, ok := f["tool_calls"]
	if !ok || isNull(tc) {
		return nil
	}
	if role != messages.RoleAssistant {
		return badRequest(codeUnknownParam, at+".tool_calls", "Unrecognized request argument supplied: %s.tool_calls", at)
	}
	var calls []map[string]json.RawMessage
	if json.Unmarshal(tc, &calls) != nil {
		return typeErr(at+".tool_calls", "an array of objects", tc)
	}
	if len(calls) > messages.MaxToolCalls {
		return badRequest(codeArrayTooLong, at+".tool_calls", "Invalid '%s.tool_calls': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", at, messages.MaxToolCalls, len(calls))
	}
	for j, c := range calls {
		cat := fmt.Sprintf("%s.tool_calls.[%d]", at, j)
		for _, k := range []string{"id", "type"} {
			if s, err := str(c, k); err != nil {
				return typeErr(cat+"."+k, "a string", c[k])
			} else if s == "" {
				return badRequest(codeMissing, cat+"."+k, "Missing required parameter: '%s.%s'.", cat, k)
			}
		}
		if typ, _ := str(c, "type"); typ != "function" {
			return oneOf(cat+".type", typ, "function")
		}
		var fn map[string]json.RawMessage
		if json.Unmarshal(c["function"], &fn) != nil || fn == nil {
			return badRequest(codeMissing, cat+".function", "Missing required parameter: '%s.function'.", cat)
		}
		for _, k := range []string{"name", "arguments"} {
			if _, ok := fn[k]; !ok {
				return badRequest(codeMissing, cat+".function."+k, "Missing required parameter: '%s.function.%s'.", cat, k)
			}
			if _, err := str(fn, k); err != nil {
				return typeErr(cat+".function."+k, "a string", fn[k])
			}
		}
	}
	return nil
}

var indexPath = regexp.MustCompile(`\[(\d+)\]`)

// openAIParam turns a messages.FieldError field ("messages[0].role",
// "params.temperature") into OpenAI's form ("messages.[0].role",
// "temperature").
func openAIParam(field string) string {
	field = strings.TrimPrefix(field, "params.")
	return indexPath.ReplaceAllString(field, ".[$1]")
}

// validationError turns a Turn.Validate error into OpenAI's form: the
// first problem, its parameter in OpenAI's form.
func validationError(err error) *requestError {
	var fe *messages.FieldError
	if !errors.As(err, &fe) {
		return badRequest(codeInvalidValue, "", "Invalid request: %s.", err)
	}
	param := openAIParam(fe.Field)
	return badRequest(codeInvalidValue, param, "Invalid '%s': %s.", param, fe.Reason)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// The OpenAI response types agentbus answers with.

type apiError struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

type chatResponse struct {
	ID                string         `json:"id"`
	Object            string         `json:"object"`
	Created           int64          `json:"created"`
	Model             string         `json:"model"`
	Choices           []choice       `json:"choices"`
	Usage             messages.Usage `json:"usage"`
	SystemFingerprint string         `json:"system_fingerprint,omitempty"`
}

type choice struct {
	Index        int             `json:"index"`
	Message      responseMessage `json:"message"`
	FinishReason string          `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

// responseMessage is OpenAI's ChatCompletionResponseMessage: content and
// refusal are always present (null when empty).
type responseMessage struct {
	Role      string              `json:"role"`
	Content   *string             `json:"content"`
	Refusal   *string             `json:"refusal"`
	ToolCalls []messages.ToolCall `json:"tool_calls,omitempty"`
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toResponseMessage(m messages.Message) responseMessage {
	out := responseMessage{Role: messages.RoleAssistant, Content: &m.Content, Refusal: nullIfEmpty(m.Refusal), ToolCalls: m.ToolCalls}
	if m.Content == "" && (len(m.ToolCalls) > 0 || m.Refusal != "") {
		out.Content = nil
	}
	return out
}

type chunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []chunkChoice   `json:"choices"`
	Usage   *messages.Usage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int             `json:"index"`
	Delta        chunkDelta      `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type chunkDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	Refusal   *string         `json:"refusal,omitempty"`
	ToolCalls []chunkToolCall `json:"tool_calls,omitempty"`
}

// chunkToolCall is one tool call in a stream (OpenAI's
// choices[].delta.tool_calls[]); agentbus sends each whole, in one chunk.
type chunkToolCall struct {
	Index    int                   `json:"index"`
	ID       string                `json:"id"`
	Type     string                `json:"type"`
	Function messages.FunctionCall `json:"function"`
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func toModel(m provider.ModelInfo) model {
	return model{ID: m.ID, Object: "model", Created: m.Created, OwnedBy: m.OwnedBy}
}

// finishReason is the completion's finish reason as OpenAI names it.
func finishReason(c *messages.Completed) string {
	return provider.NormalizeFinishReason(c.FinishReason, len(c.Message.ToolCalls) > 0)
}

// errorType maps an HTTP status to OpenAI's error "type".
func errorType(status int) string {
	switch status {
	case 400, 404, 405, 409, 413, 422:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 429:
		return "rate_limit_error"
	case 503:
		return "service_unavailable"
	case 504:
		return "timeout"
	default:
		return "server_error"
	}
}

func paramOrNil(p string) *string {
	if p == "" {
		return nil
	}
	return &p
}
