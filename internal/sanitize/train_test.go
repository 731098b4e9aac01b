package sanitize

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Training hyper-parameters. The seed and the order of the data fix the
// result: TestTrainModel reproduces model.bin byte for byte.
const trainSeed = 20240611

var (
	trainEpochs = 60
	trainLR     = 0.2
	trainL2     = 3e-3
)

const (
	trainFolds = 5
	// Threshold targets on out-of-fold training scores of benign rows.
	flagFPR  = 0.02
	blockFPR = 0.005
)

type vec struct {
	idx []uint32
	val []float32
}

// featurize returns the model's feature vector of the passage d.toks[i:j],
// length normalised as the model scores it, with the rules' evidence as the
// extra feature modelDim. Without ngrams only the evidence is kept (rows in
// languages the n-grams should not learn).
func featurize(d *doc, ms []match, i, j int, ngrams, mean bool) vec {
	counts := map[uint32]float32{}
	mask := uint32(modelDim - 1)
	n := features(d.toks[i:j], mean, func(h uint32) { counts[h&mask]++ })
	var v vec
	if ngrams {
		for k := range counts {
			v.idx = append(v.idx, k)
		}
		slices.Sort(v.idx)
		if !mean {
			// The short head: each distinct feature once.
			n = len(counts)
			for k := range counts {
				counts[k] = 1
			}
		}
		scale := float32(1)
		if n > 0 {
			scale = float32(lengthNorm(int32(n), mean))
		}
		for _, k := range v.idx {
			v.val = append(v.val, counts[k]*scale)
		}
	}
	weights := make([]float64, len(ruleIDs))
	d.ruleScore(ms, i, j, weights)
	for k, w := range weights {
		// The short head judges prompts: the rules for instructions
		// hidden in documents are not its evidence.
		if w > 0 && ruleIndirect[k] && mean {
			v.idx = append(v.idx, uint32(featRules+k))
			v.val = append(v.val, float32(evidence(w)))
		}
	}
	return v
}

// fit trains logistic regression with SGD (weighted rows, class-balanced,
// L2) on rows.
func fit(xs []vec, ys []int, ws []float64) head {
	m := head{w: make([]float32, modelDim)}
	var pos, neg float64
	// w[featRules+k] is the scale of rule id k's evidence.
	for i, y := range ys {
		if y == 1 {
			pos += ws[i]
		} else {
			neg += ws[i]
		}
	}
	wPos := neg / math.Max(pos, 1)
	rng := rand.New(rand.NewPCG(trainSeed, trainSeed))
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	w := make([]float64, featRules+len(ruleIDs))
	for k := range ruleIDs {
		w[featRules+k] = 1
	}
	bias := 0.0
	for ep := 0; ep < trainEpochs; ep++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		lr := trainLR / (1 + 0.1*float64(ep))
		for _, i := range order {
			if ws[i] == 0 {
				continue
			}
			x := xs[i]
			z := bias
			for k, id := range x.idx {
				z += w[id] * float64(x.val[k])
			}
			p := sigmoid(z)
			g := (p - float64(ys[i])) * ws[i]
			if ys[i] == 1 {
				g *= wPos
			}
			// The L2 decay is applied per row, scaled by its weight.
			for k, id := range x.idx {
				w[id] -= lr * (g*float64(x.val[k]) + trainL2*ws[i]*w[id])
			}
			bias -= lr * g
		}
	}
	for i := range m.w {
		m.w[i] = float32(w[i])
	}
	m.alpha = make([]float32, len(ruleIDs))
	for k := range ruleIDs {
		m.alpha[k] = float32(w[featRules+k])
	}
	m.bias = float32(bias)
	return m
}

// Document training data comes from the tune split only: benign passages,
// and passages holding an injection of inject_tune.tsv inserted with other
// seeds than the evaluation's.
//
// The model learns English and German (the languages of deepset and of
// most of the tune payloads); payloads in other languages train only the
// rules' scales, so that the model does not learn that a script means an
// attack.
var modelLangs = map[string]bool{"en": true, "de": true}

// Training data and row weights. A row weighs wShort in the short head and
// wLong in the long head. deepset_train.jsonl and train_benign.txt weigh 1 in
// both; the rest trains the long head only:
const (
	wDocPassage    = 0.3 // a benign passage of a tune document
	passagesPerDoc = 12  // passages drawn from each tune document
	wInjected      = 0.2 // a passage holding an injection inserted into a tune document
	attackRounds   = 2   // injections inserted into each tune document
	wPayload       = 2   // an injection of inject_tune.tsv alone
	wProse         = 1   // a passage of benign prompts run together
	proseDocs      = 800 // such runs
	// Threshold targets on out-of-fold scores of whole tune documents.
	docFlagFPR  = 0.03
	docBlockFPR = 0.005
)

// trainSet is the training data with the fold of every row.
type trainSet struct {
	xs    []vec // features for the short head
	xl    []vec // features for the long head
	ys    []int
	ws    []float64 // row weights for the short head
	wl    []float64 // row weights for the long head
	folds []int
	// Units scored out of fold: short texts (deepset, train_benign) and
	// whole tune documents, benign and attacked.
	short   []scored
	docs    []scored
	attacks []scored
}

type scored struct {
	text  string
	label int
	fold  int
}

func foldOf(project string) int {
	h := uint32(fnvOffset)
	for i := 0; i < len(project); i++ {
		h = (h ^ uint32(project[i])) * fnvPrime
	}
	return int(h % trainFolds)
}

func buildTrainSet(t *testing.T, dir string) *trainSet {
	t.Helper()
	ts := &trainSet{}
	// add adds the passage d.toks[i:j]; without ngrams only the rules'
	// evidence is a feature.
	add := func(d *doc, i, j, y, fold int, wShort, wLong float64, ngrams bool) {
		ms := d.ruleMatches()
		ts.xs = append(ts.xs, featurize(d, ms, i, j, ngrams, false))
		ts.xl = append(ts.xl, featurize(d, ms, i, j, ngrams, true))
		ts.ys = append(ts.ys, y)
		ts.ws = append(ts.ws, wShort)
		ts.wl = append(ts.wl, wLong)
		ts.folds = append(ts.folds, fold)
	}
	rng := rand.New(rand.NewPCG(trainSeed, 1))
	rows := loadJSONL(t, filepath.Join(dir, "deepset_train.jsonl"), "text")
	// Benign text with trigger words (our own, train only): deepset's benign
	// half has none, so a model trained on it alone learns "instructions" and
	// "previous" mean attack.
	for _, l := range readLines(t, "train_benign.txt") {
		rows = append(rows, sample{l, 0})
	}
	for _, r := range rows {
		fold := rng.IntN(trainFolds)
		a := analyze(r.text)
		add(a, 0, len(a.toks), r.label, fold, 1, 1, true)
		if len(a.toks) > shortTokens {
			// The long head judges a long prompt by its passages: learn
			// them too.
			a.forPassages(func(i, j int) { add(a, i, j, r.label, fold, 0, 1, true) })
		}
		ts.short = append(ts.short, scored{r.text, r.label, fold})
	}
	// Prose for the long head: runs of the benign short texts above, one
	// after another, as in a document. Without them the document corpus
	// (much of it code and markup) teaches the long head that plain
	// sentences are what injections look like.
	var benignShort []string
	for _, r := range rows {
		if r.label == 0 {
			benignShort = append(benignShort, r.text)
		}
	}
	crng := rand.New(rand.NewPCG(trainSeed, 3))
	for k := 0; k < proseDocs; k++ {
		var b strings.Builder
		for b.Len() < 1500 {
			b.WriteString(benignShort[crng.IntN(len(benignShort))])
			b.WriteString(" ")
		}
		a := analyze(b.String())
		fold := crng.IntN(trainFolds)
		n := 0
		a.forPassages(func(i, j int) {
			if n < 4 {
				add(a, i, j, 0, fold, 0, wProse, true)
				n++
			}
		})
	}
	// Benign passages of the tune documents; the fold is the project's, so
	// that no project is both trained on and scored out of fold.
	prng := rand.New(rand.NewPCG(trainSeed, 2))
	var tune []corpusDoc
	for _, d := range loadCorpus(t) {
		if d.Split != "tune" {
			continue
		}
		tune = append(tune, d)
		fold := foldOf(d.Project)
		ts.docs = append(ts.docs, scored{d.Text, 0, fold})
		a := analyze(d.Text)
		var ps [][2]int
		a.forPassages(func(i, j int) { ps = append(ps, [2]int{i, j}) })
		prng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		for _, p := range ps[:min(len(ps), passagesPerDoc)] {
			add(a, p[0], p[1], 0, fold, 0, wDocPassage, true)
		}
	}
	// The payloads alone, for the long head: a prompt that is only a
	// payload is a direct injection the short head learns from deepset.
	for _, p := range loadPayloads(t, "tune") {
		text := strings.NewReplacer("{url}", attackURLs[0], "{email}", attackEmails[0]).Replace(p.text)
		a := analyze(text)
		add(a, 0, len(a.toks), 1, foldOf(p.text), 0, wPayload, modelLangs[p.lang])
	}
	// Injected tune documents (seeds other than the evaluation's): the
	// passages that hold the whole injection (or, for an injection longer
	// than a passage, its first one).
	for round := 0; round < attackRounds; round++ {
		for _, at := range makeAttacksSeed(t, tune, "tune", trainSeed+uint64(round)) {
			fold := foldOf(at.doc.Project)
			ts.attacks = append(ts.attacks, scored{at.text, 1, fold})
			a := analyze(at.text)
			pi, pj := -1, -1
			for k, tk := range a.toks {
				if int(tk.start) >= at.off && int(tk.end) <= at.off+at.size {
					if pi < 0 {
						pi = k
					}
					pj = k + 1
				}
			}
			if pi < 0 {
				continue
			}
			n := 0
			a.forPassages(func(i, j int) {
				if n < 2 && i <= pi && (j >= pj || i == pi) {
					add(a, i, j, 1, fold, 0, wInjected, modelLangs[at.p.lang])
					n++
				}
			})
		}
	}
	return ts
}

// trainModel trains on deepset_train.jsonl, train_benign.txt and the tune
// split of the document corpus, and chooses the thresholds from out-of-fold
// scores (model + rules, whole texts), so they are not fitted in-sample.
func trainModel(t *testing.T, dir string) *model {
	t.Helper()
	ts := buildTrainSet(t, dir)
	// Out-of-fold logits of whole texts, and whether each is longer than a
	// passage.
	var shortBenign, shortAttack, docBenign, docAttack []oofScore
	// The same documents judged as tool results (always by the long head).
	var resBenign, resAttack []float64
	for k := 0; k < trainFolds; k++ {
		var fx, fxl []vec
		var fy []int
		var fws, fwl []float64
		for i := range ts.xs {
			if ts.folds[i] != k {
				fx, fxl, fy = append(fx, ts.xs[i]), append(fxl, ts.xl[i]), append(fy, ts.ys[i])
				fws, fwl = append(fws, ts.ws[i]), append(fwl, ts.wl[i])
			}
		}
		m := &model{short: fit(fx, fy, fws), long: fit(fxl, fy, fwl)}
		m.long.doc = true
		var sm sums
		judge := func(text string) oofScore {
			d := analyze(text)
			return oofScore{logit(m.judgeDoc(d, &sm, 1, false).score), len(d.toks) > shortTokens}
		}
		judgeResult := func(text string) float64 {
			return logit(m.judgeDoc(analyze(text), &sm, 1, true).score)
		}
		for _, r := range ts.short {
			if r.fold != k {
				continue
			}
			if r.label == 1 {
				shortAttack = append(shortAttack, judge(r.text))
			} else {
				shortBenign = append(shortBenign, judge(r.text))
			}
		}
		for _, r := range ts.docs {
			if r.fold == k {
				docBenign = append(docBenign, judge(r.text))
				resBenign = append(resBenign, judgeResult(r.text))
			}
		}
		for _, r := range ts.attacks {
			if r.fold == k {
				docAttack = append(docAttack, judge(r.text))
				resAttack = append(resAttack, judgeResult(r.text))
			}
		}
	}
	m := &model{short: fit(ts.xs, ts.ys, ts.ws), long: fit(ts.xl, ts.ys, ts.wl)}
	m.long.doc = true
	// Short texts and long ones are calibrated on their own: the flag
	// threshold keeps 2% of benign short texts, and the bias of long texts
	// is shifted so that the same threshold flags docFlagFPR of the benign
	// tune documents.
	tFlag := logitThreshold(zs(shortBenign, false), flagFPR)
	delta := tFlag - logitThreshold(zs(docBenign, true), docFlagFPR)
	delta = math.Max(-4, math.Min(4, delta))
	shift := func(xs []oofScore) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = x.z
			if x.long {
				out[i] += delta
			}
		}
		return out
	}
	sb, sa, db, da := shift(shortBenign), shift(shortAttack), shift(docBenign), shift(docAttack)
	// The block threshold keeps 0.5% of the benign short texts and 0.5% of
	// the benign documents.
	tBlock := math.Max(math.Max(logitThreshold(sb, blockFPR), logitThreshold(db, docBlockFPR)), tFlag)
	// Tool results: every result is a document for the long head, whose
	// bias now carries delta.
	for i := range resBenign {
		resBenign[i] += delta
	}
	for i := range resAttack {
		resAttack[i] += delta
	}
	rFlag := logitThreshold(resBenign, docFlagFPR)
	rBlock := math.Max(logitThreshold(resBenign, docBlockFPR), rFlag)
	m.long.bias += float32(delta)
	prob := func(z float64) float64 { return math.Min(math.Max(sigmoid(z), 0.3), 0.99) }
	flag, block, rflag, rblock := prob(tFlag), prob(tBlock), prob(rFlag), prob(rBlock)
	m.flagThreshold, m.blockThreshold = float32(flag), float32(block)
	m.resultFlag, m.resultBlock = float32(rflag), float32(rblock)
	rate := func(xs []float64, th float64) float64 {
		n := 0
		for _, z := range xs {
			if sigmoid(z) >= th {
				n++
			}
		}
		return float64(n) / float64(max(len(xs), 1))
	}
	t.Logf("rows: %d (%d positive); short head bias %.2f, long head bias %.2f (calibration shift %.2f)",
		len(ts.xs), countPos(ts.ys), m.short.bias, m.long.bias, delta)
	for k, id := range ruleIDs {
		if ruleIndirect[k] {
			t.Logf("  %-26s alpha short %.2f long %.2f", id, m.short.alpha[k], m.long.alpha[k])
		}
	}
	t.Logf("input thresholds: flag %.3f, block %.3f; result thresholds: flag %.3f, block %.3f", flag, block, rflag, rblock)
	t.Logf("out of fold, short texts: benign flagged %.3f blocked %.3f; attacks caught %.3f blocked %.3f (%d/%d)",
		rate(sb, flag), rate(sb, block), rate(sa, flag), rate(sa, block), len(sb), len(sa))
	var la, lb []float64
	for i, x := range shortAttack {
		if x.long {
			la = append(la, sa[i])
		}
	}
	for i, x := range shortBenign {
		if x.long {
			lb = append(lb, sb[i])
		}
	}
	t.Logf("out of fold, short texts longer than %d tokens: benign flagged %.3f (%d); attacks caught %.3f (%d)", shortTokens, rate(lb, flag), len(lb), rate(la, flag), len(la))
	t.Logf("out of fold, tune documents as tool results: benign flagged %.3f blocked %.3f; attacked caught %.3f blocked %.3f",
		rate(resBenign, rflag), rate(resBenign, rblock), rate(resAttack, rflag), rate(resAttack, rblock))
	{
		var sm sums
		fb, fa := 0, 0
		for _, r := range ts.docs {
			if m.judgeDoc(analyze(r.text), &sm, 1, false).score >= flag {
				fb++
			}
		}
		for _, r := range ts.attacks {
			if m.judgeDoc(analyze(r.text), &sm, 1, false).score >= flag {
				fa++
			}
		}
		t.Logf("final model, in sample, tune documents: benign flagged %.3f; attacked caught %.3f", ratio(fb, len(ts.docs)), ratio(fa, len(ts.attacks)))
	}
	t.Logf("out of fold, tune documents: benign flagged %.3f blocked %.3f; attacked caught %.3f blocked %.3f (%d/%d)",
		rate(db, flag), rate(db, block), rate(da, flag), rate(da, block), len(db), len(da))
	return m
}

type oofScore struct {
	z    float64
	long bool
}

// zs returns the logits of xs, of the long texts only if long.
func zs(xs []oofScore, long bool) []float64 {
	var out []float64
	for _, x := range xs {
		if !long || x.long {
			out = append(out, x.z)
		}
	}
	return out
}

// logitThreshold returns the smallest logit that keeps the false-positive
// rate of the benign logits at or below fpr.
func logitThreshold(benign []float64, fpr float64) float64 {
	s := slices.Clone(benign)
	slices.Sort(s)
	allowed := int(math.Floor(fpr * float64(len(s))))
	return s[len(s)-1-allowed] + 1e-3
}

func countPos(ys []int) int {
	n := 0
	for _, y := range ys {
		n += y
	}
	return n
}

// TestTrainSweep trains with several hyper-parameters and logs the
// out-of-fold figures (AGENTBUS_SWEEP=1).
func TestTrainSweep(t *testing.T) {
	if os.Getenv("AGENTBUS_SWEEP") == "" {
		t.Skip("set AGENTBUS_SWEEP=1")
	}
	dir := datasetsDir(t)
	for _, l2 := range []float64{1e-4, 1e-3, 3e-3} {
		for _, ep := range []int{10, 30} {
			trainL2, trainEpochs = l2, ep
			t.Logf("l2=%g epochs=%d", l2, ep)
			trainModel(t, dir)
		}
	}
}

// TestTrainModel retrains the model. With AGENTBUS_TRAIN=write it rewrites
// model.bin; with AGENTBUS_TRAIN=1 it checks that training reproduces the
// embedded model.bin exactly.
func TestTrainModel(t *testing.T) {
	mode := os.Getenv("AGENTBUS_TRAIN")
	if mode == "" {
		t.Skip("set AGENTBUS_TRAIN=1 to check, AGENTBUS_TRAIN=write to rewrite model.bin")
	}
	m := trainModel(t, datasetsDir(t))
	b := m.marshal()
	if mode == "write" {
		if err := os.WriteFile("model.bin", b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(b, modelBin) {
		t.Fatal("retrained model differs from the embedded model.bin")
	}
}
