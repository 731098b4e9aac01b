package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentbus/agentbus/messages"
)

// TextLimit is how many characters of free text (answers, reasons, tool
// arguments and results) Format prints before it cuts with "...".
const TextLimit = 120

// TimeFormat is the layout of the time column of Format (UTC).
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Format writes ev as one human-readable line:
//
//	#12 2026-11-29T18:50:54.123Z completed  req=r1 conv=c1 tools=1 tokens=42 answer="17*23 = 391"
//
// then the interesting part of the payload: the guard's verdict and rules
// (admitted), the tool calls with their arguments (toolcalls), the tool
// verdicts and results (tooled), the final answer (generated, completed),
// the rejection code and reason (rejected) or the failure (failed). Free
// text is quoted (control characters escaped, so a payload cannot drive the
// terminal) and cut at TextLimit characters. A payload that does not
// decode is shown raw, quoted and cut, with the decode error.
func Format(w io.Writer, ev Event) error {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %-9s req=%s conv=%s", ev.Seq, ev.Time.UTC().Format(TimeFormat), orDash(ev.Event), orDash(ev.RequestID), orDash(ev.ConversationID))
	if err := details(&b, ev); err != nil {
		fmt.Fprintf(&b, " undecodable (%s) data=%s", cut(err.Error()), quote(string(ev.Data)))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

func details(b *strings.Builder, ev Event) error {
	switch ev.Event {
	case messages.EventReceived:
		var t messages.Turn
		if err := json.Unmarshal(ev.Data, &t); err != nil {
			return err
		}
		fmt.Fprintf(b, " user=%s endpoint=%s", orDash(t.User), orDash(t.Endpoint))
		if t.Model != "" {
			fmt.Fprintf(b, " model=%s", orDash(t.Model))
		}
		fmt.Fprintf(b, " msgs=%d", len(t.Messages))
		if n := len(t.Messages); n > 0 {
			fmt.Fprintf(b, " %s=%s", orDash(t.Messages[n-1].Role), quote(t.Messages[n-1].Content))
		}
	case messages.EventAdmitted:
		var a messages.Admitted
		if err := json.Unmarshal(ev.Data, &a); err != nil {
			return err
		}
		fmt.Fprintf(b, " guard=%s score=%.2f", orDash(a.Guard.Action), a.Guard.Score)
		if len(a.Guard.Rules) > 0 {
			fmt.Fprintf(b, " rules=%s", list(a.Guard.Rules))
		}
		if a.Guard.EstimatedTokens > 0 {
			fmt.Fprintf(b, " est_tokens=%d", a.Guard.EstimatedTokens)
		}
	case messages.EventRejected:
		var r messages.Rejected
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			return err
		}
		fmt.Fprintf(b, " code=%s status=%d reason=%s", orDash(r.Code), r.Status, quote(r.Reason))
		if len(r.Rules) > 0 {
			fmt.Fprintf(b, " rules=%s score=%.2f", list(r.Rules), r.Score)
		}
		if r.RetryAfterMS > 0 {
			fmt.Fprintf(b, " retry_after=%s", time.Duration(r.RetryAfterMS)*time.Millisecond)
		}
	case messages.EventToolCalls, messages.EventTooled, messages.EventGenerated:
		var g messages.Generation
		if err := json.Unmarshal(ev.Data, &g); err != nil {
			return err
		}
		fmt.Fprintf(b, " round=%d", g.Round)
		if g.Provider != "" || g.ResolvedModel != "" {
			fmt.Fprintf(b, " provider=%s model=%s", orDash(g.Provider), orDash(g.ResolvedModel))
		}
		switch ev.Event {
		case messages.EventToolCalls:
			if last, ok := g.Final(); ok {
				writeCalls(b, last.ToolCalls)
			}
		case messages.EventTooled:
			writeResults(b, g.Steps, g.ToolVerdicts)
		default:
			fmt.Fprintf(b, " tokens=%d", g.Usage.TotalTokens)
			writeCache(b, g.CacheUse)
			if last, ok := g.Final(); ok {
				fmt.Fprintf(b, " answer=%s", quote(last.Content))
			}
		}
	case messages.EventCompleted:
		var c messages.Completed
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			return err
		}
		n := 0
		for _, s := range c.Steps {
			n += len(s.ToolCalls)
		}
		fmt.Fprintf(b, " user=%s model=%s tools=%d tokens=%d", orDash(c.User), orDash(c.Model), n, c.Usage.TotalTokens)
		writeCache(b, c.Cache)
		fmt.Fprintf(b, " answer=%s", quote(c.Message.Content))
	case messages.EventFailed:
		var f messages.Failed
		if err := json.Unmarshal(ev.Data, &f); err != nil {
			return err
		}
		fmt.Fprintf(b, " stage=%s code=%s status=%d reason=%s", orDash(f.Stage), orDash(f.Code), f.Status, quote(f.Reason))
		for _, v := range f.ToolVerdicts {
			if v.Verdict != "allow" {
				fmt.Fprintf(b, " %s=%s(%s)", orDash(v.Tool), orDash(v.Verdict), cut(v.Rule))
			}
		}
	default:
		fmt.Fprintf(b, " subject=%s data=%s", quote(ev.Subject), quote(string(ev.Data)))
	}
	return nil
}

// writeCalls writes " calls: name(args), name(args)".
func writeCalls(b *strings.Builder, calls []messages.ToolCall) {
	b.WriteString(" calls:")
	for i, c := range calls {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, " %s(%s)", orDash(c.Function.Name), cut(c.Function.Arguments))
	}
}

// writeResults writes, for each tool verdict, the verdict and the matching
// tool result: " results: calc=allow "391", exec=block(rule)".
func writeResults(b *strings.Builder, steps []messages.Message, verdicts []messages.ToolVerdict) {
	results := make(map[string]string)
	for _, s := range steps {
		if s.Role == messages.RoleTool {
			results[s.ToolCallID] = s.Content
		}
	}
	b.WriteString(" results:")
	for i, v := range verdicts {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, " %s=%s", orDash(v.Tool), orDash(v.Verdict))
		if v.Rule != "" {
			fmt.Fprintf(b, "(%s)", cut(v.Rule))
		}
		if v.ResultVerdict != "" && v.ResultVerdict != "allow" {
			fmt.Fprintf(b, " result=%s", cut(v.ResultVerdict))
		}
		if r, ok := results[v.ToolCallID]; ok {
			fmt.Fprintf(b, " %s", quote(r))
		}
	}
}

// orDash returns s made safe by cut, or "-" if it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return cut(s)
}

// list joins names made safe by cut.
func list(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = cut(n)
	}
	return strings.Join(out, ",")
}

// quote cuts s at TextLimit characters and quotes it (control characters
// and invalid UTF-8 escaped).
func quote(s string) string {
	if utf8.RuneCountInString(s) <= TextLimit {
		return strconv.Quote(s)
	}
	r := []rune(s)
	return strconv.Quote(string(r[:TextLimit])) + "..."
}

// cut is quote without the quotes, for JSON arguments that read better
// bare: it cuts at TextLimit characters and escapes only control,
// format and invalid characters.
func cut(s string) string {
	var b strings.Builder
	for i, n := 0, 0; i < len(s); n++ {
		if n == TextLimit {
			b.WriteString("...")
			break
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsGraphic(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// writeCache shows what the response cache did for a turn: "cache=hit
// saved_tokens=42", or "cache=miss".
func writeCache(b *strings.Builder, c *messages.CacheUse) {
	if st := c.Status(); st != "" {
		fmt.Fprintf(b, " cache=%s", st)
		if c.Saved.TotalTokens > 0 {
			fmt.Fprintf(b, " saved_tokens=%d", c.Saved.TotalTokens)
		}
	}
}
