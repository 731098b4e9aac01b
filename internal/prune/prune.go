package prune

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agentbus/agentbus/internal/tokens"
	"github.com/agentbus/agentbus/messages"
)

// Strategy selects how optional messages are chosen.
type Strategy string

// Strategies.
const (
	// Importance keeps the highest-scoring units that fit the budget.
	Importance Strategy = "importance"
	// Recent keeps the newest units that fit the budget.
	Recent Strategy = "recent"
	// Window keeps the units within the last Config.Window messages.
	Window Strategy = "window"
)

// DefaultWindow is the default Config.Window.
const DefaultWindow = 20

// ErrInvalidConfig is wrapped by Config.Validate errors.
var ErrInvalidConfig = errors.New("prune: invalid config")

// ImportanceWeights score a unit for the Importance strategy:
//
//	score = Base + System(if system/developer) + ToolCalls(if it has tool calls)
//	      + Long(if a message is longer than LongChars) + Question(if it contains '?')
//	      + Recency * position (0 for the oldest unit, 1 for the newest)
//
// The zero value means DefaultWeights.
type ImportanceWeights struct {
	// Base is every unit's score. Default 0.5.
	Base float64
	// System is added for system and developer messages (always kept anyway). Default 1.0.
	System float64
	// ToolCalls is added for a tool-call unit. Default 0.3.
	ToolCalls float64
	// Long is added when a message's content exceeds LongChars bytes. Default 0.1.
	Long float64
	// LongChars is the threshold of Long. Default 500.
	LongChars int
	// Question is added when a message contains '?'. Default 0.1.
	Question float64
	// Recency is multiplied by the unit's relative position and added, so
	// newer units win ties. Default 0.2.
	Recency float64
}

// DefaultWeights are the origin's weights plus a recency tie-breaker.
var DefaultWeights = ImportanceWeights{Base: 0.5, System: 1.0, ToolCalls: 0.3, Long: 0.1, LongChars: 500, Question: 0.1, Recency: 0.2}

// Config configures Prune.
type Config struct {
	// Strategy is Importance, Recent or Window. Default Importance.
	Strategy Strategy
	// Budget is the maximum prompt tokens (counter.CountMessages) of the
	// output. Default 0: no token limit.
	Budget int
	// Window is the number of trailing messages the Window strategy keeps.
	// Default DefaultWindow (20).
	Window int
	// Weights score units for Importance. Default DefaultWeights.
	Weights ImportanceWeights
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	switch c.Strategy {
	case "", Importance, Recent, Window:
	default:
		errs = append(errs, fmt.Errorf("%w: unknown strategy %q", ErrInvalidConfig, c.Strategy))
	}
	if c.Budget < 0 {
		errs = append(errs, fmt.Errorf("%w: budget %d is negative", ErrInvalidConfig, c.Budget))
	}
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("%w: window %d is negative", ErrInvalidConfig, c.Window))
	}
	if c.Weights.LongChars < 0 {
		errs = append(errs, fmt.Errorf("%w: weights.long_chars %d is negative", ErrInvalidConfig, c.Weights.LongChars))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Strategy == "" {
		c.Strategy = Importance
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Weights == (ImportanceWeights{}) {
		c.Weights = DefaultWeights
	}
	return c
}

// unit is a set of message indexes kept or dropped together.
type unit struct {
	idx       []int // ascending
	cost      int   // tokens (without reply priming)
	mandatory bool
	score     float64
	pos       int // order of the unit (by first message)
}

// Units returns the message indexes of each unit of msgs, in order of their
// first message. It is exported so callers can check the pairing invariant.
func Units(msgs []messages.Message) [][]int {
	us := buildUnits(msgs)
	out := make([][]int, len(us))
	for i := range us {
		out[i] = us[i].idx
	}
	return out
}

func buildUnits(msgs []messages.Message) []unit {
	owner := make(map[string]int) // open tool_call_id -> unit
	var units []unit
	for i := range msgs {
		m := &msgs[i]
		if m.Role == messages.RoleTool && m.ToolCallID != "" {
			if u, ok := owner[m.ToolCallID]; ok {
				units[u].idx = append(units[u].idx, i)
				delete(owner, m.ToolCallID) // one result per call; a duplicate is its own unit
				continue
			}
		}
		units = append(units, unit{idx: []int{i}, pos: len(units)})
		if m.Role == messages.RoleAssistant {
			for _, tc := range m.ToolCalls {
				if tc.ID != "" {
					owner[tc.ID] = len(units) - 1
				}
			}
		}
	}
	return units
}

// Prune returns the messages of msgs to send within cfg.Budget tokens as
// counted by counter (nil means tokens.Estimator). See the package
// documentation for the guarantees. An invalid cfg is treated as its
// nearest valid value (unknown strategy: Importance; negative numbers: 0 /
// default); call Config.Validate at startup to reject it instead.
// The result shares no backing array with msgs.
func Prune(msgs []messages.Message, cfg Config, counter tokens.Counter) []messages.Message {
	if counter == nil {
		counter = tokens.Estimator{}
	}
	cfg = cfg.withDefaults()
	if cfg.Budget < 0 {
		cfg.Budget = 0
	}
	if len(msgs) == 0 {
		return []messages.Message{}
	}
	units := buildUnits(msgs)

	lastUser := -1
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == messages.RoleUser {
			lastUser = i
			break
		}
	}
	for ui := range units {
		u := &units[ui]
		for _, i := range u.idx {
			r := msgs[i].Role
			if r == messages.RoleSystem || r == messages.RoleDeveloper || (lastUser >= 0 && i >= lastUser) {
				u.mandatory = true
			}
		}
	}

	keep := make([]bool, len(units))
	for ui := range units {
		keep[ui] = units[ui].mandatory
	}
	// Costs are computed lazily: Recent and Window only look at the tail,
	// and BPE counting dominates the run time.
	base := 0
	var one [1]messages.Message
	costed := make([]bool, len(units))
	cost := func(ui int) int {
		if !costed[ui] {
			costed[ui] = true
			u := &units[ui]
			for _, i := range u.idx {
				one[0] = msgs[i]
				u.cost += counter.CountMessages(one[:]) - base
			}
		}
		return units[ui].cost
	}
	remaining := 0
	if cfg.Budget > 0 {
		base = counter.CountMessages(nil)
		remaining = cfg.Budget - base
		for ui := range units {
			if units[ui].mandatory {
				remaining -= cost(ui)
			}
		}
		if remaining < 0 {
			return collect(msgs, units, keep) // the mandatory set alone exceeds the budget
		}
	}
	fits := func(ui int) bool { return cfg.Budget <= 0 || cost(ui) <= remaining }
	take := func(ui int) {
		keep[ui] = true
		if cfg.Budget > 0 {
			remaining -= cost(ui)
		}
	}

	switch cfg.Strategy {
	case Recent:
		for ui := len(units) - 1; ui >= 0; ui-- {
			if keep[ui] {
				continue
			}
			if !fits(ui) {
				break // a contiguous tail: never skip over a unit
			}
			take(ui)
		}
	case Window:
		start := len(msgs) - cfg.Window
		var in []int
		for ui := range units {
			if !keep[ui] && units[ui].idx[0] >= start && units[ui].idx[len(units[ui].idx)-1] >= start {
				in = append(in, ui)
			}
		}
		// Within the window keep the newest that fit the budget.
		for k := len(in) - 1; k >= 0; k-- {
			if !fits(in[k]) {
				break
			}
			take(in[k])
		}
	default: // Importance
		w := cfg.Weights
		order := make([]int, 0, len(units))
		for ui := range units {
			if !keep[ui] {
				units[ui].score = score(msgs, &units[ui], len(units), w)
				order = append(order, ui)
			}
		}
		slices.SortStableFunc(order, func(a, b int) int {
			if c := cmp.Compare(units[b].score, units[a].score); c != 0 {
				return c
			}
			return cmp.Compare(b, a) // newer first
		})
		for _, ui := range order {
			if fits(ui) {
				take(ui)
			}
			if cfg.Budget > 0 && remaining <= 0 {
				break // nothing can fit any more
			}
		}
	}
	return collect(msgs, units, keep)
}

func score(msgs []messages.Message, u *unit, n int, w ImportanceWeights) float64 {
	s := w.Base
	var sys, tools, long, q bool
	for _, i := range u.idx {
		m := &msgs[i]
		sys = sys || m.Role == messages.RoleSystem || m.Role == messages.RoleDeveloper
		tools = tools || len(m.ToolCalls) > 0
		long = long || len(m.Content) > w.LongChars
		q = q || strings.IndexByte(m.Content, '?') >= 0
	}
	if sys {
		s += w.System
	}
	if tools {
		s += w.ToolCalls
	}
	if long {
		s += w.Long
	}
	if q {
		s += w.Question
	}
	if n > 1 {
		s += w.Recency * float64(u.pos) / float64(n-1)
	}
	return s
}

func collect(msgs []messages.Message, units []unit, keep []bool) []messages.Message {
	sel := make([]bool, len(msgs))
	n := 0
	for ui := range units {
		if keep[ui] {
			for _, i := range units[ui].idx {
				sel[i] = true
				n++
			}
		}
	}
	out := make([]messages.Message, 0, n)
	for i := range msgs {
		if sel[i] {
			out = append(out, msgs[i])
		}
	}
	return out
}
