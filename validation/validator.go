package validation

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ConfigConstraint is the Constraint name of the violation a [Validator]
// reports when one of its constraints was built with invalid arguments.
const ConfigConstraint = "validation.config"

// Validator checks turns against a list of constraints. Build it with [New]
// and the chainable methods; it is safe for concurrent use once built.
//
// By default it collects every violation; [Validator.Strict] makes it stop
// at the first one.
type Validator struct {
	constraints []Constraint
	strict      bool
}

// New returns a Validator with no constraints (every input passes).
func New() *Validator { return &Validator{} }

// Add appends constraints (built-in or your own) and returns v.
func (v *Validator) Add(cs ...Constraint) *Validator {
	v.constraints = append(v.constraints, cs...)
	return v
}

// Strict makes Validate stop at the first violation (in report order, see
// [Validator.Validate]) and returns v. The default collects all.
func (v *Validator) Strict() *Validator { v.strict = true; return v }

// MaxTurns adds [MaxTurns](n).
func (v *Validator) MaxTurns(n int) *Validator { return v.Add(MaxTurns(n)) }

// RequireToolCall adds [RequireToolCall](name).
func (v *Validator) RequireToolCall(name string) *Validator { return v.Add(RequireToolCall(name)) }

// ForbidToolCall adds [ForbidToolCall](name).
func (v *Validator) ForbidToolCall(name string) *Validator { return v.Add(ForbidToolCall(name)) }

// MaxToolCalls adds [MaxToolCalls](n).
func (v *Validator) MaxToolCalls(n int) *Validator { return v.Add(MaxToolCalls(n)) }

// ResponseMustContain adds [ResponseMustContain](s).
func (v *Validator) ResponseMustContain(s string) *Validator { return v.Add(ResponseMustContain(s)) }

// ResponseMustNotContain adds [ResponseMustNotContain](s).
func (v *Validator) ResponseMustNotContain(s string) *Validator {
	return v.Add(ResponseMustNotContain(s))
}

// MaxResponseLength adds [MaxResponseLength](n).
func (v *Validator) MaxResponseLength(n int) *Validator { return v.Add(MaxResponseLength(n)) }

// MinResponseLength adds [MinResponseLength](n).
func (v *Validator) MinResponseLength(n int) *Validator { return v.Add(MinResponseLength(n)) }

// NoRefusals adds [NoRefusals]().
func (v *Validator) NoRefusals() *Validator { return v.Add(NoRefusals()) }

// Custom adds [Custom](name, fn).
func (v *Validator) Custom(name string, fn func(Turn) error) *Validator {
	return v.Add(Custom(name, fn))
}

// Constraints returns the names of the configured constraints, in order.
func (v *Validator) Constraints() []string {
	names := make([]string, len(v.constraints))
	for i, c := range v.constraints {
		if c != nil {
			names[i] = c.Name()
		}
	}
	return names
}

// Err reports constraints built with invalid arguments (each error wraps
// [ErrInvalidConstraint]), joined; nil if all are valid.
func (v *Validator) Err() error {
	var errs []error
	for _, c := range v.constraints {
		errs = append(errs, constraintErr(c))
	}
	return errors.Join(errs...)
}

// Validate groups turns by ConversationID (conversations in order of first
// appearance, turns sorted by Index, ties kept in input order), runs every
// constraint on every conversation and reports the violations: by
// conversation, then by turn, then in the order the constraints were added.
//
// A Validator with invalid constraints (see [Validator.Err]) reports one
// violation named [ConfigConstraint] per problem and checks nothing else, so
// a misconfigured test cannot pass. Turns and Conversations in the report
// always count the whole input.
func (v *Validator) Validate(turns []Turn) Report {
	convs := group(turns)
	rep := Report{Turns: len(turns), Conversations: len(convs)}
	if err := v.Err(); err != nil {
		for _, e := range unjoin(err) {
			rep.Violations = append(rep.Violations, Violation{Constraint: ConfigConstraint, Turn: -1, Message: e.Error()})
			if v.strict {
				break
			}
		}
		return rep
	}
	for _, conv := range convs {
		var found []Violation
		for _, c := range v.constraints {
			for _, viol := range c.Check(conv) {
				if viol.Constraint == "" {
					viol.Constraint = c.Name()
				}
				if viol.ConversationID == "" {
					viol.ConversationID = conv[0].ConversationID
				}
				found = append(found, viol)
			}
		}
		slices.SortStableFunc(found, func(a, b Violation) int { return cmp.Compare(a.Turn, b.Turn) })
		if v.strict && len(found) > 0 {
			rep.Violations = found[:1:1]
			return rep
		}
		rep.Violations = append(rep.Violations, found...)
	}
	return rep
}

// group splits turns into conversations in order of first appearance, each
// sorted by Index.
func group(turns []Turn) [][]Turn {
	idx := make(map[string]int)
	var convs [][]Turn
	for _, t := range turns {
		i, ok := idx[t.ConversationID]
		if !ok {
			i = len(convs)
			idx[t.ConversationID] = i
			convs = append(convs, nil)
		}
		convs[i] = append(convs[i], t)
	}
	for _, c := range convs {
		slices.SortStableFunc(c, func(a, b Turn) int { return cmp.Compare(a.Index, b.Index) })
	}
	return convs
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Report is the outcome of [Validator.Validate].
type Report struct {
	// Violations found, in report order; empty means every constraint held.
	Violations []Violation
	// Turns and Conversations count the validated input.
	Turns, Conversations int
}

// OK reports whether no constraint was violated.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Err returns nil if r is OK, else every violation joined into one error
// (each wraps [ErrViolation]).
func (r Report) Err() error {
	errs := make([]error, len(r.Violations))
	for i, v := range r.Violations {
		errs[i] = v
	}
	return errors.Join(errs...)
}

// String summarises the report: one header line, then one line per
// violation.
func (r Report) String() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "ok: %d turns in %d conversations", r.Turns, r.Conversations)
		return b.String()
	}
	fmt.Fprintf(&b, "%d violation(s) in %d turns in %d conversations", len(r.Violations), r.Turns, r.Conversations)
	for _, v := range r.Violations {
		b.WriteString("\n  ")
		b.WriteString(v.Error())
	}
	return b.String()
}
