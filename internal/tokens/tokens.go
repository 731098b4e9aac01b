package tokens

import (
	"strings"
	"sync"

	"github.com/agentbus/agentbus/messages"
	tiktoken "github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// Counter counts tokens. Implementations are safe for concurrent use.
type Counter interface {
	// Count returns the number of tokens of text.
	Count(text string) int
	// CountMessages returns the prompt tokens of a chat: per message the
	// fixed overhead plus role, content, name, tool calls and tool_call_id,
	// and ReplyPriming once for the whole list (so CountMessages(nil) ==
	// ReplyPriming).
	CountMessages(msgs []messages.Message) int
}

// Encoding names.
const (
	// O200K is the encoding of gpt-4o, gpt-4.1, o1, o3, o4 and later models.
	O200K = "o200k_base"
	// CL100K is the encoding of gpt-4 and gpt-3.5-turbo.
	CL100K = "cl100k_base"
	// Estimate is the len/4 fallback used for every unknown model.
	Estimate = "estimate"
)

// Overheads as documented in OpenAI's cookbook ("How to count tokens with
// tiktoken") for current chat models.
const (
	// PerMessage is added for every message (<|start|>role ... <|end|>).
	PerMessage = 3
	// PerName is added when a message carries a name.
	PerName = 1
	// PerToolCall is added for every tool call (type, id and framing).
	PerToolCall = 3
	// ReplyPriming is added once per request (<|start|>assistant<|message|>).
	ReplyPriming = 3
)

// EncodingFor returns the encoding used for model: O200K, CL100K or
// Estimate. Matching is on lower-cased prefixes, so dated snapshots
// ("gpt-4o-2024-08-06") and provider-prefixed names ("openai/gpt-4o") work.
func EncodingFor(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:]
	}
	for _, p := range []string{"gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4"} {
		if hasFamilyPrefix(m, p) {
			return O200K
		}
	}
	for _, p := range []string{"gpt-4", "gpt-3.5"} {
		if hasFamilyPrefix(m, p) {
			return CL100K
		}
	}
	return Estimate
}

// hasFamilyPrefix reports whether m is family p or a variant of it: "o1" and
// "o1-mini" match "o1", "o10" or "o1x" do not.
func hasFamilyPrefix(m, p string) bool {
	if !strings.HasPrefix(m, p) {
		return false
	}
	if len(m) == len(p) {
		return true
	}
	c := m[len(p)]
	if p[0] == 'o' { // o-series: o1, o1-mini, o3-pro, o4-mini-high
		return c == '-' || c == '.' || c == '_'
	}
	return true // gpt-4o-mini, gpt-4-turbo, gpt-3.5-turbo-16k, gpt-4.1-nano
}

// For returns the Counter for model (see EncodingFor). It never fails and
// never touches the network.
func For(model string) Counter {
	switch enc := EncodingFor(model); enc {
	case O200K, CL100K:
		if tk, err := encoder(enc); err == nil {
			return &BPE{name: enc, tk: tk}
		}
	}
	return Estimator{}
}

type encoderOnce struct {
	once sync.Once
	tk   *tiktoken.Tiktoken
	err  error
}

// encoders is immutable after package init: one lazily-built encoder per
// encoding, built at most once per process.
var encoders = map[string]*encoderOnce{O200K: {}, CL100K: {}}

var loaderOnce sync.Once

func encoder(name string) (*tiktoken.Tiktoken, error) {
	e := encoders[name]
	e.once.Do(func() {
		// The offline loader reads ranks embedded in the binary; tiktoken's
		// default loader would download them over HTTPS.
		loaderOnce.Do(func() { tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader()) })
		e.tk, e.err = tiktoken.GetEncoding(name)
	})
	return e.tk, e.err
}

// BPE counts with a tiktoken encoding.
type BPE struct {
	name string
	tk   *tiktoken.Tiktoken
}

// Encoding returns the encoding name (O200K or CL100K).
func (b *BPE) Encoding() string { return b.name }

// Count returns the number of BPE tokens of text. Special-token text such as
// "<|endoftext|>" is counted as ordinary text (user content never becomes a
// control token).
func (b *BPE) Count(text string) int {
	if text == "" {
		return 0
	}
	return len(b.tk.EncodeOrdinary(text))
}

// CountMessages implements Counter.
func (b *BPE) CountMessages(msgs []messages.Message) int { return countMessages(b, msgs) }

// Estimator is the fallback Counter: ceil(len(text)/4) bytes per token.
type Estimator struct{}

// Encoding returns Estimate.
func (Estimator) Encoding() string { return Estimate }

// Count returns ceil(len(text)/4).
func (Estimator) Count(text string) int { return (len(text) + 3) / 4 }

// CountMessages implements Counter with the same overheads as BPE.
func (e Estimator) CountMessages(msgs []messages.Message) int { return countMessages(e, msgs) }

// MessageTokens returns the tokens one message adds to a prompt (without
// ReplyPriming): CountMessages(msgs) == ReplyPriming + Σ MessageTokens.
func MessageTokens(c Counter, m *messages.Message) int {
	n := PerMessage + c.Count(m.Role) + c.Count(m.Content)
	if m.Name != "" {
		n += PerName + c.Count(m.Name)
	}
	if m.ToolCallID != "" {
		n += c.Count(m.ToolCallID)
	}
	for i := range m.ToolCalls {
		tc := &m.ToolCalls[i]
		n += PerToolCall + c.Count(tc.ID) + c.Count(tc.Function.Name) + c.Count(tc.Function.Arguments)
	}
	return n
}

func countMessages(c Counter, msgs []messages.Message) int {
	n := ReplyPriming
	for i := range msgs {
		n += MessageTokens(c, &msgs[i])
	}
	return n
}
