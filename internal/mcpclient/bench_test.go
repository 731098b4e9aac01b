package mcpclient_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/mcpclient/mcptest"
	"github.com/agentbus/agentbus/internal/tools"
)

// BenchmarkCall is one MCP tool call on its own (no bus, no firewall):
// over stdio to a child process and over streamable HTTP, against a Go
// function behind the same executor.
//
//	go test -run '^$' -bench Call ./internal/mcpclient/
func BenchmarkCall(b *testing.B) {
	srv := httptest.NewServer(mcptest.Handler(""))
	b.Cleanup(srv.Close)
	m, err := newBenchManager(b, map[string]firewall.MCPServer{
		"local": benchStdio(b),
		"web":   {URL: srv.URL, Allow: []string{"echo"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	direct := tools.Func{S: tools.Spec{Name: "echo", Parameters: json.RawMessage(`{"type":"object"}`)}, F: func(_ context.Context, args json.RawMessage) (string, error) {
		var in struct{ Text string }
		if err := json.Unmarshal(args, &in); err != nil {
			return "", err
		}
		return "echo: " + in.Text, nil
	}}
	all := []tools.Tool{direct}
	for _, t := range m.Tools() {
		all = append(all, t)
	}
	reg, err := tools.NewRegistry(all...)
	if err != nil {
		b.Fatal(err)
	}
	exec, err := tools.NewExecutor(reg, tools.ExecutorConfig{})
	if err != nil {
		b.Fatal(err)
	}
	args := json.RawMessage(`{"text":"hi"}`)
	for _, name := range []string{"echo", "local__echo", "web__echo"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if r := exec.Execute(context.Background(), name, args); r.Err != nil || r.Output != "echo: hi" {
					b.Fatalf("%+v", r)
				}
			}
		})
	}
}
