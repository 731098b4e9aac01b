// Package persist is the persist stage: it commits every generated turn to
// the conversation store (SQLite or JSON files) and only then publishes the
// turn's completed event, so a client's answer means "stored" and the next
// turn always sees it. It also serves conversation history to the llm stage
// and the CLI over NATS request-reply (micro endpoints), pruned to a token
// budget, with an LRU cache in front of the store.
//
// Guarantees: a store error is returned (the message is NAKed and
// redelivered), never swallowed; appends are idempotent on the request id,
// so a redelivered turn is stored once; the completed event has a
// deterministic id, so a re-publish is dropped by the stream.
package persist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/internal/prune"
	"github.com/agentbus/agentbus/internal/tokens"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go/micro"
)

// Stage is the stage name.
const Stage = messages.StagePersist

// Subjects of the persist service's request-reply endpoints.
const (
	SubjectHistory       = messages.SubjectHistory
	SubjectTurns         = messages.SubjectTurns
	SubjectConversations = messages.SubjectConversations
	SubjectDelete        = messages.SubjectDelete
	SubjectVerify        = messages.SubjectVerify
	SubjectOwner         = messages.SubjectOwner
)

// Contract is what the persist stage does on the bus: it consumes generated
// turns, produces completed ones, serves the history endpoints and listens
// to completed events (cache invalidation across replicas).
var Contract = pipeline.Contract{
	Stage:      Stage,
	Consumes:   messages.ConsumedBy(Stage),
	Produces:   messages.ProducedBy(Stage),
	Subscribes: []string{"agentbus.persist.>", messages.EventFilter(messages.EventCompleted)},
}

// Config configures the persist stage. The zero value is usable.
type Config struct {
	// Budget is the default token budget of the history given to the
	// model. Default 16000.
	Budget int
	// Strategy is the default pruning strategy: importance, recent or
	// window. Default "importance".
	Strategy prune.Strategy
	// Window is the window size for the "window" strategy. Default 20.
	Window int
	// CacheSize is the number of conversations kept in the history cache.
	// Default 4096.
	CacheSize int
	// HandlerTimeout bounds one commit. Default 0: the runtime's handler
	// timeout.
	HandlerTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultBudget    = 16000
	DefaultCacheSize = 4096
)

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.Budget == 0 {
		c.Budget = DefaultBudget
	}
	if c.Strategy == "" {
		c.Strategy = prune.Importance
	}
	if c.Window == 0 {
		c.Window = prune.DefaultWindow
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	return c
}

// DefaultConfig returns the documented defaults (what the zero value
// means).
func DefaultConfig() Config { return Config{}.WithDefaults() }

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Budget < 0 {
		errs = append(errs, errors.New("persist.budget must not be negative"))
	}
	switch c.Strategy {
	case "", prune.Importance, prune.Recent, prune.Window:
	default:
		errs = append(errs, fmt.Errorf("persist.strategy %q: want importance, recent or window", c.Strategy))
	}
	if c.Window < 0 {
		errs = append(errs, errors.New("persist.window must not be negative"))
	}
	if c.CacheSize < 0 {
		errs = append(errs, errors.New("persist.cache_size must not be negative"))
	}
	if c.HandlerTimeout < 0 {
		errs = append(errs, errors.New("persist.handler_timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Appender commits one turn and returns after it is durable, with rec's
// Seq, Hash and PrevHash set (a memory.GroupCommitter batches concurrent
// calls into one transaction).
type Appender interface {
	Append(ctx context.Context, rec *memory.TurnRecord) error
}

// Expecter is an Appender that can be told an append is coming (a
// memory.GroupCommitter): persist announces each turn when its handler
// starts, so a commit waits for the turns already being handled and
// shares its fixed cost with them.
type Expecter interface {
	Expect() *memory.Arrival
}

// Handler is the persist stage.
type Handler struct {
	cfg      Config
	store    Store
	appender Appender
	outcomes Outcomes
	cache    *lru.Cache[string, []messages.Message]
	// owners caches conversation owners (set by the first turn, never
	// changed; dropped on delete).
	owners   *lru.Cache[string, string]
	log      *slog.Logger
	stopSub  func() error
	countMu  sync.Mutex
	counters map[string]tokens.Counter // by encoding, cached
}

// counter returns a cached token counter for model's encoding: exact BPE
// counting costs ~0.4 ms per KB, and history is re-counted every turn.
func (h *Handler) counter(model string) tokens.Counter {
	enc := tokens.EncodingFor(model)
	h.countMu.Lock()
	defer h.countMu.Unlock()
	c, ok := h.counters[enc]
	if !ok {
		c = tokens.Cached(tokens.For(model), 16384)
		h.counters[enc] = c
	}
	return c
}

// Outcomes records each turn's outcome (pipeline.Terminals): persist
// claims "completed" before it commits, so a turn is stored only if it
// completed, never after another stage ended it.
type Outcomes interface {
	Claim(ctx context.Context, requestID, event string) (string, error)
}

// Store is the conversation store (memory.Store): what persist commits
// to and serves history from.
type Store interface {
	Append(ctx context.Context, recs ...memory.TurnRecord) error
	History(ctx context.Context, conversationID string) ([]messages.Message, error)
	Turns(ctx context.Context, conversationID string) ([]memory.TurnRecord, error)
	Owner(ctx context.Context, conversationID string) (string, error)
	Conversations(ctx context.Context) ([]memory.ConversationInfo, error)
	Delete(ctx context.Context, conversationID string) error
	VerifyChain(ctx context.Context) (memory.ChainReport, error)
}

// Subscriber delivers core NATS notifications: other replicas' completed
// events.
type Subscriber = pipeline.Subscriber

// Deps are the persist stage's collaborators.
type Deps struct {
	// Store is the conversation store. Required.
	Store Store
	// Appender commits turns (a memory.GroupCommitter); nil: Store, one
	// transaction per turn.
	Appender Appender
	// Completed delivers the completed events of every replica (their
	// conversations' cached history is stale); nil: no invalidation.
	Completed Subscriber
	// Outcomes, when set, is claimed before each commit.
	Outcomes Outcomes
	// Log gets turns that ended before they could be stored; nil:
	// discard.
	Log *slog.Logger
}

// New builds the handler.
func New(cfg Config, d Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, errors.New("persist: a store is required")
	}
	cfg = cfg.WithDefaults()
	cache, err := lru.New[string, []messages.Message](cfg.CacheSize)
	if err != nil {
		return nil, err
	}
	owners, err := lru.New[string, string](cfg.CacheSize * 4)
	if err != nil {
		return nil, err
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, store: d.Store, appender: d.Appender, outcomes: d.Outcomes, cache: cache, owners: owners, log: d.Log, counters: map[string]tokens.Counter{}}
	if h.appender == nil {
		h.appender = storeAppender{d.Store}
	}
	// Another replica's commit makes our cached copy stale: its completed
	// event (published after the commit) evicts it.
	if d.Completed != nil {
		h.stopSub, err = d.Completed.Subscribe(messages.EventFilter(messages.EventCompleted), func(_ string, data []byte) {
			if conv, ok := topLevelString(data, "conversation_id"); ok {
				h.cache.Remove(conv)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return h, nil
}

type storeAppender struct{ s Store }

func (a storeAppender) Append(ctx context.Context, r *memory.TurnRecord) error {
	recs := []memory.TurnRecord{*r}
	if err := a.s.Append(ctx, recs...); err != nil {
		return err
	}
	*r = recs[0]
	return nil
}

// Stage returns the pipeline stage.
func (h *Handler) Stage() pipeline.Stage {
	return pipeline.Stage{
		Contract:       Contract,
		HandlerTimeout: h.cfg.HandlerTimeout,
		Handlers:       map[string]message.HandlerFunc{messages.EventGenerated: h.Handle},
		Endpoints:      h.endpoints,
		Health: func(ctx context.Context) (map[string]pipeline.Check, map[string]any) {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if _, err := h.store.History(ctx, "agentbus-health-probe"); err != nil {
				return map[string]pipeline.Check{"storage": {Status: pipeline.Unhealthy, Detail: err.Error()}}, nil
			}
			return map[string]pipeline.Check{"storage": {Status: pipeline.Healthy}}, map[string]any{"cached_conversations": h.cache.Len()}
		},
	}
}

// Forget drops a conversation from the history cache.
func (h *Handler) Forget(conversationID string) {
	h.cache.Remove(conversationID)
	h.owners.Remove(conversationID)
}

// owner returns the conversation's owner: the user of its first stored
// turn (memory.ErrNotFound when it has none).
func (h *Handler) owner(ctx context.Context, conversationID string) (string, error) {
	if o, ok := h.owners.Get(conversationID); ok {
		return o, nil
	}
	o, err := h.store.Owner(ctx, conversationID)
	if err != nil {
		return "", err
	}
	h.owners.Add(conversationID, o)
	return o, nil
}

// ErrNotOwned is returned (as a 404, like an unknown conversation, so ids
// cannot be probed) when a request on behalf of a user names a
// conversation owned by another.
var ErrNotOwned = fmt.Errorf("%w (or owned by another user)", memory.ErrNotFound)

// authorize checks a request made on behalf of user (none: the operator).
// strict refuses an unknown conversation too.
func (h *Handler) authorize(ctx context.Context, conversationID, user string, strict bool) error {
	if user == "" {
		return nil
	}
	o, err := h.owner(ctx, conversationID)
	switch {
	case errors.Is(err, memory.ErrNotFound):
		if strict {
			return ErrNotOwned
		}
		return nil
	case err != nil:
		return err
	case o != user:
		return ErrNotOwned
	}
	return nil
}

// Close stops the cache-invalidation subscription.
func (h *Handler) Close() {
	if h.stopSub != nil {
		_ = h.stopSub()
	}
}

// Handle commits a generated turn, then emits its completed event.
func (h *Handler) Handle(msg *message.Message) ([]*message.Message, error) {
	appendTurn := h.appender.Append
	if ex, ok := h.appender.(Expecter); ok {
		a := ex.Expect()
		defer a.Cancel()
		appendTurn = a.Append
	}
	g, err := pipeline.Decode[messages.Generation](msg)
	if err != nil {
		return nil, err
	}
	final, ok := g.Final()
	if len(g.ClientCalls) > 0 {
		// The turn ends with calls to the client's own tools: its answer.
		final, ok = messages.Message{Role: messages.RoleAssistant, ToolCalls: g.ClientCalls}, true
	}
	if !ok {
		return nil, pipeline.Permanent(errors.New("generated event without an answer"))
	}
	c := messages.Completed{
		SchemaVersion:  messages.SchemaVersion,
		RequestID:      g.RequestID,
		ConversationID: g.ConversationID,
		User:           g.User,
		KeyID:          g.KeyID,
		Endpoint:       g.Endpoint,
		Model:          g.ResolvedModel,
		Provider:       g.Provider,
		Message:        final,
		Steps:          g.Steps,
		ToolVerdicts:   g.ToolVerdicts,
		Guard:          g.Guard,
		Usage:          g.Usage,
		CostUSD:        g.CostUSD,
		FinishReason:   g.FinishReason,
		Logprobs:       g.Logprobs,
		Cache:          g.CacheUse,
		CreatedAt:      g.CreatedAt,
	}
	if c.Model == "" {
		c.Model = g.Model
	}
	rec, err := memory.CompletedTurn(g.Messages, c)
	if err != nil {
		return nil, err
	}
	if h.outcomes != nil {
		won, err := h.outcomes.Claim(msg.Context(), g.RequestID, messages.EventCompleted)
		if err != nil {
			return nil, err
		}
		if won != messages.EventCompleted {
			// Another stage ended the turn first (its deadline passed):
			// it is not stored.
			h.log.Info("turn already ended; not stored", "request_id", g.RequestID, "outcome", won)
			return nil, nil
		}
	}
	if err := appendTurn(msg.Context(), &rec); err != nil {
		if errors.Is(err, memory.ErrInvalidRecord) {
			return nil, pipeline.Permanent(err)
		}
		return nil, fmt.Errorf("store turn %s: %w", g.RequestID, err)
	}
	h.cache.Remove(g.ConversationID)
	c.CompletedAt, c.ChainSeq = time.Now().UTC(), rec.Seq
	out, err := pipeline.NewEvent(messages.EventCompleted, g.RequestID, 0, c)
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}

// HistoryRequest asks for a conversation's history.
type HistoryRequest struct {
	ConversationID string `json:"conversation_id"`
	// Model selects the tokenizer; Budget and Strategy override the
	// defaults; Raw returns the whole transcript unpruned.
	Model    string `json:"model,omitempty"`
	Budget   int    `json:"budget,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	Window   int    `json:"window,omitempty"`
	Raw      bool   `json:"raw,omitempty"`
	// User makes the request on behalf of a user: a conversation another
	// user owns is answered 404, exactly like one that does not exist
	// (history of an unknown conversation is empty; turns, delete and
	// owner want it to exist). Empty: the operator, who sees everything.
	User string `json:"user,omitempty"`
}

// ConversationsRequest lists the stored conversations, only User's when
// set.
type ConversationsRequest struct {
	User string `json:"user,omitempty"`
}

// HistoryReply carries the messages.
type HistoryReply struct {
	Messages []messages.Message `json:"messages"`
	Total    int                `json:"total"`
	Tokens   int                `json:"tokens"`
}

// History returns the (pruned) history of a conversation.
func (h *Handler) History(ctx context.Context, req HistoryRequest) (HistoryReply, error) {
	if err := h.authorize(ctx, req.ConversationID, req.User, false); err != nil {
		return HistoryReply{}, err
	}
	all, ok := h.cache.Get(req.ConversationID)
	if !ok {
		var err error
		all, err = h.store.History(ctx, req.ConversationID)
		if err != nil {
			return HistoryReply{}, err
		}
		h.cache.Add(req.ConversationID, all)
	}
	counter := h.counter(req.Model)
	if req.Raw {
		return HistoryReply{Messages: all, Total: len(all), Tokens: counter.CountMessages(all)}, nil
	}
	cfg := prune.Config{Strategy: h.cfg.Strategy, Budget: h.cfg.Budget, Window: h.cfg.Window}
	if req.Budget > 0 {
		cfg.Budget = req.Budget
	}
	if req.Strategy != "" {
		cfg.Strategy = prune.Strategy(req.Strategy)
	}
	if req.Window > 0 {
		cfg.Window = req.Window
	}
	out := prune.Prune(all, cfg, counter)
	return HistoryReply{Messages: out, Total: len(all), Tokens: counter.CountMessages(out)}, nil
}

func (h *Handler) endpoints(svc micro.Service) error {
	type handlerFn func(ctx context.Context, data []byte) (any, error)
	add := func(name, subject string, fn handlerFn) error {
		return svc.AddEndpoint(name, micro.HandlerFunc(func(r micro.Request) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			v, err := fn(ctx, r.Data())
			if err != nil {
				code := "500"
				if errors.Is(err, memory.ErrNotFound) {
					code = "404"
				} else if errors.Is(err, errBadRequest) {
					code = "400"
				}
				_ = r.Error(code, pipeline.Redact(err.Error()), nil)
				return
			}
			_ = r.RespondJSON(v)
		}), micro.WithEndpointSubject(subject))
	}
	return errors.Join(
		add("history", SubjectHistory, func(ctx context.Context, b []byte) (any, error) {
			var req HistoryRequest
			if err := decodeReq(b, &req); err != nil {
				return nil, err
			}
			return h.History(ctx, req)
		}),
		add("turns", SubjectTurns, func(ctx context.Context, b []byte) (any, error) {
			var req HistoryRequest
			if err := decodeReq(b, &req); err != nil {
				return nil, err
			}
			if err := h.authorize(ctx, req.ConversationID, req.User, true); err != nil {
				return nil, err
			}
			return h.store.Turns(ctx, req.ConversationID)
		}),
		add("owner", SubjectOwner, func(ctx context.Context, b []byte) (any, error) {
			var req HistoryRequest
			if err := decodeReq(b, &req); err != nil {
				return nil, err
			}
			if req.User == "" {
				return nil, fmt.Errorf("%w: user is required", errBadRequest)
			}
			if err := h.authorize(ctx, req.ConversationID, req.User, true); err != nil {
				return nil, err
			}
			return map[string]string{"conversation_id": req.ConversationID, "owner": req.User}, nil
		}),
		add("conversations", SubjectConversations, func(ctx context.Context, b []byte) (any, error) {
			var req ConversationsRequest
			if len(b) > 0 {
				if err := json.Unmarshal(b, &req); err != nil {
					return nil, fmt.Errorf("%w: %v", errBadRequest, err)
				}
			}
			all, err := h.store.Conversations(ctx)
			if err != nil || req.User == "" {
				return all, err
			}
			out := []memory.ConversationInfo{}
			for _, c := range all {
				if c.Owner == req.User {
					out = append(out, c)
				}
			}
			return out, nil
		}),
		add("delete", SubjectDelete, func(ctx context.Context, b []byte) (any, error) {
			var req HistoryRequest
			if err := decodeReq(b, &req); err != nil {
				return nil, err
			}
			if err := h.authorize(ctx, req.ConversationID, req.User, true); err != nil {
				return nil, err
			}
			if err := h.store.Delete(ctx, req.ConversationID); err != nil {
				return nil, err
			}
			h.Forget(req.ConversationID)
			return map[string]string{"deleted": req.ConversationID}, nil
		}),
		add("verify", SubjectVerify, func(ctx context.Context, _ []byte) (any, error) {
			return h.store.VerifyChain(ctx)
		}),
	)
}

var errBadRequest = errors.New("bad request")

func decodeReq(b []byte, v *HistoryRequest) error {
	if len(b) > 0 {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%w: %v", errBadRequest, err)
		}
	}
	if v.ConversationID == "" && v != nil {
		return fmt.Errorf("%w: conversation_id is required", errBadRequest)
	}
	return nil
}

// topLevelString reads the string field key of a JSON object, reading
// only as far as the field: a completed event's conversation id comes
// before its answer and steps, which every replica would otherwise parse
// for every turn.
func topLevelString(data []byte, key string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		if k, _ := t.(string); k == key {
			var v string
			return v, dec.Decode(&v) == nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}
