// Package messages is agentbus's public wire contract: the JSON payloads that
// travel on NATS JetStream between the pipeline's stages, the subjects they
// travel on, and the rules that make a payload valid.
//
// It is the only package other programs import (or re-implement in another
// language from the JSON Schema files in schema/). It depends on nothing else
// in the module.
//
// A chat turn is published as a [Turn] on [Subject]([EventReceived], requestID)
// and moves through the stages as events on the same request id:
//
//	agentbus.turn.received.<rid>   Turn        ingest (HTTP or NATS entry) or the operator -> guard
//	agentbus.turn.admitted.<rid>   Admitted    guard -> llm
//	agentbus.turn.rejected.<rid>   Rejected    guard (terminal)
//	agentbus.turn.toolcalls.<rid>  Generation  llm -> toolexec (model asked for tools)
//	agentbus.turn.tooled.<rid>     Generation  toolexec -> llm (tool results appended)
//	agentbus.turn.generated.<rid>  Generation  llm -> persist (final answer)
//	agentbus.turn.completed.<rid>  Completed   persist, after commit (terminal)
//	agentbus.turn.failed.<rid>     Failed      any stage (terminal)
//
// Clients in other languages do not publish events: they request
// [SubjectChat] (the ingest stage's NATS entry) with an API key. Ingest and
// the operator learn a turn's outcome by subscribing (plain core NATS) to
// [ReplyFilter](rid) = "agentbus.turn.*.<rid>" before publishing: they see
// every step and, last, exactly one terminal event (completed, rejected or
// failed). Streaming deltas travel on core NATS at [StreamSubject](rid).
//
// Guarantees: every event carries [SchemaVersion]; every message id
// ([MsgID]) is derived from the request id and the step, never random, so a
// re-publish is dropped by the stream's duplicate window; [Turn.Validate]
// rejects payloads that break the size and format limits with an error that
// names the field.
package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the version of the payloads in this package. It changes
// only on an incompatible change; new optional fields keep it.
const SchemaVersion = 1

// Stream and subject names. Streams and durable consumers never contain '.',
// '*' or '>'.
const (
	// StreamTurns holds every turn event: the system of record.
	StreamTurns = "AGENTBUS_TURNS"
	// StreamDLQ holds dead letters, one subject per stage.
	StreamDLQ = "AGENTBUS_DLQ"

	// TurnSubjects is the subject filter of StreamTurns.
	TurnSubjects = "agentbus.turn.>"
	// DLQSubjects is the subject filter of StreamDLQ.
	DLQSubjects = "agentbus.dlq.>"
)

// Event names: the third token of a turn subject.
const (
	EventReceived  = "received"
	EventAdmitted  = "admitted"
	EventRejected  = "rejected"
	EventToolCalls = "toolcalls"
	EventTooled    = "tooled"
	EventGenerated = "generated"
	EventCompleted = "completed"
	EventFailed    = "failed"
)

// Events lists every event name in pipeline order.
var Events = []string{EventReceived, EventAdmitted, EventRejected, EventToolCalls, EventTooled, EventGenerated, EventCompleted, EventFailed}

// Terminal reports whether event ends a turn: after it no other event of the
// same request id follows.
func Terminal(event string) bool {
	return event == EventCompleted || event == EventRejected || event == EventFailed
}

// Subject is the subject an event of a request travels on.
func Subject(event, requestID string) string { return "agentbus.turn." + event + "." + requestID }

// EventFilter matches one event for all requests (a stage's consumer filter).
func EventFilter(event string) string { return "agentbus.turn." + event + ".*" }

// ReplyFilter matches every event of one request: subscribe to it (core NATS)
// before publishing a Turn to learn its outcome.
func ReplyFilter(requestID string) string { return "agentbus.turn.*." + requestID }

// StreamSubject carries a request's streaming deltas ([Delta]) on core NATS.
func StreamSubject(requestID string) string { return "agentbus.stream." + requestID }

// StreamSubjectTo carries the deltas of a request whose turn names a
// receiver ([Turn.StreamTo]): agentbus.stream.<to>.<rid>. A receiver that
// waits for many streams (an ingest instance) subscribes once, to
// StreamSubjectTo(to, "*"), instead of once per request.
func StreamSubjectTo(to, requestID string) string {
	return "agentbus.stream." + to + "." + requestID
}

// DeltaSubject is where the deltas of t go: StreamSubjectTo(t.StreamTo,
// t.RequestID) when the turn names a valid receiver, StreamSubject(t.RequestID)
// otherwise (an invalid StreamTo never becomes part of a subject).
func (t *Turn) DeltaSubject() string {
	if t.StreamTo != "" && ValidID(t.StreamTo) {
		return StreamSubjectTo(t.StreamTo, t.RequestID)
	}
	return StreamSubject(t.RequestID)
}

// DLQSubject is the dead-letter subject of a stage.
func DLQSubject(stage string) string { return "agentbus.dlq." + stage }

// Request-reply services on the bus (NATS micro endpoints).
const (
	// SubjectChat is the NATS entry for clients: a request carrying an
	// OpenAI chat completions request body and an API key (header
	// HeaderAuthorization), answered on the requester's inbox. Served by
	// the ingest stage (micro service "agentbus-ingest").
	SubjectChat = "agentbus.ingest.chat"
	// Persist stage endpoints: conversation history (pruned or raw),
	// stored turns, the conversation list, deletion, hash-chain
	// verification. Only the llm stage (history) and the operator may call
	// them.
	SubjectHistory       = "agentbus.persist.history"
	SubjectTurns         = "agentbus.persist.turns"
	SubjectConversations = "agentbus.persist.conversations"
	SubjectDelete        = "agentbus.persist.delete"
	SubjectVerify        = "agentbus.persist.verify"
	// SubjectOwner answers whether a user owns a conversation (404 when
	// not, or when it does not exist); ingest asks it for every request
	// that continues a conversation.
	SubjectOwner = "agentbus.persist.owner"
	// SubjectModels answers the llm stage's model catalog: the models its
	// providers serve and the parameters each honours (served by every llm
	// instance; ingest lists it on /v1/models and checks requests against
	// it).
	SubjectModels = "agentbus.llm.models"
	// SubjectToolCatalog answers the tools of MCP servers the toolexec
	// stage offers right now (servers that are up, tools the operator
	// allowed): the llm stage of a split deployment asks it to offer them
	// (served by every toolexec instance; one answers).
	SubjectToolCatalog = "agentbus.toolexec.tools"
	// ToolsService is the NATS micro service name remote tools register
	// under; each endpoint is one tool, served on ToolSubject(name).
	ToolsService = "agentbus-tools"
)

// CancelSubject carries (core NATS, no payload needed) the cancellation of
// a request whose client went away: the llm stage aborts its model call.
func CancelSubject(requestID string) string { return "agentbus.cancel." + requestID }

// ToolSubject is where calls of the remote tool name are sent.
func ToolSubject(name string) string { return "agentbus.tool." + name }

// ParseSubject splits a turn subject into its event and request id.
func ParseSubject(subject string) (event, requestID string, err error) {
	const p = "agentbus.turn."
	if len(subject) <= len(p) || subject[:len(p)] != p {
		return "", "", fmt.Errorf("%w: %q is not a turn subject", ErrInvalid, subject)
	}
	rest := subject[len(p):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '.' {
			return rest[:i], rest[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("%w: %q has no request id", ErrInvalid, subject)
}

// Headers carried with every event (NATS headers).
const (
	// HeaderMsgID is JetStream's de-duplication header; set it to MsgID(...).
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderCorrelationID ties every event of a turn together (the request id).
	HeaderCorrelationID = "Agentbus-Correlation-Id"
	// HeaderEvent names the event of the payload.
	HeaderEvent = "Agentbus-Event"
	// HeaderDeadline carries the turn's deadline (RFC 3339, UTC) on every
	// event of the turn, so a stage can end a late turn without decoding
	// its payload.
	HeaderDeadline = "Agentbus-Deadline"
)

// MsgID is the deterministic message id of one step of one request. The
// same step of the same request always gets the same id, so the stream's
// duplicate window drops a re-publish and sinks can de-duplicate on it.
func MsgID(requestID, event string, round int) string {
	return requestID + "/" + event + "/" + strconv.Itoa(round)
}

// EstimatedTokens is the admission-time token estimate of the turn's
// messages (len/4 plus 4 per message): what rate limits charge before the
// provider reports the real usage (then they are reconciled).
func (t *Turn) EstimatedTokens() int {
	n := 0
	for _, m := range t.Messages {
		n += 4 + len(m.Content)/4
	}
	return n
}

// Limits of the wire format. Stages may configure tighter ones.
const (
	MaxIDLen          = 128
	MaxMessages       = 1024
	MaxContentBytes   = 512 << 10
	MaxTurnBytes      = 900 << 10 // below NATS's default 1 MiB max payload
	MaxToolCalls      = 64
	MaxModelLen       = 128
	MaxStopSequences  = 4
	DefaultMaxReplyMS = 60_000
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid message")

// Roles of chat messages.
const (
	RoleSystem    = "system"
	RoleDeveloper = "developer"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one chat message in the OpenAI Chat Completions format.
//
// Content is a string or an array of content parts on the wire. An array
// is kept as Parts (and written back as the same array, so a provider gets
// the parts exactly as the client sent them); Content then holds the text
// parts joined with "\n", which is what the guard scans, token counts
// measure and stores index.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Parts is the array form of content, when the client sent one (text
	// and image_url parts). Content is derived from it, never set apart.
	Parts []ContentPart `json:"-"`
	// Refusal is the model's refusal message, when it refused (assistant
	// messages only).
	Refusal    string     `json:"refusal,omitempty"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ContentPart is one part of an array-form message content, as in the
// OpenAI API: {"type":"text","text":...}, {"type":"image_url",
// "image_url":{"url":...,"detail":...}} or, in an assistant message,
// {"type":"refusal","refusal":...} (a refusal the model gave earlier in
// the conversation, as agent frameworks resend it). Other types are kept
// by type only and refused by Validate.
type ContentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
	// Refusal is a refusal part's text (set, possibly empty, on refusal
	// parts only).
	Refusal *string `json:"refusal,omitempty"`
}

// ImageURL is an image part's image: an https URL or a data: URL
// (base64), and the detail the model should look at it in.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// Content part types.
const (
	PartText    = "text"
	PartImage   = "image_url"
	PartRefusal = "refusal"
)

// PartsText joins the text parts of parts with "\n" (the text of an
// array-form content).
func PartsText(parts []ContentPart) string {
	var b []byte
	n := 0
	for _, p := range parts {
		if p.Type != PartText {
			continue
		}
		if n > 0 {
			b = append(b, '\n')
		}
		b = append(b, p.Text...)
		n++
	}
	return string(b)
}

// RefusalText is the refusal an assistant message carries: its refusal
// field and its refusal parts, joined with "\n". Like Content, the model
// reads it, so the guard judges it.
func (m *Message) RefusalText() string {
	var out []string
	if m.Refusal != "" {
		out = append(out, m.Refusal)
	}
	for _, p := range m.Parts {
		if p.Type == PartRefusal && p.Refusal != nil && *p.Refusal != "" {
			out = append(out, *p.Refusal)
		}
	}
	return strings.Join(out, "\n")
}

// HasImages reports whether the message carries an image part.
func (m *Message) HasImages() bool {
	for _, p := range m.Parts {
		if p.Type == PartImage {
			return true
		}
	}
	return false
}

// ToolCall is an assistant's request to call a tool.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names a function and carries its JSON-encoded arguments.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// UnmarshalJSON accepts content as a string, null, or an array of parts.
func (m *Message) UnmarshalJSON(b []byte) error {
	type plain Message
	var raw struct {
		plain
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = Message(raw.plain)
	m.Content, m.Parts = "", nil
	c := raw.Content
	if len(c) == 0 || string(c) == "null" {
		return nil
	}
	switch c[0] {
	case '"':
		return json.Unmarshal(c, &m.Content)
	case '[':
		var parts []ContentPart
		if err := json.Unmarshal(c, &parts); err != nil {
			return fmt.Errorf("%w: content: %w", ErrInvalid, err)
		}
		if parts == nil {
			parts = []ContentPart{}
		}
		m.Parts = parts
		m.Content = PartsText(parts)
		return nil
	default:
		return fmt.Errorf("%w: content must be a string, an array of content parts or null", ErrInvalid)
	}
}

// MarshalJSON writes content as the parts array when the message has
// parts, and as null for an assistant message that only carries tool calls
// (as the OpenAI API does).
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	switch {
	case m.Parts != nil:
		return json.Marshal(struct {
			plain
			Content []ContentPart `json:"content"`
		}{plain: plain(m), Content: m.Parts})
	case m.Content == "" && len(m.ToolCalls) > 0:
		return json.Marshal(struct {
			plain
			Content *string `json:"content"`
		}{plain: plain(m)})
	}
	return json.Marshal(plain(m))
}

// Params are the model parameters of a turn, as in the OpenAI API. A
// provider that cannot honour one refuses the turn (400, naming the
// parameter) rather than dropping it.
type Params struct {
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	// MaxTokens and MaxCompletionTokens bound the answer's tokens; each is
	// forwarded as the client named it (OpenAI's reasoning models take
	// only max_completion_tokens).
	MaxTokens           *int     `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int     `json:"max_completion_tokens,omitempty"`
	Stop                []string `json:"stop,omitempty"`
	Seed                *int64   `json:"seed,omitempty"`
	// ResponseFormat asks for JSON output (json_object or json_schema).
	ResponseFormat *ResponseFormat `json:"response_format,omitempty"`
	// ToolChoice constrains the model's use of tools in the turn's first
	// model call.
	ToolChoice        *ToolChoice `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool       `json:"parallel_tool_calls,omitempty"`
	// User is the client's end-user id (OpenAI's "user"), forwarded to the
	// provider; not the authenticated agentbus user.
	User        string `json:"user,omitempty"`
	Logprobs    bool   `json:"logprobs,omitempty"`
	TopLogprobs *int   `json:"top_logprobs,omitempty"`
	// OpenAI holds OpenAI request parameters agentbus does not model
	// (frequency_penalty, reasoning_effort, store, ...), with non-default
	// values, verbatim: forwarded to OpenAI-compatible providers only.
	OpenAI map[string]json.RawMessage `json:"openai,omitempty"`
	// Extra holds parameters OpenAI does not define, let through by the
	// operator (ingest's AllowUnknownParams), verbatim: forwarded to every
	// provider as top-level request fields.
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
}

// ResponseFormat is OpenAI's response_format: Type "text", "json_object"
// or "json_schema" (with JSONSchema).
type ResponseFormat struct {
	Type       string            `json:"type"`
	JSONSchema *JSONSchemaFormat `json:"json_schema,omitempty"`
}

// JSONSchemaFormat is the json_schema of a json_schema response format.
type JSONSchemaFormat struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolChoice is OpenAI's tool_choice in one form: Mode "auto", "none",
// "required", or "function" with the Function's name.
type ToolChoice struct {
	Mode     string `json:"mode"`
	Function string `json:"function,omitempty"`
}

// Response formats and tool choice modes.
const (
	FormatText       = "text"
	FormatJSONObject = "json_object"
	FormatJSONSchema = "json_schema"

	ToolChoiceAuto     = "auto"
	ToolChoiceNone     = "none"
	ToolChoiceRequired = "required"
	ToolChoiceFunction = "function"
)

// Turn is one chat turn entering the pipeline: published on
// Subject(EventReceived, RequestID).
type Turn struct {
	SchemaVersion int `json:"schema_version"`
	// RequestID identifies the turn; [A-Za-z0-9_-], at most 128 bytes.
	RequestID string `json:"request_id"`
	// ConversationID names the conversation; same alphabet as RequestID.
	ConversationID string `json:"conversation_id"`
	// UseHistory makes the llm stage prepend the conversation's stored
	// history to Messages. Without it Messages is the whole context.
	UseHistory bool `json:"use_history,omitempty"`
	// User is the authenticated user (set by ingest from the API key).
	User string `json:"user"`
	// KeyID is the id (never the secret) of the API key used, if any.
	KeyID string `json:"key_id,omitempty"`
	// Endpoint is the entry point, e.g. "chat.completions" or "nats".
	Endpoint string `json:"endpoint"`
	// Model requested; empty means the configured default.
	Model  string `json:"model,omitempty"`
	Params Params `json:"params,omitzero"`
	// Messages are the new messages of this turn (OpenAI format).
	Messages []Message `json:"messages"`
	// Stream asks for deltas on StreamSubject(RequestID), or on
	// StreamSubjectTo(StreamTo, RequestID) when StreamTo is set.
	Stream bool `json:"stream,omitempty"`
	// StreamTo names the receiver of the deltas (same alphabet as
	// RequestID): an ingest instance sets its own id, so that one
	// subscription serves all its streams. Empty: StreamSubject.
	StreamTo string `json:"stream_to,omitempty"`
	// Cost is the rate-limit cost of the request (default 1).
	Cost float64 `json:"cost,omitempty"`
	// CreatedAt is when the turn entered the system.
	CreatedAt time.Time `json:"created_at"`
	// Deadline is when the client stops waiting: work past it ends the
	// turn once, with deadline_exceeded. Every event of the turn carries
	// it in the HeaderDeadline header too. Zero: no deadline.
	Deadline time.Time `json:"deadline,omitzero"`
	// ClientTools are tools the client declared in its request: offered
	// to the model next to the server's own; a call to one (allowed by the
	// tool firewall against the schema given here) ends the turn with the
	// call, for the client to run and answer in its next request.
	ClientTools []ToolDef `json:"client_tools,omitempty"`
	// Cache, when set, lets the llm stage answer the turn's model calls
	// from the response cache (see CacheRequest). Nil: never cached.
	Cache *CacheRequest `json:"cache,omitempty"`
}

// CacheRequest is a turn's use of the response cache. A model call is
// answered from the cache only when the call is deterministic (an explicit
// temperature of 0) or the client asked for the cache explicitly.
type CacheRequest struct {
	// Explicit: the client asked for the cache ("cache": true); calls are
	// cached whatever their temperature.
	Explicit bool `json:"explicit,omitempty"`
	// Refresh: the answer is not taken from the cache but the new one is
	// stored (Cache-Control: no-cache).
	Refresh bool `json:"refresh,omitempty"`
}

// Cache statuses of a model call, a turn (X-Cache) and a delta.
const (
	CacheHit    = "hit"    // answered from the cache, no provider call
	CacheMiss   = "miss"   // looked up, not found (or refreshed): the provider answered and the answer was stored
	CacheBypass = "bypass" // the turn allows the cache but this call is not cacheable (temperature above 0, not asked explicitly)
)

// CacheUse is what the response cache did for a turn's model calls.
type CacheUse struct {
	Hits     int `json:"hits,omitempty"`
	Misses   int `json:"misses,omitempty"`
	Bypassed int `json:"bypassed,omitempty"`
	// Saved is the usage of the answers served from the cache: tokens no
	// provider was paid for in this turn.
	Saved Usage `json:"saved,omitzero"`
	// SavedUSD is what those answers would have cost (the price table's
	// arithmetic; 0 without prices).
	SavedUSD float64 `json:"saved_usd,omitempty"`
}

// Add counts one model call's cache status (and the usage a hit saved).
func (c *CacheUse) Add(status string, u Usage) {
	switch status {
	case CacheHit:
		c.Hits++
		c.Saved = c.Saved.Add(u)
	case CacheMiss:
		c.Misses++
	case CacheBypass:
		c.Bypassed++
	}
}

// Status is the turn's X-Cache: "hit" when every model call was answered
// from the cache, "miss" when one was looked up and not found, "bypass"
// when none was cacheable; "" for a nil CacheUse (cache not used).
func (c *CacheUse) Status() string {
	switch {
	case c == nil:
		return ""
	case c.Misses > 0:
		return CacheMiss
	case c.Bypassed > 0:
		return CacheBypass
	case c.Hits > 0:
		return CacheHit
	}
	return ""
}

// ToolDef declares a function tool (OpenAI's tools[].function).
type ToolDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	// Strict is OpenAI's strict function calling flag, passed to
	// OpenAI-compatible providers (others ignore it; the tool firewall
	// checks the arguments against Parameters either way).
	Strict *bool `json:"strict,omitempty"`
}

// Passage locates the part of a message that decided a sanitizer verdict,
// for the audit record and the logs. It never reaches the client's error
// body, and it holds offsets, never text.
type Passage struct {
	// Message is the index of the message in the turn's messages (-1 for a
	// tool result judged in the toolexec stage).
	Message int `json:"message"`
	// Start and End are byte offsets into that message's content, [Start,
	// End).
	Start int `json:"start"`
	End   int `json:"end"`
	// Rule is the strongest signal in the passage: a rule id, or
	// "model.injection".
	Rule  string  `json:"rule"`
	Score float64 `json:"score"`
}

// Verdict is the guard's judgement of a turn's input.
type Verdict struct {
	// Action is "allow" or "flag" (admitted but suspicious).
	Action string   `json:"action"`
	Score  float64  `json:"score"`
	Rules  []string `json:"rules,omitempty"`
	// Passage is the passage that decided a "flag".
	Passage *Passage `json:"passage,omitempty"`
	// EstimatedTokens is the prompt size estimated at admission.
	EstimatedTokens int `json:"estimated_tokens,omitempty"`
}

// Admitted is a turn the guard let through: Subject(EventAdmitted, rid).
type Admitted struct {
	Turn
	Guard Verdict `json:"guard"`
}

// Usage counts tokens as providers report them.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Add returns the sum of two usages.
func (u Usage) Add(o Usage) Usage {
	return Usage{u.PromptTokens + o.PromptTokens, u.CompletionTokens + o.CompletionTokens, u.TotalTokens + o.TotalTokens}
}

// ToolVerdict records the firewall's decision on one tool call.
type ToolVerdict struct {
	ToolCallID string `json:"tool_call_id"`
	Tool       string `json:"tool"`
	Verdict    string `json:"verdict"` // "allow" or "block"
	Rule       string `json:"rule,omitempty"`
	// ResultVerdict is the sanitizer's verdict on the tool's result.
	ResultVerdict string `json:"result_verdict,omitempty"`
	// ResultPassage is the passage of the result that decided a "flag" or
	// "block" result verdict.
	ResultPassage *Passage `json:"result_passage,omitempty"`
	DurationMS    int64    `json:"duration_ms,omitempty"`
}

// Generation is a turn on its way through the model and tool loop. It is
// published on toolcalls (the last step is an assistant message with
// tool_calls), tooled (the last steps are tool results) and generated (the
// last step is the final assistant answer).
type Generation struct {
	Admitted
	// Round counts model calls in this turn, from 0.
	Round int `json:"round"`
	// Steps are the messages produced in this turn after the input:
	// assistant tool calls, tool results, the final answer.
	Steps []Message `json:"steps"`
	// ToolVerdicts record every tool call's firewall decision in this turn.
	ToolVerdicts []ToolVerdict `json:"tool_verdicts,omitempty"`
	Usage        Usage         `json:"usage"`
	// CostUSD is what the turn's model calls so far cost in US dollars,
	// by the operator's price table (0 without one, or for models it does
	// not price).
	CostUSD float64 `json:"cost_usd,omitempty"`
	// Provider and ResolvedModel name who answered the last model call.
	Provider      string `json:"provider,omitempty"`
	ResolvedModel string `json:"resolved_model,omitempty"`
	// FinishReason is the last model call's, as OpenAI names them: "stop",
	// "length", "tool_calls" or "content_filter".
	FinishReason string `json:"finish_reason,omitempty"`
	// Logprobs is the last model call's log probabilities (OpenAI's
	// choices[].logprobs object), when the turn asked for them.
	Logprobs json.RawMessage `json:"logprobs,omitempty"`
	// ClientCalls, on a generated event, are the calls of the last model
	// call to the client's own tools (Turn.ClientTools), allowed by the
	// firewall: the turn ends with them as its answer (finish_reason
	// tool_calls). Calls to server tools in the same model call ran
	// server-side and are in Steps.
	ClientCalls []ToolCall `json:"client_calls,omitempty"`
	// CacheUse is what the response cache did for this turn's model calls
	// so far (nil when the turn does not use it; Turn.Cache is the
	// request).
	CacheUse *CacheUse `json:"cache_use,omitempty"`
}

// Final returns the last step (the answer on a generated event).
func (g *Generation) Final() (Message, bool) {
	if len(g.Steps) == 0 {
		return Message{}, false
	}
	return g.Steps[len(g.Steps)-1], true
}

// Completed is the terminal event of a successful turn, published by persist
// after the turn is committed: Subject(EventCompleted, rid).
type Completed struct {
	SchemaVersion  int           `json:"schema_version"`
	RequestID      string        `json:"request_id"`
	ConversationID string        `json:"conversation_id"`
	User           string        `json:"user"`
	KeyID          string        `json:"key_id,omitempty"`
	Endpoint       string        `json:"endpoint,omitempty"`
	Model          string        `json:"model"`
	Provider       string        `json:"provider,omitempty"`
	Message        Message       `json:"message"`
	Steps          []Message     `json:"steps,omitempty"`
	ToolVerdicts   []ToolVerdict `json:"tool_verdicts,omitempty"`
	Guard          Verdict       `json:"guard"`
	Usage          Usage         `json:"usage"`
	// CostUSD is what the turn's model calls cost in US dollars, by the
	// operator's price table (absent without one, or for models it does
	// not price).
	CostUSD float64 `json:"cost_usd,omitempty"`
	// FinishReason and Logprobs are the final answer's (see Generation).
	FinishReason string          `json:"finish_reason,omitempty"`
	Logprobs     json.RawMessage `json:"logprobs,omitempty"`
	// Cache is what the response cache did for the turn's model calls
	// (nil when the turn did not use it).
	Cache       *CacheUse `json:"cache,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CompletedAt time.Time `json:"completed_at"`
	// ChainSeq is the turn's link in the persist store's hash chain: its
	// commit order, from 1 (0 from builds before this field). Rebuilding
	// the store from the stream appends turns in this order, which is not
	// always the order of the completed events, so that the rebuilt chain
	// is the original one.
	ChainSeq int64 `json:"chain_seq,omitempty"`
}

// Error codes of Rejected and Failed events (OpenAI-style "code").
const (
	CodeInvalidRequest    = "invalid_request"
	CodeInjectionDetected = "prompt_injection_detected"
	CodeRateLimited       = "rate_limit_exceeded"
	CodeQuotaExceeded     = "quota_exceeded"
	// CodeBudgetExceeded: the API key spent its daily budget (429).
	CodeBudgetExceeded      = "budget_exceeded"
	CodeProviderUnavailable = "provider_unavailable"
	CodeProviderError       = "provider_error"
	CodeContextLength       = "context_length_exceeded"
	CodeToolBlocked         = "tool_blocked"
	CodeMaxToolRounds       = "max_tool_rounds_exceeded"
	CodeInternal            = "internal_error"
	CodeTimeout             = "timeout"
	// CodeConversationNotFound: the conversation does not exist or belongs
	// to another user (the two are not told apart).
	CodeConversationNotFound = "conversation_not_found"
	// CodePayloadTooLarge: the turn, or an event derived from it, does not
	// fit the bus.
	CodePayloadTooLarge = "payload_too_large"
	// CodeDeadlineExceeded: the turn's deadline passed before it completed;
	// it is not stored.
	CodeDeadlineExceeded = "deadline_exceeded"
	// CodeClientCancelled: the client went away before the answer; the
	// turn was cancelled (its model call too) and is not stored.
	CodeClientCancelled = "client_cancelled"
	// CodeUnavailable: a dependency of the pipeline itself (the shared
	// rate-limit state, the store) could not be reached; retry later.
	CodeUnavailable = "service_unavailable"
	// CodeModelNotFound: no provider serves the requested model (or the
	// API key may not use it); HTTP 404, as OpenAI answers.
	CodeModelNotFound = "model_not_found"
	// CodeUnsupportedParameter: the provider chosen for the model cannot
	// honour a request parameter (Param names it); HTTP 400.
	CodeUnsupportedParameter = "unsupported_parameter"
	// CodeInvalidValue: a request parameter has a value this server refuses
	// (Param names it), such as a client tool named like one of the
	// server's tools; HTTP 400.
	CodeInvalidValue = "invalid_value"
)

// Rejected is the guard's terminal refusal of a turn.
type Rejected struct {
	SchemaVersion  int    `json:"schema_version"`
	RequestID      string `json:"request_id"`
	ConversationID string `json:"conversation_id"`
	User           string `json:"user"`
	// Code is one of the Code* constants; Status the matching HTTP status.
	Code   string `json:"code"`
	Status int    `json:"status"`
	Reason string `json:"reason"`
	// Param names the request parameter at fault, in OpenAI's form
	// ("temperature", "messages.[0].content"), if one is.
	Param string   `json:"param,omitempty"`
	Rules []string `json:"rules,omitempty"`
	Score float64  `json:"score,omitempty"`
	// Passage is the passage that decided a sanitizer rejection (audit
	// only: the HTTP error body carries code and reason).
	Passage *Passage `json:"passage,omitempty"`
	// RetryAfterMS tells a rate-limited caller when to try again.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// RateLimit carries x-ratelimit-* values for the caller, if any.
	RateLimit map[string]string `json:"rate_limit,omitempty"`
	At        time.Time         `json:"at"`
}

// Failed is the terminal event of a turn that could not complete.
type Failed struct {
	SchemaVersion  int    `json:"schema_version"`
	RequestID      string `json:"request_id"`
	ConversationID string `json:"conversation_id"`
	User           string `json:"user"`
	Stage          string `json:"stage"`
	Code           string `json:"code"`
	Status         int    `json:"status"`
	// Reason is shown to the client: it never carries a provider's URL or
	// other internal detail.
	Reason string `json:"reason"`
	// Param names the request parameter at fault, in OpenAI's form, if one
	// is (a parameter the provider cannot honour).
	Param        string `json:"param,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	// Steps made before the failure (e.g. a blocked tool call).
	Steps        []Message     `json:"steps,omitempty"`
	ToolVerdicts []ToolVerdict `json:"tool_verdicts,omitempty"`
	At           time.Time     `json:"at"`
}

// Delta is one streaming chunk on StreamSubject(rid) (core NATS, not
// persisted). Seq counts the deltas of one model call from 1. A stream ends
// with the turn's terminal event (completed carries the whole answer); a
// delta with Done and Error set reports a model call that failed mid-stream.
type Delta struct {
	RequestID string `json:"request_id"`
	Seq       int    `json:"seq"`
	Content   string `json:"content,omitempty"`
	Done      bool   `json:"done,omitempty"`
	Error     string `json:"error,omitempty"`
	// Cache is the model call's cache status (CacheHit, CacheMiss,
	// CacheBypass) on its first delta, when the turn uses the cache.
	Cache string `json:"cache,omitempty"`
}

// ValidID reports whether s is a usable request or conversation id: 1 to
// MaxIDLen bytes of [A-Za-z0-9_-], so it is safe as a NATS subject token and
// as a file name.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// FieldError is a validation error naming the offending field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// Validate checks a turn against the wire limits and returns every problem
// found, joined; each wraps ErrInvalid and is a *FieldError.
func (t *Turn) Validate() error {
	var errs []error
	if t.SchemaVersion != 0 && t.SchemaVersion != SchemaVersion {
		errs = append(errs, fieldErr("schema_version", "unsupported version %d (this build speaks %d)", t.SchemaVersion, SchemaVersion))
	}
	if !ValidID(t.RequestID) {
		errs = append(errs, fieldErr("request_id", "must be 1-%d characters of [A-Za-z0-9_-]", MaxIDLen))
	}
	if !ValidID(t.ConversationID) {
		errs = append(errs, fieldErr("conversation_id", "must be 1-%d characters of [A-Za-z0-9_-]", MaxIDLen))
	}
	if t.StreamTo != "" && !ValidID(t.StreamTo) {
		errs = append(errs, fieldErr("stream_to", "must be 1-%d characters of [A-Za-z0-9_-]", MaxIDLen))
	}
	if t.User == "" || len(t.User) > MaxIDLen || !utf8.ValidString(t.User) {
		errs = append(errs, fieldErr("user", "must be 1-%d bytes of UTF-8", MaxIDLen))
	}
	if len(t.Model) > MaxModelLen {
		errs = append(errs, fieldErr("model", "longer than %d bytes", MaxModelLen))
	}
	if t.Cost < 0 {
		errs = append(errs, fieldErr("cost", "must not be negative"))
	}
	if p := t.Params; true {
		if p.Temperature != nil && (*p.Temperature < 0 || *p.Temperature > 2) {
			errs = append(errs, fieldErr("params.temperature", "must be between 0 and 2"))
		}
		if p.TopP != nil && (*p.TopP < 0 || *p.TopP > 1) {
			errs = append(errs, fieldErr("params.top_p", "must be between 0 and 1"))
		}
		if p.MaxTokens != nil && *p.MaxTokens < 1 {
			errs = append(errs, fieldErr("params.max_tokens", "must be at least 1"))
		}
		if p.MaxCompletionTokens != nil && *p.MaxCompletionTokens < 1 {
			errs = append(errs, fieldErr("params.max_completion_tokens", "must be at least 1"))
		}
		if len(p.Stop) > MaxStopSequences {
			errs = append(errs, fieldErr("params.stop", "at most %d sequences", MaxStopSequences))
		}
		if p.TopLogprobs != nil && (*p.TopLogprobs < 0 || *p.TopLogprobs > 20) {
			errs = append(errs, fieldErr("params.top_logprobs", "must be between 0 and 20"))
		}
		if rf := p.ResponseFormat; rf != nil {
			switch {
			case rf.Type != FormatText && rf.Type != FormatJSONObject && rf.Type != FormatJSONSchema:
				errs = append(errs, fieldErr("params.response_format.type", "must be text, json_object or json_schema"))
			case rf.Type == FormatJSONSchema && (rf.JSONSchema == nil || rf.JSONSchema.Name == ""):
				errs = append(errs, fieldErr("params.response_format.json_schema.name", "required for type json_schema"))
			case rf.Type == FormatJSONSchema && len(rf.JSONSchema.Schema) > 0 && !json.Valid(rf.JSONSchema.Schema):
				errs = append(errs, fieldErr("params.response_format.json_schema.schema", "is not valid JSON"))
			}
		}
		if tc := p.ToolChoice; tc != nil {
			switch {
			case tc.Mode != ToolChoiceAuto && tc.Mode != ToolChoiceNone && tc.Mode != ToolChoiceRequired && tc.Mode != ToolChoiceFunction:
				errs = append(errs, fieldErr("params.tool_choice.mode", "must be auto, none, required or function"))
			case (tc.Mode == ToolChoiceFunction) != (tc.Function != ""):
				errs = append(errs, fieldErr("params.tool_choice.function", "names the function exactly when mode is function"))
			}
		}
		if len(p.User) > 256 || !utf8.ValidString(p.User) {
			errs = append(errs, fieldErr("params.user", "must be at most 256 bytes of UTF-8"))
		}
		for name, m := range map[string]map[string]json.RawMessage{"params.openai": p.OpenAI, "params.extra": p.Extra} {
			for k, v := range m {
				if k == "" || !json.Valid(v) {
					errs = append(errs, fieldErr(name, "parameter %q is not valid JSON", k))
				}
			}
		}
	}
	switch {
	case len(t.Messages) == 0:
		errs = append(errs, fieldErr("messages", "at least one message is required"))
	case len(t.Messages) > MaxMessages:
		errs = append(errs, fieldErr("messages", "at most %d messages, got %d", MaxMessages, len(t.Messages)))
	}
	total := 0
	for i := range t.Messages {
		if len(errs) > 16 {
			break
		}
		total += t.Messages[i].size()
		errs = append(errs, t.Messages[i].validate(fmt.Sprintf("messages[%d]", i)))
	}
	if total > MaxTurnBytes {
		errs = append(errs, fieldErr("messages", "total content %d bytes exceeds %d", total, MaxTurnBytes))
	}
	if len(t.ClientTools) > MaxClientTools {
		errs = append(errs, fieldErr("client_tools", "at most %d tools, got %d", MaxClientTools, len(t.ClientTools)))
	}
	seen := map[string]bool{}
	for i, d := range t.ClientTools {
		f := fmt.Sprintf("client_tools[%d]", i)
		switch {
		case !validToolName(d.Name):
			errs = append(errs, fieldErr(f+".name", "must be 1-64 characters of [A-Za-z0-9_-]"))
		case seen[d.Name]:
			errs = append(errs, fieldErr(f+".name", "%q is declared twice", d.Name))
		case len(d.Parameters) > 0 && !json.Valid(d.Parameters):
			errs = append(errs, fieldErr(f+".parameters", "is not valid JSON"))
		}
		seen[d.Name] = true
	}
	return errors.Join(errs...)
}

// MaxClientTools bounds the tools a client may declare in one request.
const MaxClientTools = 128

// validToolName is OpenAI's rule for function names.
func validToolName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (m *Message) validate(field string) error {
	var errs []error
	switch m.Role {
	case RoleSystem, RoleDeveloper, RoleUser, RoleAssistant:
	case RoleTool:
		if m.ToolCallID == "" {
			errs = append(errs, fieldErr(field+".tool_call_id", "required for role tool"))
		}
	case "":
		errs = append(errs, fieldErr(field+".role", "required"))
	default:
		errs = append(errs, fieldErr(field+".role", "unknown role %q", m.Role))
	}
	if n := m.size(); n > MaxContentBytes {
		errs = append(errs, fieldErr(field+".content", "%d bytes exceeds %d", n, MaxContentBytes))
	}
	if !utf8.ValidString(m.Content) || !utf8.ValidString(m.RefusalText()) {
		errs = append(errs, fieldErr(field+".content", "is not valid UTF-8"))
	}
	for j, p := range m.Parts {
		pf := fmt.Sprintf("%s.content[%d]", field, j)
		switch {
		case p.Type == PartText:
		case p.Type == PartImage && (m.Role == RoleUser):
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				errs = append(errs, fieldErr(pf+".image_url.url", "required for an image_url part"))
			} else if !validImageURL(p.ImageURL.URL) {
				errs = append(errs, fieldErr(pf+".image_url.url", "must be an http(s) URL or a data:image/...;base64, URL"))
			}
			if d := p.ImageURL; d != nil && d.Detail != "" && d.Detail != "auto" && d.Detail != "low" && d.Detail != "high" {
				errs = append(errs, fieldErr(pf+".image_url.detail", "must be auto, low or high"))
			}
		case p.Type == PartImage:
			errs = append(errs, fieldErr(pf+".type", "image_url parts are only allowed in user messages"))
		case p.Type == PartRefusal && m.Role == RoleAssistant:
			if p.Refusal == nil {
				errs = append(errs, fieldErr(pf+".refusal", "required for a refusal part"))
			}
		case p.Type == PartRefusal:
			errs = append(errs, fieldErr(pf+".type", "refusal parts are only allowed in assistant messages"))
		default:
			errs = append(errs, fieldErr(pf+".type", "content part type %q is not supported (text, image_url and, in assistant messages, refusal are)", truncateString(p.Type, 32)))
		}
	}
	if len(m.ToolCalls) > 0 && m.Role != RoleAssistant {
		errs = append(errs, fieldErr(field+".tool_calls", "only assistant messages carry tool calls"))
	}
	if len(m.ToolCalls) > MaxToolCalls {
		errs = append(errs, fieldErr(field+".tool_calls", "at most %d", MaxToolCalls))
	}
	for j, tc := range m.ToolCalls {
		if tc.ID == "" || tc.Function.Name == "" {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.tool_calls[%d]", field, j), "id and function.name are required"))
		}
	}
	if m.Role == RoleUser && m.Content == "" && len(m.Parts) == 0 {
		errs = append(errs, fieldErr(field+".content", "a user message needs content"))
	}
	return errors.Join(errs...)
}

// size is the bytes a message's content takes: its text, refusals and
// image URLs.
func (m *Message) size() int {
	n := len(m.Content) + len(m.Refusal)
	for _, p := range m.Parts {
		if p.ImageURL != nil {
			n += len(p.ImageURL.URL)
		}
		if p.Refusal != nil {
			n += len(*p.Refusal)
		}
	}
	return n
}

func validImageURL(u string) bool {
	l := strings.ToLower(u)
	if strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://") {
		return len(u) > len("https://") && !strings.ContainsAny(u, " \t\r\n")
	}
	if rest, ok := strings.CutPrefix(l, "data:image/"); ok {
		return strings.Contains(rest, ";base64,")
	}
	return false
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// DeadLetter is a message a stage could not process, published on
// DLQSubject(stage) in StreamDLQ. It keeps the original payload and subject
// so it can be inspected and redriven; Reason never contains secrets.
type DeadLetter struct {
	SchemaVersion int    `json:"schema_version"`
	Stage         string `json:"stage"`
	// Subject and MsgID of the original message; a redrive republishes the
	// payload on Subject with the id MsgID + "/redrive/<DLQ sequence>", so a
	// repeated redrive is dropped as a duplicate.
	Subject string `json:"subject"`
	MsgID   string `json:"msg_id"`
	// Attempts counts handler runs; Deliveries counts JetStream deliveries.
	Attempts   int    `json:"attempts"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
	// Payload is the original message body, byte for byte; nil when it
	// was too large to be stored again (PayloadOmitted): the original is
	// then read back from the turn stream at StreamSeq.
	Payload []byte            `json:"payload"`
	Headers map[string]string `json:"headers,omitempty"`
	At      time.Time         `json:"at"`
	// StreamSeq is the original's sequence in the turn stream and
	// PayloadBytes its size.
	StreamSeq    uint64 `json:"stream_seq,omitempty"`
	PayloadBytes int    `json:"payload_bytes,omitempty"`
	// PayloadOmitted says the dead letter is a reference: the payload did
	// not fit the dead-letter stream.
	PayloadOmitted bool `json:"payload_omitted,omitempty"`
}
