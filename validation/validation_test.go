package validation_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/validation"
)

func call(name, args string) messages.ToolCall {
	return messages.ToolCall{ID: "call_" + name, Type: "function", Function: messages.FunctionCall{Name: name, Arguments: args}}
}

func turn(conv string, i int, resp string, tools ...string) validation.Turn {
	t := validation.Turn{ConversationID: conv, RequestID: fmt.Sprintf("%s-r%d", conv, i), Index: i, Response: resp}
	for _, n := range tools {
		t.ToolCalls = append(t.ToolCalls, call(n, `{}`))
	}
	return t
}

func refused(conv string, i int, code string) validation.Turn {
	return validation.Turn{ConversationID: conv, RequestID: fmt.Sprintf("%s-r%d", conv, i), Index: i, Refused: true, Code: code, Reason: "no"}
}

// loc is the part of a violation the table tests compare.
type loc struct {
	Conv string
	Turn int
}

func locs(vs []validation.Violation) []loc {
	var out []loc
	for _, v := range vs {
		out = append(out, loc{v.ConversationID, v.Turn})
	}
	return out
}

func TestConstraints(t *testing.T) {
	conv3 := []validation.Turn{turn("a", 0, "hi"), turn("a", 1, "the answer is 391", "calc"), turn("a", 2, "bye")}
	tests := []struct {
		name  string
		c     validation.Constraint
		turns []validation.Turn
		want  []loc // nil: passes
	}{
		{"max_turns ok", validation.MaxTurns(3), conv3, nil},
		{"max_turns exceeded points at first excess", validation.MaxTurns(1), conv3, []loc{{"a", 1}}},
		{"max_turns zero", validation.MaxTurns(0), conv3[:1], []loc{{"a", 0}}},
		{"max_turns per conversation", validation.MaxTurns(1), []validation.Turn{turn("a", 0, ""), turn("b", 0, "")}, nil},
		{"require_tool_call ok", validation.RequireToolCall("calc"), conv3, nil},
		{"require_tool_call case-insensitive", validation.RequireToolCall("CALC"), conv3, nil},
		{"require_tool_call missing points at last turn", validation.RequireToolCall("search"), conv3, []loc{{"a", 2}}},
		{"require_tool_call on turn", validation.OnTurn(0, validation.RequireToolCall("calc")), conv3, []loc{{"a", 0}}},
		{"forbid_tool_call ok", validation.ForbidToolCall("exec"), conv3, nil},
		{"forbid_tool_call one per call, any case", validation.ForbidToolCall("exec"),
			[]validation.Turn{turn("a", 0, "", "Exec", "calc", "EXEC"), turn("a", 1, "", "exec")}, []loc{{"a", 0}, {"a", 0}, {"a", 1}}},
		{"max_tool_calls", validation.MaxToolCalls(1), []validation.Turn{turn("a", 0, "", "x"), turn("a", 1, "", "x", "y")}, []loc{{"a", 1}}},
		{"must_contain every turn", validation.ResponseMustContain("391"), conv3, []loc{{"a", 0}, {"a", 2}}},
		{"must_contain last turn", validation.LastTurn(validation.ResponseMustContain("bye")), conv3, nil},
		{"must_contain last turn fails", validation.LastTurn(validation.ResponseMustContain("391")), conv3, []loc{{"a", 2}}},
		{"must_contain on turn", validation.OnTurn(1, validation.ResponseMustContain("391")), conv3, nil},
		{"must_contain on missing turn passes", validation.OnTurn(7, validation.ResponseMustContain("391")), conv3, nil},
		{"must_contain is case-sensitive", validation.ResponseMustContain("HI"), conv3[:1], []loc{{"a", 0}}},
		{"must_contain refused", validation.ResponseMustContain("x"), []validation.Turn{refused("a", 0, messages.CodeInjectionDetected)}, []loc{{"a", 0}}},
		{"must_not_contain", validation.ResponseMustNotContain("391"), conv3, []loc{{"a", 1}}},
		{"must_not_contain refused passes", validation.ResponseMustNotContain("x"), []validation.Turn{refused("a", 0, "c")}, nil},
		{"max_length runes", validation.MaxResponseLength(2), []validation.Turn{turn("a", 0, "éé"), turn("a", 1, "ééé")}, []loc{{"a", 1}}},
		{"min_length", validation.MinResponseLength(3), []validation.Turn{turn("a", 0, "abc"), turn("a", 1, "ab"), refused("a", 2, "c")}, []loc{{"a", 1}, {"a", 2}}},
		{"min_length zero refused passes", validation.MinResponseLength(0), []validation.Turn{refused("a", 0, "c")}, nil},
		{"no_refusals", validation.NoRefusals(), []validation.Turn{turn("a", 0, "x"), refused("a", 1, "c")}, []loc{{"a", 1}}},
		{"custom", validation.Custom("no_bye", func(t validation.Turn) error {
			if strings.Contains(t.Response, "bye") {
				return errors.New("said bye")
			}
			return nil
		}), conv3, []loc{{"a", 2}}},
		{"custom conversation", validation.CustomConversation("grows", func(c []validation.Turn) error {
			for i := 1; i < len(c); i++ {
				if len(c[i].Response) < len(c[i-1].Response) {
					return fmt.Errorf("turn %d shorter than turn %d", i, i-1)
				}
			}
			return nil
		}), conv3, []loc{{"a", 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := validation.New().Add(tt.c).Validate(tt.turns)
			if got := locs(rep.Violations); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("violations at %v, want %v\n%s", got, tt.want, rep)
			}
			if rep.OK() != (tt.want == nil) {
				t.Fatalf("OK() = %v with %d violations", rep.OK(), len(rep.Violations))
			}
			for _, v := range rep.Violations {
				if v.Constraint != tt.c.Name() || v.Message == "" || v.RequestID == "" {
					t.Errorf("incomplete violation %+v (constraint %q)", v, tt.c.Name())
				}
				if !errors.Is(v, validation.ErrViolation) {
					t.Errorf("violation does not wrap ErrViolation")
				}
			}
		})
	}
}

func TestInvalidConstraintsNeverPass(t *testing.T) {
	tests := []struct {
		name string
		c    validation.Constraint
	}{
		{"negative max turns", validation.MaxTurns(-1)},
		{"empty tool", validation.RequireToolCall("")},
		{"empty forbidden tool", validation.ForbidToolCall("")},
		{"negative max tool calls", validation.MaxToolCalls(-2)},
		{"empty substring", validation.ResponseMustContain("")},
		{"empty forbidden substring", validation.ResponseMustNotContain("")},
		{"negative max length", validation.MaxResponseLength(-1)},
		{"negative min length", validation.MinResponseLength(-1)},
		{"nil custom", validation.Custom("x", nil)},
		{"unnamed custom conversation", validation.CustomConversation("", func([]validation.Turn) error { return nil })},
		{"scoped invalid", validation.LastTurn(validation.MaxTurns(-1))},
		{"nil constraint", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := validation.New().Add(tt.c)
			if err := v.Err(); !errors.Is(err, validation.ErrInvalidConstraint) {
				t.Fatalf("Err() = %v, want ErrInvalidConstraint", err)
			}
			rep := v.Validate([]validation.Turn{turn("a", 0, "fine")})
			if rep.OK() || rep.Violations[0].Constraint != validation.ConfigConstraint {
				t.Fatalf("misconfigured validator passed: %s", rep)
			}
		})
	}
	if err := validation.New().MaxTurns(3).ForbidToolCall("exec").Err(); err != nil {
		t.Fatalf("valid validator: %v", err)
	}
}

func TestStrictVersusCollectAll(t *testing.T) {
	turns := []validation.Turn{
		turn("b", 1, "exec said 42", "exec"),
		turn("a", 0, "fine"),
		turn("b", 0, "nothing"),
		turn("a", 1, "exec again", "exec"),
	}
	build := func() *validation.Validator {
		return validation.New().ResponseMustNotContain("exec").ForbidToolCall("exec").MaxTurns(1)
	}
	all := build().Validate(turns)
	// Conversation b first (first appearance), turn 1; then a, turn 1.
	want := []string{
		"b/1/response_must_not_contain(\"exec\")",
		"b/1/forbid_tool_call(exec)",
		"b/1/max_turns(1)",
		"a/1/response_must_not_contain(\"exec\")",
		"a/1/forbid_tool_call(exec)",
		"a/1/max_turns(1)",
	}
	var got []string
	for _, v := range all.Violations {
		got = append(got, fmt.Sprintf("%s/%d/%s", v.ConversationID, v.Turn, v.Constraint))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("collect-all order:\n got %q\nwant %q", got, want)
	}
	if all.Turns != 4 || all.Conversations != 2 {
		t.Fatalf("counts: %d turns %d conversations", all.Turns, all.Conversations)
	}
	strict := build().Strict().Validate(turns)
	if len(strict.Violations) != 1 || strict.Violations[0] != all.Violations[0] {
		t.Fatalf("strict = %v, want only %v", strict.Violations, all.Violations[0])
	}
	ok := build().Strict().Validate([]validation.Turn{turn("a", 0, "fine")})
	if !ok.OK() || ok.Err() != nil || !strings.HasPrefix(ok.String(), "ok: 1 turns in 1 conversations") {
		t.Fatalf("clean input: %s", ok)
	}
	if err := all.Err(); !errors.Is(err, validation.ErrViolation) || strings.Count(err.Error(), "\n") != 5 {
		t.Fatalf("Err() = %v", err)
	}
	if s := all.String(); !strings.HasPrefix(s, "6 violation(s) in 4 turns in 2 conversations\n") || !strings.Contains(s, `(request b-r1): forbidden tool "exec"`) {
		t.Fatalf("String() = %s", s)
	}
}

func TestFromEvents(t *testing.T) {
	c := messages.Completed{
		RequestID: "r1", ConversationID: "c1", User: "alice",
		Message: messages.Message{Role: messages.RoleAssistant, Content: "391"},
		Steps: []messages.Message{
			{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{call("calc", `{"x":"17*23"}`), call("search", `{}`)}},
			{Role: messages.RoleTool, ToolCallID: "call_calc", Content: "391"},
			{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{call("calc", `{}`)}},
			{Role: messages.RoleAssistant, Content: "391"},
		},
		Usage: messages.Usage{TotalTokens: 9},
	}
	got := validation.FromCompleted(c, 3)
	if got.Response != "391" || got.Index != 3 || got.User != "alice" || got.Refused || got.Usage.TotalTokens != 9 {
		t.Fatalf("FromCompleted = %+v", got)
	}
	var names []string
	for _, tc := range got.ToolCalls {
		names = append(names, tc.Function.Name)
	}
	if !reflect.DeepEqual(names, []string{"calc", "search", "calc"}) {
		t.Fatalf("tool calls %v", names)
	}
	r := validation.FromRejected(messages.Rejected{RequestID: "r2", ConversationID: "c1", Code: messages.CodeRateLimited, Reason: "slow down"}, 4)
	if !r.Refused || r.Code != messages.CodeRateLimited || r.Reason != "slow down" || r.Index != 4 {
		t.Fatalf("FromRejected = %+v", r)
	}
	f := validation.FromFailed(messages.Failed{RequestID: "r3", Code: messages.CodeToolBlocked, Steps: c.Steps[:1]}, 0)
	if !f.Refused || f.Code != messages.CodeToolBlocked || len(f.ToolCalls) != 2 {
		t.Fatalf("FromFailed = %+v", f)
	}
}

func TestRecorder(t *testing.T) {
	var r validation.Recorder // zero value usable
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				r.Record(validation.Turn{ConversationID: fmt.Sprintf("c%d", g%2)})
			}
		}()
	}
	wg.Wait()
	turns := r.Turns()
	if len(turns) != 100 {
		t.Fatalf("%d turns recorded", len(turns))
	}
	for _, id := range []string{"c0", "c1"} {
		conv := r.Conversation(id)
		if len(conv) != 50 {
			t.Fatalf("%s: %d turns", id, len(conv))
		}
		for i, tt := range conv {
			if tt.Index != i {
				t.Fatalf("%s turn %d has Index %d", id, i, tt.Index)
			}
		}
	}
	turns[0].ConversationID = "mutated"
	if r.Turns()[0].ConversationID == "mutated" {
		t.Fatal("Turns() returned the internal slice")
	}
	r.RecordCompleted(messages.Completed{ConversationID: "c0", Message: messages.Message{Content: "x"}})
	if c0 := r.Conversation("c0"); c0[len(c0)-1].Index != 50 {
		t.Fatalf("RecordCompleted index %d", c0[len(c0)-1].Index)
	}
	r.Reset()
	if len(r.Turns()) != 0 {
		t.Fatal("Reset kept turns")
	}
}

// fakeTB records failures instead of failing the real test.
type fakeTB struct {
	testing.TB
	errs []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, a ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, a...))
}

func TestAssertions(t *testing.T) {
	turns := []validation.Turn{turn("a", 0, "the answer is 391", "calc", "Calc"), turn("a", 1, "bye")}
	none := []validation.Turn{turn("a", 0, "hi")}
	tests := []struct {
		name string
		run  func(tb testing.TB) bool
		want bool
		msg  string // substring of the failure message
	}{
		{"called", func(tb testing.TB) bool { return validation.AssertToolCalled(tb, turns, "calc") }, true, ""},
		{"not called", func(tb testing.TB) bool { return validation.AssertToolCalled(tb, turns, "exec") }, false, `tool "exec" was not called`},
		{"count", func(tb testing.TB) bool { return validation.AssertToolCallCount(tb, turns, "CALC", 2) }, true, ""},
		{"count wrong", func(tb testing.TB) bool { return validation.AssertToolCallCount(tb, turns, "calc", 1) }, false, "called 2 time(s), want 1"},
		{"no calls", func(tb testing.TB) bool { return validation.AssertNoToolCalls(tb, none) }, true, ""},
		{"no calls violated", func(tb testing.TB) bool { return validation.AssertNoToolCalls(tb, turns) }, false, "calc,Calc"},
		{"contains", func(tb testing.TB) bool { return validation.AssertResponseContains(tb, turns[0], "391") }, true, ""},
		{"contains missing", func(tb testing.TB) bool { return validation.AssertResponseContains(tb, turns[1], "391") }, false, `"bye" does not contain "391"`},
		{"contains refused", func(tb testing.TB) bool {
			return validation.AssertResponseContains(tb, refused("a", 0, messages.CodeRateLimited), "x")
		}, false, "refused (rate_limit_exceeded"},
		{"valid", func(tb testing.TB) bool { return validation.AssertValid(tb, validation.New().MaxTurns(2), turns) }, true, ""},
		{"invalid", func(tb testing.TB) bool { return validation.AssertValid(tb, validation.New().MaxTurns(1), turns) }, false, "max_turns(1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTB{TB: t}
			if got := tt.run(f); got != tt.want {
				t.Fatalf("returned %v, want %v (errors %q)", got, tt.want, f.errs)
			}
			if tt.want != (len(f.errs) == 0) {
				t.Fatalf("errors %q with result %v", f.errs, tt.want)
			}
			if !tt.want && !strings.Contains(f.errs[0], tt.msg) {
				t.Fatalf("error %q does not mention %q", f.errs[0], tt.msg)
			}
		})
	}
}

// FuzzValidate checks Validate's invariants on arbitrary turns: it never
// panics, strict reports exactly the first collect-all violation, and every
// violation names a known conversation.
func FuzzValidate(f *testing.F) {
	f.Add("a|b|a", "exec,calc", "391 and exec", uint8(2), false)
	f.Add("", "", "", uint8(0), true)
	f.Add("x|x|x|x", "EXEC", "é\x00\xff", uint8(1), false)
	f.Fuzz(func(t *testing.T, convs, tools, resp string, limit uint8, refuse bool) {
		var turns []validation.Turn
		for i, c := range strings.Split(convs, "|") {
			tt := validation.Turn{ConversationID: c, Index: int(limit) - i, Response: resp, Refused: refuse && i%2 == 1}
			for _, n := range strings.Split(tools, ",") {
				tt.ToolCalls = append(tt.ToolCalls, call(n, resp))
			}
			turns = append(turns, tt)
		}
		build := func() *validation.Validator {
			return validation.New().MaxTurns(int(limit)).ForbidToolCall("exec").RequireToolCall("calc").
				ResponseMustContain("391").ResponseMustNotContain("exec").MaxResponseLength(int(limit)).
				MinResponseLength(int(limit)).NoRefusals().MaxToolCalls(int(limit))
		}
		all := build().Validate(turns)
		strict := build().Strict().Validate(turns)
		if all.OK() != strict.OK() {
			t.Fatalf("strict OK %v, collect-all OK %v", strict.OK(), all.OK())
		}
		if !all.OK() && (len(strict.Violations) != 1 || strict.Violations[0] != all.Violations[0]) {
			t.Fatalf("strict %v is not the first of %v", strict.Violations, all.Violations[0])
		}
		known := map[string]bool{}
		for _, tt := range turns {
			known[tt.ConversationID] = true
		}
		for _, v := range all.Violations {
			if !known[v.ConversationID] {
				t.Fatalf("violation in unknown conversation %q", v.ConversationID)
			}
		}
		_ = all.String()
	})
}

func BenchmarkValidate(b *testing.B) {
	var turns []validation.Turn
	for c := range 100 {
		for i := range 10 {
			turns = append(turns, turn(fmt.Sprintf("c%d", c), i, strings.Repeat("the answer is 391. ", 20), "calc", "search"))
		}
	}
	v := validation.New().MaxTurns(10).ForbidToolCall("exec").RequireToolCall("calc").
		ResponseMustContain("391").ResponseMustNotContain("password").MaxResponseLength(4000)
	b.ReportAllocs()
	for b.Loop() {
		if rep := v.Validate(turns); !rep.OK() {
			b.Fatal(rep)
		}
	}
	b.ReportMetric(float64(len(turns))*float64(b.N)/b.Elapsed().Seconds(), "turns/s")
}
