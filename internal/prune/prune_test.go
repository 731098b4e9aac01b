package prune

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/tokens"
	"github.com/agentbus/agentbus/messages"
	"pgregory.net/rapid"
)

func msg(role, content string) messages.Message {
	return messages.Message{Role: role, Content: content}
}

func call(ids ...string) messages.Message {
	m := messages.Message{Role: "assistant"}
	for _, id := range ids {
		m.ToolCalls = append(m.ToolCalls, messages.ToolCall{ID: id, Type: "function", Function: messages.FunctionCall{Name: "f", Arguments: `{"q":"` + id + `"}`}})
	}
	return m
}

func result(id, content string) messages.Message {
	return messages.Message{Role: "tool", ToolCallID: id, Content: content}
}

// checkInvariants verifies every guarantee of the package for one call and
// returns a description of the first violation.
func checkInvariants(in, out []messages.Message, cfg Config, c tokens.Counter) error {
	// 1. Subsequence: map each output message to an input index (greedy).
	kept := make([]bool, len(in))
	j := 0
	for i := range in {
		if j < len(out) && equal(in[i], out[j]) {
			kept[i] = true
			j++
		}
	}
	if j != len(out) {
		return fmt.Errorf("output is not a subsequence of the input (matched %d of %d)", j, len(out))
	}
	// 2. system/developer and the current turn, closed over tool pairing
	// (computed independently of buildUnits; ids are unique in generated
	// input): a mandatory result pulls in its call and the call's results.
	mandatory := mandatorySet(in)
	for i := range in {
		if mandatory[i] && !kept[i] {
			return fmt.Errorf("mandatory message %d (%s) dropped", i, in[i].Role)
		}
	}
	// 3. Tool pairing: a kept result's call is kept, a kept call's results are kept.
	for i, a := range pairs(in) {
		if kept[i] != kept[a] {
			return fmt.Errorf("tool result %d (kept=%v) split from its call %d (kept=%v)", i, kept[i], a, kept[a])
		}
	}
	// 4. Budget.
	var must []messages.Message
	for i := range in {
		if mandatory[i] {
			must = append(must, in[i])
		}
	}
	if cfg.Budget > 0 {
		total := c.CountMessages(out)
		if c.CountMessages(must) <= cfg.Budget {
			if total > cfg.Budget {
				return fmt.Errorf("output has %d tokens, budget %d", total, cfg.Budget)
			}
		} else {
			for i := range in {
				if kept[i] && !mandatory[i] {
					return fmt.Errorf("mandatory set over budget but optional message %d kept", i)
				}
			}
		}
	}
	return nil
}

// pairs maps each tool result index to the index of the earlier assistant
// message carrying its call.
func pairs(in []messages.Message) map[int]int {
	callAt := map[string]int{}
	out := map[int]int{}
	for i := range in {
		for _, tc := range in[i].ToolCalls {
			callAt[tc.ID] = i
		}
		if in[i].Role == "tool" {
			if a, ok := callAt[in[i].ToolCallID]; ok && a < i {
				out[i] = a
			}
		}
	}
	return out
}

func mandatorySet(in []messages.Message) []bool {
	lastUser := -1
	for i := range in {
		if in[i].Role == "user" {
			lastUser = i
		}
	}
	m := make([]bool, len(in))
	for i := range in {
		m[i] = in[i].Role == "system" || in[i].Role == "developer" || (lastUser >= 0 && i >= lastUser)
	}
	p := pairs(in)
	for i, a := range p {
		if m[i] {
			m[a] = true
		}
	}
	for i, a := range p {
		if m[a] {
			m[i] = true
		}
	}
	return m
}

func equal(a, b messages.Message) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestPruneTable(t *testing.T) {
	conv := []messages.Message{
		msg("system", "You are helpful."),        // 0
		msg("user", "old question?"),             // 1
		msg("assistant", "old answer"),           // 2
		msg("user", "weather in Paris?"),         // 3
		call("c1", "c2"),                         // 4
		result("c1", strings.Repeat("sun ", 50)), // 5
		result("c2", "21C"),                      // 6
		msg("assistant", "Sunny, 21C."),          // 7
		msg("developer", "be brief"),             // 8
		msg("user", "and tomorrow?"),             // 9
	}
	c := tokens.Estimator{}
	all := c.CountMessages(conv)
	must := c.CountMessages([]messages.Message{conv[0], conv[8], conv[9]})
	idx := func(is ...int) []messages.Message {
		var out []messages.Message
		for _, i := range is {
			out = append(out, conv[i])
		}
		return out
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []messages.Message
	}{
		{"no budget keeps all", Config{Strategy: Recent}, conv},
		{"budget fits all", Config{Strategy: Importance, Budget: all}, conv},
		{"only mandatory fits", Config{Strategy: Recent, Budget: must}, idx(0, 8, 9)},
		{"below mandatory", Config{Strategy: Importance, Budget: 1}, idx(0, 8, 9)},
		{"recent stops at the tool unit", Config{Strategy: Recent, Budget: must + c.CountMessages(idx(7)) - 3 + 2}, idx(0, 7, 8, 9)},
		{"window 4 keeps units fully inside", Config{Strategy: Window, Window: 4}, idx(0, 7, 8, 9)},
		{"window 6 takes the whole tool unit", Config{Strategy: Window, Window: 6}, idx(0, 4, 5, 6, 7, 8, 9)},
		{"window 5 cuts into the tool unit: dropped whole", Config{Strategy: Window, Window: 5}, idx(0, 7, 8, 9)},
		{"importance prefers the tool unit", Config{Strategy: Importance, Budget: must + c.CountMessages(idx(4, 5, 6)) - 3}, idx(0, 4, 5, 6, 8, 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Prune(conv, tc.cfg, c)
			if err := checkInvariants(conv, got, tc.cfg, c); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d messages %v, want %d", len(got), roles(got), len(tc.want))
			}
			for i := range got {
				if !equal(got[i], tc.want[i]) {
					t.Fatalf("message %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func roles(ms []messages.Message) []string {
	var r []string
	for _, m := range ms {
		r = append(r, m.Role+":"+m.Content[:min(len(m.Content), 10)])
	}
	return r
}

func TestCurrentTurnToolRoundsKept(t *testing.T) {
	conv := []messages.Message{msg("user", "a"), msg("assistant", "b"), msg("user", "run it"), call("x"), result("x", strings.Repeat("z", 4000))}
	got := Prune(conv, Config{Strategy: Recent, Budget: 10}, nil)
	if len(got) != 3 || got[0].Content != "run it" || got[2].ToolCallID != "x" {
		t.Fatalf("current turn not kept whole: %v", roles(got))
	}
}

func TestUnits(t *testing.T) {
	conv := []messages.Message{msg("user", "q"), call("a", "b"), result("b", "1"), msg("user", "interleaved"), result("a", "2"), result("zz", "orphan"), result("a", "duplicate")}
	got := fmt.Sprint(Units(conv))
	if want := "[[0] [1 2 4] [3] [5] [6]]"; got != want {
		t.Fatalf("Units = %s, want %s", got, want)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		errs int
	}{
		{Config{}, 0},
		{Config{Strategy: Window, Window: 5, Budget: 100}, 0},
		{Config{Strategy: "lru"}, 1},
		{Config{Strategy: "lru", Budget: -1, Window: -2, Weights: ImportanceWeights{LongChars: -1}}, 4},
	} {
		t.Run(fmt.Sprint(tc.cfg), func(t *testing.T) {
			err := tc.cfg.Validate()
			n := 0
			if err != nil {
				n = len(err.(interface{ Unwrap() []error }).Unwrap())
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatal("not ErrInvalidConfig")
				}
			}
			if n != tc.errs {
				t.Fatalf("got %d errors (%v), want %d", n, err, tc.errs)
			}
		})
	}
}

// genConversation draws a conversation with system prompts, user turns,
// answers, tool calls with results (sometimes interleaved, missing, or
// orphaned), and varying lengths.
func genConversation(t *rapid.T) []messages.Message {
	n := rapid.IntRange(0, 60).Draw(t, "n")
	var out []messages.Message
	var pending []string
	id := 0
	text := func(label string) string {
		base := fmt.Sprintf("m%d ", len(out))
		k := rapid.IntRange(0, 700).Draw(t, label+"len")
		s := base + strings.Repeat("w ", k/2)
		if rapid.Bool().Draw(t, label+"q") {
			s += "?"
		}
		return s
	}
	for range n {
		switch rapid.IntRange(0, 9).Draw(t, "kind") {
		case 0:
			out = append(out, msg(rapid.SampledFrom([]string{"system", "developer"}).Draw(t, "sys"), text("s")))
		case 1, 2, 3:
			out = append(out, msg("user", text("u")))
		case 4, 5:
			out = append(out, msg("assistant", text("a")))
		case 6, 7:
			k := rapid.IntRange(1, 3).Draw(t, "calls")
			var ids []string
			for range k {
				id++
				ids = append(ids, fmt.Sprintf("call_%d", id))
			}
			m := call(ids...)
			m.Content = rapid.SampledFrom([]string{"", "let me check"}).Draw(t, "callcontent")
			out = append(out, m)
			pending = append(pending, ids...)
		case 8:
			if len(pending) > 0 {
				i := rapid.IntRange(0, len(pending)-1).Draw(t, "which")
				out = append(out, result(pending[i], text("r")))
				pending = append(pending[:i], pending[i+1:]...)
			}
		case 9:
			out = append(out, result(fmt.Sprintf("orphan_%d", len(out)), text("o")))
		}
	}
	return out
}

func TestPruneProperties(t *testing.T) {
	counters := map[string]tokens.Counter{"estimate": tokens.Estimator{}, "gpt-4o": tokens.Cached(tokens.For("gpt-4o"), 0)}
	for _, cs := range []string{"estimate", "gpt-4o"} {
		for _, s := range []Strategy{Importance, Recent, Window} {
			if cs == "gpt-4o" && s != Importance {
				continue // the strategies do not depend on the counter; keep the suite fast
			}
			t.Run(cs+"/"+string(s), func(t *testing.T) {
				propertyCheck(t, s, counters[cs])
			})
		}
	}
}

func propertyCheck(t *testing.T, s Strategy, c tokens.Counter) {
	rapid.Check(t, func(t *rapid.T) {
		in := genConversation(t)
		cfg := Config{
			Strategy: s,
			Budget:   rapid.IntRange(0, 3000).Draw(t, "budget"),
			Window:   rapid.IntRange(0, 30).Draw(t, "window"),
		}
		snapshot, _ := json.Marshal(in)
		out := Prune(in, cfg, c)
		if after, _ := json.Marshal(in); string(after) != string(snapshot) {
			t.Fatal("input modified")
		}
		if err := checkInvariants(in, out, cfg, c); err != nil {
			t.Fatal(err)
		}
		if cfg.Budget > 0 {
			checkGreedy(t, in, out, cfg, c)
		}
	})
}

// checkGreedy checks the strategies choose well, not just legally:
// importance leaves no dropped unit that would still fit; recent keeps a
// contiguous tail of optional units.
func checkGreedy(t *rapid.T, in, out []messages.Message, cfg Config, c tokens.Counter) {
	keptSet := map[string]bool{}
	for _, m := range out {
		keptSet[m.Content+"|"+m.ToolCallID+fmt.Sprint(m.ToolCalls)] = true
	}
	isKept := func(i int) bool { return keptSet[in[i].Content+"|"+in[i].ToolCallID+fmt.Sprint(in[i].ToolCalls)] }
	total := c.CountMessages(out)
	if total > cfg.Budget {
		return // mandatory over budget
	}
	seenKeptOptional := false
	mandatory := mandatorySet(in)
	units := Units(in)
	for k := len(units) - 1; k >= 0; k-- {
		u := units[k]
		var ms []messages.Message
		for _, i := range u {
			ms = append(ms, in[i])
		}
		cost := c.CountMessages(ms) - c.CountMessages(nil)
		kept := isKept(u[0])
		switch cfg.Strategy {
		case Importance:
			if !kept && total+cost <= cfg.Budget {
				t.Fatalf("unit %v dropped though it fits (total %d + %d <= %d)", u, total, cost, cfg.Budget)
			}
		case Recent:
			if mandatory[u[0]] {
				continue
			}
			if kept && seenKeptOptional {
				t.Fatalf("recent kept unit %v after a gap", u)
			}
			if !kept {
				seenKeptOptional = true // from here on (older) nothing optional may be kept
			}
		}
	}
}

func FuzzPrune(f *testing.F) {
	seed, _ := json.Marshal([]messages.Message{msg("system", "s"), msg("user", "q?"), call("a"), result("a", "r"), msg("assistant", "x"), msg("user", "q2")})
	f.Add(seed, 20, uint8(0), 3)
	f.Add(seed, 0, uint8(1), 0)
	f.Add([]byte(`[{"role":"tool","tool_call_id":"a"},{"role":"assistant","tool_calls":[{"id":"a"},{"id":"a"}]}]`), 5, uint8(2), 1)
	f.Add([]byte(`[]`), 1, uint8(0), 1)
	strategies := []Strategy{Importance, Recent, Window}
	f.Fuzz(func(t *testing.T, data []byte, budget int, strat uint8, window int) {
		var in []messages.Message
		if json.Unmarshal(data, &in) != nil {
			return
		}
		cfg := Config{Strategy: strategies[int(strat)%3], Budget: budget % 100000, Window: window % 1000}
		c := tokens.Estimator{}
		out := Prune(in, cfg, c)
		if cfg.Budget < 0 {
			cfg.Budget = 0
		}
		// The independent pairing check assumes unique call ids.
		ids := map[string]bool{}
		for _, m := range in {
			for _, tc := range m.ToolCalls {
				if ids[tc.ID] {
					return
				}
				ids[tc.ID] = true
			}
		}
		if err := checkInvariants(in, out, cfg, c); err != nil {
			t.Fatal(err)
		}
	})
}

func benchConversation(n int) []messages.Message {
	out := []messages.Message{msg("system", "You are a helpful assistant with tools.")}
	for i := 0; len(out) < n; i++ {
		out = append(out, msg("user", fmt.Sprintf("question %d: what is the status of order %d?", i, i*7)))
		if i%3 == 0 {
			id := fmt.Sprintf("call_%d", i)
			out = append(out, call(id), result(id, strings.Repeat(fmt.Sprintf("row %d ok; ", i), 20)))
		}
		out = append(out, msg("assistant", strings.Repeat("The order is on its way. ", 1+i%8)))
	}
	return out[:n]
}

func BenchmarkPrune10k(b *testing.B) {
	conv := benchConversation(10_000)
	warm := tokens.Cached(tokens.For("gpt-4o"), 20_000)
	warm.CountMessages(conv)
	counters := map[string]tokens.Counter{"agentbus-offline": tokens.For(""), "gpt-4o": tokens.For("gpt-4o"), "gpt-4o-cached": warm}
	for _, model := range []string{"agentbus-offline", "gpt-4o", "gpt-4o-cached"} {
		c := counters[model]
		for _, s := range []Strategy{Importance, Recent, Window} {
			b.Run(string(s)+"/"+model, func(b *testing.B) {
				for b.Loop() {
					Prune(conv, Config{Strategy: s, Budget: 8000, Window: 50}, c)
				}
			})
		}
	}
}

func ExamplePrune() {
	history := []messages.Message{
		{Role: "system", Content: "You are a weather bot."},
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "weather", Arguments: `{"city":"Paris"}`}}}},
		{Role: "tool", ToolCallID: "c1", Content: `{"temp_c":21,"sky":"clear"}`},
		{Role: "assistant", Content: "Clear, 21°C."},
		{Role: "user", Content: "And in Oslo?"},
	}
	out := Prune(history, Config{Strategy: Recent, Budget: 60}, tokens.For("gpt-4o"))
	for _, m := range out {
		fmt.Println(m.Role, len(m.ToolCalls), m.Content)
	}
	// Output:
	// system 0 You are a weather bot.
	// assistant 0 Clear, 21°C.
	// user 0 And in Oslo?
}
