package validation

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentbus/agentbus/messages"
)

// ErrInvalidConstraint is wrapped by the error of a constraint built with
// arguments that make no sense (a negative limit, an empty tool name, ...).
var ErrInvalidConstraint = errors.New("validation: invalid constraint")

// ErrViolation is wrapped by every [Violation] used as an error.
var ErrViolation = errors.New("validation: constraint violated")

// Constraint is one rule about agent behaviour.
//
// Check receives the turns of one conversation, sorted by Index, and returns
// what is wrong with them (nil if nothing). A violation may leave Constraint
// and ConversationID empty: the [Validator] fills them in. Check must not
// modify the turns. A Constraint may also implement Validate() error to
// report bad arguments; the Validator then refuses to pass anything.
type Constraint interface {
	Name() string
	Check(conv []Turn) []Violation
}

// Violation is one broken constraint.
type Violation struct {
	// Constraint is the Name of the broken constraint.
	Constraint string
	// ConversationID and RequestID locate the offending turn.
	ConversationID string
	RequestID      string
	// Turn is the offending turn's Index (for a conversation-wide rule, the
	// last turn's, or the first turn past a limit).
	Turn int
	// Message says what is wrong, in one line.
	Message string
}

// Error formats the violation as one line; a Violation is an error wrapping
// [ErrViolation].
func (v Violation) Error() string {
	var b strings.Builder
	b.WriteString(v.Constraint)
	b.WriteString(": conversation ")
	b.WriteString(strconv.Quote(v.ConversationID))
	b.WriteString(" turn ")
	b.WriteString(strconv.Itoa(v.Turn))
	if v.RequestID != "" {
		b.WriteString(" (request ")
		b.WriteString(v.RequestID)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(v.Message)
	return b.String()
}

// Unwrap returns [ErrViolation].
func (v Violation) Unwrap() error { return ErrViolation }

// at builds a violation located at turn t.
func at(t Turn, format string, a ...any) Violation {
	return Violation{ConversationID: t.ConversationID, RequestID: t.RequestID, Turn: t.Index, Message: fmt.Sprintf(format, a...)}
}

// constraint is the implementation shared by the built-in constraints.
type constraint struct {
	name string
	err  error
	// perTurn is called for each turn; perConv, if set, instead for the
	// whole conversation.
	perTurn func(t Turn) []Violation
	perConv func(conv []Turn) []Violation
}

func (c *constraint) Name() string    { return c.name }
func (c *constraint) Validate() error { return c.err }

func (c *constraint) Check(conv []Turn) []Violation {
	if c.err != nil || len(conv) == 0 {
		return nil
	}
	if c.perConv != nil {
		return c.perConv(conv)
	}
	var out []Violation
	for _, t := range conv {
		out = append(out, c.perTurn(t)...)
	}
	return out
}

func invalid(name, format string, a ...any) *constraint {
	return &constraint{name: name, err: fmt.Errorf("%w: %s: %s", ErrInvalidConstraint, name, fmt.Sprintf(format, a...))}
}

// MaxTurns allows at most n turns per conversation (n >= 0). The violation
// points at the first turn past the limit.
func MaxTurns(n int) Constraint {
	name := "max_turns(" + strconv.Itoa(n) + ")"
	if n < 0 {
		return invalid(name, "n must not be negative")
	}
	return &constraint{name: name, perConv: func(conv []Turn) []Violation {
		if len(conv) <= n {
			return nil
		}
		return []Violation{at(conv[n], "conversation has %d turns, at most %d allowed", len(conv), n)}
	}}
}

// RequireToolCall requires the model to call the named tool at least once
// in the conversation. Tool names compare case-insensitively. Use
// [OnTurn] or [LastTurn] to require it in a given turn.
func RequireToolCall(name string) Constraint {
	cname := "require_tool_call(" + name + ")"
	if name == "" {
		return invalid(cname, "tool name is empty")
	}
	return &constraint{name: cname, perConv: func(conv []Turn) []Violation {
		for _, t := range conv {
			if countCalls(t.ToolCalls, name) > 0 {
				return nil
			}
		}
		return []Violation{at(conv[len(conv)-1], "tool %q was never called (%s)", name, callNames(conv))}
	}}
}

// ForbidToolCall forbids every call of the named tool (case-insensitive,
// so "exec" also catches "Exec"), whether or not the firewall blocked it:
// one violation per call.
func ForbidToolCall(name string) Constraint {
	cname := "forbid_tool_call(" + name + ")"
	if name == "" {
		return invalid(cname, "tool name is empty")
	}
	return &constraint{name: cname, perTurn: func(t Turn) []Violation {
		var out []Violation
		for _, c := range t.ToolCalls {
			if strings.EqualFold(c.Function.Name, name) {
				out = append(out, at(t, "forbidden tool %q called with arguments %s", c.Function.Name, clip(c.Function.Arguments, 200)))
			}
		}
		return out
	}}
}

// MaxToolCalls allows at most n tool calls per turn (n >= 0).
func MaxToolCalls(n int) Constraint {
	name := "max_tool_calls(" + strconv.Itoa(n) + ")"
	if n < 0 {
		return invalid(name, "n must not be negative")
	}
	return &constraint{name: name, perTurn: func(t Turn) []Violation {
		if len(t.ToolCalls) <= n {
			return nil
		}
		return []Violation{at(t, "%d tool calls, at most %d allowed", len(t.ToolCalls), n)}
	}}
}

// ResponseMustContain requires every turn's response to contain s (a
// case-sensitive substring). A refused turn has no response and violates
// it. Wrap it in [LastTurn] to check only the final answer.
func ResponseMustContain(s string) Constraint {
	name := "response_must_contain(" + strconv.Quote(s) + ")"
	if s == "" {
		return invalid(name, "substring is empty")
	}
	return &constraint{name: name, perTurn: func(t Turn) []Violation {
		switch {
		case t.Refused:
			return []Violation{at(t, "turn was refused (%s), no response", t.Code)}
		case !strings.Contains(t.Response, s):
			return []Violation{at(t, "response %s does not contain %q", clip(t.Response, 120), s)}
		}
		return nil
	}}
}

// ResponseMustNotContain forbids s (a case-sensitive substring) in every
// turn's response. A refused turn passes.
func ResponseMustNotContain(s string) Constraint {
	name := "response_must_not_contain(" + strconv.Quote(s) + ")"
	if s == "" {
		return invalid(name, "substring is empty")
	}
	return &constraint{name: name, perTurn: func(t Turn) []Violation {
		if i := strings.Index(t.Response, s); i >= 0 {
			return []Violation{at(t, "response contains %q at byte %d", s, i)}
		}
		return nil
	}}
}

// MaxResponseLength allows at most n characters (Unicode code points) per
// response (n >= 0). A refused turn passes.
func MaxResponseLength(n int) Constraint {
	name := "max_response_length(" + strconv.Itoa(n) + ")"
	if n < 0 {
		return invalid(name, "n must not be negative")
	}
	return &constraint{name: name, perTurn: func(t Turn) []Violation {
		if l := utf8.RuneCountInString(t.Response); l > n {
			return []Violation{at(t, "response has %d characters, at most %d allowed", l, n)}
		}
		return nil
	}}
}

// MinResponseLength requires at least n characters (Unicode code points)
// per response (n >= 0). A refused turn violates it when n > 0.
func MinResponseLength(n int) Constraint {
	name := "min_response_length(" + strconv.Itoa(n) + ")"
	if n < 0 {
		return invalid(name, "n must not be negative")
	}
	return &constraint{name: name, perTurn: func(t Turn) []Violation {
		if l := utf8.RuneCountInString(t.Response); l < n {
			if t.Refused {
				return []Violation{at(t, "turn was refused (%s), no response", t.Code)}
			}
			return []Violation{at(t, "response has %d characters, at least %d required", l, n)}
		}
		return nil
	}}
}

// NoRefusals requires every turn to complete (not rejected, not failed).
func NoRefusals() Constraint {
	return &constraint{name: "no_refusals", perTurn: func(t Turn) []Violation {
		if t.Refused {
			return []Violation{at(t, "turn was refused: %s: %s", t.Code, clip(t.Reason, 120))}
		}
		return nil
	}}
}

// Custom is a per-turn constraint: fn returns a non-nil error for a turn
// that breaks it, and the error text becomes the violation's message.
func Custom(name string, fn func(Turn) error) Constraint {
	if name == "" || fn == nil {
		return invalid("custom("+name+")", "needs a name and a function")
	}
	return &constraint{name: name, perTurn: func(t Turn) []Violation {
		if err := fn(t); err != nil {
			return []Violation{at(t, "%s", err.Error())}
		}
		return nil
	}}
}

// CustomConversation is a conversation-wide constraint: fn receives the
// conversation's turns in order and returns a non-nil error if they break
// it. The violation points at the last turn.
func CustomConversation(name string, fn func([]Turn) error) Constraint {
	if name == "" || fn == nil {
		return invalid("custom("+name+")", "needs a name and a function")
	}
	return &constraint{name: name, perConv: func(conv []Turn) []Violation {
		if err := fn(conv); err != nil {
			return []Violation{at(conv[len(conv)-1], "%s", err.Error())}
		}
		return nil
	}}
}

// scoped restricts a constraint to some turns of each conversation.
type scoped struct {
	inner  Constraint
	suffix string
	pick   func(conv []Turn) []Turn
}

func (s *scoped) Name() string { return s.inner.Name() + s.suffix }
func (s *scoped) Check(conv []Turn) []Violation {
	if sub := s.pick(conv); len(sub) > 0 {
		return s.inner.Check(sub)
	}
	return nil
}
func (s *scoped) Validate() error { return constraintErr(s.inner) }

// LastTurn applies c to the last turn of each conversation only, e.g.
// LastTurn(ResponseMustContain("391")) checks the final answer.
func LastTurn(c Constraint) Constraint {
	return &scoped{inner: c, suffix: "@last", pick: func(conv []Turn) []Turn { return conv[len(conv)-1:] }}
}

// OnTurn applies c to the turn with Index i of each conversation only; a
// conversation without that turn passes.
func OnTurn(i int, c Constraint) Constraint {
	return &scoped{inner: c, suffix: "@" + strconv.Itoa(i), pick: func(conv []Turn) []Turn {
		for k := range conv {
			if conv[k].Index == i {
				return conv[k : k+1]
			}
		}
		return nil
	}}
}

func constraintErr(c Constraint) error {
	if c == nil {
		return fmt.Errorf("%w: nil constraint", ErrInvalidConstraint)
	}
	if v, ok := c.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

func countCalls(calls []messages.ToolCall, name string) int {
	n := 0
	for _, c := range calls {
		if strings.EqualFold(c.Function.Name, name) {
			n++
		}
	}
	return n
}

func callNames(conv []Turn) string {
	var names []string
	for _, t := range conv {
		for _, c := range t.ToolCalls {
			names = append(names, c.Function.Name)
		}
	}
	if len(names) == 0 {
		return "no tool calls"
	}
	return "called: " + clip(strings.Join(names, ","), 200)
}

// clip quotes s, cut to at most n runes, so it is safe on one log line.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) > n {
		r := []rune(s)
		return strconv.Quote(string(r[:n])) + "..."
	}
	return strconv.Quote(s)
}
