package replay

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/messages"
)

func TestConversationID(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"typical", `{"schema_version":1,"request_id":"r1","conversation_id":"c1","user":"u"}`, "c1"},
		{"first member", `{"conversation_id":"c1"}`, "c1"},
		{"whitespace", " \n{ \"a\" : [1, {\"conversation_id\":\"nested\"}] ,\t\"conversation_id\" :\r\"c2\" }", "c2"},
		{"nested only", `{"a":{"conversation_id":"x"},"b":[{"conversation_id":"y"}]}`, ""},
		{"inside a string", `{"content":"\"conversation_id\":\"evil\"","conversation_id":"good"}`, "good"},
		{"escaped value", `{"conversation_id":"a\u0062c\n"}`, "abc\n"},
		{"escaped key", `{"conversation\u005fid":"k"}`, "k"},
		{"key case matters", `{"Conversation_ID":"x"}`, ""},
		{"non-string value", `{"conversation_id":42}`, ""},
		{"null value", `{"conversation_id":null}`, ""},
		{"skips literals and numbers", `{"a":true,"b":null,"c":-1.5e3,"d":"}","conversation_id":"c"}`, "c"},
		{"escaped quote before", `{"a":"x\\","conversation_id":"c"}`, "c"},
		{"missing", `{"request_id":"r"}`, ""},
		{"empty object", `{}`, ""},
		{"array", `[{"conversation_id":"c"}]`, ""},
		{"truncated", `{"conversation_id":"c`, ""},
		{"truncated before", `{"a":[1,2`, ""},
		{"garbage", "\x00\xff", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConversationID([]byte(tt.data)); got != tt.want {
				t.Fatalf("ConversationID(%q) = %q, want %q", tt.data, got, tt.want)
			}
		})
	}
}

// referenceConversationID decodes the top level with encoding/json and
// reports the exact-key conversation_id and how often it occurs.
func referenceConversationID(data []byte) (val string, isString bool, count int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return "", false, 0, false
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", false, 0, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", false, 0, false
		}
		if k == "conversation_id" {
			count++
			var s string
			isString = json.Unmarshal(raw, &s) == nil && raw[0] == '"'
			val = s
		}
	}
	return val, isString, count, true
}

// FuzzConversationID checks the scanner against encoding/json on valid
// JSON objects, and that it never panics on anything.
func FuzzConversationID(f *testing.F) {
	for _, s := range []string{
		`{"schema_version":1,"request_id":"r1","conversation_id":"c1"}`,
		`{"a":{"conversation_id":"x"},"conversation_id":"y"}`,
		`{"content":"\"conversation_id\":\"evil\"","conversation_id":"good"}`,
		`{"conversation\u005fid":"a\u00e9\ud83d\ude00"}`,
		`{"a":[[],{},"\\",1e5,true,null],"conversation_id":""}`,
		`{"conversation_id":1}`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := ConversationID(data)
		if !json.Valid(data) {
			return
		}
		want, isString, count, ok := referenceConversationID(data)
		if !ok || count > 1 {
			return // not an object, or duplicate keys (we take the first)
		}
		if !isString {
			want = ""
		}
		if got != want {
			t.Fatalf("ConversationID(%q) = %q, encoding/json says %q", data, got, want)
		}
	})
}

// FuzzFormat checks that any payload on any subject formats as exactly one
// line without terminal control characters.
func FuzzFormat(f *testing.F) {
	f.Add("agentbus.turn.completed.r1", []byte(`{"conversation_id":"c","message":{"role":"assistant","content":"hi\u001b[2J"}}`))
	f.Add("agentbus.turn.tooled.r1", []byte(`{"steps":[{"role":"tool","tool_call_id":"x","content":"a\nb"}],"tool_verdicts":[{"tool_call_id":"x","tool":"t\u0007","verdict":"allow"}]}`))
	f.Add("agentbus.turn.toolcalls.r1", []byte(`{"steps":[{"role":"assistant","tool_calls":[{"id":"1","function":{"name":"n","arguments":"\r\n\u202e"}}]}]}`))
	f.Add("agentbus.turn.rejected.r1", []byte(`{"code":"x","reason":"\u2028"}`))
	f.Add("agentbus.turn.failed.r1", []byte("\x1b]0;title\x07"))
	f.Add("x", []byte(nil))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		if strings.ContainsAny(subject, "\x00\r\n\x1b") || !json.Valid([]byte(`"`+subject+`"`)) {
			return // subjects come from NATS and never hold control characters
		}
		var b strings.Builder
		if err := Format(&b, NewEvent(1, subject, time.Unix(0, 0), data, nil)); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		body := out[:len(out)-1]
		if !strings.HasSuffix(out, "\n") || strings.ContainsAny(body, "\n\r\x1b\x07\u2028\u202e") {
			t.Fatalf("unsafe line %q", out)
		}
	})
}

func TestProgress(t *testing.T) {
	var b strings.Builder
	off := NewProgress(&b, false)
	off.Update(1, 10)
	off.Finish()
	if b.Len() != 0 || off.Enabled() {
		t.Fatalf("disabled progress wrote %q", b.String())
	}

	now := time.Unix(0, 0)
	p := NewProgress(&b, true)
	p.now = func() time.Time { return now }
	p.Update(1, 10) // first update always shows
	p.Update(2, 10) // throttled
	now = now.Add(p.Interval)
	p.Update(3, 2) // total below read is clamped
	p.Finish()
	if want := "\r  1/10 events\r  3/3 events\r  3/3 events\n"; b.String() != want {
		t.Fatalf("progress wrote %q, want %q", b.String(), want)
	}

	var silent strings.Builder
	q := NewProgress(&silent, true)
	q.Finish() // nothing written, nothing to end
	if silent.Len() != 0 {
		t.Fatalf("Finish without updates wrote %q", silent.String())
	}
}

func TestTerminalProgressOffForFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "progress")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if TerminalProgress(f).Enabled() {
		t.Fatal("progress enabled on a regular file")
	}
}

func BenchmarkConversationID(b *testing.B) {
	data, _ := json.Marshal(messages.Completed{SchemaVersion: 1, RequestID: "req_0123456789", ConversationID: "conv_0123456789",
		Message: messages.Message{Role: "assistant", Content: strings.Repeat("x", 2000)}})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if ConversationID(data) != "conv_0123456789" {
			b.Fatal("wrong id")
		}
	}
}

func BenchmarkConversationIDUnmarshal(b *testing.B) {
	data, _ := json.Marshal(messages.Completed{SchemaVersion: 1, RequestID: "req_0123456789", ConversationID: "conv_0123456789",
		Message: messages.Message{Role: "assistant", Content: strings.Repeat("x", 2000)}})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v struct {
			C string `json:"conversation_id"`
		}
		if json.Unmarshal(data, &v) != nil || v.C != "conv_0123456789" {
			b.Fatal("wrong id")
		}
	}
}
