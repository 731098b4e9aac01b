package firewall

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeArgs(t *testing.T) {
	tests := []struct {
		in, canon, rule string
	}{
		{``, `{}`, ""},
		{`  {}  `, `{}`, ""},
		{`{ "a" : [ 1 , 2.50 , -0 , 1e3 ] , "b":{"c":null,"d":true,"e":false}}`, `{"a":[1,2.50,-0,1e3],"b":{"c":null,"d":true,"e":false}}`, ""},
		{`{"z":1,"a":2}`, `{"z":1,"a":2}`, ""}, // key order kept
		{`{"s":"a\u002eb\/c\"d\\e\n\t\u0001\u00e9\ud83d\ude00"}`, "{\"s\":\"a.b/c\\\"d\\\\e\\n\\t\\u0001é😀\"}", ""},
		{`{"a":1,"a":2}`, "", RuleDuplicateKey},
		{`{"a":1,"\u0061":2}`, "", RuleDuplicateKey},
		{`{"path":1,"PATH":2}`, "", RuleDuplicateKey},
		{`{"key":1,"\u212aey":2}`, "", RuleDuplicateKey}, // Kelvin sign folds to k
		{`{"s":"\ud800"}`, "", RuleArgsEncoding},
		{`{"s":"\udc00\ud800"}`, "", RuleArgsEncoding},
		{`{"s":"\ud800\u0041"}`, "", RuleArgsEncoding},
		{"{\"s\":\"\xff\"}", "", RuleArgsEncoding},
		{`{"n":1e999}`, "", RuleArgsEncoding},
		{`{"n":-1e999}`, "", RuleArgsEncoding},
		{`{"n":01}`, "", RuleArgsInvalidJSON},
		{`{"n":1.}`, "", RuleArgsInvalidJSON},
		{`{"n":NaN}`, "", RuleArgsInvalidJSON},
		{`{'a':1}`, "", RuleArgsInvalidJSON},
		{`{"a":1,}`, "", RuleArgsInvalidJSON},
		{`{"a":1} {}`, "", RuleArgsInvalidJSON},
		{`{"a":"x` + "\n" + `"}`, "", RuleArgsInvalidJSON},
		{"\ufeff{}", "", RuleArgsInvalidJSON},
		{`{"a":"\x"}`, "", RuleArgsInvalidJSON},
		{strings.Repeat("[", 65) + strings.Repeat("]", 65), "", RuleTooComplex},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, canon, f := decodeArgs(tt.in)
			if tt.rule != "" {
				if f == nil || f.rule != tt.rule {
					t.Fatalf("got %v %q, want %s", f, canon, tt.rule)
				}
				return
			}
			if f != nil {
				t.Fatalf("refused: %v", f)
			}
			if canon != tt.canon {
				t.Fatalf("canonical %s, want %s", canon, tt.canon)
			}
			// the standard decoder reads the canonical text as the same value
			var std any
			d := json.NewDecoder(strings.NewReader(canon))
			d.UseNumber()
			if err := d.Decode(&std); err != nil || !reflect.DeepEqual(std, v) {
				t.Fatalf("std decodes %#v (%v), firewall %#v", std, err, v)
			}
		})
	}
}
