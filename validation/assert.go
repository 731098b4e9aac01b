package validation

import (
	"strings"
	"testing"
)

// The Assert functions report a failure with t.Errorf (the test goes on) and
// return whether the assertion held, so a caller can stop with
// `if !Assert...(t, ...) { t.FailNow() }`.

// AssertToolCalled checks that some turn called the named tool
// (case-insensitive).
func AssertToolCalled(t testing.TB, turns []Turn, name string) bool {
	t.Helper()
	if n := toolCallCount(turns, name); n == 0 {
		t.Errorf("tool %q was not called in %d turn(s) (%s)", name, len(turns), callNames(turns))
		return false
	}
	return true
}

// AssertToolCallCount checks that the turns called the named tool
// (case-insensitive) exactly n times in total.
func AssertToolCallCount(t testing.TB, turns []Turn, name string, n int) bool {
	t.Helper()
	if got := toolCallCount(turns, name); got != n {
		t.Errorf("tool %q called %d time(s), want %d (%s)", name, got, n, callNames(turns))
		return false
	}
	return true
}

// AssertNoToolCalls checks that no turn called any tool.
func AssertNoToolCalls(t testing.TB, turns []Turn) bool {
	t.Helper()
	if names := callNames(turns); names != "no tool calls" {
		t.Errorf("want no tool calls, got %s", names)
		return false
	}
	return true
}

// AssertResponseContains checks that the turn completed and its response
// contains s.
func AssertResponseContains(t testing.TB, turn Turn, s string) bool {
	t.Helper()
	switch {
	case turn.Refused:
		t.Errorf("turn %d (request %s) was refused (%s: %s), want a response containing %q", turn.Index, turn.RequestID, turn.Code, turn.Reason, s)
		return false
	case !strings.Contains(turn.Response, s):
		t.Errorf("turn %d (request %s): response %s does not contain %q", turn.Index, turn.RequestID, clip(turn.Response, 200), s)
		return false
	}
	return true
}

// AssertValid runs v over turns and reports every violation.
func AssertValid(t testing.TB, v *Validator, turns []Turn) bool {
	t.Helper()
	rep := v.Validate(turns)
	if !rep.OK() {
		t.Errorf("%s", rep)
		return false
	}
	return true
}

func toolCallCount(turns []Turn, name string) int {
	n := 0
	for _, t := range turns {
		n += countCalls(t.ToolCalls, name)
	}
	return n
}
