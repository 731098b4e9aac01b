package firewall

import (
	"strings"
	"testing"
)

func BenchmarkCheck(b *testing.B) {
	fw := referenceFirewall(b)
	cases := []struct {
		name string
		call Call
	}{
		{"benign_search", Call{"web_search", `{"query":"how does sudo work","limit":10}`}},
		{"shell_command", Call{"ci_runner", `{"command":"go test ./... 2>&1 | tail -n 20"}`}},
		{"blocked_rm", Call{"ci_runner", `{"command":"rm  -rf /"}`}},
		{"schema_tool", Call{"calculator", `{"expression":"(1+2)*3"}`}},
		{"sql", Call{"sql_query", `{"query":"SELECT * FROM users WHERE id = 42"}`}},
		{"large_4KiB", Call{"file_manager", `{"path":"/tmp/x","data":"` + strings.Repeat("lorem ipsum; dolor | sit ", 160) + `"}`}},
		{"denied_name", Call{"Ｅｘｅｃ", `{}`}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.call.Arguments)))
			for b.Loop() {
				fw.Check(c.call)
			}
		})
	}
}
