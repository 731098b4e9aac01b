package persist_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/agentbus/agentbus/pipeline/pipelinetest"
)

// The persist stage's unit tests: the handler is built with a real SQLite
// conversation store in t.TempDir() (no NATS) and called directly on
// generated events built the way the runtime delivers them.

const conv = "conv-1"

// openStore opens a SQLite store in a temporary directory, closed at the
// end of the test.
func openStore(t *testing.T) *memory.SQLiteStore {
	t.Helper()
	s, err := memory.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "conversations.db"), memory.SQLiteConfig{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// appenders are the two ways a process commits turns: straight to the
// store (Deps.Appender nil), or through a group committer (what
// internal/app wires).
var appenders = []struct {
	name string
	new  func(t *testing.T, s memory.Store) persist.Appender
}{
	{name: "store", new: func(*testing.T, memory.Store) persist.Appender { return nil }},
	{name: "group committer", new: func(t *testing.T, s memory.Store) persist.Appender {
		gc := memory.NewGroupCommitter(s, 16)
		t.Cleanup(func() { _ = gc.Close() })
		return gc
	}},
}

func newPersist(t *testing.T, cfg persist.Config, d persist.Deps) *persist.Handler {
	t.Helper()
	h, err := persist.New(cfg, d)
	if err != nil {
		t.Fatalf("persist.New: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

var created = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// generated is the generated event of request rid: question asked, one
// round of tools, then answer.
func generated(rid, question, answer string) messages.Generation {
	return messages.Generation{
		Admitted: messages.Admitted{
			Turn: messages.Turn{SchemaVersion: messages.SchemaVersion, RequestID: rid, ConversationID: conv, User: "alice", KeyID: "key-1",
				Endpoint: "chat.completions", Model: "fake-model", CreatedAt: created,
				Messages: []messages.Message{{Role: messages.RoleUser, Content: question}}},
			Guard: messages.Verdict{Action: "allow", EstimatedTokens: 9},
		},
		Round: 1,
		Steps: []messages.Message{
			{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{{ID: "call-1", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expr":"6*7"}`}}}},
			{Role: messages.RoleTool, ToolCallID: "call-1", Name: "calculator", Content: "42"},
			{Role: messages.RoleAssistant, Content: answer},
		},
		ToolVerdicts:  []messages.ToolVerdict{{ToolCallID: "call-1", Tool: "calculator", Verdict: "allow", Rule: "tool.allowed", ResultVerdict: "allow"}},
		Usage:         messages.Usage{PromptTokens: 30, CompletionTokens: 8, TotalTokens: 38},
		CostUSD:       0.0012,
		Provider:      "fake",
		ResolvedModel: "fake-model-2025",
		FinishReason:  "stop",
	}
}

// deliver returns the llm stage's generated event as the runtime hands it
// to a handler: what the publisher sent (pipeline.NewEvent: payload,
// deterministic id, event and correlation headers, subject) plus what the
// consumer adds on delivery (pipeline's toMessage: the subject, delivery
// count, stream sequence, storage time) and the handler's context.
func deliver(t *testing.T, g messages.Generation, delivery int) *message.Message {
	t.Helper()
	m := pipelinetest.Deliver(t, messages.EventGenerated, g.RequestID, g.Round, g)
	for range delivery - 1 {
		m = pipelinetest.Redeliver(t, m)
	}
	return m
}

// completed runs the handler on g and returns the completed event, after
// checking its routing.
func completed(t *testing.T, h *persist.Handler, in *message.Message, rid string) (messages.Completed, *message.Message) {
	t.Helper()
	out, err := h.Stage().Handlers[messages.EventGenerated](in)
	m := pipelinetest.One(t, out, err, messages.EventCompleted, rid, 0)
	c := pipelinetest.Decode[messages.Completed](t, m)
	return c, m
}

func contents(msgs []messages.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Role + ":" + m.Content
		if len(m.ToolCalls) > 0 {
			out[i] += "[" + m.ToolCalls[0].Function.Name + "]"
		}
	}
	return out
}

// fakeSubscriber captures the completed-event subscription.
type fakeSubscriber struct {
	err     error
	mu      sync.Mutex
	subject string
	cb      func(subject string, data []byte)
}

func (s *fakeSubscriber) Subscribe(subject string, cb func(subject string, data []byte)) (func() error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subject, s.cb = subject, cb
	return func() error { return nil }, s.err
}

func TestNew(t *testing.T) {
	cases := []struct {
		name string
		cfg  persist.Config
		deps func(t *testing.T) persist.Deps
		ok   bool
	}{
		{name: "store", deps: func(t *testing.T) persist.Deps { return persist.Deps{Store: openStore(t)} }, ok: true},
		{name: "no store", deps: func(*testing.T) persist.Deps { return persist.Deps{} }},
		{name: "appender without a store", deps: func(t *testing.T) persist.Deps {
			return persist.Deps{Appender: memory.NewGroupCommitter(openStore(t), 1)}
		}},
		{name: "negative budget", cfg: persist.Config{Budget: -1}, deps: func(t *testing.T) persist.Deps { return persist.Deps{Store: openStore(t)} }},
		{name: "unknown strategy", cfg: persist.Config{Strategy: "random"}, deps: func(t *testing.T) persist.Deps { return persist.Deps{Store: openStore(t)} }},
		{name: "negative cache size", cfg: persist.Config{CacheSize: -1}, deps: func(t *testing.T) persist.Deps { return persist.Deps{Store: openStore(t)} }},
		{name: "subscription fails", deps: func(t *testing.T) persist.Deps {
			return persist.Deps{Store: openStore(t), Completed: &fakeSubscriber{err: errors.New("permissions violation")}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := persist.New(tc.cfg, tc.deps(t))
			if !tc.ok {
				if err == nil {
					h.Close()
					t.Fatal("New succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(h.Close)
			st := h.Stage()
			if len(st.Handlers) != 1 || st.Handlers[messages.EventGenerated] == nil {
				t.Errorf("handlers = %v, want generated only", st.Handlers)
			}
		})
	}
}

// TestHandleStoresTurn: a generated turn is committed (input, tool loop
// and answer, in order) and only then announced as completed, with its
// link in the hash chain.
func TestHandleStoresTurn(t *testing.T) {
	for _, a := range appenders {
		t.Run(a.name, func(t *testing.T) {
			store := openStore(t)
			h := newPersist(t, persist.Config{}, persist.Deps{Store: store, Appender: a.new(t, store)})
			ctx := context.Background()
			for i, g := range []messages.Generation{generated("req-1", "What is 6*7?", "42"), generated("req-2", "And 7*6?", "Also 42")} {
				c, _ := completed(t, h, deliver(t, g, 1), g.RequestID)
				if c.ChainSeq != int64(i+1) {
					t.Errorf("%s: chain_seq = %d, want %d", g.RequestID, c.ChainSeq, i+1)
				}
				if c.RequestID != g.RequestID || c.ConversationID != conv || c.User != "alice" || c.KeyID != "key-1" || c.Endpoint != "chat.completions" {
					t.Errorf("%s: ids = %q %q %q %q %q", g.RequestID, c.RequestID, c.ConversationID, c.User, c.KeyID, c.Endpoint)
				}
				final, _ := g.Final()
				if c.Message.Content != final.Content || c.Model != "fake-model-2025" || c.Provider != "fake" || c.Usage != g.Usage ||
					c.CostUSD != g.CostUSD || c.FinishReason != "stop" || len(c.Steps) != 3 || len(c.ToolVerdicts) != 1 || c.Guard.Action != "allow" {
					t.Errorf("%s: completed event = %+v", g.RequestID, c)
				}
				if !c.CreatedAt.Equal(created) || c.CompletedAt.IsZero() {
					t.Errorf("%s: created, completed at = %v, %v", g.RequestID, c.CreatedAt, c.CompletedAt)
				}
			}
			turns, err := store.Turns(ctx, conv)
			if err != nil {
				t.Fatal(err)
			}
			if len(turns) != 2 || turns[0].RequestID != "req-1" || turns[1].RequestID != "req-2" || turns[0].User != "alice" {
				t.Fatalf("stored turns = %+v, want req-1 then req-2", turns)
			}
			want := []string{"user:What is 6*7?", "assistant:[calculator]", "tool:42", "assistant:42"}
			if got := contents(turns[0].Messages); !slices.Equal(got, want) {
				t.Errorf("stored messages = %q, want %q", got, want)
			}
			var meta messages.Completed
			if err := json.Unmarshal(turns[0].Meta, &meta); err != nil || meta.Model != "fake-model-2025" || meta.Usage.TotalTokens != 38 {
				t.Errorf("stored meta = %s (%v), want the completed event", turns[0].Meta, err)
			}
		})
	}
}

// TestHandleRedelivered: a generated event delivered again (the completed
// event was not acked in time, or the process died after the commit) is
// stored once and announced with the same event: same id, same chain
// link. On the same replica or another.
func TestHandleRedelivered(t *testing.T) {
	for _, a := range appenders {
		t.Run(a.name, func(t *testing.T) {
			store := openStore(t)
			first := newPersist(t, persist.Config{}, persist.Deps{Store: store, Appender: a.new(t, store)})
			other := newPersist(t, persist.Config{}, persist.Deps{Store: store})
			g := generated("req-1", "What is 6*7?", "42")
			c1, m1 := completed(t, first, deliver(t, g, 1), g.RequestID)
			c2, m2 := completed(t, first, deliver(t, g, 2), g.RequestID)
			c3, m3 := completed(t, other, deliver(t, g, 3), g.RequestID)
			if m1.UUID != m2.UUID || m1.UUID != m3.UUID {
				t.Errorf("completed ids = %q, %q, %q; want one", m1.UUID, m2.UUID, m3.UUID)
			}
			if c1.ChainSeq != 1 || c2.ChainSeq != 1 || c3.ChainSeq != 1 {
				t.Errorf("chain_seq = %d, %d, %d; want 1 each time", c1.ChainSeq, c2.ChainSeq, c3.ChainSeq)
			}
			turns, err := store.Turns(context.Background(), conv)
			if err != nil {
				t.Fatal(err)
			}
			if len(turns) != 1 {
				t.Errorf("stored %d turns, want 1", len(turns))
			}
			hist, err := store.History(context.Background(), conv)
			if err != nil {
				t.Fatal(err)
			}
			if len(hist) != 4 {
				t.Errorf("history has %d messages, want 4 (stored once)", len(hist))
			}
		})
	}
}

// TestHistory: the history request returns the stored messages, pruned
// to the budget unless raw, on behalf of their owner only.
func TestHistory(t *testing.T) {
	store := openStore(t)
	h := newPersist(t, persist.Config{}, persist.Deps{Store: store})
	for _, g := range []messages.Generation{generated("req-1", "What is 6*7?", "42"), generated("req-2", "And 7*6?", "Also 42")} {
		completed(t, h, deliver(t, g, 1), g.RequestID)
	}
	all := []string{"user:What is 6*7?", "assistant:[calculator]", "tool:42", "assistant:42",
		"user:And 7*6?", "assistant:[calculator]", "tool:42", "assistant:Also 42"}
	cases := []struct {
		name    string
		req     persist.HistoryRequest
		want    []string // nil: check only that it is a suffix of all, shorter
		total   int
		wantErr error
	}{
		{name: "raw", req: persist.HistoryRequest{ConversationID: conv, Raw: true}, want: all, total: 8},
		{name: "pruned within the default budget", req: persist.HistoryRequest{ConversationID: conv, Model: "gpt-4o"}, want: all, total: 8},
		{name: "owner asks", req: persist.HistoryRequest{ConversationID: conv, User: "alice", Raw: true}, want: all, total: 8},
		{name: "window of the recent messages", req: persist.HistoryRequest{ConversationID: conv, Strategy: "window", Window: 4}, total: 8},
		{name: "another user's conversation", req: persist.HistoryRequest{ConversationID: conv, User: "mallory"}, wantErr: memory.ErrNotFound},
		{name: "unknown conversation", req: persist.HistoryRequest{ConversationID: "conv-none"}, want: []string{}, total: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := h.History(context.Background(), tc.req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				if len(rep.Messages) != 0 {
					t.Errorf("returned %d messages with the error", len(rep.Messages))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Total != tc.total {
				t.Errorf("total = %d, want %d", rep.Total, tc.total)
			}
			got := contents(rep.Messages)
			switch {
			case tc.want != nil:
				if !slices.Equal(got, tc.want) {
					t.Errorf("messages = %q, want %q", got, tc.want)
				}
			case len(got) == 0 || len(got) >= len(all) || !slices.Equal(got, all[len(all)-len(got):]):
				t.Errorf("messages = %q, want a shorter, most recent part of %q", got, all)
			}
			if len(rep.Messages) > 0 && rep.Tokens <= 0 {
				t.Errorf("tokens = %d for %d messages", rep.Tokens, len(rep.Messages))
			}
		})
	}
}

// TestHistoryInvalidation: the history is cached; the completed event of
// a turn another replica committed evicts the conversation.
func TestHistoryInvalidation(t *testing.T) {
	store := openStore(t)
	sub := &fakeSubscriber{}
	h := newPersist(t, persist.Config{}, persist.Deps{Store: store, Completed: sub})
	if sub.subject != messages.EventFilter(messages.EventCompleted) {
		t.Fatalf("subscribed to %q, want %q", sub.subject, messages.EventFilter(messages.EventCompleted))
	}
	ctx := context.Background()
	completed(t, h, deliver(t, generated("req-1", "q1", "a1"), 1), "req-1")
	history := func() int {
		t.Helper()
		rep, err := h.History(ctx, persist.HistoryRequest{ConversationID: conv, Raw: true})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Total
	}
	if n := history(); n != 4 {
		t.Fatalf("history has %d messages, want 4", n)
	}
	// Another replica commits the next turn of the conversation.
	rec, err := memory.CompletedTurn([]messages.Message{{Role: messages.RoleUser, Content: "q2"}},
		messages.Completed{RequestID: "req-2", ConversationID: conv, User: "alice", Steps: []messages.Message{{Role: messages.RoleAssistant, Content: "a2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Append(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if n := history(); n != 4 {
		t.Fatalf("history has %d messages before the completed event, want the cached 4", n)
	}
	b, _ := json.Marshal(messages.Completed{RequestID: "req-2", ConversationID: conv})
	sub.cb(messages.Subject(messages.EventCompleted, "req-2"), b)
	if n := history(); n != 6 {
		t.Errorf("history has %d messages after the completed event, want 6", n)
	}
}

// fakeOutcomes answers every claim with won (or err).
type fakeOutcomes struct {
	won string
	err error

	mu     sync.Mutex
	claims []string
}

func (o *fakeOutcomes) Claim(_ context.Context, rid, event string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.claims = append(o.claims, rid+":"+event)
	return o.won, o.err
}

// TestHandleOutcome: persist claims the turn's outcome before it commits:
// a turn another stage already ended (its deadline passed) is not stored;
// an unreachable outcome store is retried.
func TestHandleOutcome(t *testing.T) {
	cases := []struct {
		name      string
		outcomes  *fakeOutcomes
		wantOut   int
		wantErr   bool
		wantTurns int
	}{
		{name: "claim won", outcomes: &fakeOutcomes{won: messages.EventCompleted}, wantOut: 1, wantTurns: 1},
		{name: "turn already failed", outcomes: &fakeOutcomes{won: messages.EventFailed}},
		{name: "outcome store unreachable", outcomes: &fakeOutcomes{err: errors.New("kv: timeout")}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			h := newPersist(t, persist.Config{}, persist.Deps{Store: store, Outcomes: tc.outcomes})
			out, err := h.Handle(deliver(t, generated("req-1", "q", "a"), 1))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error: %v", err, tc.wantErr)
			}
			if errors.Is(err, pipeline.ErrPermanent) {
				t.Errorf("error %v is permanent: the turn would be dead-lettered", err)
			}
			if len(out) != tc.wantOut {
				t.Errorf("produced %d events, want %d", len(out), tc.wantOut)
			}
			if !slices.Equal(tc.outcomes.claims, []string{"req-1:" + messages.EventCompleted}) {
				t.Errorf("claims = %q, want req-1:completed", tc.outcomes.claims)
			}
			turns, err := store.Turns(context.Background(), conv)
			if err != nil {
				t.Fatal(err)
			}
			if len(turns) != tc.wantTurns {
				t.Errorf("stored %d turns, want %d", len(turns), tc.wantTurns)
			}
		})
	}
}

// TestHandleClientCalls: a turn that ends with calls to the client's own
// tools is stored with those calls as its answer.
func TestHandleClientCalls(t *testing.T) {
	store := openStore(t)
	h := newPersist(t, persist.Config{}, persist.Deps{Store: store})
	g := generated("req-1", "open my file", "")
	g.Steps = g.Steps[:2]
	g.ClientCalls = []messages.ToolCall{{ID: "call-2", Type: "function", Function: messages.FunctionCall{Name: "open_file", Arguments: `{"path":"a.txt"}`}}}
	g.FinishReason = "tool_calls"
	c, _ := completed(t, h, deliver(t, g, 1), "req-1")
	if c.Message.Role != messages.RoleAssistant || len(c.Message.ToolCalls) != 1 || c.Message.ToolCalls[0].Function.Name != "open_file" {
		t.Errorf("answer = %+v, want the client's call", c.Message)
	}
	if c.FinishReason != "tool_calls" {
		t.Errorf("finish reason = %q", c.FinishReason)
	}
}

// TestHandleErrors: a malformed event is permanent (dead-lettered); a
// store error is returned for a retry, never swallowed.
func TestHandleErrors(t *testing.T) {
	cases := []struct {
		name      string
		msg       func(t *testing.T) *message.Message
		closed    bool // the store is closed
		permanent bool
	}{
		{name: "undecodable event", permanent: true, msg: func(t *testing.T) *message.Message {
			m := deliver(t, generated("req-1", "q", "a"), 1)
			m.Payload = []byte(`{"request_id":`)
			return m
		}},
		{name: "generated event without an answer", permanent: true, msg: func(t *testing.T) *message.Message {
			g := generated("req-1", "q", "a")
			g.Steps = nil
			return deliver(t, g, 1)
		}},
		{name: "store unavailable", closed: true, msg: func(t *testing.T) *message.Message {
			return deliver(t, generated("req-1", "q", "a"), 1)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			h := newPersist(t, persist.Config{}, persist.Deps{Store: store})
			if tc.closed {
				if err := store.Close(); err != nil {
					t.Fatal(err)
				}
			}
			out, err := h.Handle(tc.msg(t))
			if err == nil {
				t.Fatalf("no error; produced %d events", len(out))
			}
			if got := errors.Is(err, pipeline.ErrPermanent); got != tc.permanent {
				t.Errorf("permanent = %v, want %v (%v)", got, tc.permanent, err)
			}
			if len(out) != 0 {
				t.Errorf("produced %d events with the error", len(out))
			}
		})
	}
}
