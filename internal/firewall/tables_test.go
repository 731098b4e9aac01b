package firewall

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// row is one line of a table in testdata: a call, and for the bypass
// tables the rule that must block it and why.
type row struct {
	Family    string          `json:"family"`
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
	Rule      string          `json:"rule"`
	Reason    string          `json:"reason"`
	Why       string          `json:"why"`
}

func loadRows(t testing.TB, name string) []row {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []row
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r row
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s:%d: %v", name, n, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// args turns a row's arguments (an object, or a JSON string holding the
// raw text, for duplicate keys and escapes) into what a model sends.
func (r row) args() string {
	a := bytes.TrimSpace(r.Arguments)
	if len(a) > 0 && a[0] == '"' {
		var s string
		if err := json.Unmarshal(a, &s); err == nil {
			return s
		}
	}
	return string(a)
}

// builtinSchemas are the schemas the built-in tools publish (a copy: the
// tools package imports this one).
var builtinSchemas = map[string]json.RawMessage{
	"calculator":   json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string","maxLength":1024}},"required":["expression"],"additionalProperties":false}`),
	"current_time": json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string"}},"additionalProperties":false}`),
}

// referenceFirewall is the firewall of testdata/tools.yaml, the tools file
// docs/tools.md documents.
func referenceFirewall(t testing.TB) *Firewall {
	t.Helper()
	cfg, err := LoadConfig(filepath.Join("testdata", "tools.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(cfg, builtinSchemas)
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

func TestBypassTables(t *testing.T) {
	fw := referenceFirewall(t)
	rows := loadRows(t, "bypass.jsonl")
	type count struct{ blocked, total int }
	per := map[string]*count{}
	for _, r := range rows {
		c := per[r.Family]
		if c == nil {
			c = &count{}
			per[r.Family] = c
		}
		c.total++
		v := fw.Check(Call{Name: r.Tool, Arguments: r.args()})
		if v.Verdict == Block {
			c.blocked++
		}
		if v.Verdict != Block || v.Rule != r.Rule {
			t.Errorf("%s: %s %s\n  got  %v\n  want block %s (%s)", r.Family, r.Tool, r.args(), v, r.Rule, r.Reason)
		}
		if v.Verdict == Block && v.Reason == "" {
			t.Errorf("%s: %s %s: a block without a reason", r.Family, r.Tool, r.args())
		}
	}
	fams := sortedKeys(per)
	blocked := 0
	for _, f := range fams {
		blocked += per[f].blocked
		t.Logf("%-20s blocked %3d / %3d", f, per[f].blocked, per[f].total)
	}
	t.Logf("bypass tables: %d / %d blocked in %d families", blocked, len(rows), len(fams))
}

func TestBenignTables(t *testing.T) {
	fw := referenceFirewall(t)
	rows := loadRows(t, "benign.jsonl")
	per := map[string][2]int{}
	for _, r := range rows {
		v := fw.Check(Call{Name: r.Tool, Arguments: r.args()})
		c := per[r.Tool]
		c[1]++
		if v.Verdict == Allow {
			c[0]++
		} else {
			t.Errorf("%s %s (%s): wrongly blocked: %v", r.Tool, r.args(), r.Why, v)
		}
		per[r.Tool] = c
	}
	tools := make([]string, 0, len(per))
	for k := range per {
		tools = append(tools, k)
	}
	sort.Strings(tools)
	allowed := 0
	for _, k := range tools {
		allowed += per[k][0]
		t.Logf("%-14s allowed %3d / %3d", k, per[k][0], per[k][1])
	}
	t.Logf("benign tables: %d / %d allowed, %d wrongly blocked", allowed, len(rows), len(rows)-allowed)
}
