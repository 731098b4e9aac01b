package sanitize

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// datasetsDir finds the evaluation data: $AGENTBUS_DATASETS, or a
// shared/datasets directory beside any ancestor of the package directory
// (the repo at /work/main has it at /work/shared/datasets; a CI clone at
// <clone>/../shared/datasets). It skips the test when there is none.
func datasetsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("AGENTBUS_DATASETS"); d != "" {
		if _, err := os.Stat(d); err != nil {
			t.Skipf("AGENTBUS_DATASETS=%s: %v", d, err)
		}
		return d
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Skip(err)
	}
	for {
		cand := filepath.Join(dir, "shared", "datasets")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("no shared/datasets found (set AGENTBUS_DATASETS)")
		}
		dir = parent
	}
}

type sample struct {
	text  string
	label int // 1 = injection
}

// loadJSONL reads a JSON-lines file; textField names the input text, and a
// missing "label" means every row is an attack.
func loadJSONL(t testing.TB, path, textField string) []sample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []sample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		text, _ := row[textField].(string)
		label := 1
		if l, ok := row["label"].(float64); ok {
			label = int(l)
		}
		out = append(out, sample{text, label})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// loadGiskard reads the Giskard CSV (all attacks, column "prompt").
func loadGiskard(t testing.TB, path string) []sample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, h := range recs[0] {
		if h == "prompt" {
			col = i
		}
	}
	if col < 0 {
		t.Fatal("giskard csv: no prompt column")
	}
	var out []sample
	for _, r := range recs[1:] {
		out = append(out, sample{r[col], 1})
	}
	return out
}
