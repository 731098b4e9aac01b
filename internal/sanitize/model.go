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
	modelMagic = "ABSANIT1"
)

//go:embed model.bin
var modelBin []byte

// model holds the weights and the thresholds chosen at training time.
type model struct {
	bias           float32
	flagThreshold  float32
	blockThreshold float32
	w              []float32
}

// errModel reports a malformed weights file.
var errModel = errors.New("sanitize: malformed model file")

func parseModel(b []byte) (*model, error) {
	hdr := len(modelMagic) + 4 + 3*4
	if len(b) != hdr+4*modelDim || string(b[:len(modelMagic)]) != modelMagic {
		return nil, fmt.Errorf("%w (%d bytes)", errModel, len(b))
	}
	p := b[len(modelMagic):]
	if bits := binary.LittleEndian.Uint32(p); bits != modelBits {
		return nil, fmt.Errorf("%w: %d hash bits, want %d", errModel, bits, modelBits)
	}
	f := func(off int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(p[off:])) }
	m := &model{bias: f(4), flagThreshold: f(8), blockThreshold: f(12), w: make([]float32, modelDim)}
	for i := range m.w {
		m.w[i] = f(16 + 4*i)
	}
	return m, nil
}

func (m *model) marshal() []byte {
	b := make([]byte, 0, len(modelMagic)+16+4*modelDim)
	b = append(b, modelMagic...)
	b = binary.LittleEndian.AppendUint32(b, modelBits)
	for _, v := range []float32{m.bias, m.flagThreshold, m.blockThreshold} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	for _, v := range m.w {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

// features calls fn with the hashed index of every feature of d. The count
// returned is the number of features (for length normalisation).
func features(toks []string, fn func(h uint32)) int {
	n := 0
	prev := uint32(0)
	havePrev := false
	var buf [64]byte
	for _, t := range toks {
		if t == "\x00" {
			havePrev = false
			continue
		}
		if t == stopToken {
			continue
		}
		// Word unigram.
		h := uint32(fnvOffset ^ 0x9e3779b9)
		for i := 0; i < len(t); i++ {
			h = (h ^ uint32(t[i])) * fnvPrime
		}
		fn(h)
		n++
		// Word bigram.
		if havePrev {
			fn((prev*31 ^ h) * fnvPrime)
			n++
		}
		prev, havePrev = h, true
		// Character n-grams of " t ", 3 to 5 bytes.
		if len(t) > len(buf)-2 {
			continue
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
	}
	return n
}

// score returns the model's probability that toks are an injection. The
// weights are summed as the features are produced, in the same order as
// training does, so the result is bit for bit the trained model's.
func (m *model) score(toks []string) float64 {
	var sum float32
	w := m.w[:modelDim]
	n := features(toks, func(h uint32) { sum += w[h&(modelDim-1)] })
	if n == 0 {
		return sigmoid(float64(m.bias))
	}
	return sigmoid(float64(m.bias) + float64(sum)/math.Sqrt(float64(n)))
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
