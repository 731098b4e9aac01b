package sanitize

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/agentbus/agentbus/messages"
)

// Verdicts.
const (
	VerdictAllow = "allow"
	VerdictFlag  = "flag"
	VerdictBlock = "block"
)

// Rule ids of hard rejections (score 1, always "block").
const (
	RuleMaxBytes      = "limit.max_bytes"
	RuleMaxChars      = "limit.max_chars"
	RuleMaxMessages   = "limit.max_messages"
	RuleMaxTotalBytes = "limit.max_total_bytes"
	RuleInvalidUTF8   = "encoding.invalid_utf8"
	RuleControlChars  = "encoding.control_chars"
	RuleBadJSON       = "input.bad_json"
	// RuleModel fires when the linear model alone scores at or above the
	// flag threshold.
	RuleModel = "model.injection"
)

// Verdict is the judgement of one text or of a list of messages.
type Verdict struct {
	Verdict string   `json:"verdict"`          // "allow" | "flag" | "block"
	Score   float64  `json:"score"`            // 0..1
	Rules   []string `json:"rules"`            // ids of the rules that fired in the deciding passage, never nil
	Reason  string   `json:"reason,omitempty"` // human-readable; never echoes the input, no offsets
	// Passage is the part of the text that decided the verdict, for audit
	// records and logs (never for the client: offsets help an attacker
	// find what to change).
	Passage *Passage `json:"passage,omitempty"`
}

// Passage locates the passage that decided a verdict.
type Passage struct {
	// Start and End are byte offsets into the judged text, [Start, End).
	Start int `json:"start"`
	End   int `json:"end"`
	// Rule is the strongest signal in the passage: a rule id, or
	// "model.injection" when the model outweighed every rule.
	Rule string `json:"rule"`
	// Score is the passage's score (the verdict's score).
	Score float64 `json:"score"`
}

// rank orders verdicts: block > flag > allow.
func rank(v string) int {
	switch v {
	case VerdictBlock:
		return 2
	case VerdictFlag:
		return 1
	}
	return 0
}

// Sanitizer judges untrusted text. It is safe for concurrent use.
type Sanitizer struct {
	cfg     Config
	model   *model
	roles   map[string]bool
	input   limits
	result  limits
	toolMsg limits    // tool messages in a client's turn: input size, result thresholds
	pool    sync.Pool // *work
}

// limits are the size bounds and thresholds of one kind of text.
type limits struct {
	maxBytes, maxChars int
	flag, block        float64
	doc                bool // always a document (a tool result)
}

// work is the reusable state of one check.
type work struct {
	d  doc
	sm sums
}

// New returns a Sanitizer using the embedded model.
func New(cfg Config) (*Sanitizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := parseModel(modelBin)
	if err != nil {
		return nil, err
	}
	return newWithModel(cfg, m)
}

func newWithModel(cfg Config, m *model) (*Sanitizer, error) {
	cfg = cfg.withDefaults(m)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sanitizer{cfg: cfg, model: m, roles: map[string]bool{},
		input:  limits{cfg.MaxBytes, cfg.MaxChars, cfg.FlagThreshold, cfg.BlockThreshold, false},
		result: limits{cfg.ResultMaxBytes, cfg.ResultMaxBytes, cfg.ResultFlagThreshold, cfg.ResultBlockThreshold, true},
	}
	s.toolMsg = limits{cfg.MaxBytes, cfg.MaxChars, cfg.ResultFlagThreshold, cfg.ResultBlockThreshold, true}
	s.pool.New = func() any { return new(work) }
	for _, r := range cfg.Roles {
		s.roles[r] = true
	}
	return s, nil
}

// Config returns the effective configuration (defaults filled in).
func (s *Sanitizer) Config() Config { return s.cfg }

func reject(rule, reason string) Verdict {
	return Verdict{Verdict: VerdictBlock, Score: 1, Rules: []string{rule}, Reason: reason}
}

func rejectAt(rule, reason string, start, end int) Verdict {
	v := reject(rule, reason)
	v.Passage = &Passage{Start: start, End: end, Rule: rule, Score: 1}
	return v
}

// Check judges one text a client supplied, with the input thresholds and
// limits. Invalid UTF-8, control characters other than those ordinary
// documents contain (tab, line feed, vertical tab, form feed, carriage
// return, backspace, and complete ANSI CSI escape sequences such as colour
// codes), and texts over MaxBytes or MaxChars are blocked with score 1 and
// an "encoding.*" or "limit.*" rule. Otherwise the text is normalised, cut
// into passages, and scored by its most suspicious passage: the noisy-OR of
// the weighted rules that fired in the passage and the linear model's
// probability for it.
func (s *Sanitizer) Check(text string) Verdict { return s.check(text, &s.input) }

// CheckResult judges a tool result before it enters a model's context,
// with the result thresholds and size limit (ResultFlagThreshold,
// ResultBlockThreshold, ResultMaxBytes); otherwise as Check.
func (s *Sanitizer) CheckResult(text string) Verdict { return s.check(text, &s.result) }

func (s *Sanitizer) check(text string, lim *limits) Verdict {
	if len(text) > lim.maxBytes {
		return reject(RuleMaxBytes, fmt.Sprintf("message is %d bytes, limit %d", len(text), lim.maxBytes))
	}
	n := 0
	for i := 0; i < len(text); {
		// Eight printable ASCII bytes at a time.
		if i+8 <= len(text) && printableASCII8(binary.LittleEndian.Uint64([]byte(text[i:i+8]))) {
			i += 8
			n += 8
			continue
		}
		c := text[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && !docControl(c) || c == 0x7f {
				if c == 0x1b {
					if j, ok := csiEnd(text, i); ok {
						i = j
						continue
					}
				}
				return rejectAt(RuleControlChars, fmt.Sprintf("control character U+%04X at byte %d", c, i), i, i+1)
			}
			i++
			n++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			return rejectAt(RuleInvalidUTF8, fmt.Sprintf("invalid UTF-8 at byte %d", i), i, i+1)
		}
		if r >= 0x80 && r <= 0x9f {
			return rejectAt(RuleControlChars, fmt.Sprintf("control character U+%04X at byte %d", r, i), i, i+size)
		}
		i += size
		n++
	}
	if n > lim.maxChars {
		return reject(RuleMaxChars, fmt.Sprintf("message is %d characters, limit %d", n, lim.maxChars))
	}
	w := s.pool.Get().(*work)
	defer s.pool.Put(w)
	w.d.analyze(text)
	return s.judge(&w.d, &w.sm, lim)
}

// printableASCII8 reports whether the eight bytes of x are all in 0x20..0x7e.
func printableASCII8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	// A byte below 0x20, or at or above 0x7f, sets its high bit in one of
	// the terms.
	return ((x-lo*0x20)|(x+lo*(0x80-0x7f))|x)&hi == 0
}

// docControl reports the control characters ordinary documents contain:
// tab, line feed, vertical tab, form feed (page breaks), carriage return and
// backspace (overstrike in man pages).
func docControl(c byte) bool {
	return c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' || c == '\b'
}

func (s *Sanitizer) judge(d *doc, sm *sums, lim *limits) Verdict {
	jd := s.model.judgeDoc(d, sm, lim.flag, lim.doc)
	v := Verdict{Verdict: VerdictAllow, Score: jd.score, Rules: jd.rules}
	start, end := d.span(jd.i, jd.j)
	v.Passage = &Passage{Start: start, End: end, Rule: jd.strongest, Score: jd.score}
	switch {
	case jd.score >= lim.block:
		v.Verdict = s.cfg.Action
	case jd.score >= lim.flag:
		v.Verdict = VerdictFlag
	}
	if v.Verdict != VerdictAllow {
		v.Reason = fmt.Sprintf("possible prompt injection (score %.2f): %s", jd.score, strings.Join(v.Rules, ", "))
	}
	return v
}

// CheckMessages applies the count and total-size limits, then checks the
// content of every message whose role is in Config.Roles (by default user,
// system, developer and tool: everything a client or a tool supplied):
// "tool" messages, tool results the client ran itself, are judged with the
// result thresholds, the others with the input thresholds; both with the
// input size limits. It
// returns the worst verdict, with the rules of every non-allowed message
// merged, and the index of the worst message: -1 when the verdict is allow
// or a list-level limit fired. Among equal verdicts the higher score is worse.
func (s *Sanitizer) CheckMessages(msgs []messages.Message) (Verdict, int) {
	if len(msgs) > s.cfg.MaxMessages {
		return reject(RuleMaxMessages, fmt.Sprintf("%d messages, limit %d", len(msgs), s.cfg.MaxMessages)), -1
	}
	total := 0
	for i := range msgs {
		if s.roles[msgs[i].Role] {
			total += len(msgs[i].Content)
		}
	}
	if total > s.cfg.MaxTotalBytes {
		return reject(RuleMaxTotalBytes, fmt.Sprintf("messages total %d bytes, limit %d", total, s.cfg.MaxTotalBytes)), -1
	}
	worst := Verdict{Verdict: VerdictAllow, Rules: []string{}}
	idx := -1
	var merged []string
	for i := range msgs {
		if !s.roles[msgs[i].Role] {
			continue
		}
		lim := &s.input
		if msgs[i].Role == messages.RoleTool {
			lim = &s.toolMsg
		}
		v := s.check(msgs[i].Content, lim)
		if v.Verdict != VerdictAllow {
			for _, r := range v.Rules {
				if !slices.Contains(merged, r) {
					merged = append(merged, r)
				}
			}
		}
		if idx < 0 || rank(v.Verdict) > rank(worst.Verdict) ||
			rank(v.Verdict) == rank(worst.Verdict) && v.Score > worst.Score {
			worst, idx = v, i
		}
	}
	if worst.Verdict == VerdictAllow {
		return worst, -1
	}
	worst.Rules = merged
	worst.Reason = fmt.Sprintf("message %d: %s", idx, worst.Reason)
	return worst, idx
}
