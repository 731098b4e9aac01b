package firewall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

const mcpExample = `
mcp_servers:
  files:
    command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/agent/data]
    env:
      LOG_LEVEL: info
      GITHUB_TOKEN: {env: GITHUB_TOKEN}
    allow: [read_text_file, "list_*"]
    timeout: 30s
  github:
    url: https://api.example.com/mcp/
    headers:
      Authorization: {env: GITHUB_MCP_TOKEN, prefix: "Bearer "}
      X-Team: platform
    allow: ["*"]
    ping_interval: 1m
tools:
  files__read_text_file:
    arguments:
      path: {path: {roots: [/srv/agent/data]}}
`

func TestMCPConfig(t *testing.T) {
	c, err := ParseConfig([]byte(mcpExample))
	if err != nil {
		t.Fatal(err)
	}
	files, gh := c.MCPServers["files"], c.MCPServers["github"]
	if files.Transport() != "stdio" || gh.Transport() != "http" || files.Timeout != 30*time.Second || gh.PingInterval != time.Minute {
		t.Fatalf("%+v %+v", files, gh)
	}
	if files.Env["LOG_LEVEL"].Value != "info" || files.Env["GITHUB_TOKEN"].Env != "GITHUB_TOKEN" {
		t.Fatalf("env %+v", files.Env)
	}
	auth := gh.Headers["Authorization"]
	v, err := auth.Resolve(func(k string) string { return map[string]string{"GITHUB_MCP_TOKEN": "tok"}[k] })
	if err != nil || v != "Bearer tok" {
		t.Fatalf("resolve %q %v", v, err)
	}
	if _, err := auth.Resolve(func(string) string { return "" }); !errors.Is(err, ErrMissingEnv) {
		t.Fatalf("missing env: %v", err)
	}
	for _, tc := range []struct {
		tool string
		want bool
	}{{"read_text_file", true}, {"list_directory", true}, {"write_file", false}, {"read_text_file_x", false}} {
		if got := files.Allows(tc.tool); got != tc.want {
			t.Errorf("Allows(%q) = %t", tc.tool, got)
		}
	}
	if !gh.Allows("anything") || (MCPServer{}).Allows("x") {
		t.Error("allow * or nothing")
	}
	if !c.Declared("FILES__read_text_file") || c.Declared("files__write_file") {
		t.Error("Declared")
	}
	if got := c.MCPServerNames(); fmt.Sprint(got) != "[files github]" {
		t.Errorf("names %v", got)
	}
	d := (MCPServer{}).WithDefaults()
	if d.ConnectTimeout != DefaultMCPConnectTimeout || d.PingInterval != DefaultMCPPingInterval || d.BackoffInitial != DefaultMCPBackoffInitial ||
		d.BackoffMax != DefaultMCPBackoffMax || d.StopTimeout != DefaultMCPStopTimeout {
		t.Errorf("defaults %+v", d)
	}
	if MCPToolName("files", "read") != "files__read" {
		t.Error("MCPToolName")
	}
}

// Secrets never reach a log: a literal is [redacted], an env secret names
// its variable; a server logs its program, its URL without query, and the
// names of its headers and variables.
func TestMCPConfigLogsNoSecrets(t *testing.T) {
	s := MCPServer{
		Command: []string{"server", "--token", "argv-secret"},
		Env:     map[string]MCPSecret{"API_KEY": {Value: "env-secret"}},
	}
	h := MCPServer{URL: "https://mcp.example.com/mcp?key=query-secret", Headers: map[string]MCPSecret{"Authorization": {Value: "Bearer header-secret"}, "X-Key": {Env: "KEY_VAR"}}}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "stdio", s, "http", h, "secret", h.Headers["Authorization"], "env", h.Headers["X-Key"])
	out := buf.String()
	for _, secret := range []string{"argv-secret", "env-secret", "query-secret", "header-secret"} {
		if strings.Contains(out, secret) {
			t.Fatalf("%s logged: %s", secret, out)
		}
	}
	for _, want := range []string{`"program":"server"`, `"url":"https://mcp.example.com/mcp"`, `"headers":["Authorization","X-Key"]`, `"env":["API_KEY"]`, `"secret":"[redacted]"`, `"env":"env:KEY_VAR"`} {
		if !strings.Contains(out, want) {
			t.Errorf("want %s in %s", want, out)
		}
	}
	if b, err := json.Marshal(Config{MCPServers: map[string]MCPServer{"h": h}}); err != nil || strings.Contains(string(b), "header-secret") || !strings.Contains(string(b), `"env":"KEY_VAR"`) {
		t.Errorf("JSON dump %s %v", b, err)
	}
	if fmt.Sprint(h.Headers["Authorization"]) != "[redacted]" || fmt.Sprintf("%v", h.Headers) == "" {
		t.Error("String")
	}
}

func TestMCPConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"neither", "mcp_servers:\n  a: {allow: [x]}", []string{"mcp_servers.a: set command (stdio) or url (HTTP)"}},
		{"both", "mcp_servers:\n  a: {command: [x], url: 'https://h/'}", []string{"not both"}},
		{"bad names", "mcp_servers:\n  a__b: {command: [x]}\n  _a: {command: [x]}\n  a.b: {command: [x]}", []string{"mcp_servers._a: a server name", "mcp_servers.a.b: a server name", "mcp_servers.a__b: a server name"}},
		{"bad url", "mcp_servers:\n  a: {url: 'ftp://h/'}\n  b: {url: 'https://u:p@h/'}\n  c: {url: '/relative'}", []string{"mcp_servers.a.url", "mcp_servers.b.url: user info", "mcp_servers.c.url"}},
		{"headers over http", "mcp_servers:\n  a: {url: 'http://mcp.internal/', headers: {Authorization: {env: T}}}", []string{"travel in clear"}},
		{"reserved and bad headers", "mcp_servers:\n  a: {url: 'https://h/', headers: {Mcp-Session-Id: x, 'a b': x}}", []string{"headers.Mcp-Session-Id: set by the transport", "headers.a b: not a header name"}},
		{"secret problems", "mcp_servers:\n  a: {url: 'https://h/', headers: {X: {env: T, value: v}, Y: {env: '1x'}, Z: \"a\\nb\"}}", []string{"headers.X: set env or value", "headers.Y.env", "headers.Z: control characters"}},
		{"unknown secret field", "mcp_servers:\n  a: {url: 'https://h/', headers: {X: {from_env: T}}}", []string{"from_env not found"}},
		{"stdio fields on http", "mcp_servers:\n  a: {url: 'https://h/', dir: /x, env: {A: b}}", []string{"a.dir: only for a command", "a.env: only for a command"}},
		{"http fields on stdio", "mcp_servers:\n  a: {command: [x], headers: {A: b}}", []string{"a.headers: only for a url"}},
		{"bad env name", "mcp_servers:\n  a: {command: [x], env: {'1A': b}}", []string{"a.env.1A: not a variable name"}},
		{"empty program", "mcp_servers:\n  a: {command: ['']}", []string{"command[0]"}},
		{"bad pattern", "mcp_servers:\n  a: {command: [x], allow: ['[', '']}", []string{"allow[0]", "allow[1]"}},
		{"negatives", "mcp_servers:\n  a: {command: [x], timeout: -1s, max_concurrent: -1, max_output_bytes: -1, backoff_initial: 2s, backoff_max: 1s}", []string{"a.timeout", "a.max_concurrent", "a.max_output_bytes", "a.backoff_initial"}},
		{"unknown field", "mcp_servers:\n  a: {command: [x], allowed: [y]}", []string{"allowed not found"}},
		{"loopback http with headers is fine", "mcp_servers:\n  a: {url: 'http://127.0.0.1:9/', headers: {A: b}}\n  b: {url: 'http://h/', headers: {A: b}, allow_http: true}", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("want %q in %v", w, err)
				}
			}
		})
	}
}

// Schemas as MCP servers publish them: $ref to $defs (nested, at the root,
// recursive), draft-07 definitions, a $schema and an $id: the firewall
// validates the arguments against the referenced definitions, and checks
// key case through references.
func TestMCPSchemasWithRefs(t *testing.T) {
	schemas := map[string]string{
		"nested":    `{"type":"object","properties":{"filter":{"$ref":"#/$defs/Filter"}},"required":["filter"],"additionalProperties":false,"$defs":{"Filter":{"type":"object","properties":{"owner":{"type":"string","minLength":1},"state":{"$ref":"#/$defs/State"}},"required":["owner"]},"State":{"enum":["open","closed"]}}}`,
		"root":      `{"$ref":"#/$defs/Args","$defs":{"Args":{"type":"object","properties":{"n":{"type":"integer","maximum":5}},"required":["n"]}}}`,
		"draft7":    `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"f":{"$ref":"#/definitions/F"}},"definitions":{"F":{"type":"string","maxLength":3}}}`,
		"id":        `{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://example.com/tool.json","type":"object","properties":{"f":{"$ref":"#/$defs/F"}},"$defs":{"F":{"type":"string","maxLength":3}}}`,
		"recursive": `{"type":"object","properties":{"node":{"$ref":"#/$defs/Node"}},"$defs":{"Node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/Node"}}},"required":["name"]}}}`,
	}
	raw := map[string]json.RawMessage{}
	for k, v := range schemas {
		if err := CheckSchema([]byte(v)); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		raw[k] = json.RawMessage(v)
	}
	fw, err := New(Config{}, raw)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool, args, rule string
	}{
		{"nested", `{"filter":{"owner":"nats-io","state":"open"}}`, RuleAllowed},
		{"nested", `{"filter":{"owner":""}}`, RuleArgsSchema},
		{"nested", `{"filter":{"owner":"x","state":"merged"}}`, RuleArgsSchema},
		{"nested", `{"filter":{"Owner":"x","owner":"y"}}`, RuleDuplicateKey},
		{"nested", `{"filter":{"OWNER":"x","owner":"y","state":"open"},"x":1}`, RuleDuplicateKey},
		{"root", `{"n":3}`, RuleAllowed},
		{"root", `{"n":9}`, RuleArgsSchema},
		{"root", `{"N":3,"n":3}`, RuleDuplicateKey},
		{"root", `{"N":3}`, RuleKeyCase},
		{"draft7", `{"f":"abc"}`, RuleAllowed},
		{"draft7", `{"f":"abcd"}`, RuleArgsSchema},
		{"draft7", `{"F":"abcd"}`, RuleKeyCase},
		{"id", `{"f":"abcd"}`, RuleArgsSchema},
		{"recursive", `{"node":{"name":"a","children":[{"name":"b","children":[]}]}}`, RuleAllowed},
		{"recursive", `{"node":{"name":"a","children":[{"children":[]}]}}`, RuleArgsSchema},
		{"recursive", `{"node":{"name":"a","children":[{"name":"b","Children":[]}]}}`, RuleKeyCase},
	}
	for _, tc := range tests {
		if v := fw.Check(Call{Name: tc.tool, Arguments: tc.args}); v.Rule != tc.rule {
			t.Errorf("%s %s: %v, want %s", tc.tool, tc.args, v, tc.rule)
		}
	}
	// A reference outside the document is refused when compiling, never
	// ignored.
	for _, s := range []string{`{"$ref":"https://example.com/schema.json"}`, `{"properties":{"a":{"$ref":"other.json#/x"}}}`} {
		if err := CheckSchema([]byte(s)); !errors.Is(err, ErrSchema) {
			t.Errorf("%s: %v", s, err)
		}
	}
}

// The examples of docs/mcp.md and docs/tools.md are valid tools files.
func TestMCPDocExamples(t *testing.T) {
	for _, doc := range []string{"../../docs/mcp.md", "../../docs/tools.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, block := range strings.Split(string(b), "```yaml\n")[1:] {
			block, _, _ = strings.Cut(block, "```")
			if !strings.Contains(block, "mcp_servers:") || strings.Contains(block, "SERVER:") {
				continue
			}
			n++
			c, err := ParseConfig([]byte(block))
			if err != nil {
				t.Errorf("%s: %v\n%s", doc, err, block)
				continue
			}
			for name, s := range c.MCPServers {
				if len(s.Allow) == 0 {
					t.Errorf("%s: server %s allows nothing", doc, name)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no MCP example", doc)
		}
	}
}
