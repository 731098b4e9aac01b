package calc

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestEval(t *testing.T) {
	tests := []struct {
		expr, want, wantErr string
	}{
		{"17*23", "391", ""},
		{"1+2*3", "7", ""},
		{"(1+2)*3", "9", ""},
		{"10/4", "2.5", ""},
		{"7 % 3", "1", ""},
		{"-7 % 3", "-1", ""},
		{"2^10", "1024", ""},
		{"2**10", "1024", ""},
		{"2^3^2", "512", ""}, // right-associative
		{"-2^2", "-4", ""},
		{"2^-1", "0.5", ""},
		{"--3", "3", ""},
		{"+3", "3", ""},
		{".5 + 1.", "1.5", ""},
		{"1.5e3", "1500", ""},
		{"0.1+0.2", "0.3", ""},
		{"1/3", "0.333333333333333", ""},
		{"sqrt(16)", "4", ""},
		{"abs(-3.5)", "3.5", ""},
		{"min(3, 1, 2)", "1", ""},
		{"max(3, 1, 2)", "3", ""},
		{"round(2.5)", "3", ""},
		{"floor(-1.5)", "-2", ""},
		{"ceil(1.2)", "2", ""},
		{"PI", "3.14159265358979", ""},
		{"2 × 3 ÷ 4", "1.5", ""},
		{"-0", "0", ""},
		{"1e15", "1e+15", ""},
		{"2^53 + 1", "9.00719925474099e+15", ""},
		{"1/0", "", "division by zero"},
		{"5 % 0", "", "division by zero"},
		{"0^-1", "", "division by zero"},
		{"1 + 2 )", "", "unexpected ')' at position 7"},
		{"(1 + 2", "", "missing ')' for '(' at position 1"},
		{"1 +", "", "unexpected end of expression"},
		{"", "", "empty expression"},
		{"   ", "", "empty expression"},
		{"2 $ 3", "", "unexpected character '$' at position 3"},
		{"foo(1)", "", "unknown function \"foo\" at position 1"},
		{"x + 1", "", "unknown name \"x\" at position 1"},
		{"sqrt(-1)", "", "square root of a negative number at position 1"},
		{"log(0)", "", "logarithm of a non-positive number at position 1"},
		{"(-8)^(1/3)", "", "power of a negative number to a fractional exponent at position 5"},
		{"max()", "", "max takes at least 1 argument(s), got 0 at position 1"},
		{"sqrt(1, 2)", "", "sqrt takes 1 argument(s), got 2 at position 1"},
		{"10^400", "", "result is too large"},
		{"1e999", "", "number too large at position 1"},
		{"1.2.3", "", "invalid number \"1.2.3\" at position 1"},
		{"2 3", "", "unexpected number 3 at position 3"},
		{"é+1", "", "unexpected character 'é' at position 1"},
		{strings.Repeat("1+", 600) + "1", "", "expression too long"},
		{strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100), "", "expression nested too deeply at position 65"},
		{strings.Repeat("-", 100) + "1", "", "expression nested too deeply at position 65"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			v, err := Eval(tt.expr, Limits{})
			got := ""
			if err == nil {
				got = Format(v)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Eval(%q) = %q, %v; want error %q", tt.expr, got, err, tt.wantErr)
				}
				var ce *Error
				if !errors.As(err, &ce) {
					t.Errorf("error %T is not a *Error", err)
				}
				if errors.Is(err, ErrDivisionByZero) != (tt.wantErr == "division by zero") {
					t.Errorf("errors.Is(%v, ErrDivisionByZero) = %v", err, !(tt.wantErr == "division by zero"))
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Eval(%q) = %q, %v; want %q", tt.expr, got, err, tt.want)
			}
		})
	}
}

func FuzzEval(f *testing.F) {
	for _, s := range []string{"17*23", "1 + 2 )", "(1+2", "-2^2", "2**-3", "sqrt(2)", "max(1,2,3)", "1e308*10",
		"1/0", "(((((((", "pi*e", "1..2", "×÷−", "\xff", "round(-0.5)", "5 % -3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		v1, err1 := Eval(expr, Limits{})
		v2, err2 := Eval(expr, Limits{})
		if (err1 == nil) != (err2 == nil) || (err1 == nil && v1 != v2 && !math.IsNaN(v1)) {
			t.Fatalf("not deterministic: %v %v / %v %v", v1, err1, v2, err2)
		}
		if err1 != nil {
			if err1.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if math.IsNaN(v1) || math.IsInf(v1, 0) {
			t.Fatalf("Evaluate(%q) = %v without error", expr, v1)
		}
		s := Format(v1)
		back, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("Format(%v) = %q does not parse", v1, s)
		}
		if d := math.Abs(back - v1); d > 1e-14*math.Max(1, math.Abs(v1)) {
			t.Fatalf("Format(%v) = %q loses too much", v1, s)
		}
		// (expr) and expr agree, when the parenthesised form is in bounds
		if w, err := Eval("("+expr+")", Limits{}); err == nil && w != v1 {
			t.Fatalf("(%s) = %v but %s = %v", expr, w, expr, v1)
		}
	})
}

func BenchmarkEval(b *testing.B) {
	for b.Loop() {
		if _, err := Eval("(17*23 + sqrt(16)) ^ 2 / 4 - max(1, 2, 3) % 2", Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
