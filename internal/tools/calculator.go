package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentbus/agentbus/internal/calc"
)

// Defaults of CalculatorConfig.
const (
	DefaultCalcMaxLength = calc.DefaultMaxLength
	DefaultCalcMaxDepth  = calc.DefaultMaxDepth
)

// CalculatorConfig configures the calculator tool.
type CalculatorConfig struct {
	// MaxLength bounds the expression, in bytes (default 1024).
	MaxLength int
	// MaxDepth bounds nesting of parentheses, unary signs, powers and
	// function calls (default 64).
	MaxDepth int
}

// Validate reports every invalid field, joined.
func (c CalculatorConfig) Validate() error {
	var errs []error
	if c.MaxLength < 0 {
		errs = append(errs, fmt.Errorf("calculator: max_length %d is negative", c.MaxLength))
	}
	if c.MaxDepth < 0 {
		errs = append(errs, fmt.Errorf("calculator: max_depth %d is negative", c.MaxDepth))
	}
	return errors.Join(errs...)
}

// Calculator is the "calculator" tool: safe arithmetic on float64 with the
// parser of package calc (no eval), which the offline model shares. It
// supports + - * / % (remainder), ^ and ** (power, right-associative,
// binding tighter than unary minus: -2^2 = -4), parentheses, unary minus
// and plus, decimals and exponents (1.5e3), the constants pi and e, and the
// functions sqrt, abs, min, max, round, floor, ceil, exp, ln, log
// (natural), log10, log2, sin, cos, tan.
//
// Integral results print without a fraction ("17*23" gives "391"); others
// with up to 15 significant digits ("0.1+0.2" gives "0.3"). Errors are
// *calc.Error values, exact and naming a 1-based character position where
// one applies: "division by zero", "unexpected ')' at position 7",
// "expression too long".
type Calculator struct {
	cfg CalculatorConfig
}

// NewCalculator returns the calculator tool.
func NewCalculator(cfg CalculatorConfig) (*Calculator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxLength == 0 {
		cfg.MaxLength = DefaultCalcMaxLength
	}
	if cfg.MaxDepth == 0 {
		cfg.MaxDepth = DefaultCalcMaxDepth
	}
	return &Calculator{cfg: cfg}, nil
}

// Spec describes the tool.
func (c *Calculator) Spec() Spec {
	return Spec{
		Name:        "calculator",
		Description: "Evaluate an arithmetic expression exactly as written: + - * / % ^ (power), parentheses, decimals, pi, e, sqrt, abs, min, max, round, floor, ceil, exp, ln, log10, log2, sin, cos, tan.",
		Parameters: json.RawMessage(fmt.Sprintf(`{"type":"object","properties":{"expression":{"type":"string","minLength":1,"maxLength":%d,"description":"for example (17*23)^2 / 4"}},"required":["expression"],"additionalProperties":false}`,
			c.cfg.MaxLength)),
	}
}

// Call evaluates {"expression": "..."}.
func (c *Calculator) Call(ctx context.Context, args json.RawMessage) (string, error) {
	var in struct {
		Expression string `json:"expression"`
	}
	if err := decodeArgs(args, &in); err != nil {
		return "", err
	}
	return c.Eval(in.Expression)
}

// Eval evaluates an expression and formats the result.
func (c *Calculator) Eval(expr string) (string, error) {
	v, err := c.Evaluate(expr)
	if err != nil {
		return "", err
	}
	return calc.Format(v), nil
}

// Evaluate returns the value of an expression; errors are *calc.Error.
func (c *Calculator) Evaluate(expr string) (float64, error) {
	return calc.Eval(expr, calc.Limits{MaxLength: c.cfg.MaxLength, MaxDepth: c.cfg.MaxDepth})
}
