package sanitize

import (
	"math"
	"slices"
	"sort"
	"strings"
)

// Passages: a text is judged by its most suspicious passage, never by a sum
// over the whole text, so a score does not grow with length. A text of at
// most shortTokens tokens (a prompt) is one passage; a longer one (a
// document) is cut into passages of passageTokens consecutive tokens
// starting at sentence or line starts.
const shortTokens = 128

const (
	passageTokens = 64
	// Passages start at sentence starts at least minStride tokens apart,
	// and at least every maxStride tokens in a long sentence.
	minStride = 8
	maxStride = 24
)

// match is one firing of a rule over tokens [i, j].
type match struct {
	rule int32
	i, j int32
}

// ruleIDs are the distinct rule ids, in the order they are reported;
// ruleIDIndex[r] is the index of rules[r].id in it.
var (
	ruleIDs      []string
	ruleIDIndex  []int
	ruleIndirect []bool // by id index: an "indirect.*" rule
)

func init() {
	for _, r := range rules {
		i := slices.Index(ruleIDs, r.id)
		if i < 0 {
			i = len(ruleIDs)
			ruleIDs = append(ruleIDs, r.id)
			ruleIndirect = append(ruleIndirect, strings.HasPrefix(r.id, "indirect."))
		}
		ruleIDIndex = append(ruleIDIndex, i)
	}
	if kAllClasses > 128 || len(rules) > 128 {
		panic("sanitize: more than 128 word classes or rules")
	}
}

// matches returns every firing of every rule, ordered by first token.
func (d *doc) matches(out []match) []match {
	for k := range d.toks {
		t := &d.toks[k]
		var cands []int16
		if t.lex >= 0 {
			cands = lexSlots[t.lex].rules
		}
		tok := t.cls.any(tokenFirst)
		if len(cands) == 0 && !tok {
			continue
		}
		for pass := 0; pass < 2; pass++ {
			if pass == 1 {
				if !tok {
					break
				}
				cands = tokenRules
			}
			for _, ri := range cands {
				r := &rules[ri]
				st := &r.steps[0]
				if pass == 1 && !t.cls.any(st.class) || st.start && !t.cls.has(kSentStart) {
					continue
				}
				if e := d.matchFrom(r.steps[1:], k+1, k); e >= 0 {
					out = append(out, match{int32(ri), int32(k), int32(e)})
				}
			}
		}
	}
	return out
}

// matchFrom matches steps from token pos on and returns the index of the
// last token matched (last when there are no steps), or -1.
func (d *doc) matchFrom(steps []step, pos, last int) int {
	if len(steps) == 0 {
		return last
	}
	st := &steps[0]
	end := min(pos+st.gap+1, len(d.toks))
	for j := pos; j < end; j++ {
		c := &d.toks[j].cls
		if c[0]&st.class[0]|c[1]&st.class[1] == 0 || st.start && !c.has(kSentStart) {
			continue
		}
		if e := d.matchFrom(steps[1:], j+1, j); e >= 0 {
			return e
		}
	}
	return -1
}

// passageStarts returns the first token of every passage.
func (d *doc) passageStarts(out []int) []int {
	n := len(d.toks)
	if n <= shortTokens {
		return append(out, 0)
	}
	last := -maxStride
	for k := 0; k < n; k++ {
		t := &d.toks[k]
		if t.s == stopToken {
			continue
		}
		brk := k > 0 && d.toks[k-1].s == boundaryToken
		if k-last >= maxStride || brk || t.cls.has(kSentStart) && k-last >= minStride {
			out = append(out, k)
			last = k
		}
	}
	return out
}

func logit(p float64) float64 {
	p = min(max(p, 1e-9), 1-1e-9)
	return math.Log(p / (1 - p))
}

// forPassages calls fn with the token range [i, j) of every passage, in
// order. Every passage of a long text has passageTokens tokens: the last
// ones end at the text's end.
func (d *doc) forPassages(fn func(i, j int)) {
	n := len(d.toks)
	seen := -1
	d.starts = d.passageStarts(d.starts[:0])
	for _, st := range d.starts {
		i, j := st, min(st+passageTokens, n)
		if n <= shortTokens {
			j = n
		} else if j-i < passageTokens {
			i = max(0, j-passageTokens)
		}
		if i <= seen {
			continue
		}
		seen = i
		fn(i, j)
	}
}

// judgement is the score of a text's most suspicious passage.
type judgement struct {
	score, p, r float64  // the passage's score, its n-gram part alone, the rules' noisy-OR
	i, j        int      // its token range
	rules       []string // rules that fired in it, in report order
	strongest   string   // the rule with the largest weight, or RuleModel
}

// judgeDoc scores every passage of d and returns the worst. A text of at
// most shortTokens tokens is one passage judged by the short head, unless
// asDoc (a tool result: always a document); a longer one is judged by the
// long head. flagAt decides whether the model alone is reported as a rule.
func (m *model) judgeDoc(d *doc, sm *sums, flagAt float64, asDoc bool) judgement {
	ms := d.ruleMatches()
	weights := make([]float64, len(ruleIDs))
	h := &m.long
	if len(d.toks) <= shortTokens && !asDoc {
		h = &m.short
	}
	shortLogit := 0.0
	if h.doc {
		h.prepare(d.toks, sm)
	} else {
		// A short text is one passage; each distinct feature counts once.
		if len(sm.seen) < modelDim/64 {
			sm.seen = make([]uint64, modelDim/64)
		}
		shortLogit = h.distinctLogit(d.toks, sm.seen)
	}
	bias := float64(h.bias)
	best := judgement{score: -1}
	bestZ := math.Inf(-1) // logit of best.score
	mi, ei := 0, 0        // first match and event at or after the passage start
	d.forPassages(func(i, j int) {
		for mi < len(ms) && int(ms[mi].i) < i {
			mi++
		}
		for ei < len(d.events) && int(d.events[ei].tok) < i {
			ei++
		}
		var rd, ri float64
		if mi < len(ms) && int(ms[mi].i) < j || ei < len(d.events) && int(d.events[ei].tok) < j || d.flood {
			rd, ri = d.ruleScore(ms, i, j, weights)
		}
		lg := shortLogit
		if h.doc {
			lg = h.passageLogit(d.toks, sm, i, j)
		}
		li := 0.0
		if ri > 0 {
			li = h.indirectLogit(weights)
		}
		if rd == 0 && (ri == 0 || h.doc) && bias+lg+li <= bestZ {
			return // most passages: no rule, and no better than the best
		}
		p := sigmoid(bias + lg + li)
		score := 1 - (1-rd)*(1-p)
		if !h.doc {
			// In a prompt the document rules count with their hand-set
			// weights, as every rule did in the first model.
			score = 1 - (1-rd)*(1-ri)*(1-p)
		}
		if score > best.score {
			bestZ = logit(score)
			best = judgement{score: score, p: sigmoid(bias + lg), r: 1 - (1-rd)*(1-ri), i: i, j: j}
		}
	})
	if best.score < 0 {
		best = judgement{score: sigmoid(bias), p: sigmoid(bias)}
	}
	best.rules, best.strongest = d.passageRules(ms, best, flagAt)
	return best
}

// ruleMatches returns the rules' matches and orders the events by token.
func (d *doc) ruleMatches() []match {
	slices.SortStableFunc(d.events, func(a, b event) int { return int(a.tok) - int(b.tok) })
	d.ms = d.matches(d.ms[:0])
	return d.ms
}

// ruleScore returns the noisy-OR of the direct and of the indirect rules
// (each id once, with its largest weight) that fired within tokens [i, j);
// the obfuscation signals and the flood count as direct. weights is scratch
// space of len(ruleIDs).
func (d *doc) ruleScore(ms []match, i, j int, weights []float64) (direct, indirect float64) {
	clear(weights)
	first := sort.Search(len(ms), func(k int) bool { return int(ms[k].i) >= i })
	for _, mt := range ms[first:] {
		if int(mt.i) >= j {
			break
		}
		if int(mt.j) < j {
			idx := ruleIDIndex[mt.rule]
			weights[idx] = max(weights[idx], rules[mt.rule].weight)
		}
	}
	missD, missI := 1.0, 1.0
	for k, w := range weights {
		if ruleIndirect[k] {
			missI *= 1 - w
		} else {
			missD *= 1 - w
		}
	}
	var evCount [numEvents]int
	e0 := sort.Search(len(d.events), func(k int) bool { return int(d.events[k].tok) >= i })
	for _, ev := range d.events[e0:] {
		if int(ev.tok) >= j {
			break
		}
		evCount[ev.kind]++
	}
	for k, c := range evCount {
		if c >= eventRules[k].min {
			missD *= 1 - eventRules[k].weight
		}
	}
	if d.flood {
		missD *= 1 - wFlood
	}
	return 1 - missD, 1 - missI
}

// passageRules lists the rules that fired in the passage of j, in report
// order (rules, obfuscation signals, the flood, the model), and the
// strongest of them.
func (d *doc) passageRules(ms []match, jd judgement, flagAt float64) ([]string, string) {
	weights := make([]float64, len(ruleIDs))
	for _, mt := range ms {
		if int(mt.i) >= jd.i && int(mt.j) < jd.j {
			idx := ruleIDIndex[mt.rule]
			weights[idx] = max(weights[idx], rules[mt.rule].weight)
		}
	}
	var ids []string
	strongest, sw := "", 0.0
	add := func(id string, w float64) {
		ids = append(ids, id)
		if w > sw {
			strongest, sw = id, w
		}
	}
	for k, w := range weights {
		if w > 0 {
			add(ruleIDs[k], w)
		}
	}
	var evCount [numEvents]int
	for _, ev := range d.events {
		if int(ev.tok) >= jd.i && int(ev.tok) < jd.j {
			evCount[ev.kind]++
		}
	}
	for k, c := range evCount {
		if c >= eventRules[k].min {
			add(eventRules[k].id, eventRules[k].weight)
		}
	}
	if d.flood {
		add(ruleFlood, wFlood)
	}
	if jd.p >= flagAt {
		ids = append(ids, RuleModel)
	}
	// The model is the strongest signal when its probability alone beats
	// the rules' noisy-OR.
	if jd.p > jd.r || strongest == "" {
		strongest = RuleModel
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, strongest
}

// span returns the original byte range of tokens [i, j).
func (d *doc) span(i, j int) (int, int) {
	if i >= j || j > len(d.toks) {
		return 0, 0
	}
	start, end := int(d.toks[i].start), int(d.toks[i].end)
	for k := i; k < j; k++ {
		start = min(start, int(d.toks[k].start))
		end = max(end, int(d.toks[k].end))
	}
	return start, end
}
