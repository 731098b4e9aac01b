package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/messages"
)

// The parameter table covers exactly OpenAI's request schema: a parameter
// OpenAI adds is noticed at the next refresh of testdata/openai.
func TestParamTableMatchesTheSpec(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "openai", "schemas.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	props := map[string]bool{}
	var collect func(name string)
	collect = func(name string) {
		var s struct {
			AllOf []struct {
				Ref        string                     `json:"$ref"`
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"allOf"`
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if err := json.Unmarshal(doc.Components.Schemas[name], &s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for k := range s.Properties {
			props[k] = true
		}
		for _, a := range s.AllOf {
			if a.Ref != "" {
				collect(strings.TrimPrefix(a.Ref, "#/components/schemas/"))
			}
			for k := range a.Properties {
				props[k] = true
			}
		}
	}
	collect("CreateChatCompletionRequest")
	var missing, extra []string
	for k := range props {
		if _, ok := openAIParams[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range openAIParams {
		if !props[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 {
		t.Fatalf("openAIParams differs from the spec: not handled %v, not in the spec %v", missing, extra)
	}
	if len(props) < 30 {
		t.Fatalf("only %d properties found: the extraction is broken", len(props))
	}
}

func TestParseChat(t *testing.T) {
	ok := func(body string, o parseOptions) chatRequest {
		t.Helper()
		r, err := parseChat([]byte(body), o)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return r
	}
	// Text parts are kept exactly; the joined text keeps them apart.
	r := ok(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"text","text":"there"},
	  {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}}]}]}`, parseOptions{})
	m := r.Messages[0]
	if m.Content != "hi\nthere" || len(m.Parts) != 3 || m.Parts[1].Text != "there" || m.Parts[2].ImageURL.Detail != "low" {
		t.Fatalf("message %+v", m)
	}
	if b, _ := json.Marshal(m); !strings.Contains(string(b), `"content":[{"type":"text","text":"hi"},{"type":"text","text":"there"},{"type":"image_url"`) {
		t.Fatalf("parts not written back as sent: %s", b)
	}
	// An assistant message resent with its refusal as a part (the OpenAI
	// Agents SDK's history) is taken and kept as sent.
	r = ok(`{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"refusal","refusal":"I can't help with that."}]},{"role":"user","content":"why?"}]}`, parseOptions{})
	if m := r.Messages[1]; m.RefusalText() != "I can't help with that." || m.Content != "" || len(m.Parts) != 1 {
		t.Fatalf("message %+v", m)
	}
	// Every modeled parameter, typed.
	r = ok(`{"model":"m","messages":[{"role":"user","content":"x"}],"seed":42,"stop":"END","max_completion_tokens":9,"max_tokens":8,
	  "response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object"},"strict":true}},
	  "tool_choice":{"type":"function","function":{"name":"calculator"}},"parallel_tool_calls":false,"user":"u7","logprobs":true,"top_logprobs":3,
	  "frequency_penalty":0.5,"presence_penalty":0,"store":false,"metadata":{"a":"b"},"reasoning_effort":"low"}`, parseOptions{})
	p := r.Params
	if *p.Seed != 42 || p.Stop[0] != "END" || *p.MaxCompletionTokens != 9 || *p.MaxTokens != 8 || p.ResponseFormat.JSONSchema.Name != "answer" ||
		!*p.ResponseFormat.JSONSchema.Strict || p.ToolChoice.Function != "calculator" || *p.ParallelToolCalls || p.User != "u7" || !p.Logprobs || *p.TopLogprobs != 3 {
		t.Fatalf("params %+v", p)
	}
	// Defaults are not forwarded; other OpenAI parameters are, verbatim.
	var keys []string
	for k := range p.OpenAI {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if strings.Join(keys, ",") != "frequency_penalty,metadata,reasoning_effort" || string(p.OpenAI["reasoning_effort"]) != `"low"` {
		t.Fatalf("forwarded %v", p.OpenAI)
	}
	// Defaults of the modeled ones are dropped too.
	r = ok(`{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"auto","parallel_tool_calls":true,"response_format":{"type":"text"},"n":1,"modalities":["text"],"audio":null}`, parseOptions{})
	if r.Params.ToolChoice != nil || r.Params.ParallelToolCalls != nil || r.Params.ResponseFormat != nil {
		t.Fatalf("defaults kept: %+v", r.Params)
	}
	// The operator may let unknown parameters through.
	r = ok(`{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":5}`, parseOptions{allowUnknown: true})
	if string(r.Params.Extra["top_k"]) != "5" {
		t.Fatalf("extra %v", r.Params.Extra)
	}
	// The NATS entry may leave the model out.
	if r := ok(`{"messages":[{"role":"user","content":"x"}]}`, parseOptions{}); r.Model != "" {
		t.Fatal(r.Model)
	}

	for _, c := range []struct{ body, code, param, msg string }{
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":5}`, codeUnknownParam, "top_k", "Unrecognized request argument supplied: top_k"},
		{`{"model":1,"messages":[]}`, codeInvalidType, "model", "Invalid type for 'model': expected a string, but got an integer instead."},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, "integer_below_min_value", "max_tokens", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.5}`, codeInvalidType, "max_tokens", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}`, codeArrayTooLong, "stop", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2}`, codeInvalidValue, "top_logprobs", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,"stream":true}`, codeUnsupportedValue, "logprobs", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}`, codeMissing, "response_format.json_schema", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}`, codeInvalidValue, "response_format.type", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"has space"}}}`, codeInvalidValue, "response_format.json_schema.name", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"always"}`, codeInvalidValue, "tool_choice", "Invalid value: 'always'. Supported values are: 'none', 'auto', and 'required'."},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"audio":{"voice":"alloy","format":"mp3"}}`, codeUnsupportedParam, "audio", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"modalities":["text","audio"]}`, codeUnsupportedValue, "modalities", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"frequency_penalty":3}`, "decimal_above_max_value", "frequency_penalty", ""},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}`, codeMissing, "messages.[0].content.[0].text", ""},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, codeUnsupportedValue, "messages.[0].content.[0].type", ""},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, codeMissing, "messages.[0].content.[0].image_url.url", ""},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"refusal","refusal":"no"}]}]}`, codeInvalidValue, "messages.[0].content.[0].type",
			"Invalid value: 'refusal'. Supported values are: 'text', 'image_url', 'input_audio', and 'file'."},
		{`{"model":"m","messages":[{"role":"assistant","content":[{"type":"refusal"}]}]}`, codeMissing, "messages.[0].content.[0].refusal", ""},
		{`{"model":"m","messages":[{"role":"assistant","content":[{"type":"refusal","refusal":null}]}]}`, codeInvalidType, "messages.[0].content.[0].refusal", ""},
		{`{"model":"m","messages":[{"role":"assistant","content":[{"type":"file","file":{}}]}]}`, codeInvalidValue, "messages.[0].content.[0].type",
			"Invalid value: 'file'. Supported values are: 'text', and 'refusal'."},
		{`{"model":"m","messages":[{"role":"tool","tool_call_id":"c","content":[{"type":"refusal","refusal":"no"}]}]}`, codeInvalidValue, "messages.[0].content.[0].type",
			"Invalid value: 'refusal'. Supported values are: 'text'."},
		{`{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, codeInvalidValue, "messages.[0].content.[0].type", ""},
		{`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f"}}]}]}`, codeMissing, "messages.[0].tool_calls.[0].function.arguments", ""},
		{`{"model":"m","messages":["hi"]}`, codeInvalidType, "messages.[0]", ""},
		{`{"model":"m","messages":[{"content":"x"}]}`, codeMissing, "messages.[0].role", "Missing required parameter: 'messages.[0].role'."},
		{`{"model":"m","messages":[{"role":"user"}]}`, codeMissing, "messages.[0].content", ""},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true,"x":1},"stream":true}`, codeUnknownParam, "stream_options.x", ""},
	} {
		_, err := parseChat([]byte(c.body), parseOptions{requireModel: true})
		if err == nil || err.code != c.code || err.param != c.param || (c.msg != "" && err.msg != c.msg) || err.status != 400 {
			t.Errorf("%s:\n got %+v\nwant code %s param %s msg %q", c.body, err, c.code, c.param, c.msg)
		}
	}
}

// A validation error of the turn names the parameter in OpenAI's form.
func TestValidationErrorParam(t *testing.T) {
	turn := messages.Turn{RequestID: "r", ConversationID: "c", User: "u", Messages: []messages.Message{{Role: "user", Content: "x"}, {Role: "tool", Content: "y"}}}
	e := validationError(turn.Validate())
	if e.param != "messages.[1].tool_call_id" || !strings.HasPrefix(e.msg, "Invalid 'messages.[1].tool_call_id'") {
		t.Fatalf("%+v", e)
	}
	if got := openAIParam("params.response_format.json_schema.name"); got != "response_format.json_schema.name" {
		t.Fatal(got)
	}
}
