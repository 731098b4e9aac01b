package tools_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/internal/tools"
)

func Example() {
	calc, _ := tools.NewCalculator(tools.CalculatorConfig{})
	clock, _ := tools.NewClock(tools.ClockConfig{Now: func() time.Time {
		return time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	}})
	reg, err := tools.NewRegistry(calc, clock)
	if err != nil {
		panic(err)
	}
	exec, err := tools.NewExecutor(reg, tools.ExecutorConfig{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, c := range []struct{ name, args string }{
		{"calculator", `{"expression":"17*23"}`},
		{"calculator", `{"expression":"1 + 2 )"}`},
		{"current_time", `{"timezone":"Europe/Paris"}`},
		{"rm", `{}`},
	} {
		res := exec.Execute(ctx, c.name, json.RawMessage(c.args))
		fmt.Println(res.Output)
	}
	// Output:
	// 391
	// error: unexpected ')' at position 7
	// 2026-03-01T10:30:00+01:00
	// error: tools: unknown tool: "rm"
}

func ExampleRegistry_Specs() {
	calc, _ := tools.NewCalculator(tools.CalculatorConfig{})
	fetch, _ := tools.NewHTTPFetch(tools.HTTPFetchConfig{AllowHosts: []string{"*.wikipedia.org"}})
	reg, _ := tools.NewRegistry(fetch, calc)
	for _, s := range reg.Specs() {
		fmt.Println(s.Name)
	}
	// Output:
	// calculator
	// http_fetch
}
