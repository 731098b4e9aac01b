package app_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
)

// benchSeq numbers the benchmark's turns (unique across -count runs).
var benchSeq int

// BenchmarkToolexecMCP measures one tool round through the toolexec stage
// (toolcalls event in, firewall, step lease and record, the call, result
// scan, tooled event out) for a built-in tool and for the same kind of
// tool behind an MCP server over stdio and over streamable HTTP. The
// difference is the added latency of an MCP call.
//
//	go test -run '^$' -bench ToolexecMCP -benchtime 2s ./internal/app/
func BenchmarkToolexecMCP(b *testing.B) {
	const token = "bench-token-0123456789"
	web := &mcpHTTP{token: token}
	web.start(b)
	calls := filepath.Join(b.TempDir(), "calls.log")
	fwc, err := firewall.ParseConfig([]byte(mcpToolsFile(calls, web.addr)))
	if err != nil {
		b.Fatal(err)
	}
	sys := apptest.Start(b, func(o *app.Options) {
		o.Stages = []string{app.StageToolexec}
		o.Firewall = fwc
		o.Getenv = func(k string) string {
			if k == "TEST_MCP_TOKEN" {
				return token
			}
			return ""
		}
	})
	nc := sys.Runtime.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, tool, args, want string }{
		{"builtin_calculator", "calculator", `{"expression":"17*23"}`, "391"},
		{"mcp_stdio_echo", "local__echo", `{"text":"391"}`, "echo: 391"},
		{"mcp_http_echo", "remote__echo", `{"text":"391"}`, "echo: 391"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				benchSeq++
				rid := fmt.Sprintf("req_bench_%s_%d", bc.name, benchSeq)
				sub, err := nc.SubscribeSync(messages.Subject(messages.EventTooled, rid))
				if err != nil {
					b.Fatal(err)
				}
				g := messages.Generation{
					Admitted: messages.Admitted{Turn: apptest.Turn(rid, "bench", "go"), Guard: messages.Verdict{Action: "allow"}},
					Steps: []messages.Message{{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{{
						ID: "call_b", Type: "function", Function: messages.FunctionCall{Name: bc.tool, Arguments: bc.args},
					}}}},
				}
				if err := apptest.Publish(js, messages.EventToolCalls, rid, g); err != nil {
					b.Fatal(err)
				}
				m, err := sub.NextMsg(10 * time.Second)
				if err != nil {
					b.Fatalf("%s: no tooled event: %v", rid, err)
				}
				_ = sub.Unsubscribe()
				var out messages.Generation
				if err := json.Unmarshal(m.Data, &out); err != nil {
					b.Fatal(err)
				}
				if res, ok := out.Final(); !ok || res.Content != bc.want {
					b.Fatalf("result %+v", res)
				}
			}
		})
	}
}
