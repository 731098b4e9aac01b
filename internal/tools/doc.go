// Package tools holds the tools an agent can call, the registry that names
// them and the executor that runs them safely.
//
// A [Tool] describes itself with a [Spec] (name, description, JSON Schema
// of its arguments, as in the OpenAI "function" tool format) and runs with
// [Tool.Call]. A [Registry] holds tools by name; names are unique after
// firewall.NormalizeName, so "Calculator" and "calculator" cannot both be
// registered. [Registry.Schemas] is what firewall.New takes. Remote tools
// (NATS micro services) implement the same interface in the toolexec
// stage.
//
//	calc, _ := tools.NewCalculator(tools.CalculatorConfig{})
//	clock, _ := tools.NewClock(tools.ClockConfig{})
//	fetch, _ := tools.NewHTTPFetch(tools.HTTPFetchConfig{AllowHosts: []string{"*.wikipedia.org"}})
//	reg, err := tools.NewRegistry(calc, clock, fetch)
//	exec, err := tools.NewExecutor(reg, tools.ExecutorConfig{})
//	res := exec.Execute(ctx, "calculator", json.RawMessage(`{"expression":"17*23"}`))
//	// res.Output == "391"
//
// Built-in tools:
//
//   - calculator ([Calculator]): arithmetic with the parser of package
//     calc (shared with the offline model), exact errors ("division by
//     zero", "unexpected ')' at position 7", "expression too long"),
//     bounded length and nesting.
//   - current_time ([Clock]): the time in RFC 3339 in an optional IANA
//     zone, with an injectable clock; zone data is embedded.
//   - http_fetch ([HTTPFetch]): GET of allowlisted hosts only. The address
//     actually dialled is checked in the dialer's Control hook (after DNS,
//     so DNS rebinding cannot bypass it) and refused when private,
//     loopback, link-local, unspecified, multicast, CGNAT, IPv6 ULA or
//     reserved, unless explicitly allowed; every redirect is re-checked and
//     at most 5 are followed; bodies are cut at 256 KiB and fetches at 10 s.
//
// # Guarantees of the Executor
//
// [Executor.Execute] never panics and never crashes the caller: an unknown
// tool, a tool error, a timeout or a panic inside the tool all come back
// as a [Result] whose Output is "error: <message>" (what the model sees)
// and whose Err carries the cause for logs and metrics. Each call is
// bounded by a per-tool timeout (default 10 s, which also bounds the wait
// for a slot), a per-tool concurrency limit (default 4) and an output
// limit (default 64 KiB, cut on a UTF-8 boundary with a marker). A tool
// that ignores its context keeps its concurrency slot until it returns,
// but never holds the caller past the timeout.
//
// Tools do not check policy: run firewall.Firewall.Check before Execute.
package tools
