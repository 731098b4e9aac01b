package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"unicode/utf8"

	"github.com/agentbus/agentbus/internal/calc"
	"github.com/agentbus/agentbus/messages"
)

// OfflineName is the name and model of the Offline provider.
const OfflineName = "agentbus-offline"

// CalculatorTool is the tool name the Offline provider calls for arithmetic.
const CalculatorTool = "calculator"

// Offline is a deterministic Provider that needs no network and answers in
// microseconds: the default when no provider is configured, and the model
// of tests and benchmarks.
//
//   - The last message is a user message with an arithmetic expression
//     ("What is 17*23?") and a tool named "calculator" is offered: it
//     answers with a tool call calculator {"expression":"17*23"}.
//   - Same, but no calculator offered: it computes the answer itself
//     ("17*23 = 391").
//   - The last messages are tool results: it answers with a sentence
//     containing them ("17*23 = 391").
//   - Otherwise: "You said: <first 200 characters of the last user message>".
//
// It honours tool_choice (none: no tool call; required or a named
// function: a call even without an expression, with the user's text as
// the argument), stop (the answer ends before the first stop sequence)
// and max_tokens / max_completion_tokens (the answer is cut at that many
// estimated tokens, finish reason "length"). Usage is estimated as
// bytes/4. Streaming sends the answer word by word.
type Offline struct{}

// NewOffline returns the Offline provider.
func NewOffline() *Offline { return &Offline{} }

// Name returns "agentbus-offline".
func (*Offline) Name() string { return OfflineName }

// Complete answers req deterministically; see Offline.
func (o *Offline) Complete(ctx context.Context, req Request, onDelta func(string)) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, fmt.Errorf("provider %s: %w", OfflineName, err)
	}
	msg, finish := offlineAnswer(req)
	if msg.Content != "" {
		msg.Content, finish = offlineLimits(req.Params, msg.Content, finish)
	}
	prompt := 0
	for _, m := range req.Messages {
		prompt += len(m.Content)
		for _, tc := range m.ToolCalls {
			prompt += len(tc.Function.Name) + len(tc.Function.Arguments)
		}
	}
	completion := len(msg.Content)
	for _, tc := range msg.ToolCalls {
		completion += len(tc.Function.Name) + len(tc.Function.Arguments)
	}
	pt, ct := estimateTokens(prompt), estimateTokens(completion)
	if onDelta != nil && msg.Content != "" {
		s := msg.Content
		for s != "" {
			i := strings.IndexByte(s, ' ')
			if i < 0 {
				i = len(s) - 1
			}
			onDelta(s[:i+1])
			s = s[i+1:]
		}
	}
	return Response{
		Message: msg, Model: OfflineName, FinishReason: finish, Provider: OfflineName,
		Usage: messages.Usage{PromptTokens: pt, CompletionTokens: ct, TotalTokens: pt + ct},
	}, nil
}

func estimateTokens(bytes int) int {
	if bytes == 0 {
		return 0
	}
	return (bytes + 3) / 4
}

func offlineAnswer(req Request) (messages.Message, string) {
	ms := req.Messages
	answer := func(s string) (messages.Message, string) {
		return messages.Message{Role: messages.RoleAssistant, Content: s}, "stop"
	}
	if len(ms) == 0 {
		return answer("Hello! Ask me something.")
	}
	last := ms[len(ms)-1]
	switch last.Role {
	case messages.RoleTool:
		return answer(summariseToolResults(ms))
	case messages.RoleUser:
		expr := findExpression(last.Content)
		tc := req.Params.ToolChoice
		tool := CalculatorTool
		forced := false
		switch {
		case tc != nil && tc.Mode == messages.ToolChoiceNone:
			tool = ""
		case tc != nil && tc.Mode == messages.ToolChoiceFunction && hasTool(req.Tools, tc.Function):
			tool, forced = tc.Function, true
		case tc != nil && tc.Mode == messages.ToolChoiceRequired && len(req.Tools) > 0:
			forced = true
			if !hasTool(req.Tools, CalculatorTool) {
				tool = req.Tools[0].Name
			}
		}
		if forced && expr == "" {
			expr = firstRunes(strings.TrimSpace(last.Content), maxExprLen)
		}
		if expr != "" {
			if tool != "" && hasTool(req.Tools, tool) {
				args, _ := json.Marshal(map[string]string{"expression": expr})
				h := fnv.New64a()
				fmt.Fprintf(h, "%d/%s", len(ms), expr)
				return messages.Message{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{{
					ID: fmt.Sprintf("call_%016x", h.Sum64()), Type: "function",
					Function: messages.FunctionCall{Name: tool, Arguments: string(args)},
				}}}, "tool_calls"
			}
			if v, err := evalArithmetic(expr); err == nil {
				return answer(expr + " = " + calc.Format(v))
			} else {
				return answer("I cannot compute " + expr + ": " + err.Error() + ".")
			}
		}
		return answer("You said: " + firstRunes(last.Content, 200))
	}
	return answer("You said: " + firstRunes(last.Content, 200))
}

// offlineLimits applies stop sequences and the token bound to an answer.
func offlineLimits(p messages.Params, content, finish string) (string, string) {
	for _, s := range p.Stop {
		if i := strings.Index(content, s); s != "" && i >= 0 {
			content = content[:i]
		}
	}
	limit := p.MaxCompletionTokens
	if limit == nil {
		limit = p.MaxTokens
	}
	if limit != nil && estimateTokens(len(content)) > *limit {
		n := *limit * 4
		for n > 0 && !utf8.RuneStart(content[n]) {
			n--
		}
		return content[:n], "length"
	}
	return content, finish
}

func hasTool(tools []ToolSpec, name string) bool {
	for _, t := range tools {
		if strings.EqualFold(t.Name, name) {
			return true
		}
	}
	return false
}

// summariseToolResults turns the trailing tool messages into a sentence,
// pairing each with the expression of its calculator call when known.
func summariseToolResults(ms []messages.Message) string {
	start := len(ms)
	for start > 0 && ms[start-1].Role == messages.RoleTool {
		start--
	}
	calls := map[string]messages.FunctionCall{}
	for _, m := range ms[:start] {
		for _, tc := range m.ToolCalls {
			calls[tc.ID] = tc.Function
		}
	}
	var parts []string
	for _, m := range ms[start:] {
		result := firstRunes(strings.TrimSpace(toolResultText(m.Content)), 200)
		fc, ok := calls[m.ToolCallID]
		var args struct {
			Expression string `json:"expression"`
		}
		if ok && strings.EqualFold(fc.Name, CalculatorTool) && json.Unmarshal([]byte(fc.Arguments), &args) == nil && args.Expression != "" {
			parts = append(parts, args.Expression+" = "+result)
		} else if ok {
			parts = append(parts, "The "+fc.Name+" tool returned: "+result)
		} else {
			parts = append(parts, "The tool returned: "+result)
		}
	}
	return strings.Join(parts, "; ")
}

// toolResultText unwraps {"result": x} tool results.
func toolResultText(s string) string {
	var r struct {
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal([]byte(s), &r) == nil && len(r.Result) > 0 {
		var str string
		if json.Unmarshal(r.Result, &str) == nil {
			return str
		}
		return string(r.Result)
	}
	return s
}

func firstRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

func isExprByte(c byte) bool {
	return c >= '0' && c <= '9' || strings.IndexByte("+-*/^%(). ", c) >= 0
}

// findExpression returns the longest run of arithmetic characters in s that
// contains a digit and a binary operator, trimmed; "" if none.
func findExpression(s string) string {
	best := ""
	for i := 0; i < len(s); {
		if !isExprByte(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isExprByte(s[j]) {
			j++
		}
		cand := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(s[i:j]), ". "))
		cand = strings.TrimLeft(cand, ". ")
		if len(cand) > len(best) && looksArithmetic(cand) {
			best = cand
		}
		i = j
	}
	return best
}

func looksArithmetic(s string) bool {
	digit, op := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			digit = true
		} else if strings.IndexByte("+-*/^%", c) >= 0 && digit {
			op = true // an operator after a digit: binary
		}
	}
	if !digit || !op {
		return false
	}
	_, err := evalArithmetic(s)
	return err == nil || errors.Is(err, calc.ErrDivisionByZero)
}

// maxExprLen bounds the expressions the offline model computes or passes
// to the calculator.
const maxExprLen = 256

// evalArithmetic is the calculator tool's evaluation (package calc), so
// the offline model's own answer is the one the tool would give.
func evalArithmetic(s string) (float64, error) {
	return calc.Eval(s, calc.Limits{MaxLength: maxExprLen})
}
