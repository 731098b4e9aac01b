package calc_test

import (
	"errors"
	"fmt"

	"github.com/agentbus/agentbus/internal/calc"
)

func ExampleEval() {
	v, err := calc.Eval("(17*23)^2 / 4", calc.Limits{})
	fmt.Println(calc.Format(v), err)
	v, _ = calc.Eval("-2^2", calc.Limits{})
	fmt.Println(calc.Format(v))
	_, err = calc.Eval("1 + 2 )", calc.Limits{})
	fmt.Println(err)
	_, err = calc.Eval("7 % (3 - 3)", calc.Limits{})
	fmt.Println(err, errors.Is(err, calc.ErrDivisionByZero))
	// Output:
	// 38220.25 <nil>
	// -4
	// unexpected ')' at position 7
	// division by zero true
}
