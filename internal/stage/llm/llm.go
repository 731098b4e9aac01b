// Package llm is the llm stage: it builds a turn's context (stored history
// plus the new messages plus the tool loop so far), calls the model through
// the provider chain (circuit breakers, failover, retries live there), and
// routes the answer: tool calls to toolexec, a final answer to persist.
//
// Guarantees:
//   - a redelivered step never calls the provider again: the result of each
//     step is recorded in a JetStream KV bucket (keyed by request id and
//     round) before the next event is published, and a redelivery reuses it;
//   - an outage is not poison: when no provider is available the turn ends
//     at once with a Failed event (503 and Retry-After), the message is
//     acked, nothing is dead-lettered and nothing loops;
//   - streaming deltas go to core NATS on the turn's DeltaSubject while
//     the final message still travels through JetStream.
package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/cache"
	"github.com/agentbus/agentbus/internal/cache/kvstore"
	"github.com/agentbus/agentbus/internal/obs"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/quota"
	"github.com/agentbus/agentbus/internal/spend"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Stage is the stage name.
const Stage = messages.StageLLM

// ResultsBucket is the KV bucket holding each step's provider result.
const ResultsBucket = "agentbus_llm_results"

// QuotaBucket holds the daily quota counters shared by llm replicas.
const QuotaBucket = "agentbus_quota"

// Contract is what the llm stage does on the bus: it consumes admitted
// turns and tool results, produces tool calls, answers and failures,
// publishes streaming deltas, reads conversation history from persist,
// discovers remote tools, and writes its step records, quota counters and
// response cache (no other identity may read or write the cache).
var Contract = pipeline.Contract{
	Stage:    Stage,
	Consumes: messages.ConsumedBy(Stage),
	Produces: messages.ProducedBy(Stage),
	KV: []pipeline.KVUse{{Bucket: ResultsBucket, Write: true}, {Bucket: QuotaBucket, Write: true}, {Bucket: spend.Bucket, Write: true},
		{Bucket: kvstore.Bucket, Write: true}},
	Requests:   []string{messages.StreamSubject("*"), messages.StreamSubjectTo("*", "*"), messages.SubjectHistory, "$SRV.INFO." + messages.ToolsService, messages.SubjectToolCatalog},
	Subscribes: []string{messages.SubjectModels, messages.CancelSubject("*")},
}

// ErrConversationNotFound is wrapped by History errors for a conversation
// another user owns.
var ErrConversationNotFound = errors.New("conversation not found")

// History returns a conversation's stored messages, already pruned to the
// model's budget.
type History interface {
	History(ctx context.Context, conversationID, user, model string) ([]messages.Message, error)
}

// Quota admits model calls against daily per-user and per-model limits.
type Quota interface {
	// Admit counts a request, or returns an error if a limit is reached
	// (errors.Is quota.ErrQuotaExceeded) or the shared state failed.
	Admit(ctx context.Context, user, model string) error
	// AddTokens records the tokens a call used.
	AddTokens(ctx context.Context, user, model string, tokens int64) error
	// Degraded reports a counter at 80% or more of its limit.
	Degraded() bool
}

// Config configures the llm stage. The zero value is usable.
type Config struct {
	// DefaultModel is used when a turn names none. Default "": the
	// provider's default model (its catalog's).
	DefaultModel string
	// MaxRounds bounds model calls per turn (the tool loop), 1..64.
	// Default 6.
	MaxRounds int
	// SystemPrompt, if set, is prepended to every context. Default "".
	SystemPrompt string
	// ResultTTL is how long step results are kept for redeliveries: the
	// TTL of the step store (Deps.Steps) whoever wires the stage opens.
	// At least 1m. Default 24h.
	ResultTTL time.Duration
	// HandlerTimeout bounds one run of the handler: the provider chain's
	// timeouts, retries and failover together. The runtime keeps the
	// message owned meanwhile (pipeline.Stage.HandlerTimeout). Default
	// 120s.
	HandlerTimeout time.Duration
	// TurnHistories is how many turns' history this instance keeps for
	// their later model calls (after a tool round): a turn reads its
	// conversation's stored history once, at its first model call on this
	// instance, and every later round reuses that snapshot. Default 1024;
	// the snapshot is the same either way (a turn is stored only when it
	// completes), so a smaller value costs history reads, never answers.
	TurnHistories int
}

// Defaults of Config.
const (
	DefaultMaxRounds      = 6
	DefaultResultTTL      = 24 * time.Hour
	DefaultHandlerTimeout = 120 * time.Second
	DefaultTurnHistories  = 1024
)

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MaxRounds < 0 || c.MaxRounds > 64 {
		errs = append(errs, fmt.Errorf("llm.max_rounds must be 1..64, got %d", c.MaxRounds))
	}
	if c.ResultTTL != 0 && c.ResultTTL < time.Minute {
		errs = append(errs, errors.New("llm.result_ttl must be at least 1m"))
	}
	if c.HandlerTimeout < 0 {
		errs = append(errs, errors.New("llm.handler_timeout must be positive"))
	}
	if c.TurnHistories < 0 {
		errs = append(errs, errors.New("llm.turn_histories must not be negative"))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.MaxRounds == 0 {
		c.MaxRounds = DefaultMaxRounds
	}
	if c.ResultTTL == 0 {
		c.ResultTTL = DefaultResultTTL
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.TurnHistories == 0 {
		c.TurnHistories = DefaultTurnHistories
	}
	return c
}

// DefaultConfig returns the documented defaults (what the zero value
// means).
func DefaultConfig() Config { return Config{}.WithDefaults() }

// Cache is the response cache (cache.Cache).
type Cache interface {
	// Key is the cache key of req for tenant ("" when req cannot be
	// cached).
	Key(tenant string, req provider.Request) string
	Get(ctx context.Context, key string) (provider.Response, bool)
	Put(ctx context.Context, key string, resp provider.Response)
}

// Publisher publishes on core NATS (*nats.Conn): streaming deltas.
type Publisher interface {
	Publish(subject string, data []byte) error
}

// Subscriber delivers core NATS notifications: cancellations.
type Subscriber = pipeline.Subscriber

// Metrics is what the llm stage counts (obs.Metrics).
type Metrics interface {
	// Usage records a model call's tokens and cost.
	Usage(model, user string, in, out int, costUSD float64)
	// Cache records a response cache result and what a hit saved.
	Cache(model, user, result string, savedTokens int, savedUSD float64)
	// LimitRejected counts a turn refused by a limit.
	LimitRejected(stage, kind, tier string)
}

// Handler is the llm stage.
type Handler struct {
	cfg      Config
	provider provider.Provider
	tools    atomic.Pointer[[]provider.ToolSpec]
	history  History
	quota    Quota
	cache    Cache
	deltas   Publisher
	steps    pipeline.StepStore
	log      *slog.Logger
	// Health reports provider health (breaker states); may be nil.
	health  func() (string, map[string]any)
	spend   *Spend
	metrics Metrics
	// calls are the model calls in flight, by request id: a client that
	// went away cancels its turn's (messages.CancelSubject).
	calls sync.Map // string -> context.CancelCauseFunc
	// histories are the history snapshots of turns in a tool loop, by
	// request id (readHistory).
	histories *lru.Cache[string, turnHistory]
}

// errClientCancelled is the cause of a model call aborted because its
// client went away.
var errClientCancelled = errors.New("the client went away")

// Deps are the llm stage's collaborators.
type Deps struct {
	// Provider calls the models. Required.
	Provider provider.Provider
	// Steps records each model call's result (a KV bucket,
	// ResultsBucket, opened with Config.ResultTTL). Required.
	Steps pipeline.StepStore
	// Tools are the server's tools offered to the model.
	Tools []provider.ToolSpec
	// History serves stored conversations; nil: turns with use_history
	// fail clearly.
	History History
	// Quota admits calls against daily limits; nil: no quotas.
	Quota Quota
	// Cache is the response cache; nil: off (turns that ask for it are
	// answered by the provider, X-Cache: bypass).
	Cache Cache
	// Deltas publishes streaming deltas on each turn's DeltaSubject; nil:
	// a streaming turn gets its answer in one piece.
	Deltas Publisher
	// Cancels delivers messages.CancelSubject (a client went away: its
	// model call is aborted); nil: calls run to the end.
	Cancels Subscriber
	// ProviderHealth reports the providers' health for /health.
	ProviderHealth func() (status string, detail map[string]any)
	// Spend prices calls, records them and enforces the daily budget;
	// nil: no cost.
	Spend *Spend
	// Metrics records tokens, cost and limit rejections; nil: none.
	Metrics Metrics
	// Log gets failed calls (redacted); nil: discard.
	Log *slog.Logger
}

// New builds the handler.
func New(cfg Config, d Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if d.Provider == nil || d.Steps == nil {
		return nil, errors.New("llm: a provider and a step store are required")
	}
	if cfg.DefaultModel == "" {
		if c, ok := d.Provider.(cataloger); ok {
			cfg.DefaultModel = c.Catalog().Default
		}
	}
	if d.Metrics == nil {
		d.Metrics = noMetrics{}
	}
	if d.Deltas == nil {
		d.Deltas = noDeltas{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, provider: d.Provider, history: d.History, quota: d.Quota, cache: d.Cache,
		deltas: d.Deltas, steps: d.Steps, log: d.Log, health: d.ProviderHealth, spend: d.Spend, metrics: d.Metrics}
	var err error
	if h.histories, err = lru.New[string, turnHistory](cfg.TurnHistories); err != nil {
		return nil, err
	}
	h.SetTools(d.Tools)
	if d.Cancels != nil {
		// Every replica hears every cancellation; the one running the
		// call aborts it.
		if _, err := d.Cancels.Subscribe(messages.CancelSubject("*"), func(subject string, _ []byte) {
			h.Cancel(strings.TrimPrefix(subject, messages.CancelSubject("")))
		}); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Cancel aborts the model call of request rid, if this instance runs it
// (its client went away).
func (h *Handler) Cancel(rid string) {
	if c, ok := h.calls.Load(rid); ok {
		c.(context.CancelCauseFunc)(errClientCancelled)
	}
}

type noMetrics struct{}

func (noMetrics) Usage(string, string, int, int, float64)    {}
func (noMetrics) Cache(string, string, string, int, float64) {}
func (noMetrics) LimitRejected(string, string, string)       {}

type noDeltas struct{}

func (noDeltas) Publish(string, []byte) error { return nil }

// SetTools replaces the tools offered to the model (a remote tool came or
// went).
func (h *Handler) SetTools(tools []provider.ToolSpec) {
	t := append([]provider.ToolSpec(nil), tools...)
	h.tools.Store(&t)
}

// Stage returns the pipeline stage: it consumes admitted turns and tool
// results.
func (h *Handler) Stage() pipeline.Stage {
	return pipeline.Stage{
		Contract:       Contract,
		HandlerTimeout: h.cfg.HandlerTimeout,
		Handlers: map[string]message.HandlerFunc{
			messages.EventAdmitted: h.Handle,
			messages.EventTooled:   h.Handle,
		},
		Endpoints: h.endpoints,
		Health: func(context.Context) (map[string]pipeline.Check, map[string]any) {
			checks := map[string]pipeline.Check{}
			var detail map[string]any
			if h.health != nil {
				var st string
				st, detail = h.health()
				checks["providers"] = pipeline.Check{Status: st}
			}
			if h.quota != nil && h.quota.Degraded() {
				checks["quota"] = pipeline.Check{Status: pipeline.Degraded, Detail: "a daily quota is at 80% or more"}
			}
			return checks, detail
		},
	}
}

// stepResult is the recorded outcome of one model call: its answer, or the
// failure that ended the turn.
type stepResult struct {
	Response provider.Response `json:"response"`
	Failure  *stepFailure      `json:"failure,omitempty"`
	// Cache is the call's cache status (messages.CacheHit, ...), "" when
	// the turn does not use the cache.
	Cache string    `json:"cache,omitempty"`
	At    time.Time `json:"at"`
}

type stepFailure struct {
	Code         string `json:"code"`
	Status       int    `json:"status"`
	Reason       string `json:"reason"`
	Param        string `json:"param,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// Handle runs one model call of a turn.
func (h *Handler) Handle(msg *message.Message) ([]*message.Message, error) {
	g, err := pipeline.Decode[messages.Generation](msg)
	if err != nil {
		return nil, err
	}
	ctx := msg.Context()
	event, _, _ := messages.ParseSubject(msg.Metadata.Get(pipeline.MetaSubject))
	round := 0
	if event == messages.EventTooled {
		round = g.Round + 1
	}
	if round >= h.cfg.MaxRounds {
		return h.fail(&g, messages.CodeMaxToolRounds, http.StatusUnprocessableEntity,
			fmt.Sprintf("the model asked for tools in %d rounds; the limit is %d", round, h.cfg.MaxRounds), 0)
	}
	model := g.Model
	if model == "" {
		model = h.cfg.DefaultModel
	}
	key := resultKey(g.RequestID, round)
	var res stepResult
	// One runner per step: a redelivered copy waits while another replica
	// still calls the provider, and reuses the recorded result after.
	claim, found, err := h.steps.Begin(ctx, key, h.leaseTTL(ctx), &res)
	if err == nil && !found {
		if res, err = h.call(ctx, &g, model); err != nil {
			claim.Release()
			return nil, err
		}
		// Recorded whatever the outcome, before anything is published: a
		// redelivery reuses it and never calls the provider again.
		err = claim.Put(ctx, res)
	}
	if errors.Is(err, pipeline.ErrStepTooLarge) {
		return h.fail(&g, messages.CodePayloadTooLarge, http.StatusRequestEntityTooLarge, "the model's answer was too large for the bus: "+err.Error(), 0)
	}
	if err != nil {
		return nil, err // KV unreachable: retry, never call the provider blind
	}
	annotate(ctx, model, &res)
	if f := res.Failure; f != nil {
		return h.failParam(&g, f.Code, f.Status, f.Reason, f.Param, time.Duration(f.RetryAfterMS)*time.Millisecond)
	}
	return h.route(&g, round, res)
}

// leaseTTL is how long a step's lease lasts: the handler's deadline, so a
// runner that died is replaced once its call could no longer be running.
func (h *Handler) leaseTTL(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl) + 5*time.Second
	}
	return 2 * time.Minute
}

// call makes the step's model call and returns its outcome to record: the
// answer, or the failure that ends the turn. An error is returned only for
// what a retry may fix (shared state or history unreachable, shutdown).
func (h *Handler) call(ctx context.Context, g *messages.Generation, model string) (stepResult, error) {
	failed := func(code string, status int, reason string, retry time.Duration) (stepResult, error) {
		return stepResult{Failure: &stepFailure{Code: code, Status: status, Reason: pipeline.Redact(reason), RetryAfterMS: retry.Milliseconds()}, At: time.Now().UTC()}, nil
	}
	req, err := h.request(ctx, g, model)
	var clash *toolClashError
	if errors.As(err, &clash) {
		r, _ := failed(messages.CodeInvalidValue, http.StatusBadRequest, clash.Error(), 0)
		r.Failure.Param = "tools"
		return r, nil
	}
	if errors.Is(err, ErrConversationNotFound) {
		return failed(messages.CodeConversationNotFound, http.StatusNotFound, "conversation "+g.ConversationID+" not found", 0)
	}
	if err != nil {
		return stepResult{}, err
	}
	status, key := h.lookup(g, req)
	if status == messages.CacheHit {
		if resp, ok := h.cache.Get(ctx, key); ok {
			if g.Stream && resp.Message.Content != "" {
				// Answered from the cache as a stream: the whole content
				// in one delta.
				b, _ := json.Marshal(messages.Delta{RequestID: g.RequestID, Seq: 1, Content: resp.Message.Content, Cache: messages.CacheHit})
				_ = h.deltas.Publish(g.DeltaSubject(), b)
			}
			h.metrics.Cache(model, g.User, messages.CacheHit, resp.Usage.TotalTokens, h.cost(model, resp))
			return stepResult{Response: resp, Cache: messages.CacheHit, At: time.Now().UTC()}, nil
		}
		status = messages.CacheMiss
	}
	if f, err := h.checkBudget(g); f != nil || err != nil {
		return stepResult{Failure: f, At: time.Now().UTC()}, err
	}
	if h.quota != nil {
		if err := h.quota.Admit(ctx, g.User, model); err != nil {
			var ex *quota.ExceededError
			if !errors.As(err, &ex) {
				return stepResult{}, err // shared state unreachable: retry
			}
			h.metrics.LimitRejected(Stage, obs.LimitQuota, string(ex.Limit))
			return failed(messages.CodeQuotaExceeded, http.StatusTooManyRequests, err.Error(), ex.RetryAfter)
		}
	}
	var onDelta func(string)
	seq := 0
	if g.Stream {
		subj := g.DeltaSubject()
		onDelta = func(d string) {
			seq++
			dl := messages.Delta{RequestID: g.RequestID, Seq: seq, Content: d}
			if seq == 1 {
				dl.Cache = status
			}
			b, _ := json.Marshal(dl)
			_ = h.deltas.Publish(subj, b)
		}
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	h.calls.Store(g.RequestID, cancel)
	defer h.calls.Delete(g.RequestID)
	resp, err := h.provider.Complete(cctx, req, onDelta)
	if err != nil && errors.Is(context.Cause(cctx), errClientCancelled) {
		return failed(messages.CodeClientCancelled, 499, "the client went away; the model call was cancelled", 0)
	}
	if err != nil {
		if g.Stream {
			b, _ := json.Marshal(messages.Delta{RequestID: g.RequestID, Seq: seq + 1, Done: true, Error: provider.ClientMessage(err)})
			_ = h.deltas.Publish(g.DeltaSubject(), b)
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return stepResult{}, err // shutting down: redeliver
		}
		if !g.Deadline.IsZero() && !time.Now().Before(g.Deadline) {
			// Cut by the turn's deadline: the turn ends as the client's
			// wait does.
			return failed(messages.CodeDeadlineExceeded, http.StatusGatewayTimeout, "the turn's deadline passed during the model call; it is not stored", 0)
		}
		status, code := provider.Classify(err)
		retry, _ := provider.RetryAfter(err)
		h.log.Warn("model call failed", "request_id", g.RequestID, "status", status, "code", code, "err", pipeline.Redact(err.Error()))
		// The client sees a plain sentence, never the provider's URL or a
		// network error; the log above has the detail.
		r, _ := failed(code, status, provider.ClientMessage(err), retry)
		r.Failure.Param = errParam(err)
		return r, nil
	}
	h.account(ctx, g, model, resp)
	if h.quota != nil {
		if err := h.quota.AddTokens(ctx, g.User, model, int64(resp.Usage.TotalTokens)); err != nil {
			// The call is made and paid for: record the result anyway.
			h.log.Warn("quota tokens not recorded", "request_id", g.RequestID, "err", err)
		}
	}
	if status == messages.CacheMiss && cache.Cacheable(resp) {
		h.cache.Put(ctx, key, resp)
	}
	if status != "" {
		h.metrics.Cache(model, g.User, status, 0, 0)
	}
	return stepResult{Response: resp, Cache: status, At: time.Now().UTC()}, nil
}

// lookup says what the cache may do for the call req of turn g: "" (the
// turn does not use it), CacheBypass (not cacheable), CacheMiss (call the
// provider and store the answer: a refresh) or CacheHit (look it up
// first), with the entry's key.
func (h *Handler) lookup(g *messages.Generation, req provider.Request) (status, key string) {
	if g.Cache == nil {
		return "", ""
	}
	if h.cache == nil {
		return messages.CacheBypass, ""
	}
	read, write := cache.Decide(g.Cache, req.Params)
	if !write {
		return messages.CacheBypass, ""
	}
	if key = h.cache.Key(g.User, req); key == "" {
		return messages.CacheBypass, ""
	}
	if !read {
		return messages.CacheMiss, key
	}
	return messages.CacheHit, key
}

func (h *Handler) route(g *messages.Generation, round int, res stepResult) ([]*message.Message, error) {
	resp := res.Response
	out := *g
	cost := h.cost(g.Model, resp)
	if res.Cache != "" {
		cu := messages.CacheUse{}
		if g.CacheUse != nil {
			cu = *g.CacheUse
		}
		cu.Add(res.Cache, resp.Usage)
		if res.Cache == messages.CacheHit {
			// Nobody was billed for it: saved, not spent.
			cu.SavedUSD += cost
			cost = 0
		}
		out.CacheUse = &cu
	}
	out.Round = round
	out.Steps = append(append([]messages.Message(nil), g.Steps...), resp.Message)
	out.Usage = g.Usage.Add(resp.Usage)
	out.CostUSD = g.CostUSD + cost
	out.Provider = resp.Provider
	out.ResolvedModel = resp.Model
	out.FinishReason = provider.NormalizeFinishReason(resp.FinishReason, len(resp.Message.ToolCalls) > 0)
	out.Logprobs = resp.Logprobs
	event := messages.EventGenerated
	if len(resp.Message.ToolCalls) > 0 {
		event = messages.EventToolCalls
	} else {
		h.histories.Remove(g.RequestID) // the turn's last model call
	}
	m, err := pipeline.NewEvent(event, g.RequestID, round, out)
	if err != nil {
		return nil, err
	}
	return []*message.Message{m}, nil
}

// turnHistory is a turn's snapshot of its conversation's history.
type turnHistory struct {
	model string
	msgs  []messages.Message
}

// readHistory is the stored history of g's conversation for its turn: read
// from the history source at the turn's first model call on this
// instance, then reused by its later rounds (the turn itself is stored
// only when it completes, so the snapshot stays the turn's context).
func (h *Handler) readHistory(ctx context.Context, g *messages.Generation, model string) ([]messages.Message, error) {
	if th, ok := h.histories.Get(g.RequestID); ok && th.model == model {
		return th.msgs, nil
	}
	hist, err := h.history.History(ctx, g.ConversationID, g.User, model)
	if errors.Is(err, ErrConversationNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", g.ConversationID, err)
	}
	// Kept only while another round can follow (tools are offered and
	// rounds remain); the turn's final answer drops it (route).
	if len(*h.tools.Load())+len(g.ClientTools) > 0 && g.Round+1 < h.cfg.MaxRounds {
		h.histories.Add(g.RequestID, turnHistory{model: model, msgs: hist})
	}
	return hist, nil
}

func (h *Handler) request(ctx context.Context, g *messages.Generation, model string) (provider.Request, error) {
	var msgs []messages.Message
	if h.cfg.SystemPrompt != "" {
		msgs = append(msgs, messages.Message{Role: messages.RoleSystem, Content: h.cfg.SystemPrompt})
	}
	if g.UseHistory {
		if h.history == nil {
			return provider.Request{}, pipeline.Permanent(errors.New("turn asks for history but no history source is configured"))
		}
		hist, err := h.readHistory(ctx, g, model)
		if err != nil {
			return provider.Request{}, err
		}
		msgs = append(msgs, hist...)
	}
	msgs = append(msgs, g.Messages...)
	msgs = append(msgs, g.Steps...)
	params := g.Params
	if len(g.Steps) > 0 {
		// tool_choice is for the turn's first model call: once the tools
		// ran, the model answers freely (else "required" would loop).
		params.ToolChoice = nil
	}
	tools := *h.tools.Load()
	if len(g.ClientTools) > 0 {
		// The client's own tools, offered next to the server's.
		all := slices.Clone(tools)
		for _, d := range g.ClientTools {
			if slices.ContainsFunc(tools, func(t provider.ToolSpec) bool { return t.Name == d.Name }) {
				return provider.Request{}, &toolClashError{name: d.Name}
			}
			all = append(all, provider.ToolSpec{Name: d.Name, Description: d.Description, Parameters: d.Parameters, Strict: d.Strict})
		}
		tools = all
	}
	return provider.Request{Model: model, Messages: msgs, Tools: tools, Params: params, User: g.User}, nil
}

// toolClashError: a client tool has the name of a server tool.
type toolClashError struct{ name string }

func (e *toolClashError) Error() string {
	return fmt.Sprintf("Invalid 'tools': '%s' is the name of a tool this server runs; rename yours.", e.name)
}

func (h *Handler) fail(g *messages.Generation, code string, status int, reason string, retry time.Duration) ([]*message.Message, error) {
	m, err := pipeline.FailedEvent(Stage, &g.Turn, code, status, reason, retry)
	if err != nil {
		return nil, err
	}
	return []*message.Message{m}, nil
}

func resultKey(rid string, round int) string { return rid + "." + strconv.Itoa(round) }
