package tools

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/calc"
)

func newCalc(t testing.TB) *Calculator {
	t.Helper()
	c, err := NewCalculator(CalculatorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCalculatorCall(t *testing.T) {
	c := newCalc(t)
	tests := []struct {
		args, want, wantErr string
	}{
		{`{"expression":"17*23"}`, "391", ""},
		{`{"expression":"1/0"}`, "", "division by zero"},
		{`{"expr":"1"}`, "", "invalid arguments"},
		{`{"expression":1}`, "", "invalid arguments"},
		{``, "", "empty expression"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			got, err := c.Call(context.Background(), json.RawMessage(tt.args))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCalculatorConfig(t *testing.T) {
	if _, err := NewCalculator(CalculatorConfig{MaxLength: -1, MaxDepth: -1}); err == nil {
		t.Fatal("negative limits accepted")
	}
	c, err := NewCalculator(CalculatorConfig{MaxLength: 5, MaxDepth: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Eval("1+2+3"); err != nil {
		t.Errorf("5 bytes rejected: %v", err)
	}
	if _, err := c.Eval("1+2+34"); err == nil || err.Error() != "expression too long" {
		t.Errorf("6 bytes: %v", err)
	}
	if _, err := c.Eval("((1))"); err != nil {
		t.Errorf("depth 2 rejected: %v", err)
	}
	if _, err := c.Eval("(((1)))"); err == nil {
		t.Error("depth 3 accepted")
	}
	var ce *calc.Error
	if _, err := c.Eval("1/0"); !errors.As(err, &ce) || !errors.Is(err, calc.ErrDivisionByZero) {
		t.Errorf("1/0: %T %v, want a *calc.Error for a division by zero", err, err)
	}
}
