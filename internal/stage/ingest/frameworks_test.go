package ingest_test

// Agent frameworks against the whole system, unchanged, with the request
// shapes they really send: the Vercel AI SDK, LangChain JS and the OpenAI
// Agents SDK (examples/agent-frameworks-js), each running a client tool
// round (the framework executes the model's call and sends the result
// back) plain and streamed, and structured output.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// frameworkRun is what a script reports of one agent run: its prompt, the
// arguments its tool was executed with, and the final answer.
type frameworkRun struct {
	Prompt string           `json:"prompt"`
	Calls  []map[string]any `json:"calls"`
	Answer any              `json:"answer"`
}

// frameworkReport is a script's output.
type frameworkReport struct {
	Runs map[string]frameworkRun `json:"runs"`
	// FollowUp is a next question asked on the first run's history.
	FollowUp *frameworkRun `json:"follow_up"`
	// Handoff is a handoff from one agent to another (the Agents SDK).
	Handoff *struct {
		frameworkRun
		LastAgent string `json:"last_agent"`
	} `json:"handoff"`
	Structured map[string]struct {
		Prompt string `json:"prompt"`
		Object any    `json:"object"`
	} `json:"structured"`
}

// requestsWith returns, in order, the provider requests whose messages
// contain text.
func (f *fakeOpenAI) requestsWith(text string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, r := range f.reqs {
		b, _ := json.Marshal(r["messages"])
		if strings.Contains(string(b), text) {
			out = append(out, r)
		}
	}
	return out
}

func TestAgentFrameworks(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH")
	}
	dir, _ := filepath.Abs(filepath.Join("..", "..", "..", "examples", "agent-frameworks-js"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Skipf("%s/node_modules is missing: run `npm ci --prefix examples/agent-frameworks-js`", dir)
	}
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f))
	key := issueKey(t, sys, "frameworks", 0)

	for _, fw := range []struct {
		name, script string
		runs         []string // the agent runs the script reports
		structured   []string // its structured-output calls
		strict       bool     // it declares its tool strict
		followUp     bool     // it reports a follow-up question
		handoff      bool     // it reports a handoff
	}{
		{"vercel ai sdk", "vercel.mjs", []string{"generateText", "streamText"}, []string{"generateObject", "outputObject"}, false, true, false},
		{"langchain", "langchain.mjs", []string{"invoke", "stream"}, []string{"withStructuredOutput"}, false, false, false},
		{"openai agents", "agents.mjs", []string{"run", "stream"}, []string{"outputType"}, true, true, true},
	} {
		t.Run(fw.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, fw.script)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "BASE_URL=http://"+sys.HTTPAddr+"/v1", "API_KEY="+key, "MODEL=fake-1")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s\n%s", fw.script, err, out, stderr.String())
			}
			t.Logf("%s", out)
			var got frameworkReport
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			for _, name := range fw.runs {
				r, ok := got.Runs[name]
				if !ok {
					t.Fatalf("no run %q in %s", name, out)
				}
				checkToolRound(t, f, name, r, fw.strict)
			}
			if fw.followUp {
				checkFollowUp(t, f, got.FollowUp)
			}
			if fw.handoff {
				h := got.Handoff
				if h == nil {
					t.Fatalf("no handoff in %s", out)
				}
				// The triage agent called transfer_to_Billing; the SDK then
				// asked the billing agent, with the transfer in its history.
				reqs := f.requestsWith(h.Prompt)
				if len(reqs) != 2 || h.LastAgent != "Billing" || h.Answer != `the tool said {"assistant":"Billing"}` {
					t.Fatalf("handoff: %+v after %d provider requests", h, len(reqs))
				}
				msgs, _ := reqs[1]["messages"].([]any)
				if first := jsonOf(t, msgs[0]); !strings.Contains(first, "You handle billing.") {
					t.Errorf("handoff: the billing agent's request starts with %s", first)
				}
				if g := jsonOf(t, msgs[len(msgs)-2:]); !strings.Contains(g, `"name":"transfer_to_Billing"`) || !strings.Contains(g, `"role":"tool"`) {
					t.Errorf("handoff: the billing agent's request ends with %s", g)
				}
			}
			for _, name := range fw.structured {
				s, ok := got.Structured[name]
				if !ok {
					t.Fatalf("no structured call %q in %s", name, out)
				}
				// The framework parsed the model's JSON into its object...
				want := map[string]any{"city": "fake", "temperature": float64(42), "sunny": true}
				if !reflect.DeepEqual(s.Object, want) {
					t.Errorf("%s: parsed %v, want %v", name, s.Object, want)
				}
				// ...after asking for it with response_format json_schema.
				reqs := f.requestsWith(s.Prompt)
				if len(reqs) != 1 {
					t.Fatalf("%s: %d provider requests", name, len(reqs))
				}
				rf, _ := reqs[0]["response_format"].(map[string]any)
				js, _ := rf["json_schema"].(map[string]any)
				schema, _ := js["schema"].(map[string]any)
				props, _ := schema["properties"].(map[string]any)
				if rf["type"] != "json_schema" || js["name"] == nil || len(props) != 3 || props["city"] == nil {
					t.Errorf("%s: response_format as sent upstream: %s", name, jsonOf(t, rf))
				}
			}
		})
	}
}

// checkFollowUp checks a next question asked on a tool run's history: the
// provider got the whole conversation (the call, the tool's result, the
// answer) and the framework got the model's answer to the new question.
func checkFollowUp(t *testing.T, f *fakeOpenAI, r *frameworkRun) {
	t.Helper()
	if r == nil {
		t.Fatal("no follow-up run")
	}
	if s, _ := r.Answer.(string); !strings.HasPrefix(s, "fake says: ") || !strings.Contains(s, r.Prompt) {
		t.Errorf("follow-up answer %q", r.Answer)
	}
	reqs := f.requestsWith(r.Prompt)
	if len(reqs) != 1 {
		t.Fatalf("follow-up: %d provider requests", len(reqs))
	}
	var roles []string
	msgs, _ := reqs[0]["messages"].([]any)
	for _, m := range msgs {
		roles = append(roles, m.(map[string]any)["role"].(string))
	}
	g := jsonOf(t, msgs)
	if !strings.HasSuffix(strings.Join(roles, ","), "user,assistant,tool,assistant,user") || !strings.Contains(g, `"tool_call_id":"call_fake1"`) ||
		!strings.Contains(g, "the tool said sunny in Paris") {
		t.Errorf("follow-up as sent upstream: %s", g)
	}
}

// checkToolRound checks one agent run with a client tool: the framework
// executed the tool once with the model's arguments, the provider saw the
// tool offered (strict if the framework declared it so), then the
// assistant's call and the tool's result in the second round, and the
// framework's final answer is the model's answer to that result.
func checkToolRound(t *testing.T, f *fakeOpenAI, name string, r frameworkRun, strict bool) {
	t.Helper()
	if want := []map[string]any{{"city": "Paris"}}; !reflect.DeepEqual(r.Calls, want) {
		t.Errorf("%s: the tool ran with %v, want %v", name, r.Calls, want)
	}
	if s, _ := r.Answer.(string); s != "the tool said sunny in Paris" {
		t.Errorf("%s: final answer %q", name, r.Answer)
	}
	// The run's two rounds come first (a follow-up question on its history
	// comes after them, and is checked on its own).
	reqs := f.requestsWith(r.Prompt)
	if len(reqs) < 2 {
		t.Fatalf("%s: %d provider requests, want 2: %s", name, len(reqs), jsonOf(t, reqs))
	}
	tools, _ := reqs[0]["tools"].([]any)
	if len(tools) == 0 {
		t.Fatalf("%s: no tools offered", name)
	}
	tool, _ := tools[len(tools)-1].(map[string]any)["function"].(map[string]any)
	if tool["name"] != "get_weather" || !strings.Contains(jsonOf(t, tool["parameters"]), `"city"`) || (tool["strict"] == true) != strict {
		t.Errorf("%s: first round offered %s", name, jsonOf(t, tool))
	}
	msgs, _ := reqs[1]["messages"].([]any)
	if len(msgs) < 3 {
		t.Fatalf("%s: second round %s", name, jsonOf(t, msgs))
	}
	call, _ := msgs[len(msgs)-2].(map[string]any)
	result, _ := msgs[len(msgs)-1].(map[string]any)
	calls, _ := call["tool_calls"].([]any)
	c0, _ := func() (map[string]any, bool) {
		if len(calls) != 1 {
			return nil, false
		}
		m, ok := calls[0].(map[string]any)
		return m, ok
	}()
	fn, _ := c0["function"].(map[string]any)
	args, _ := fn["arguments"].(string)
	if call["role"] != "assistant" || c0["id"] != "call_fake1" || fn["name"] != "get_weather" || strings.ReplaceAll(args, " ", "") != `{"city":"Paris"}` {
		t.Errorf("%s: the assistant's call as sent back: %s", name, jsonOf(t, call))
	}
	if result["role"] != "tool" || result["tool_call_id"] != "call_fake1" || !strings.Contains(jsonOf(t, result["content"]), "sunny in Paris") {
		t.Errorf("%s: the tool result as sent back: %s", name, jsonOf(t, result))
	}
}

// Request shapes agent frameworks send, verbatim, that agentbus once
// refused or changed on the way to the provider: each is a valid OpenAI
// request, is accepted, and reaches the provider as sent.
func TestFrameworkRequestShapes(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f))
	s := &suite{t: t, spec: loadSpec(t), base: "http://" + sys.HTTPAddr}
	key := issueKey(t, sys, "shapes", 0)

	// The OpenAI Agents SDK declares every function tool strict; the
	// provider must get the flag (it makes the model follow the schema).
	s.run(conformanceCase{name: "strict client tool (Agents SDK)", key: key, specValid: yes(), status: 200,
		body: `{"model":"fake-1","messages":[{"content":"You answer weather questions.","role":"system"},{"content":"strict client tool, please","role":"user"}],"stream":false,
		  "tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city","parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
		  "properties":{"city":{"type":"string","description":"the city"}},"required":["city"],"additionalProperties":false},"strict":true}}]}`,
		check: finishIs("tool_calls", func(t *testing.T, _ map[string]any) {
			tools := f.last(t, "strict client tool, please")["tools"].([]any)
			if g := jsonOf(t, tools[len(tools)-1]); !strings.Contains(g, `"name":"get_weather"`) || !strings.Contains(g, `"strict":true`) {
				t.Fatalf("the provider got %s", g)
			}
		})})
	// The Agents SDK resends an earlier refusal in its history as a
	// refusal part of an assistant message (OpenAI's assistant content
	// parts are text and refusal); the provider gets the parts as sent.
	s.run(conformanceCase{name: "refusal part in the history (Agents SDK)", key: key, specValid: yes(), status: 200,
		body: `{"model":"fake-1","messages":[{"content":"i","role":"system"},{"content":[{"text":"hi","type":"text"}],"role":"user"},
		  {"content":[{"refusal":"I can't help with that.","type":"refusal"}],"role":"assistant"},{"content":[{"text":"agents after refusal","type":"text"}],"role":"user"}],"stream":false}`,
		check: finishIs("stop", func(t *testing.T, _ map[string]any) {
			msgs := f.last(t, "agents after refusal")["messages"].([]any)
			if g := jsonOf(t, msgs[2]); g != `{"content":[{"refusal":"I can't help with that.","type":"refusal"}],"role":"assistant"}` {
				t.Fatalf("the provider got %s", g)
			}
		})})
}
