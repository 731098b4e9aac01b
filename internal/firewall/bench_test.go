package firewall

import (
	"strings"
	"testing"
)

// BenchmarkCheck measures decisions per second on the reference
// configuration (testdata/tools.yaml):
//
//	go test -run '^$' -bench BenchmarkCheck -benchmem ./internal/firewall/
func BenchmarkCheck(b *testing.B) {
	fw := referenceFirewall(b)
	long := strings.Repeat("git status && go test ./... 2>&1 | tail -n 20; ", 40)
	cases := []struct {
		name string
		call Call
	}{
		{"shell_benign", Call{"terminal", `{"command":"git log --oneline -n 10 | head -n 5 && go test ./internal/... -run TestX -count=1"}`}},
		{"shell_blocked", Call{"terminal", `{"command":"find . -name '*.log' -exec rm -rf {} +"}`}},
		{"shell_awk_sed", Call{"terminal", `{"command":"awk -F, '{s += $3} END {print s}' data.csv | sed -n '1,5p'"}`}},
		{"shell_2KiB", Call{"terminal", `{"command":"` + long + `ls"}`}},
		{"sql_select_join", Call{"sql_console", `{"query":"SELECT c.name, count(o.id) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.total > 10 GROUP BY c.name ORDER BY 2 DESC LIMIT 20"}`}},
		{"sql_blocked", Call{"orders_db", `{"sql":"DELETE FROM orders WHERE id = 5 OR 1=1"}`}},
		{"python", Call{"python", `{"code":"import math\nfrom statistics import mean\nprint(mean([math.sqrt(x) for x in range(100)]))"}`}},
		{"path", Call{"read_file", `{"path":"/srv/agent/data/2024/q3/summary.txt","max_bytes":4096}`}},
		{"url", Call{"web_fetch", `{"url":"https://docs.python.org/3/library/json.html"}`}},
		{"builtin_schema", Call{"calculator", `{"expression":"(1+2)*3"}`}},
		{"denied_name", Call{"Ｅｘｅｃ", `{}`}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.call.Arguments)))
			for b.Loop() {
				fw.Check(c.call)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkCheckParallel measures decisions per second with every core
// checking a mix of calls.
func BenchmarkCheckParallel(b *testing.B) {
	fw := referenceFirewall(b)
	rows := loadRows(b, "benign.jsonl")
	rows = append(rows, loadRows(b, "bypass.jsonl")...)
	calls := make([]Call, len(rows))
	for i, r := range rows {
		calls[i] = Call{Name: r.Tool, Arguments: r.args()}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			fw.Check(calls[i%len(calls)])
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
