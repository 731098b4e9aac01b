package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/internal/quota"
	"github.com/agentbus/agentbus/internal/spend"
	"github.com/agentbus/agentbus/internal/stage/llm"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/agentbus/agentbus/pipeline/pipelinetest"
)

// The llm stage's unit tests: the handler is built with in-memory fakes of
// its Deps (a scripted provider, an in-memory step store) and called
// directly on messages built the way the runtime delivers them. No NATS.

const rid = "req-llm-1"

// answerFunc scripts one model call.
type answerFunc func(ctx context.Context, req provider.Request, onDelta func(string)) (provider.Response, error)

// fakeProvider answers with its script and records every request.
type fakeProvider struct {
	answer answerFunc
	mu     sync.Mutex
	reqs   []provider.Request
}

func (p *fakeProvider) Name() string { return "fake" }

func (p *fakeProvider) Complete(ctx context.Context, req provider.Request, onDelta func(string)) (provider.Response, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	return p.answer(ctx, req, onDelta)
}

func (p *fakeProvider) calls() []provider.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

var usage = messages.Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15}

// text answers with content.
func text(content string) answerFunc {
	return func(context.Context, provider.Request, func(string)) (provider.Response, error) {
		return provider.Response{Message: messages.Message{Role: messages.RoleAssistant, Content: content},
			Usage: usage, Model: "fake-model-2025", FinishReason: "stop", Provider: "fake"}, nil
	}
}

// toolCall answers with one call of tool.
func toolCall(id, tool, args string) answerFunc {
	return func(context.Context, provider.Request, func(string)) (provider.Response, error) {
		return provider.Response{Message: messages.Message{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{
			{ID: id, Type: "function", Function: messages.FunctionCall{Name: tool, Arguments: args}}}},
			Usage: usage, Model: "fake-model-2025", FinishReason: "tool_calls", Provider: "fake"}, nil
	}
}

// fails answers with err.
func fails(err error) answerFunc {
	return func(context.Context, provider.Request, func(string)) (provider.Response, error) {
		return provider.Response{}, err
	}
}

// notCalled fails the test when the model is called.
func notCalled(t *testing.T) answerFunc {
	return func(context.Context, provider.Request, func(string)) (provider.Response, error) {
		t.Error("the provider was called")
		return provider.Response{}, errors.New("unexpected call")
	}
}

func newLLM(t *testing.T, cfg llm.Config, d llm.Deps) *llm.Handler {
	t.Helper()
	h, err := llm.New(cfg, d)
	if err != nil {
		t.Fatalf("llm.New: %v", err)
	}
	return h
}

// admitted is the admitted turn of request rid.
func admitted() messages.Admitted {
	return messages.Admitted{
		Turn: messages.Turn{SchemaVersion: messages.SchemaVersion, RequestID: rid, ConversationID: "conv-1", User: "alice", Endpoint: "chat.completions",
			Messages:  []messages.Message{{Role: messages.RoleUser, Content: "What is 6*7?"}},
			CreatedAt: time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC)},
		Guard: messages.Verdict{Action: "allow", EstimatedTokens: 7},
	}
}

// tooled is the turn after round's tool calls ran (toolexec's event).
func tooled(round int) messages.Generation {
	g := messages.Generation{Admitted: admitted(), Round: round, Usage: usage, Provider: "fake", ResolvedModel: "fake-model-2025"}
	g.Params.ToolChoice = &messages.ToolChoice{Mode: messages.ToolChoiceRequired}
	g.Steps = []messages.Message{
		{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{{ID: "call-1", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expr":"6*7"}`}}}},
		{Role: messages.RoleTool, ToolCallID: "call-1", Name: "calculator", Content: "42"},
	}
	return g
}

// deliver returns the event as the runtime hands it to a handler: what
// the publishing stage sent (pipeline.NewEvent: payload, deterministic id,
// event and correlation headers, subject), plus what the consumer adds on
// delivery (pipeline's toMessage: the subject it was stored on, the
// delivery count, the stream sequence, the storage time) and the handler's
// context, which the returned cancel ends.
func deliver(t *testing.T, event string, round int, payload any) (*message.Message, context.CancelFunc) {
	t.Helper()
	return deliverFor(t, rid, event, round, payload)
}

// deliverFor is deliver for another request than rid.
func deliverFor(t *testing.T, requestID, event string, round int, payload any) (*message.Message, context.CancelFunc) {
	t.Helper()
	m := pipelinetest.Deliver(t, event, requestID, round, payload)
	ctx, cancel := context.WithCancel(m.Context())
	m.SetContext(ctx)
	return m, cancel
}

// redeliver is m delivered again (JetStream's next delivery of it).
func redeliver(t *testing.T, m *message.Message) *message.Message {
	t.Helper()
	return pipelinetest.Redeliver(t, m)
}

// one returns the single event a handler produced, checking its routing.
func one(t *testing.T, out []*message.Message, err error, event string, round int) *message.Message {
	t.Helper()
	return pipelinetest.One(t, out, err, event, rid, round)
}

func decode[T any](t *testing.T, m *message.Message) T {
	t.Helper()
	return pipelinetest.Decode[T](t, m)
}

// fakeSubscriber captures the cancellation subscription.
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

func (s *fakeSubscriber) deliver(subject string) {
	s.mu.Lock()
	cb := s.cb
	s.mu.Unlock()
	cb(subject, nil)
}

func TestNew(t *testing.T) {
	p := &fakeProvider{answer: text("hi")}
	cases := []struct {
		name string
		cfg  llm.Config
		deps func(t *testing.T) llm.Deps
		ok   bool
	}{
		{name: "provider and step store", deps: func(t *testing.T) llm.Deps { return llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t)} }, ok: true},
		{name: "no provider", deps: func(t *testing.T) llm.Deps { return llm.Deps{Steps: pipelinetest.NewSteps(t)} }},
		{name: "no step store", deps: func(*testing.T) llm.Deps { return llm.Deps{Provider: p} }},
		{name: "no deps at all", deps: func(*testing.T) llm.Deps { return llm.Deps{} }},
		{name: "max rounds above 64", cfg: llm.Config{MaxRounds: 65},
			deps: func(t *testing.T) llm.Deps { return llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t)} }},
		{name: "result TTL below a minute", cfg: llm.Config{ResultTTL: time.Second},
			deps: func(t *testing.T) llm.Deps { return llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t)} }},
		{name: "negative handler timeout", cfg: llm.Config{HandlerTimeout: -1},
			deps: func(t *testing.T) llm.Deps { return llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t)} }},
		{name: "cancellation subscription fails", deps: func(t *testing.T) llm.Deps {
			return llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t), Cancels: &fakeSubscriber{err: errors.New("permissions violation")}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := llm.New(tc.cfg, tc.deps(t))
			if !tc.ok {
				if err == nil {
					t.Fatal("New succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			st := h.Stage()
			for _, ev := range []string{messages.EventAdmitted, messages.EventTooled} {
				if st.Handlers[ev] == nil {
					t.Errorf("no handler for %s", ev)
				}
			}
			if len(st.Handlers) != 2 {
				t.Errorf("%d handlers, want 2", len(st.Handlers))
			}
			if st.HandlerTimeout != llm.DefaultHandlerTimeout {
				t.Errorf("handler timeout = %s, want the default %s", st.HandlerTimeout, llm.DefaultHandlerTimeout)
			}
		})
	}
}

func TestHandleRoutesTheAnswer(t *testing.T) {
	cases := []struct {
		name      string
		event     string // admitted or tooled
		answer    answerFunc
		wantEvent string
		wantRound int
		check     func(t *testing.T, req provider.Request, g messages.Generation)
	}{
		{
			name: "text answer is generated", event: messages.EventAdmitted, answer: text("42"),
			wantEvent: messages.EventGenerated, wantRound: 0,
			check: func(t *testing.T, req provider.Request, g messages.Generation) {
				final, _ := g.Final()
				if len(g.Steps) != 1 || final.Content != "42" {
					t.Errorf("steps = %+v, want the answer only", g.Steps)
				}
				if g.FinishReason != "stop" || g.Usage != usage {
					t.Errorf("finish reason, usage = %q, %+v", g.FinishReason, g.Usage)
				}
				// The context: system prompt, then the turn's messages.
				if len(req.Messages) != 2 || req.Messages[0].Role != messages.RoleSystem || req.Messages[1].Content != "What is 6*7?" {
					t.Errorf("request messages = %+v", req.Messages)
				}
			},
		},
		{
			name: "tool call answer goes to toolexec", event: messages.EventAdmitted, answer: toolCall("call-1", "calculator", `{"expr":"6*7"}`),
			wantEvent: messages.EventToolCalls, wantRound: 0,
			check: func(t *testing.T, _ provider.Request, g messages.Generation) {
				final, _ := g.Final()
				if len(final.ToolCalls) != 1 || final.ToolCalls[0].Function.Name != "calculator" || final.ToolCalls[0].ID != "call-1" {
					t.Errorf("last step = %+v, want the calculator call", final)
				}
				if g.FinishReason != "tool_calls" {
					t.Errorf("finish reason = %q, want tool_calls", g.FinishReason)
				}
			},
		},
		{
			name: "answer after tool results is the next round", event: messages.EventTooled, answer: text("6*7 is 42"),
			wantEvent: messages.EventGenerated, wantRound: 1,
			check: func(t *testing.T, req provider.Request, g messages.Generation) {
				if len(g.Steps) != 3 || g.Steps[2].Content != "6*7 is 42" || g.Steps[1].Role != messages.RoleTool {
					t.Errorf("steps = %+v, want call, result, answer", g.Steps)
				}
				if want := usage.Add(usage); g.Usage != want {
					t.Errorf("usage = %+v, want both calls' %+v", g.Usage, want)
				}
				// The model sees the tool loop so far, and chooses freely
				// once the tools ran.
				if len(req.Messages) != 4 || req.Messages[3].ToolCallID != "call-1" {
					t.Errorf("request messages = %+v, want system, user, call, result", req.Messages)
				}
				if req.Params.ToolChoice != nil {
					t.Errorf("tool_choice = %+v after the tools ran, want none", req.Params.ToolChoice)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProvider{answer: tc.answer}
			steps := pipelinetest.NewSteps(t)
			tools := []provider.ToolSpec{{Name: "calculator", Parameters: json.RawMessage(`{"type":"object"}`)}}
			h := newLLM(t, llm.Config{DefaultModel: "fake-model", SystemPrompt: "Be brief."}, llm.Deps{Provider: p, Steps: steps, Tools: tools})
			var in *message.Message
			if tc.event == messages.EventAdmitted {
				in, _ = deliver(t, tc.event, 0, admitted())
			} else {
				in, _ = deliver(t, tc.event, 0, tooled(0))
			}
			out, err := h.Stage().Handlers[tc.event](in)
			g := decode[messages.Generation](t, one(t, out, err, tc.wantEvent, tc.wantRound))
			reqs := p.calls()
			if len(reqs) != 1 {
				t.Fatalf("provider called %d times, want 1", len(reqs))
			}
			if reqs[0].Model != "fake-model" || reqs[0].User != "alice" || len(reqs[0].Tools) != 1 {
				t.Errorf("request model, user, tools = %q, %q, %v", reqs[0].Model, reqs[0].User, reqs[0].Tools)
			}
			if g.Round != tc.wantRound || g.RequestID != rid || g.ConversationID != "conv-1" || g.User != "alice" {
				t.Errorf("round, ids = %d, %q %q %q", g.Round, g.RequestID, g.ConversationID, g.User)
			}
			if g.Provider != "fake" || g.ResolvedModel != "fake-model-2025" {
				t.Errorf("provider, resolved model = %q, %q", g.Provider, g.ResolvedModel)
			}
			if g.Guard.Action != "allow" || len(g.Messages) != 1 {
				t.Errorf("the turn's input and guard verdict were not carried: %+v %+v", g.Messages, g.Guard)
			}
			if key := rid + "." + strconv.Itoa(tc.wantRound); !steps.Recorded(key) {
				t.Errorf("step %s not recorded before the event was returned", key)
			}
			tc.check(t, reqs[0], g)
		})
	}
}

// TestHandleReusesRecordedStep: a step whose result is recorded (another
// delivery of the message ran it, on this replica or another) is answered
// from the record: the provider is not called again and the event is the
// same, with the same deterministic id.
func TestHandleReusesRecordedStep(t *testing.T) {
	cases := []struct {
		name      string
		answer    answerFunc
		wantEvent string
	}{
		{name: "text answer", answer: text("42"), wantEvent: messages.EventGenerated},
		{name: "tool calls", answer: toolCall("call-9", "calculator", `{}`), wantEvent: messages.EventToolCalls},
		{name: "recorded failure", answer: fails(&provider.FailoverError{Errors: []provider.ProviderError{{Provider: "fake", Err: provider.ErrUnavailable}}}),
			wantEvent: messages.EventFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			steps := pipelinetest.NewSteps(t)
			first := newLLM(t, llm.Config{}, llm.Deps{Provider: &fakeProvider{answer: tc.answer}, Steps: steps})
			in, _ := deliver(t, messages.EventAdmitted, 0, admitted())
			out1, err := first.Handle(in)
			m1 := one(t, out1, err, tc.wantEvent, 0)

			// The redelivery reaches a replica whose provider must not be
			// called: the step store already has the result.
			again := &fakeProvider{answer: notCalled(t)}
			second := newLLM(t, llm.Config{}, llm.Deps{Provider: again, Steps: steps})
			out2, err := second.Handle(redeliver(t, in))
			m2 := one(t, out2, err, tc.wantEvent, 0)
			if n := len(again.calls()); n != 0 {
				t.Errorf("provider called %d times on redelivery, want 0", n)
			}
			if m1.UUID != m2.UUID {
				t.Errorf("message ids differ: %q then %q", m1.UUID, m2.UUID)
			}
			if tc.wantEvent != messages.EventFailed && string(m1.Payload) != string(m2.Payload) {
				// (A failed event carries the time it was built.)
				t.Errorf("redelivery published\n%s\nthe first delivery\n%s", m2.Payload, m1.Payload)
			}
			if begins, puts, _ := steps.Counts(); begins != 2 || puts != 1 {
				t.Errorf("step store begins, puts = %d, %d; want 2, 1", begins, puts)
			}
		})
	}
}

// TestHandleProviderErrors: a provider error ends the turn with a failed
// event that says why (what provider.Classify says), recorded like an
// answer: the handler itself succeeds, so the message is acked and nothing
// is dead-lettered or retried.
func TestHandleProviderErrors(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		wantCode   string
		wantStatus int
		wantRetry  int64
		wantParam  string
	}{
		{name: "all providers down", err: &provider.FailoverError{RetryAfter: 3 * time.Second,
			Errors: []provider.ProviderError{{Provider: "a", Err: provider.ErrUnavailable}, {Provider: "b", Err: provider.ErrRateLimited}}},
			wantCode: messages.CodeProviderUnavailable, wantStatus: http.StatusServiceUnavailable, wantRetry: 3000},
		{name: "all providers rate limited", err: &provider.FailoverError{RetryAfter: time.Second,
			Errors: []provider.ProviderError{{Provider: "a", Err: provider.ErrRateLimited}}},
			wantCode: messages.CodeRateLimited, wantStatus: http.StatusTooManyRequests, wantRetry: 1000},
		{name: "rate limited", err: fmt.Errorf("fake: %w", provider.ErrRateLimited),
			wantCode: messages.CodeRateLimited, wantStatus: http.StatusTooManyRequests},
		{name: "context too long", err: fmt.Errorf("fake: %w", provider.ErrContextLength),
			wantCode: messages.CodeContextLength, wantStatus: http.StatusBadRequest},
		{name: "unknown model", err: &provider.ModelNotFoundError{Model: "gpt-9"},
			wantCode: messages.CodeModelNotFound, wantStatus: http.StatusNotFound, wantParam: "model"},
		{name: "unsupported parameter", err: &provider.UnsupportedError{Provider: "fake", Param: "response_format", Reason: "response_format is not supported"},
			wantCode: messages.CodeUnsupportedParameter, wantStatus: http.StatusBadRequest, wantParam: "response_format"},
		{name: "provider timeout", err: fmt.Errorf("fake: %w", context.DeadlineExceeded),
			wantCode: messages.CodeTimeout, wantStatus: http.StatusGatewayTimeout},
		{name: "anything else", err: errors.New("fake: connection reset by https://internal.example/v1"),
			wantCode: messages.CodeProviderError, wantStatus: http.StatusBadGateway},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			steps := pipelinetest.NewSteps(t)
			h := newLLM(t, llm.Config{}, llm.Deps{Provider: &fakeProvider{answer: fails(tc.err)}, Steps: steps})
			in, _ := deliver(t, messages.EventAdmitted, 0, admitted())
			out, err := h.Stage().Handlers[messages.EventAdmitted](in)
			f := decode[messages.Failed](t, one(t, out, err, messages.EventFailed, 0))
			if f.Code != tc.wantCode || f.Status != tc.wantStatus {
				t.Errorf("code, status = %q, %d; want %q, %d", f.Code, f.Status, tc.wantCode, tc.wantStatus)
			}
			if f.RetryAfterMS != tc.wantRetry || f.Param != tc.wantParam {
				t.Errorf("retry_after_ms, param = %d, %q; want %d, %q", f.RetryAfterMS, f.Param, tc.wantRetry, tc.wantParam)
			}
			if f.Stage != llm.Stage || f.RequestID != rid || f.User != "alice" || f.Reason == "" {
				t.Errorf("stage, request, user, reason = %q, %q, %q, %q", f.Stage, f.RequestID, f.User, f.Reason)
			}
			if want := provider.ClientMessage(tc.err); f.Reason != want {
				t.Errorf("reason = %q, want the client message %q", f.Reason, want)
			}
			if !steps.Recorded(rid + ".0") {
				t.Error("the failure was not recorded: a redelivery would call the provider again")
			}
		})
	}
}

// TestHandleRetryableErrors: what a redelivery may fix is returned as the
// handler's error (the message is NAKed), never as a failed turn and never
// as a permanent (dead-letter) error; the provider is not called blind and
// nothing is recorded.
func TestHandleRetryableErrors(t *testing.T) {
	kvDown := errors.New("nats: no responders available for request")
	cases := []struct {
		name string
		// setup returns the deps and the message; it may hold steps.
		setup   func(t *testing.T, steps *pipelinetest.Steps) (llm.Deps, *message.Message)
		wantIs  error // the handler's error must wrap it
		calls   int   // provider calls expected
		claimed bool  // the step was claimed and must have been released
	}{
		{
			name: "step store unreachable",
			setup: func(t *testing.T, steps *pipelinetest.Steps) (llm.Deps, *message.Message) {
				steps.BeginErr = kvDown
				in, _ := deliver(t, messages.EventAdmitted, 0, admitted())
				return llm.Deps{Provider: &fakeProvider{answer: notCalled(t)}, Steps: steps}, in
			},
			wantIs: kvDown,
		},
		{
			name: "step running on another replica",
			setup: func(t *testing.T, steps *pipelinetest.Steps) (llm.Deps, *message.Message) {
				t.Cleanup(steps.Hold(rid + ".0"))
				in, _ := deliver(t, messages.EventAdmitted, 0, admitted())
				return llm.Deps{Provider: &fakeProvider{answer: notCalled(t)}, Steps: steps}, in
			},
			wantIs: pipeline.ErrStepBusy,
		},
		{
			name: "shutdown during the model call",
			setup: func(t *testing.T, steps *pipelinetest.Steps) (llm.Deps, *message.Message) {
				in, cancel := deliver(t, messages.EventAdmitted, 0, admitted())
				p := &fakeProvider{answer: func(ctx context.Context, _ provider.Request, _ func(string)) (provider.Response, error) {
					cancel() // the runtime drains: the handler's context ends
					<-ctx.Done()
					return provider.Response{}, fmt.Errorf("fake: %w", ctx.Err())
				}}
				return llm.Deps{Provider: p, Steps: steps}, in
			},
			wantIs: context.Canceled, calls: 1, claimed: true,
		},
		{
			name: "history unreachable",
			setup: func(t *testing.T, steps *pipelinetest.Steps) (llm.Deps, *message.Message) {
				a := admitted()
				a.UseHistory = true
				in, _ := deliver(t, messages.EventAdmitted, 0, a)
				return llm.Deps{Provider: &fakeProvider{answer: notCalled(t)}, Steps: steps, History: fakeHistory{err: kvDown}}, in
			},
			wantIs: kvDown, claimed: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			steps := pipelinetest.NewSteps(t)
			d, in := tc.setup(t, steps)
			h := newLLM(t, llm.Config{}, d)
			out, err := h.Handle(in)
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("error = %v, want one wrapping %v", err, tc.wantIs)
			}
			if errors.Is(err, pipeline.ErrPermanent) {
				t.Errorf("error %v is permanent: the message would be dead-lettered", err)
			}
			if len(out) != 0 {
				t.Errorf("produced %d events, want none", len(out))
			}
			if n := len(d.Provider.(*fakeProvider).calls()); n != tc.calls {
				t.Errorf("provider called %d times, want %d", n, tc.calls)
			}
			if steps.Recorded(rid + ".0") {
				t.Error("a result was recorded: the redelivery would not run the step")
			}
			if _, _, releases := steps.Counts(); (releases == 1) != tc.claimed {
				t.Errorf("step released %d times; claimed: %v", releases, tc.claimed)
			}
		})
	}
}

type fakeHistory struct {
	msgs []messages.Message
	err  error
}

func (f fakeHistory) History(context.Context, string, string, string) ([]messages.Message, error) {
	return f.msgs, f.err
}

// countingHistory counts its reads.
type countingHistory struct {
	msgs  []messages.Message
	reads atomic.Int64
}

func (c *countingHistory) History(context.Context, string, string, string) ([]messages.Message, error) {
	c.reads.Add(1)
	return c.msgs, nil
}

type fakeQuota struct{ err error }

func (q fakeQuota) Admit(context.Context, string, string) error            { return q.err }
func (q fakeQuota) AddTokens(context.Context, string, string, int64) error { return nil }
func (q fakeQuota) Degraded() bool                                         { return false }

// TestHandleEndsTheTurn: turns the llm stage refuses end with a failed
// event without a model call.
func TestHandleEndsTheTurn(t *testing.T) {
	cases := []struct {
		name       string
		cfg        llm.Config
		deps       llm.Deps
		event      string
		payload    any
		wantCode   string
		wantStatus int
		wantParam  string
		wantRetry  int64
	}{
		{name: "too many tool rounds", cfg: llm.Config{MaxRounds: 2}, event: messages.EventTooled, payload: tooled(1),
			wantCode: messages.CodeMaxToolRounds, wantStatus: http.StatusUnprocessableEntity},
		{name: "conversation of another user", deps: llm.Deps{History: fakeHistory{err: fmt.Errorf("persist: %w", llm.ErrConversationNotFound)}},
			event: messages.EventAdmitted, payload: func() messages.Admitted { a := admitted(); a.UseHistory = true; return a }(),
			wantCode: messages.CodeConversationNotFound, wantStatus: http.StatusNotFound},
		{name: "client tool named like a server tool", deps: llm.Deps{Tools: []provider.ToolSpec{{Name: "calculator"}}},
			event: messages.EventAdmitted, payload: func() messages.Admitted {
				a := admitted()
				a.ClientTools = []messages.ToolDef{{Name: "calculator"}}
				return a
			}(),
			wantCode: messages.CodeInvalidValue, wantStatus: http.StatusBadRequest, wantParam: "tools"},
		{name: "daily quota exceeded", deps: llm.Deps{Quota: fakeQuota{err: &quota.ExceededError{Limit: quota.UserRequests, Key: "alice", Used: 10, Max: 10, RetryAfter: time.Hour}}},
			event: messages.EventAdmitted, payload: admitted(),
			wantCode: messages.CodeQuotaExceeded, wantStatus: http.StatusTooManyRequests, wantRetry: time.Hour.Milliseconds()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProvider{answer: notCalled(t)}
			tc.deps.Provider, tc.deps.Steps = p, pipelinetest.NewSteps(t)
			h := newLLM(t, tc.cfg, tc.deps)
			in, _ := deliver(t, tc.event, 0, tc.payload)
			out, err := h.Stage().Handlers[tc.event](in)
			f := decode[messages.Failed](t, one(t, out, err, messages.EventFailed, 0))
			if f.Code != tc.wantCode || f.Status != tc.wantStatus || f.Param != tc.wantParam || f.RetryAfterMS != tc.wantRetry {
				t.Errorf("code, status, param, retry = %q, %d, %q, %d; want %q, %d, %q, %d",
					f.Code, f.Status, f.Param, f.RetryAfterMS, tc.wantCode, tc.wantStatus, tc.wantParam, tc.wantRetry)
			}
		})
	}
}

// TestHandleHistory: a turn with use_history gets the stored conversation
// before its own messages; without a history source it is a permanent
// error (a configuration bug no retry fixes).
func TestHandleHistory(t *testing.T) {
	a := admitted()
	a.UseHistory = true
	t.Run("prepended", func(t *testing.T) {
		p := &fakeProvider{answer: text("ok")}
		hist := []messages.Message{{Role: messages.RoleUser, Content: "earlier"}, {Role: messages.RoleAssistant, Content: "reply"}}
		h := newLLM(t, llm.Config{}, llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t), History: fakeHistory{msgs: hist}})
		in, _ := deliver(t, messages.EventAdmitted, 0, a)
		out, err := h.Handle(in)
		one(t, out, err, messages.EventGenerated, 0)
		var got []string
		for _, m := range p.calls()[0].Messages {
			got = append(got, m.Content)
		}
		if want := []string{"earlier", "reply", "What is 6*7?"}; !slices.Equal(got, want) {
			t.Errorf("context = %q, want %q", got, want)
		}
	})
	t.Run("read once per turn", func(t *testing.T) {
		// Round 0 calls a tool, round 1 answers: the history source is
		// asked once, and both model calls get the same history.
		hist := &countingHistory{msgs: []messages.Message{{Role: messages.RoleUser, Content: "earlier"}}}
		p := &fakeProvider{}
		p.answer = func(ctx context.Context, req provider.Request, d func(string)) (provider.Response, error) {
			if len(p.calls()) == 1 {
				return toolCall("call-1", "calculator", `{"expr":"6*7"}`)(ctx, req, d)
			}
			return text("42")(ctx, req, d)
		}
		h := newLLM(t, llm.Config{}, llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t), History: hist,
			Tools: []provider.ToolSpec{{Name: "calculator", Parameters: json.RawMessage(`{"type":"object"}`)}}})
		in, _ := deliver(t, messages.EventAdmitted, 0, a)
		out, err := h.Handle(in)
		one(t, out, err, messages.EventToolCalls, 0)
		g := tooled(0)
		g.UseHistory = true
		in, _ = deliver(t, messages.EventTooled, 0, g)
		out, err = h.Handle(in)
		one(t, out, err, messages.EventGenerated, 1)
		calls := p.calls()
		if n := hist.reads.Load(); n != 1 || len(calls) != 2 || calls[1].Messages[0].Content != "earlier" {
			t.Fatalf("history read %d times for %d model calls", n, len(calls))
		}
		// The next turn of the conversation reads it again.
		b := admitted()
		b.RequestID, b.UseHistory = "req-llm-2", true
		p.answer = text("again")
		in, _ = deliverFor(t, b.RequestID, messages.EventAdmitted, 0, b)
		out, err = h.Handle(in)
		if err != nil || len(out) != 1 || hist.reads.Load() != 2 {
			t.Fatalf("next turn: %v, %d reads", err, hist.reads.Load())
		}
	})
	t.Run("no history source", func(t *testing.T) {
		steps := pipelinetest.NewSteps(t)
		h := newLLM(t, llm.Config{}, llm.Deps{Provider: &fakeProvider{answer: notCalled(t)}, Steps: steps})
		in, _ := deliver(t, messages.EventAdmitted, 0, a)
		if _, err := h.Handle(in); !errors.Is(err, pipeline.ErrPermanent) {
			t.Fatalf("error = %v, want a permanent one", err)
		}
	})
}

// fakeDeltas records streaming deltas.
type fakeDeltas struct {
	mu     sync.Mutex
	subs   []string
	deltas []messages.Delta
}

func (d *fakeDeltas) Publish(subject string, data []byte) error {
	var dl messages.Delta
	if err := json.Unmarshal(data, &dl); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.subs = append(d.subs, subject)
	d.deltas = append(d.deltas, dl)
	return nil
}

func TestHandleStreamsDeltas(t *testing.T) {
	for _, tc := range []struct {
		name, streamTo, subject string
	}{
		{"to the request's subject", "", messages.StreamSubject(rid)},
		{"to the receiver the turn names", "ingest_a1", messages.StreamSubjectTo("ingest_a1", rid)},
		// Guard refuses such a turn; should one arrive, the token never
		// becomes part of a subject.
		{"an invalid receiver is ignored", "x.>", messages.StreamSubject(rid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProvider{answer: func(_ context.Context, _ provider.Request, onDelta func(string)) (provider.Response, error) {
				if onDelta == nil {
					return provider.Response{}, errors.New("a streaming turn was called without onDelta")
				}
				onDelta("4")
				onDelta("2")
				return text("42")(context.Background(), provider.Request{}, nil)
			}}
			d := &fakeDeltas{}
			h := newLLM(t, llm.Config{}, llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t), Deltas: d})
			a := admitted()
			a.Stream, a.StreamTo = true, tc.streamTo
			in, _ := deliver(t, messages.EventAdmitted, 0, a)
			out, err := h.Handle(in)
			g := decode[messages.Generation](t, one(t, out, err, messages.EventGenerated, 0))
			if final, _ := g.Final(); final.Content != "42" {
				t.Errorf("final answer = %q, want the whole answer on the bus", final.Content)
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if len(d.deltas) != 2 || d.deltas[0].Seq != 1 || d.deltas[0].Content != "4" || d.deltas[1].Seq != 2 || d.deltas[1].Content != "2" {
				t.Errorf("deltas = %+v, want 4 then 2", d.deltas)
			}
			for _, s := range d.subs {
				if s != tc.subject {
					t.Errorf("delta published on %q, want %q", s, tc.subject)
				}
			}
		})
	}
}

// TestCancel: a client that went away (messages.CancelSubject) aborts its
// turn's model call; the turn ends with client_cancelled.
func TestCancel(t *testing.T) {
	started := make(chan struct{})
	p := &fakeProvider{answer: func(ctx context.Context, _ provider.Request, _ func(string)) (provider.Response, error) {
		close(started)
		<-ctx.Done()
		return provider.Response{}, ctx.Err()
	}}
	sub := &fakeSubscriber{}
	h := newLLM(t, llm.Config{}, llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t), Cancels: sub})
	if sub.subject != messages.CancelSubject("*") {
		t.Fatalf("subscribed to %q, want %q", sub.subject, messages.CancelSubject("*"))
	}
	in, _ := deliver(t, messages.EventAdmitted, 0, admitted())
	type result struct {
		out []*message.Message
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := h.Handle(in)
		done <- result{out, err}
	}()
	<-started
	sub.deliver(messages.CancelSubject("another-request")) // not ours: nothing happens
	sub.deliver(messages.CancelSubject(rid))
	r := <-done
	f := decode[messages.Failed](t, one(t, r.out, r.err, messages.EventFailed, 0))
	if f.Code != messages.CodeClientCancelled || f.Status != 499 {
		t.Errorf("code, status = %q, %d; want %q, 499", f.Code, f.Status, messages.CodeClientCancelled)
	}
}

// TestHandleAnswerTooLarge: an answer too large to record fails the turn
// with payload_too_large, and a redelivery finds it so without calling
// the provider again.
func TestHandleAnswerTooLarge(t *testing.T) {
	steps := pipelinetest.NewSteps(t)
	steps.Limit = 64
	p := &fakeProvider{answer: text("an answer that does not fit the step store's tiny limit")}
	h := newLLM(t, llm.Config{}, llm.Deps{Provider: p, Steps: steps})
	in, _ := deliver(t, messages.EventAdmitted, 0, admitted())
	for i, m := range []*message.Message{in, redeliver(t, in)} {
		out, err := h.Handle(m)
		f := decode[messages.Failed](t, one(t, out, err, messages.EventFailed, 0))
		if f.Code != messages.CodePayloadTooLarge || f.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("delivery %d: code, status = %q, %d; want payload_too_large, 413", i+1, f.Code, f.Status)
		}
	}
	if n := len(p.calls()); n != 1 {
		t.Errorf("provider called %d times, want 1", n)
	}
}

func TestHandleUndecodable(t *testing.T) {
	h := newLLM(t, llm.Config{}, llm.Deps{Provider: &fakeProvider{answer: notCalled(t)}, Steps: pipelinetest.NewSteps(t)})
	in, _ := deliver(t, messages.EventAdmitted, 0, admitted())
	in.Payload = []byte(`{"request_id":`)
	if _, err := h.Handle(in); !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("error = %v, want a permanent one", err)
	}
}

// fakeCache is an in-memory response cache keyed by tenant and the last
// message.
type fakeCache struct {
	mu      sync.Mutex
	entries map[string]provider.Response
	puts    int
}

func (c *fakeCache) Key(tenant string, req provider.Request) string {
	return tenant + "|" + req.Model + "|" + req.Messages[len(req.Messages)-1].Content
}

func (c *fakeCache) Get(_ context.Context, key string) (provider.Response, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.entries[key]
	return r, ok
}

func (c *fakeCache) Put(_ context.Context, key string, resp provider.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = resp
	c.puts++
}

// fakeMetrics records model usage.
type fakeMetrics struct {
	mu    sync.Mutex
	usage []string
	cache []string
}

func (m *fakeMetrics) Usage(model, user string, in, out int, usd float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.usage = append(m.usage, fmt.Sprintf("%s/%s/%d/%d/%.6f", model, user, in, out, usd))
}

func (m *fakeMetrics) Cache(model, user, result string, _ int, _ float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cache = append(m.cache, result)
}

func (m *fakeMetrics) LimitRejected(string, string, string) {}

// TestHandleCostAndCache: the price table prices each call onto the turn
// (no ledger: nothing recorded, which needs NATS KV), and the response
// cache answers a repeated explicit-cache turn without a model call.
func TestHandleCostAndCache(t *testing.T) {
	prices := &spend.Prices{Models: map[string]spend.Price{"fake-model-2025": {InputPerMillion: 1, OutputPerMillion: 2}}}
	const want = (12*1 + 3*2) / 1e6 // usage: 12 prompt, 3 completion tokens
	p := &fakeProvider{answer: text("42")}
	c := &fakeCache{entries: map[string]provider.Response{}}
	m := &fakeMetrics{}
	h := newLLM(t, llm.Config{DefaultModel: "fake-model"}, llm.Deps{Provider: p, Steps: pipelinetest.NewSteps(t), Cache: c, Metrics: m,
		Spend: &llm.Spend{Prices: prices}})

	a := admitted()
	a.Cache = &messages.CacheRequest{Explicit: true}
	in, _ := deliver(t, messages.EventAdmitted, 0, a)
	out, err := h.Handle(in)
	g := decode[messages.Generation](t, one(t, out, err, messages.EventGenerated, 0))
	if diff := g.CostUSD - want; diff > 1e-12 || diff < -1e-12 {
		t.Errorf("cost = %v, want %v", g.CostUSD, want)
	}
	if g.CacheUse == nil || g.CacheUse.Misses != 1 || c.puts != 1 {
		t.Errorf("cache use, puts = %+v, %d; want one miss stored", g.CacheUse, c.puts)
	}
	if len(m.usage) != 1 || m.usage[0] != "fake-model/alice/12/3/0.000018" {
		t.Errorf("usage metrics = %q", m.usage)
	}

	// The same question in another turn is answered from the cache.
	a.RequestID = "req-llm-2"
	in2, _ := deliverFor(t, a.RequestID, messages.EventAdmitted, 0, a)
	out, err = h.Handle(in2)
	if err != nil || len(out) != 1 {
		t.Fatalf("second turn: %d events, %v", len(out), err)
	}
	g2 := decode[messages.Generation](t, out[0])
	if n := len(p.calls()); n != 1 {
		t.Errorf("provider called %d times, want 1 (the second answer is cached)", n)
	}
	if g2.CacheUse == nil || g2.CacheUse.Hits != 1 || g2.CostUSD != 0 || g2.CacheUse.SavedUSD <= 0 {
		t.Errorf("cache use, cost = %+v, %v; want a hit that cost nothing and saved the price", g2.CacheUse, g2.CostUSD)
	}
}

// fakeLedger is a spend ledger in memory.
type fakeLedger struct {
	mu       sync.Mutex
	checkErr error
	recorded []string
}

func (l *fakeLedger) Check(string) error { return l.checkErr }

func (l *fakeLedger) Record(_ context.Context, key, user, model string, u messages.Usage, usd float64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recorded = append(l.recorded, fmt.Sprintf("%s/%s/%s/%d/%.6f", key, user, model, u.TotalTokens, usd))
	return nil
}

// TestHandleBudget: a call is recorded in the ledger with its cost; a key
// over its daily budget gets 429 budget_exceeded without a model call; an
// unreadable ledger is retried, never a call unchecked.
func TestHandleBudget(t *testing.T) {
	prices := &spend.Prices{Models: map[string]spend.Price{"fake-model-2025": {InputPerMillion: 1, OutputPerMillion: 2}}}
	a := admitted()
	a.KeyID = "key1"

	t.Run("recorded", func(t *testing.T) {
		l := &fakeLedger{}
		h := newLLM(t, llm.Config{DefaultModel: "fake-model"}, llm.Deps{Provider: &fakeProvider{answer: text("42")}, Steps: pipelinetest.NewSteps(t),
			Spend: &llm.Spend{Prices: prices, Ledger: l}})
		in, _ := deliver(t, messages.EventAdmitted, 0, a)
		out, err := h.Handle(in)
		one(t, out, err, messages.EventGenerated, 0)
		if want := []string{"key1/alice/fake-model/15/0.000018"}; !slices.Equal(l.recorded, want) {
			t.Fatalf("ledger %q, want %q", l.recorded, want)
		}
	})
	t.Run("over budget", func(t *testing.T) {
		l := &fakeLedger{checkErr: &spend.BudgetError{Key: "key1", Spent: 5, Limit: 5, RetryAfter: time.Hour}}
		h := newLLM(t, llm.Config{DefaultModel: "fake-model"}, llm.Deps{Provider: &fakeProvider{answer: notCalled(t)}, Steps: pipelinetest.NewSteps(t),
			Spend: &llm.Spend{Prices: prices, Ledger: l}})
		in, _ := deliver(t, messages.EventAdmitted, 0, a)
		out, err := h.Handle(in)
		f := decode[messages.Failed](t, one(t, out, err, messages.EventFailed, 0))
		if f.Code != messages.CodeBudgetExceeded || f.Status != 429 || f.RetryAfterMS != time.Hour.Milliseconds() || len(l.recorded) != 0 {
			t.Fatalf("failed %+v, recorded %q", f, l.recorded)
		}
	})
	t.Run("ledger unreadable", func(t *testing.T) {
		l := &fakeLedger{checkErr: errors.New("kv down")}
		h := newLLM(t, llm.Config{DefaultModel: "fake-model"}, llm.Deps{Provider: &fakeProvider{answer: notCalled(t)}, Steps: pipelinetest.NewSteps(t),
			Spend: &llm.Spend{Prices: prices, Ledger: l}})
		in, _ := deliver(t, messages.EventAdmitted, 0, a)
		if _, err := h.Handle(in); err == nil || errors.Is(err, pipeline.ErrPermanent) {
			t.Fatalf("error = %v, want a retryable one", err)
		}
	})
}
