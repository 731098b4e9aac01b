package sanitize

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestScratchComponents(t *testing.T) {
	dir := datasetsDir(t)
	s := mustNew(t, Config{})
	sets := map[string][]sample{}
	for _, f := range []string{"deepset_train.jsonl", "deepset_test.jsonl"} {
		sets[f] = loadJSONL(t, filepath.Join(dir, f), "text")
	}
	sets["tt"] = loadJSONL(t, filepath.Join(dir, "tt_hijacking.jsonl"), "attack")
	sets["giskard"] = loadGiskard(t, filepath.Join(dir, "giskard_prompt_injections.csv"))
	var hn []sample
	for _, l := range readLines(t, "hard_negatives.txt") {
		hn = append(hn, sample{l, 0})
	}
	sets["hard"] = hn
	for name, rows := range sets {
		var c [3][2]int
		var pos, neg int
		for _, r := range rows {
			d := analyze(r.text)
			_, rs := d.match()
			p := s.model.score(d.toks)
			scores := []float64{rs, p, 1 - (1-rs)*(1-p)}
			if r.label == 1 {
				pos++
			} else {
				neg++
			}
			for k, sc := range scores {
				if sc >= s.cfg.FlagThreshold {
					c[k][r.label]++
				}
			}
		}
		var b strings.Builder
		for k, n := range []string{"rules", "model", "both"} {
			b.WriteString(n)
			b.WriteString(": ")
			b.WriteString(strings.TrimSpace(fmtf(ratio(c[k][1], pos)) + "/" + fmtf(ratio(c[k][0], neg))))
			b.WriteString("  ")
		}
		t.Logf("%-22s recall/FPR %s", name, b.String())
	}
}

func fmtf(f float64) string { return strings.TrimRight(strings.TrimRight(fmtF(f), "0"), ".") }
func fmtF(f float64) string { return string([]byte(func() string { return sprintf("%.3f", f) }())) }
var sprintf = fmt.Sprintf
