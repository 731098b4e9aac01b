package sanitize

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Training hyper-parameters. The seed and the order of the data fix the
// result: TestTrainModel reproduces model.bin byte for byte.
const trainSeed = 20240611

var (
	trainEpochs = 30
	trainLR     = 0.2
	trainL2     = 1e-3
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

func featurize(text string) vec {
	d := analyze(text)
	counts := map[uint32]float32{}
	mask := uint32(modelDim - 1)
	n := features(d.toks, func(h uint32) { counts[h&mask]++ })
	var v vec
	for k := range counts {
		v.idx = append(v.idx, k)
	}
	slices.Sort(v.idx)
	scale := float32(1)
	if n > 0 {
		scale = float32(1 / math.Sqrt(float64(n)))
	}
	for _, k := range v.idx {
		v.val = append(v.val, counts[k]*scale)
	}
	return v
}

// fit trains logistic regression with SGD (class-balanced, L2) on rows.
func fit(xs []vec, ys []int) *model {
	m := &model{w: make([]float32, modelDim)}
	var pos, neg float64
	for _, y := range ys {
		if y == 1 {
			pos++
		} else {
			neg++
		}
	}
	wPos := neg / math.Max(pos, 1)
	rng := rand.New(rand.NewPCG(trainSeed, trainSeed))
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	w := make([]float64, modelDim)
	bias := 0.0
	for ep := 0; ep < trainEpochs; ep++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		lr := trainLR / (1 + 0.1*float64(ep))
		for _, i := range order {
			x := xs[i]
			z := bias
			for k, id := range x.idx {
				z += w[id] * float64(x.val[k])
			}
			p := sigmoid(z)
			g := p - float64(ys[i])
			if ys[i] == 1 {
				g *= wPos
			}
			for k, id := range x.idx {
				w[id] -= lr * (g*float64(x.val[k]) + trainL2*w[id])
			}
			bias -= lr * g
		}
	}
	for i := range w {
		m.w[i] = float32(w[i])
	}
	m.bias = float32(bias)
	return m
}

// threshold returns the smallest score that keeps the false-positive rate of
// benign scores at or below fpr.
func threshold(benign []float64, fpr float64) float64 {
	s := slices.Clone(benign)
	slices.Sort(s)
	allowed := int(math.Floor(fpr * float64(len(s))))
	// Scores strictly above the threshold's predecessor are positives.
	t := s[len(s)-1-allowed] + 1e-3
	return math.Min(math.Max(t, 0.3), 0.95)
}

// trainModel trains on deepset_train.jsonl and chooses the thresholds from
// out-of-fold scores (model + rules), so they are not fitted in-sample.
func trainModel(t *testing.T, dir string) *model {
	t.Helper()
	rows := loadJSONL(t, filepath.Join(dir, "deepset_train.jsonl"), "text")
	nDeepset := len(rows)
	// Benign text with trigger words (our own, train only): deepset's benign
	// half has none, so a model trained on it alone learns "instructions" and
	// "previous" mean attack.
	for _, l := range readLines(t, "train_benign.txt") {
		rows = append(rows, sample{l, 0})
	}
	xs := make([]vec, len(rows))
	ys := make([]int, len(rows))
	docs := make([]*doc, len(rows))
	for i, r := range rows {
		xs[i] = featurize(r.text)
		ys[i] = r.label
		docs[i] = analyze(r.text)
	}
	// Out-of-fold scores.
	rng := rand.New(rand.NewPCG(trainSeed, 1))
	fold := make([]int, len(rows))
	for i := range fold {
		fold[i] = rng.IntN(trainFolds)
	}
	oof := make([]float64, len(rows))
	for k := 0; k < trainFolds; k++ {
		var fx []vec
		var fy []int
		for i := range rows {
			if fold[i] != k {
				fx, fy = append(fx, xs[i]), append(fy, ys[i])
			}
		}
		m := fit(fx, fy)
		for i := range rows {
			if fold[i] == k {
				_, r := docs[i].match()
				p := m.score(docs[i].toks)
				oof[i] = 1 - (1-r)*(1-p)
			}
		}
	}
	var benign, attacks []float64
	for i, s := range oof {
		if i >= nDeepset {
			benign = append(benign, s) // our benign trigger-word text counts too
			continue
		}
		if ys[i] == 1 {
			attacks = append(attacks, s)
		} else {
			benign = append(benign, s)
		}
	}
	m := fit(xs, ys)
	flag := threshold(benign, flagFPR)
	block := math.Max(threshold(benign, blockFPR), flag)
	m.flagThreshold, m.blockThreshold = float32(flag), float32(block)
	rec := func(th float64) float64 {
		n := 0
		for _, s := range attacks {
			if s >= th {
				n++
			}
		}
		return float64(n) / float64(len(attacks))
	}
	augFP := 0
	for _, s := range oof[nDeepset:] {
		if s >= flag {
			augFP++
		}
	}
	t.Logf("train_benign.txt out-of-fold false positives at flag: %d/%d", augFP, len(rows)-nDeepset)
	t.Logf("deepset_train out-of-fold: flag=%.3f (recall %.3f) block=%.3f (recall %.3f), %d benign, %d attacks",
		flag, rec(flag), block, rec(block), len(benign), len(attacks))
	return m
}

// TestTrainModel retrains the model from deepset_train.jsonl. With
// AGENTBUS_TRAIN=write it rewrites model.bin; with AGENTBUS_TRAIN=1 it checks
// that training reproduces the embedded model.bin exactly.
func TestTrainSweep(t *testing.T) {
	if os.Getenv("AGENTBUS_SWEEP") == "" {
		t.Skip("set AGENTBUS_SWEEP=1")
	}
	dir := datasetsDir(t)
	for _, l2 := range []float64{1e-4, 1e-3, 3e-3, 1e-2} {
		for _, ep := range []int{10, 30} {
			trainL2, trainEpochs = l2, ep
			t.Logf("l2=%g epochs=%d", l2, ep)
			trainModel(t, dir)
		}
	}
}

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
