package sanitize

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// detected counts a verdict other than allow as a detection.
func detected(v Verdict) bool { return v.Verdict != VerdictAllow }

// evalTargets are the regression floors of TestEvalDatasets: the measured
// figures (see the package doc) minus a little slack. Targets the sanitizer
// does not reach are not asserted here; the package doc reports them.
var evalTargets = []struct {
	file, field string
	minRecall   float64 // on label-1 rows
	maxFPR      float64 // on label-0 rows
}{
	{"deepset_train.jsonl", "text", 0.95, 0.01},
	{"deepset_test.jsonl", "text", 0.58, 0.02},
	{"tt_hijacking.jsonl", "attack", 0.77, 0},
	{"giskard_prompt_injections.csv", "prompt", 0.95, 0},
}

// TestEvalDatasets measures recall and false-positive rate per data file
// and fails on a regression below the floors.
func TestEvalDatasets(t *testing.T) {
	dir := datasetsDir(t)
	s := mustNew(t, Config{})
	for _, tc := range evalTargets {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if _, err := os.Stat(path); err != nil {
				t.Skip(err)
			}
			var rows []sample
			if strings.HasSuffix(tc.file, ".csv") {
				rows = loadGiskard(t, path)
			} else {
				rows = loadJSONL(t, path, tc.field)
			}
			var tp, pos, fp, neg int
			for _, r := range rows {
				v := s.Check(r.text)
				if r.label == 1 {
					pos++
					if detected(v) {
						tp++
					}
				} else {
					neg++
					if detected(v) {
						fp++
						if testing.Verbose() && os.Getenv("SANITIZE_SHOW") != "" {
							t.Logf("FP %.2f %v %.80q", v.Score, v.Rules, r.text)
						}
					}
				}
				if testing.Verbose() && os.Getenv("SANITIZE_SHOW") == "fn" && r.label == 1 && !detected(v) {
					t.Logf("FN %.2f %v %.100q", v.Score, v.Rules, r.text)
				}
			}
			recall := ratio(tp, pos)
			fpr := ratio(fp, neg)
			t.Logf("%s: recall %.3f (%d/%d), FPR %.3f (%d/%d)", tc.file, recall, tp, pos, fpr, fp, neg)
			if pos > 0 && recall < tc.minRecall {
				t.Errorf("recall %.3f below floor %.3f", recall, tc.minRecall)
			}
			if neg > 0 && fpr > tc.maxFPR {
				t.Errorf("FPR %.3f above ceiling %.3f", fpr, tc.maxFPR)
			}
		})
	}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// readLines reads a testdata file: one text per line, '#' comments and blank
// lines skipped, \uXXXX and \UXXXXXXXX escapes decoded.
func readLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, `\u`) || strings.Contains(line, `\U`) {
			u, err := strconv.Unquote(`"` + strings.ReplaceAll(line, `"`, `\"`) + `"`)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			line = u
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHardNegatives: benign text with trigger words stays below the flag
// threshold (FPR <= 2%, i.e. at most one line in 50).
func TestHardNegatives(t *testing.T) {
	s := mustNew(t, Config{})
	for _, tc := range []struct {
		file   string
		min    int
		maxFPR float64
	}{
		// Written alongside the rules and the training text (optimistic).
		{"hard_negatives.txt", 60, 0.02},
		// Written after the model was final; measured once (see package doc).
		{"hard_negatives_fresh.txt", 30, 0.04},
	} {
		t.Run(tc.file, func(t *testing.T) {
			lines := readLines(t, tc.file)
			if len(lines) < tc.min {
				t.Fatalf("only %d hard negatives", len(lines))
			}
			fp := 0
			for _, l := range lines {
				if v := s.Check(l); detected(v) {
					fp++
					t.Logf("false positive: %.2f %v %q", v.Score, v.Rules, l)
				}
			}
			fpr := ratio(fp, len(lines))
			t.Logf("%s: FPR %.3f (%d/%d)", tc.file, fpr, fp, len(lines))
			if fpr > tc.maxFPR {
				t.Errorf("FPR %.3f above %.3f", fpr, tc.maxFPR)
			}
		})
	}
}

// TestBypass: obfuscated attacks are flagged or blocked.
func TestBypass(t *testing.T) {
	s := mustNew(t, Config{})
	for _, l := range readLines(t, "bypass.txt") {
		t.Run("", func(t *testing.T) {
			v := s.Check(l)
			if !detected(v) {
				t.Errorf("missed %+q: %+v", l, v)
			}
		})
	}
}

func mustNew(t testing.TB, cfg Config) *Sanitizer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
