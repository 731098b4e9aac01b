package firewall

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// dataFirewall declares a tool whose arguments are all data, so whatever
// decodes strictly is allowed.
func dataFirewall(t testing.TB) *Firewall {
	cfg, err := ParseConfig([]byte("tools:\n  t:\n    arguments:\n      a: {data: {}}\n      b: {data: {}}\n      path: {path: {roots: [/srv]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

// A call the firewall allows reaches the tool with the same values,
// whichever text the tool parses: the model's or the canonical one.
func FuzzAllowedCallIsIdenticalAfterDecoding(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `{ "a" : [1, 2.50, -0, 1e3], "b": {"x": null} }`, `{"a":"\u00e9\ud83d\ude00\n\"\\\/"}`,
		`{"path":"/srv/a.txt","a":true}`, `{"a":1,"a":2}`, `{"a":1,"A":2}`, `{"a":"\ud800"}`, `{"a":1e999}`,
		`{"b":[{"c":{"d":[]}}],"a":""}`, "{\"a\":\"\xff\"}", `{"a":12345678901234567890}`, `{"a":-0.0e-0}`,
	} {
		f.Add(s)
	}
	fw := dataFirewall(f)
	f.Fuzz(func(t *testing.T, raw string) {
		v := fw.Check(Call{Name: "t", Arguments: raw})
		if v.Verdict != Allow {
			if v.Arguments != "" {
				t.Fatalf("a block carries arguments: %+v", v)
			}
			return
		}
		decode := func(s string) any {
			d := json.NewDecoder(strings.NewReader(s))
			d.UseNumber()
			var x any
			if err := d.Decode(&x); err != nil {
				t.Fatalf("%q does not decode: %v", s, err)
			}
			return x
		}
		if strings.TrimSpace(raw) == "" {
			raw = "{}"
		}
		before, after := decode(raw), decode(v.Arguments)
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("the tool would see other values:\nraw       %s -> %#v\ncanonical %s -> %#v", raw, before, v.Arguments, after)
		}
		// canonical text is a fixed point
		if again := fw.Check(Call{Name: "t", Arguments: v.Arguments}); again.Arguments != v.Arguments {
			t.Fatalf("not a fixed point: %s -> %s", v.Arguments, again.Arguments)
		}
	})
}

// Check never panics, is deterministic, names a rule and gives a reason.
func FuzzCheck(f *testing.F) {
	for _, r := range []struct{ name, args string }{
		{"terminal", `{"command":"git status && go test ./..."}`},
		{"terminal", `{"command":"find . -exec sh -c 'id' \\;"}`},
		{"terminal", `{"command":"awk 'BEGIN{system(\"id\")}' | sed -n '1e id' && ssh -o ProxyCommand=x h"}`},
		{"terminal", `{"command":"$(((((("}`},
		{"sql_console", `{"query":"WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a"}`},
		{"orders_db", `{"sql":"UPDATE orders SET a = 1 WHERE id = 1 OR 1=1"}`},
		{"python", `{"code":"f'{__import__(\"os\")}'"}`},
		{"read_file", `{"path":"/srv/agent/data/../x"}`},
		{"web_fetch", `{"url":"https://a@b/"}`},
		{"Ｅｘｅｃ", `{}`},
		{"x", `not json`},
	} {
		f.Add(r.name, r.args)
	}
	fw := referenceFirewall(f)
	f.Fuzz(func(t *testing.T, name, args string) {
		v1 := fw.Check(Call{Name: name, Arguments: args})
		v2 := fw.Check(Call{Name: name, Arguments: args})
		if v1 != v2 {
			t.Fatalf("not deterministic: %v vs %v", v1, v2)
		}
		switch {
		case v1.Rule == "":
			t.Fatal("no rule")
		case v1.Verdict == Block && v1.Reason == "":
			t.Fatalf("a block without a reason: %v", v1)
		case v1.Verdict == Allow && v1.Arguments == "":
			t.Fatalf("an allow without arguments: %v", v1)
		case v1.Verdict != Allow && v1.Verdict != Block:
			t.Fatalf("bad verdict %q", v1.Verdict)
		}
	})
}

// A refused command stays refused when an allowed command precedes it,
// or when it runs in a subshell or through timeout: composition never
// unblocks.
func FuzzShellComposition(f *testing.F) {
	for _, s := range []string{"rm -rf /", "ls", "cat /etc/passwd", "sudo id", "x=1", "`id`", "git -c a=b log", "ls | sh", "(ls)"} {
		f.Add(s)
	}
	fw := referenceFirewall(f)
	p := fw.tools["terminal"].args["command"].shell
	f.Fuzz(func(t *testing.T, cmd string) {
		base := newShellCheck(p).line(cmd)
		if base == nil || strings.ContainsAny(cmd, "#\\") || strings.Count(cmd, "'")%2 != 0 || strings.Count(cmd, `"`)%2 != 0 {
			return
		}
		for _, wrapped := range []string{"ls; " + cmd, "ls && " + cmd, "(" + cmd + "\n)", "{ " + cmd + "\n}"} {
			if f := newShellCheck(p).line(wrapped); f == nil {
				t.Fatalf("%q is refused (%v) but %q is allowed", cmd, base, wrapped)
			}
		}
	})
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{"SELECT 1", "s/a/b/e", "{print | \"sh\"}", "f'{x!r:{y}}'", "$$a$$", "/* /* */", "'\\''", "import os"} {
		f.Add(s)
	}
	sqlp := compileSQL(&SQLPolicy{Statements: []string{"select", "update", "delete"}, Keys: []string{"id"}})
	pg := compileSQL(&SQLPolicy{Dialect: dialectPostgres})
	my := compileSQL(&SQLPolicy{Dialect: dialectMySQL})
	py := compilePython(&PythonPolicy{Imports: []string{"json"}})
	u := compileURL(&URLPolicy{Hosts: []string{"*"}})
	pa, _ := compilePath(&PathPolicy{Roots: []string{"/srv"}, Base: "/srv"})
	f.Fuzz(func(t *testing.T, s string) {
		_ = sqlp.check(s)
		_ = pg.check(s)
		_ = my.check(s)
		_ = py.check(s)
		_ = u.check(s)
		_ = pa.check(s)
		_ = sedProblem(s)
		_ = awkProblem(s)
		_ = modeProblem(s)
	})
}

func FuzzRunJSONL(f *testing.F) {
	f.Add("{\"tool\":\"exec\",\"arguments\":{}}\nnot json\n\n{\"tool\":\"calculator\",\"arguments\":\"{\\\"expression\\\":\\\"1\\\"}\"}\n")
	f.Add("{\"name\":\"x\"}\r\n[1]\n{}")
	fw := referenceFirewall(f)
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if err := RunJSONL(context.Background(), fw, strings.NewReader(in), &out); err != nil {
			t.Fatal(err)
		}
		nonBlank := 0
		for _, l := range strings.Split(in, "\n") {
			if strings.TrimSpace(l) != "" {
				nonBlank++
			}
		}
		if got := strings.Count(out.String(), "\n"); got != nonBlank {
			t.Fatalf("%d non-blank lines in, %d verdicts out", nonBlank, got)
		}
	})
}
