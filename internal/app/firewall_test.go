package app_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/stage/toolexec"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// A remote tool declared in the tools configuration receives exactly the
// arguments the firewall checked (its canonical form), and its policy
// holds in the running pipeline.
func TestDeclaredRemoteToolGetsTheCheckedArguments(t *testing.T) {
	srv := testutil.NATSServer(t)
	toolConn := testutil.Conn(t, srv)
	svc, err := micro.AddService(toolConn, micro.Config{Name: toolexec.RemoteToolsService, Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	// the tool answers with the raw bytes it received
	if err := svc.AddEndpoint("read_file", micro.HandlerFunc(func(r micro.Request) { _ = r.Respond(r.Data()) }),
		micro.WithEndpointSubject("agentbus.tool.read_file"),
		micro.WithEndpointMetadata(map[string]string{"schema": `{"type":"object","properties":{"path":{"type":"string"},"max_bytes":{"type":"number"}}}`})); err != nil {
		t.Fatal(err)
	}
	cfg, err := firewall.ParseConfig([]byte(`
tools:
  read_file:
    remote: true
    arguments:
      path: {path: {roots: [/srv/data]}}
      max_bytes: {data: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	sys := startSystem(t, func(o *app.Options) {
		o.Pipeline.NATSURL = srv.ClientURL()
		o.Tools.Remote = true
		o.Firewall = cfg
	})
	nc := sys.Runtime.Conn()
	js, _ := jetstream.New(nc)
	for i, tc := range []struct {
		args, event, want string
	}{
		// escapes, spaces and the number as written: the tool gets the
		// canonical bytes the firewall checked
		{"{ \"path\" : \"/srv/data/a\\u002etxt\", \"max_bytes\": 1.50 }", messages.EventTooled, `{"path":"/srv/data/a.txt","max_bytes":1.50}`},
		{`{"path":"/srv/data/a.txt","path":"/etc/passwd"}`, messages.EventFailed, "args.duplicate_key"},
		{`{"path":"/srv/data/a.txt","PATH":"/etc/passwd"}`, messages.EventFailed, "args.duplicate_key"},
		{`{"path":"/srv/data/../../etc/passwd"}`, messages.EventFailed, "path.traversal"},
		{`{"path":"/srv/data/a.txt","follow":true}`, messages.EventFailed, "args.undeclared"},
	} {
		rid := "canon" + string(rune('a'+i))
		sub, _ := nc.SubscribeSync(messages.ReplyFilter(rid))
		publishToolCalls(t, js, rid, messages.ToolCall{ID: "f1", Type: "function", Function: messages.FunctionCall{Name: "read_file", Arguments: tc.args}})
		ev, data := tooledEvent(t, js, sub, rid)
		sub.Unsubscribe()
		if ev != tc.event {
			t.Fatalf("%s: event %s: %s", tc.args, ev, data)
		}
		switch ev {
		case messages.EventTooled:
			var g messages.Generation
			_ = json.Unmarshal(data, &g)
			last, _ := g.Final()
			if last.Content != tc.want {
				t.Errorf("%s: the tool received %s, want %s", tc.args, last.Content, tc.want)
			}
		default:
			var f messages.Failed
			_ = json.Unmarshal(data, &f)
			if len(f.ToolVerdicts) != 1 || f.ToolVerdicts[0].Rule != tc.want || !strings.Contains(f.Reason, tc.want) {
				t.Errorf("%s: %+v, want rule %s", tc.args, f.ToolVerdicts, tc.want)
			}
		}
	}
}
