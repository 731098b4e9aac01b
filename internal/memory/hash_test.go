package memory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/agentbus/agentbus/messages"
)

// goldenTurns are records whose stored meta and content hash are pinned
// below: the hashes of existing databases and chain files were computed
// this way, so any change to them breaks every existing chain.
func goldenTurns(t *testing.T) []TurnRecord {
	t.Helper()
	cet := time.FixedZone("CET", 3600)
	answer := messages.Message{Role: "assistant", Content: "17*23 = 391 <b>&</b>\n\"ok\" é \u2028 \xff"}
	call := messages.Message{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"17*23"}`}}}}
	steps := []messages.Message{call, {Role: "tool", ToolCallID: "c1", Content: "391"}, answer}
	completed, err := CompletedTurn([]messages.Message{{Role: "user", Content: "What is 17*23?"}}, messages.Completed{
		SchemaVersion: 1, RequestID: "req_1", ConversationID: "conv_1", User: "alice", Endpoint: "nats", Model: "m", Provider: "p",
		Message: answer, Steps: steps, Guard: messages.Verdict{Action: "allow", Score: 0.125},
		ToolVerdicts: []messages.ToolVerdict{{ToolCallID: "c1", Tool: "calculator", Verdict: "allow", DurationMS: 3}},
		Usage:        messages.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, CostUSD: 1.5e-05, FinishReason: "stop",
		Logprobs:  json.RawMessage(`{"content": [{"token":"\u003c","logprob":-0.5, "bytes":[60]}]}`),
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, cet),
	})
	if err != nil {
		t.Fatal(err)
	}
	img := "https://example.com/a.png"
	return []TurnRecord{
		turn("r1", "c1", 3),
		completed,
		{RequestID: "r<3>", ConversationID: "c&d", User: "ü", CreatedAt: time.Date(2025, 12, 31, 23, 0, 0, 0, cet),
			Meta: json.RawMessage(" { \"z\" : [1.50, -0, 1e3, 2E-7, true, false, null],\n\t\"a\": {\"y\": \"\\u00e9\\u003c<>&\\/ \\u2028\\ud83d\\ude00\\ud800\", \"b\": {}, \"b\": []}, \"é\": \"\xff\", \"\": 0 } ")},
		{RequestID: "r4", ConversationID: "c4", CreatedAt: t0, Meta: json.RawMessage(" \n"), Messages: []messages.Message{
			{Role: "user", Content: "look", Parts: []messages.ContentPart{{Type: messages.PartText, Text: "look"}, {Type: messages.PartImage, ImageURL: &messages.ImageURL{URL: img, Detail: "low"}}}},
			{Role: "assistant", Refusal: "no", Name: "bot"},
		}},
		{RequestID: "r5", ConversationID: "c5", CreatedAt: t0, Meta: json.RawMessage(`["x",{"b":1,"a":[{}]}]`)},
		{RequestID: "r6", ConversationID: "c6", CreatedAt: t0, Meta: json.RawMessage(`"just a string"`)},
	}
}

// TestContentHashGolden pins the stored meta and the content hash of
// goldenTurns.
func TestContentHashGolden(t *testing.T) {
	want := []struct{ meta, hash string }{
		{"{\"model\":\"gpt-4o\",\"usage\":{\"total_tokens\":42}}", "54dd4cb88d653b78046ae97e376a913096d7a19dcc8d8081a84c96e308b1e167"},
		{"{\"completed_at\":\"0001-01-01T00:00:00Z\",\"conversation_id\":\"conv_1\",\"cost_usd\":0.000015,\"created_at\":\"2026-01-02T03:04:05.000000006+01:00\",\"endpoint\":\"nats\",\"finish_reason\":\"stop\",\"guard\":{\"action\":\"allow\",\"score\":0.125},\"logprobs\":{\"content\":[{\"bytes\":[60],\"logprob\":-0.5,\"token\":\"\\u003c\"}]},\"message\":{\"content\":\"17*23 = 391 \\u003cb\\u003e\\u0026\\u003c/b\\u003e\\n\\\"ok\\\" é \\u2028 �\",\"role\":\"assistant\"},\"model\":\"m\",\"provider\":\"p\",\"request_id\":\"req_1\",\"schema_version\":1,\"steps\":[{\"content\":null,\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"expression\\\":\\\"17*23\\\"}\",\"name\":\"calculator\"},\"id\":\"c1\",\"type\":\"function\"}]},{\"content\":\"391\",\"role\":\"tool\",\"tool_call_id\":\"c1\"},{\"content\":\"17*23 = 391 \\u003cb\\u003e\\u0026\\u003c/b\\u003e\\n\\\"ok\\\" é \\u2028 �\",\"role\":\"assistant\"}],\"tool_verdicts\":[{\"duration_ms\":3,\"tool\":\"calculator\",\"tool_call_id\":\"c1\",\"verdict\":\"allow\"}],\"usage\":{\"completion_tokens\":4,\"prompt_tokens\":3,\"total_tokens\":7},\"user\":\"alice\"}", "48bcf1cf849c636ff9814c10551a93a2db9eb2690384dc789d1aae2bc65a61a8"},
		{"{\"\":0,\"a\":{\"b\":[],\"y\":\"é\\u003c\\u003c\\u003e\\u0026/ \\u2028😀�\"},\"z\":[1.50,-0,1e3,2E-7,true,false,null],\"é\":\"�\"}", "048b3381abeb354f39b83d3ab51acbb669df1f99ec993b2b89ac76d267ab711b"},
		{"", "522feb9bdb68b809705701868f39bf16df26588aef4c54cbc3dcbca01e444677"},
		{"[\"x\",{\"a\":[{}],\"b\":1}]", "d5b8dbc35605c88b553189bd574e5aed95bc7151810719c99e7d0f810c772932"},
		{"\"just a string\"", "a1623a31f16d1f0b6c426340e7aaa26377d01b1531a890923d1551d97e834e28"},
	}
	turns := goldenTurns(t)
	if len(turns) != len(want) {
		t.Fatalf("%d golden turns, %d expectations", len(turns), len(want))
	}
	direct := make([]string, len(turns))
	for i := range turns {
		h, err := ContentHash(&turns[i])
		if err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		direct[i] = h
	}
	preps, err := prepare(turns, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if string(turns[i].Meta) != w.meta {
			t.Errorf("turn %d: stored meta\n %s\nwant\n %s", i, turns[i].Meta, w.meta)
		}
		if preps[i].hash != w.hash || direct[i] != w.hash {
			t.Errorf("turn %d: content hash %s (ContentHash %s), want %s", i, preps[i].hash, direct[i], w.hash)
		}
	}
}

// contentHashRef is ContentHash as it was first written: json.Marshal of
// the content, hashed.
func contentHashRef(r *TurnRecord) (string, error) {
	meta, err := decodeCanonical(r.Meta)
	if len(bytes.TrimSpace(r.Meta)) == 0 {
		meta, err = json.RawMessage("null"), nil
	}
	if err != nil {
		return "", err
	}
	msgs := r.Messages
	if msgs == nil {
		msgs = []messages.Message{}
	}
	b, err := json.Marshal(struct {
		RequestID      string             `json:"request_id"`
		ConversationID string             `json:"conversation_id"`
		User           string             `json:"user"`
		Messages       []messages.Message `json:"messages"`
		Meta           json.RawMessage    `json:"meta"`
		CreatedAt      string             `json:"created_at"`
	}{r.RequestID, r.ConversationID, r.User, msgs, meta, r.CreatedAt.UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// FuzzContentHash checks ContentHash, which hashes the content's JSON
// piece by piece, against contentHashRef, which builds it with
// json.Marshal.
func FuzzContentHash(f *testing.F) {
	f.Add("r1", "c1", "alice", "hello", "calc", []byte(`{"b":1,"a":2}`), t0.UnixNano(), 2)
	f.Add("r<2>", "c&", "\u00e9", "\xff\u2028 \"x\"\n", "", []byte(``), int64(-62135596800000000), 3)
	f.Add("", "", "", "", `{"a":"b"}`, []byte(` [1, {"z":null,"y":"\u003c"}] `), int64(1)<<62, 5)
	f.Fuzz(func(t *testing.T, rid, conv, user, content, tool string, meta []byte, nanos int64, n int) {
		r := TurnRecord{RequestID: rid, ConversationID: conv, User: user, Meta: meta, CreatedAt: time.Unix(0, nanos)}
		for i := range n % 6 {
			var m messages.Message
			switch i % 3 {
			case 0:
				m = messages.Message{Role: "user", Content: content, Name: tool}
			case 1:
				m = messages.Message{Role: "assistant", Refusal: tool, ToolCalls: []messages.ToolCall{{ID: content, Type: "function", Function: messages.FunctionCall{Name: tool, Arguments: content}}}}
			case 2:
				m = messages.Message{Role: "user", Content: content, Parts: []messages.ContentPart{{Type: messages.PartText, Text: content},
					{Type: messages.PartImage, ImageURL: &messages.ImageURL{URL: tool, Detail: "auto"}}, {Type: messages.PartRefusal, Refusal: &tool}}}
			}
			r.Messages = append(r.Messages, m)
		}
		if n%7 == 6 {
			r.Messages = []messages.Message{}
		}
		got, err := ContentHash(&r)
		want, errRef := contentHashRef(&r)
		if got != want || (err == nil) != (errRef == nil) {
			t.Fatalf("ContentHash = %s, %v; built with json.Marshal: %s, %v", got, err, want, errRef)
		}
	})
}
