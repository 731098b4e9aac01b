package firewall

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"exec", "exec"}, {"Exec", "exec"}, {"ＥＸＥＣ", "exec"}, {"ｅｘｅｃ", "exec"}, {"e\u200bxec", "exec"},
		{"e\u200dx\u2060e\ufeffc", "exec"}, {"\u0435x\u0435c", "exec"}, {"ex\u00adec", "exec"}, {"  exec\t", "exec"},
		{"get_weather", "get_weather"}, {"Straße", "strasse"},
	}
	for _, tt := range tests {
		if got := NormalizeName(tt.in); got != tt.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNamesAndModes(t *testing.T) {
	schemas := map[string]json.RawMessage{
		"get_weather": json.RawMessage(`{"type":"object","properties":{"city":{"type":"string","minLength":1}},"required":["city"],"additionalProperties":false}`),
		"calculator":  nil,
	}
	declared := "tools:\n  terminal:\n    arguments:\n      command: {shell: {programs: {ls: {}}}}\n"
	tests := []struct {
		name string
		cfg  string
		call Call
		rule string
	}{
		{"schema tool", ``, Call{"get_weather", `{"city":"Oslo"}`}, RuleAllowed},
		{"case-folded name", ``, Call{"GET_WEATHER", `{"city":"Oslo"}`}, RuleAllowed},
		{"tool without schema", ``, Call{"calculator", `{"expression":"1+1"}`}, RuleAllowed},
		{"unknown tool", ``, Call{"send_email", `{}`}, RuleUnknown},
		{"denied beats allow", "allow: [exec]", Call{"Exec", `{}`}, RuleDenied},
		{"allow restricts", "allow: [calculator]", Call{"get_weather", `{"city":"Oslo"}`}, RuleUnknown},
		{"allow with separators", "allow: [get-weather]", Call{"Get_Weather", `{"city":"Oslo"}`}, RuleAllowed},
		{"exec word in an unknown name", ``, Call{"execute_python", `{}`}, RuleDenied},
		{"custom deny", "deny: [get_weather]", Call{"get-weather", `{"city":"Oslo"}`}, RuleDenied},
		{"empty deny list: exec still needs a policy", "mode: blocklist\ndeny: []", Call{"exec", `{}`}, RulePolicyRequired},
		{"empty deny list", "mode: blocklist\ndeny: []", Call{"spawn_helper", `{}`}, RuleAllowed},
		{"blocklist admits unknown", "mode: blocklist", Call{"send_email", `{"to":"a"}`}, RuleAllowed},
		{"default deny spares declared tools", declared, Call{"terminal", `{"command":"ls"}`}, RuleAllowed},
		{"explicit deny wins over declaration", declared + "deny: [terminal]", Call{"terminal", `{"command":"ls"}`}, RuleDenied},
		{"declared without a schema", declared, Call{"Terminal", `{"command":"ls"}`}, RuleAllowed},
		{"undeclared terminal", ``, Call{"terminal", `{"command":"ls"}`}, RuleDenied},
		{"policy required by name", "mode: blocklist", Call{"sql_runner", `{"q":"SELECT 1"}`}, RulePolicyRequired},
		{"policy required by key", "mode: blocklist", Call{"helper", `{"opts":{"cmd":"ls"}}`}, RulePolicyRequired},
		{"prose keys need no policy", "mode: blocklist", Call{"web_search", `{"query":"how does sudo work"}`}, RuleAllowed},
		{"missing required", ``, Call{"get_weather", `{}`}, RuleArgsSchema},
		{"additional property", ``, Call{"get_weather", `{"city":"Oslo","x":1}`}, RuleArgsSchema},
		{"case variant of a property", ``, Call{"get_weather", `{"City":"Oslo"}`}, RuleKeyCase},
		{"invalid json", ``, Call{"get_weather", `{"city":`}, RuleArgsInvalidJSON},
		{"not an object", ``, Call{"get_weather", `"Oslo"`}, RuleArgsNotObject},
		{"too large", "max_arg_bytes: 16", Call{"get_weather", `{"city":"Llanfairpwllgwyngyll"}`}, RuleArgsTooLarge},
		{"empty name", ``, Call{"\u200b", `{}`}, RuleBadName},
		{"long name", ``, Call{strings.Repeat("a", 300), `{}`}, RuleBadName},
		{"undeclared argument", declared, Call{"terminal", `{"command":"ls","cwd":"/"}`}, RuleUndeclared},
		{"wrong type", declared, Call{"terminal", `{"command":{"x":1}}`}, RuleArgType},
		{"list of command lines", declared, Call{"terminal", `{"command":["ls","sudo id"]}`}, RuleShellProgram},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.cfg))
			if err != nil {
				t.Fatal(err)
			}
			fw, err := New(cfg, schemas)
			if err != nil {
				t.Fatal(err)
			}
			got := fw.Check(tt.call)
			if got.Rule != tt.rule {
				t.Fatalf("Check(%+v) = %v, want %s", tt.call, got, tt.rule)
			}
			if got.Verdict == Block && (got.Reason == "" || got.Arguments != "") {
				t.Errorf("a block needs a reason and no arguments: %+v", got)
			}
			if got.Verdict == Allow && got.Arguments == "" {
				t.Errorf("an allow carries the canonical arguments: %+v", got)
			}
		})
	}
}

func TestCheckTurnLimits(t *testing.T) {
	fw, err := New(Config{MaxCallsPerTurn: 2, MaxRounds: 3}, map[string]json.RawMessage{"calculator": nil})
	if err != nil {
		t.Fatal(err)
	}
	ok, bad := Call{"calculator", `{"expression":"1"}`}, Call{"exec", `{}`}
	tests := []struct {
		name  string
		calls []Call
		round int
		want  []string
	}{
		{"within limits", []Call{ok, bad}, 0, []string{RuleAllowed, RuleDenied}},
		{"last allowed round", []Call{ok}, 2, []string{RuleAllowed}},
		{"too many rounds", []Call{ok}, 3, []string{RuleMaxRounds}},
		{"too many calls", []Call{ok, ok, ok}, 0, []string{RuleMaxCalls, RuleMaxCalls, RuleMaxCalls}},
		{"empty", nil, 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fw.CheckTurn(tt.calls, tt.round)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d verdicts, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].Rule != tt.want[i] {
					t.Errorf("verdict %d = %v, want %s", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestSchemas(t *testing.T) {
	pydantic := `{
	  "$defs": {"Unit": {"enum": ["metric", "imperial"], "type": "string"},
	            "Place": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1}, "unit": {"$ref": "#/$defs/Unit"}},
	                      "required": ["city"], "additionalProperties": false}},
	  "type": "object", "properties": {"places": {"type": "array", "items": {"$ref": "#/$defs/Place"}, "maxItems": 3},
	                                   "email": {"type": "string", "format": "email"}},
	  "required": ["places"], "title": "Args", "x-origin": "pydantic"}`
	fw, err := New(Config{}, map[string]json.RawMessage{"weather": json.RawMessage(pydantic)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args, rule string
	}{
		{`{"places":[{"city":"Oslo","unit":"metric"}]}`, RuleAllowed},
		{`{"places":[{"city":"Oslo","unit":"kelvin"}]}`, RuleArgsSchema},
		{`{"places":[{"city":""}]}`, RuleArgsSchema},
		{`{"places":[{"city":"a"},{"city":"b"},{"city":"c"},{"city":"d"}]}`, RuleArgsSchema},
		{`{"places":[{"city":"Oslo","x":1}]}`, RuleArgsSchema},
		{`{"places":[{"CITY":"Oslo","city":"x"}]}`, RuleDuplicateKey},
		{`{"places":[{"City":"Oslo"}]}`, RuleKeyCase}, // through $ref and items
		{`{"places":[],"email":"not an email"}`, RuleArgsSchema},
		{`{"places":[],"email":"a@example.com"}`, RuleAllowed},
	} {
		if v := fw.Check(Call{"weather", tt.args}); v.Rule != tt.rule {
			t.Errorf("%s: got %v, want %s", tt.args, v, tt.rule)
		}
	}
	for name, s := range map[string]string{
		"unknown keyword":   `{"type":"object","maxLenght":3}`,
		"remote ref":        `{"$ref":"https://example.com/s.json"}`,
		"dynamic ref":       `{"$dynamicRef":"#x"}`,
		"recursive ref":     `{"$recursiveRef":"#"}`,
		"nested unknown":    `{"properties":{"a":{"$defs":{"b":{"pattern":"x","flavour":1}}}}}`,
		"bad type":          `{"type":"strng"}`,
		"bad json":          `{"type":`,
		"RE2 cannot":        `{"pattern":"(?=x)"}`,
		"dangling ref":      `{"$ref":"#/$defs/missing"}`,
		"not a schema":      `[1]`,
		"vocabulary":        `{"$vocabulary":{}}`,
		"dynamic anchor":    `{"$dynamicAnchor":"x"}`,
		"items not schemas": `{"prefixItems":[1]}`,
	} {
		if _, err := New(Config{}, map[string]json.RawMessage{"t": json.RawMessage(s)}); err == nil {
			t.Errorf("%s: New accepted %s", name, s)
		}
	}
}

// Input past the analysis bounds is refused, never waved through and
// never analysed at a cost that grows faster than its size.
func TestAnalysisBounds(t *testing.T) {
	cfg, _ := ParseConfig([]byte("tools:\n  t:\n    arguments:\n      c: {shell: {programs: {ls: {}}}}\n      q: {sql: {statements: [select, delete]}}\n"))
	fw, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	deep := func(open, mid, close string, n int) string {
		return strings.Repeat(open, n) + mid + strings.Repeat(close, n)
	}
	for _, tt := range []struct{ key, value string }{
		{"c", deep("(", "ls", ")", 200)},
		{"c", deep("{ ", "ls", "; }", 200)},
		{"c", strings.Repeat("ls;", 5000)},
		{"q", "SELECT " + deep("(", "1", ")", 100)},
		{"q", "DELETE FROM t WHERE " + deep("(", "id = 1", ")", 100)},
	} {
		args, _ := json.Marshal(map[string]string{tt.key: tt.value})
		if v := fw.Check(Call{"t", string(args)}); v.Rule != RuleTooComplex {
			t.Errorf("%s...: got %v, want %s", tt.value[:20], v, RuleTooComplex)
		}
	}
}
