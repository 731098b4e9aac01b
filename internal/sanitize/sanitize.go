package sanitize

import (
	"fmt"
	"slices"
	"strings"
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
	Rules   []string `json:"rules"`            // ids of the rules that fired, never nil
	Reason  string   `json:"reason,omitempty"` // human-readable; never echoes the input
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
	cfg   Config
	model *model
	roles map[string]bool
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
	s := &Sanitizer{cfg: cfg, model: m, roles: map[string]bool{}}
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

// Check judges one text. Invalid UTF-8, control characters other than \t \n
// \r, and texts over MaxBytes or MaxChars are blocked with score 1 and an
// "encoding.*" or "limit.*" rule. Otherwise the text is normalised and
// scored: the noisy-OR of the weighted rules that fired and the linear
// model's probability.
func (s *Sanitizer) Check(text string) Verdict {
	if len(text) > s.cfg.MaxBytes {
		return reject(RuleMaxBytes, fmt.Sprintf("message is %d bytes, limit %d", len(text), s.cfg.MaxBytes))
	}
	n := 0
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
				return reject(RuleControlChars, fmt.Sprintf("control character U+%04X at byte %d", c, i))
			}
			i++
			n++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			return reject(RuleInvalidUTF8, fmt.Sprintf("invalid UTF-8 at byte %d", i))
		}
		if r >= 0x80 && r <= 0x9f {
			return reject(RuleControlChars, fmt.Sprintf("control character U+%04X at byte %d", r, i))
		}
		i += size
		n++
	}
	if n > s.cfg.MaxChars {
		return reject(RuleMaxChars, fmt.Sprintf("message is %d characters, limit %d", n, s.cfg.MaxChars))
	}
	return s.judge(analyze(text))
}

func (s *Sanitizer) judge(d *doc) Verdict {
	ids, r := d.match()
	p := s.model.score(d.toks)
	if p >= s.cfg.FlagThreshold {
		ids = append(ids, RuleModel)
	}
	score := 1 - (1-r)*(1-p)
	v := Verdict{Verdict: VerdictAllow, Score: score, Rules: ids}
	if v.Rules == nil {
		v.Rules = []string{}
	}
	switch {
	case score >= s.cfg.BlockThreshold:
		v.Verdict = s.cfg.Action
	case score >= s.cfg.FlagThreshold:
		v.Verdict = VerdictFlag
	}
	if v.Verdict != VerdictAllow {
		v.Reason = fmt.Sprintf("possible prompt injection (score %.2f): %s", score, strings.Join(ids, ", "))
	}
	return v
}

// CheckMessages applies the count and total-size limits, then checks the
// content of every message whose role is in Config.Roles (by default user,
// system, developer and tool: everything a client or a tool supplied). It
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
		v := s.Check(msgs[i].Content)
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
