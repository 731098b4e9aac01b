package firewall

import "testing"

func TestPythonTokeniser(t *testing.T) {
	for src, ok := range map[string]bool{
		"x = 1\ny = x + 2":                      true,
		"s = '''multi\nline''' + r'\\d' + b'x'": true,
		"f'{x!r:>{width}} {y=}'":                true,
		"f\"{'a' + \"b\"}\"":                    true, // 3.12 nested quotes
		"x = [1,\n 2]":                          true,
		"x = 1 + \\\n 2":                        true,
		"if x:\n    pass  # comment":            true,
		"é = 1":                                 true,
		"x = 'unterminated":                     false,
		"x = (1":                                false,
		"x = 1)":                                false,
		"x = $y":                                false,
		"x = 1 ? 2 : 3":                         false,
		"!ls":                                   false,
		"%timeit x":                             false,
		"  !ls":                                 false,
		"x = `y`":                               false,
		"x = 1 \\ 2":                            false,
		"f'{x # comment}'":                      false,
	} {
		_, why := pyTokenize(src, 0)
		if ok != (why == "") {
			t.Errorf("%q: tokenised=%v, want %v (%s)", src, why == "", ok, why)
		}
	}
}

func TestPythonPolicy(t *testing.T) {
	p := compilePython(&PythonPolicy{Imports: []string{"json", "os.path", "collections.abc"}, Builtins: []string{"open"}})
	for src, rule := range map[string]string{
		"import json":                         "",
		"import json.decoder":                 "",
		"from json import loads":              "",
		"from os.path import join":            "",
		"from os import path":                 "",               // os.path is allowed
		"import os.path":                      RulePythonImport, // binds os
		"import os.path as p":                 "",
		"from os import system":               RulePythonImport,
		"import collections.abc":              RulePythonImport, // binds collections
		"from collections.abc import Mapping": "",
		"from __future__ import annotations":  "",
		"import json, os":                     RulePythonImport,
		"open('x')":                           "", // listed in builtins
		"eval('1')":                           RulePythonBuiltin,
		"def eval(): pass":                    "", // defines its own
		"x.__class__":                         RulePythonAttribute,
		"self._x = 1":                         "",
		"other._x":                            RulePythonAttribute,
		"p._replace(x=1)":                     "",
		"yield from x":                        "",
		"raise E from e":                      "",
		"f'{__import__(\"os\")}'":             RulePythonAttribute,
	} {
		got := p.check(src)
		switch {
		case rule == "" && got != nil:
			t.Errorf("%q: refused: %v", src, got)
		case rule != "" && (got == nil || got.rule != rule):
			t.Errorf("%q: got %v, want %s", src, got, rule)
		}
	}
}
