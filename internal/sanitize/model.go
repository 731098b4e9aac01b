package sanitize

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The linear model: logistic regression over hashed word unigrams, word
// bigrams and character 3- to 5-grams of the tokens (padded with spaces).
// Training code: train_test.go (TestTrainModel, behind AGENTBUS_TRAIN=1).
const (
	modelBits  = 16
	modelDim   = 1 << modelBits
	modelMagic = "ABSANIT2"
)

//go:embed model.bin
var modelBin []byte

// model holds the weights and the thresholds chosen at training time: two
// heads of the same form, one for texts of at most shortTokens tokens
// (prompts) and one for the passages of longer texts and for tool results
// (documents), each trained and calibrated on its own kind of text. A
// passage's score is
//
//	1 - (1 - r_direct) * (1 - sigmoid(bias + n-gram part
//	                                  + sum over indirect rule ids k of alpha_k * E_k))
//
// r_direct is the noisy-OR of the hand-weighted injection, jailbreak and
// obfuscation rules that fired in the passage (a strong rule decides alone);
// E_k = -ln(1 - w_k) is the evidence of indirect rule id k (w_k: the weight of
// its strongest pattern that fired), whose scale alpha_k is learned with the
// n-gram weights: how much "the text addresses an AI" or "asks to hide
// something from the user" means in documents is measured, not guessed.
type model struct {
	short, long    head
	flagThreshold  float32
	blockThreshold float32
	resultFlag     float32
	resultBlock    float32
}

// head is one logistic regression over hashed n-grams and the indirect
// rules' evidence.
type head struct {
	bias float32
	// alpha[k] is the scale of rule id ruleIDs[k] (indirect ids only).
	alpha []float32
	w     []float32
	// doc marks the document head: length normalisation by the mean (see
	// lengthNorm) and no features for function words.
	doc bool
}

// Extra features after the hashed n-grams (training only): one per rule id.
const featRules = modelDim

// scalars are the model's parameters besides the n-gram weights, in file
// order.
func (m *model) scalars() []*float32 {
	out := []*float32{&m.short.bias, &m.long.bias, &m.flagThreshold, &m.blockThreshold, &m.resultFlag, &m.resultBlock}
	for _, h := range []*head{&m.short, &m.long} {
		for k := range h.alpha {
			out = append(out, &h.alpha[k])
		}
	}
	return out
}

func newModel() *model {
	return &model{
		short: head{w: make([]float32, modelDim), alpha: make([]float32, len(ruleIDs))},
		long:  head{w: make([]float32, modelDim), alpha: make([]float32, len(ruleIDs)), doc: true},
	}
}

// indirectLogit is the rules' part of head h's logit: weights holds the
// strongest weight of each rule id that fired in the passage.
func (h *head) indirectLogit(weights []float64) float64 {
	if !h.doc {
		// The short head's n-grams are trained without them: in a prompt
		// the document rules count by their hand-set weights (judgeDoc).
		return 0
	}
	z := 0.0
	for k, w := range weights {
		if w > 0 && ruleIndirect[k] {
			z += float64(h.alpha[k]) * evidence(w)
		}
	}
	return z
}

// errModel reports a malformed weights file.
var errModel = errors.New("sanitize: malformed model file")

// parseModel reads model.bin: the magic, the hash bits, the scalars, the
// short head's n-gram weights, the long head's (float32, little endian).
func parseModel(b []byte) (*model, error) {
	m := newModel()
	sc := m.scalars()
	if len(b) != len(modelMagic)+4+4*len(sc)+8*modelDim || string(b[:len(modelMagic)]) != modelMagic {
		return nil, fmt.Errorf("%w (%d bytes)", errModel, len(b))
	}
	p := b[len(modelMagic):]
	if bits := binary.LittleEndian.Uint32(p); bits != modelBits {
		return nil, fmt.Errorf("%w: %d hash bits, want %d", errModel, bits, modelBits)
	}
	p = p[4:]
	f := func() float32 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(p))
		p = p[4:]
		return v
	}
	for _, v := range sc {
		*v = f()
	}
	for _, w := range [][]float32{m.short.w, m.long.w} {
		for i := range w {
			w[i] = f()
		}
	}
	return m, nil
}

func (m *model) marshal() []byte {
	sc := m.scalars()
	b := make([]byte, 0, len(modelMagic)+4+4*len(sc)+8*modelDim)
	b = append(b, modelMagic...)
	b = binary.LittleEndian.AppendUint32(b, modelBits)
	for _, v := range sc {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(*v))
	}
	for _, w := range [][]float32{m.short.w, m.long.w} {
		for _, v := range w {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

// tokHash is the hash of a token: its word-unigram feature, and the key of
// the lexicon table.
func tokHash(t string) uint32 {
	h := uint32(fnvOffset ^ 0x9e3779b9)
	for i := 0; i < len(t); i++ {
		h = (h ^ uint32(t[i])) * fnvPrime
	}
	return h
}

func bigramHash(prev, h uint32) uint32 { return (prev*31 ^ h) * fnvPrime }

// wordFeatures calls fn with the hashed features of one word: its unigram
// and the character 3- to 5-grams of " w ". It returns how many.
func wordFeatures(t string, h uint32, fn func(h uint32)) int {
	fn(h)
	n := 1
	var buf [64]byte
	if len(t) > len(buf)-2 {
		return n
	}
	buf[0] = ' '
	copy(buf[1:], t)
	buf[len(t)+1] = ' '
	p := buf[:len(t)+2]
	for i := 0; i+3 <= len(p); i++ {
		h := uint32(fnvOffset)
		for k := 0; k < 5 && i+k < len(p); k++ {
			h = (h ^ uint32(p[i+k])) * fnvPrime
			if k >= 2 {
				fn(h ^ uint32(k))
				n++
			}
		}
	}
	return n
}

// wordSum is wordFeatures summing the weights of w, in the same order.
func wordSum(w []float32, t string, th uint32) (float32, int32) {
	w = w[:modelDim]
	sum := w[th&(modelDim-1)]
	n := int32(1)
	L := len(t)
	if L > 62 {
		return sum, n
	}
	at := func(i int) uint32 {
		if i == 0 || i == L+1 {
			return ' '
		}
		return uint32(t[i-1])
	}
	for i := 0; i+3 <= L+2; i++ {
		h := uint32(fnvOffset)
		h = (h ^ at(i)) * fnvPrime
		h = (h ^ at(i+1)) * fnvPrime
		h = (h ^ at(i+2)) * fnvPrime
		sum += w[(h^2)&(modelDim-1)]
		n++
		if i+3 < L+2 {
			h = (h ^ at(i+3)) * fnvPrime
			sum += w[(h^3)&(modelDim-1)]
			n++
			if i+4 < L+2 {
				h = (h ^ at(i+4)) * fnvPrime
				sum += w[(h^4)&(modelDim-1)]
				n++
			}
		}
	}
	return sum, n
}

// isWord reports a token that carries model features: not a stop, a
// boundary or a web or mail address (which the rules read: as features they
// would only learn which addresses the training injections used), and for
// the document head not a function word.
func isWord(t *token, doc bool) bool {
	if t.s == stopToken || t.s == boundaryToken || t.s == urlToken || t.s == emailToken {
		return false
	}
	return !(doc && t.cls.has(kFunction))
}

// features calls fn with every feature of the passage toks: the word
// features of each word and the bigram of each pair of consecutive words
// (stops between them are skipped; a boundary breaks the pair). It returns
// the count, the length normalisation of the model. Training uses it;
// scoring computes the same sums from per-token prefix sums.
func features(toks []token, doc bool, fn func(h uint32)) int {
	n := 0
	prev, havePrev := uint32(0), false
	for i := range toks {
		t := &toks[i]
		if t.s == boundaryToken {
			havePrev = false
			continue
		}
		if !isWord(t, doc) {
			continue
		}
		n += wordFeatures(t.s, t.h, fn)
		if havePrev {
			fn(bigramHash(prev, t.h))
			n++
		}
		prev, havePrev = t.h, true
	}
	return n
}

// sums holds per-token prefix sums of the model's feature weights, so that
// the score of any passage costs O(1).
type sums struct {
	w  []float64 // w[k]: weights of the word features of tokens < k
	n  []int32
	bw []float64 // bw[k]: weights of the bigrams ending at tokens < k
	bn []int32
	// cache of word feature sums by token hash (repeated words are common
	// in documents).
	cache []cacheEntry
	// seen marks the distinct features of a short text.
	seen []uint64
}

// cacheEntry caches a word's feature sum; h == 0 marks an empty slot (a
// word whose hash is 0 is never cached).
type cacheEntry struct {
	h uint32
	n int32
	w float32
}

// prepare fills the prefix sums of head h's weights for toks.
func (h *head) prepare(toks []token, s *sums) {
	k := len(toks) + 1
	s.w = grow(s.w, k)
	s.n = grow(s.n, k)
	s.bw = grow(s.bw, k)
	s.bn = grow(s.bn, k)
	// Distinct words are a fraction of the tokens; a collision only costs
	// a recomputation.
	size := 64
	for size < len(toks)/2 && size < 1<<13 {
		size <<= 1
	}
	if cap(s.cache) < size {
		s.cache = make([]cacheEntry, size)
	} else {
		s.cache = s.cache[:size]
		clear(s.cache)
	}
	mask := uint32(size - 1)
	wts := h.w[:modelDim]
	var cw, cb float64
	var cn, cbn int32
	prev, havePrev := uint32(0), false
	for i := range toks {
		t := &toks[i]
		s.w[i], s.n[i], s.bw[i], s.bn[i] = cw, cn, cb, cbn
		if t.s == boundaryToken {
			havePrev = false
			continue
		}
		if !isWord(t, h.doc) {
			continue
		}
		// Word features, through the cache.
		var sum float32
		var n int32
		e := &s.cache[t.h&mask]
		if e.h == t.h && t.h != 0 {
			sum, n = e.w, e.n
		} else {
			sum, n = wordSum(wts, t.s, t.h)
			*e = cacheEntry{h: t.h, n: n, w: sum}
		}
		cw += float64(sum)
		cn += n
		if havePrev {
			cb += float64(wts[bigramHash(prev, t.h)&(modelDim-1)])
			cbn++
		}
		prev, havePrev = t.h, true
	}
	s.w[len(toks)], s.n[len(toks)], s.bw[len(toks)], s.bn[len(toks)] = cw, cn, cb, cbn
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// passageLogit returns the n-gram part of a head's logit for the passage
// toks[i:j] (without the bias): the bigram of its first word (with a word
// before the passage) is left out, as features does.
func (h *head) passageLogit(toks []token, s *sums, i, j int) float64 {
	w := s.w[j] - s.w[i]
	n := s.n[j] - s.n[i]
	// Bigrams ending at words after the passage's first word.
	first := i
	for first < j && !isWord(&toks[first], h.doc) {
		first++
	}
	if first < j {
		w += s.bw[j] - s.bw[first+1]
		n += s.bn[j] - s.bn[first+1]
	}
	if n == 0 {
		return 0
	}
	return w * lengthNorm(n, h.doc)
}

// lengthNorm scales the sum of a passage's n feature weights. The short
// head divides by sqrt(n), as the first model did. The long head averages,
// so that a passage's score does not grow with repetition inside it ("and
// and and" weighs what one "and" does), over at least minMeanFeatures
// features: a passage much shorter than the ones it was calibrated on (a
// one-word tool result) carries less evidence and stays near the bias.
func lengthNorm(n int32, mean bool) float64 {
	if mean {
		return normMean / float64(max(n, minMeanFeatures))
	}
	return 1 / math.Sqrt(float64(n))
}

// normMean scales the document head's average to the range of the short
// head's sum over sqrt(count).
const normMean = 16

// minMeanFeatures is about the features of 30 words.
const minMeanFeatures = 400

// distinctLogit returns the n-gram part of the short head's logit for a
// whole short text: each distinct (hashed) feature counts once, so that
// repeating a sentence does not raise its score, normalised by the square
// root of their number. seen is scratch space of modelDim bits.
func (h *head) distinctLogit(toks []token, seen []uint64) float64 {
	clear(seen)
	var sum float64
	n := 0
	w := h.w[:modelDim]
	features(toks, false, func(f uint32) {
		f &= modelDim - 1
		if seen[f>>6]&(1<<(f&63)) != 0 {
			return
		}
		seen[f>>6] |= 1 << (f & 63)
		sum += float64(w[f])
		n++
	})
	if n == 0 {
		return 0
	}
	return sum * lengthNorm(int32(n), false)
}

// evidence is the rules' feature: -ln(1 - r), capped.
func evidence(r float64) float64 { return -math.Log(max(1-r, 1e-3)) }

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
