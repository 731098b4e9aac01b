package messages_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/messages"
)

// Array content is kept part by part and written back as sent; its text
// (what the guard scans) keeps the parts apart.
func TestContentPartsRoundTrip(t *testing.T) {
	in := `{"role":"user","content":[{"type":"text","text":"hi"},{"type":"text","text":"there"},{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}}]}`
	var m messages.Message
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if m.Content != "hi\nthere" || len(m.Parts) != 3 || !m.HasImages() {
		t.Fatalf("%+v", m)
	}
	out, _ := json.Marshal(m)
	if string(out) != in {
		t.Fatalf("written back as\n%s\nnot\n%s", out, in)
	}
	// An assistant's refusal part (as agent frameworks resend a refusal)
	// is kept as sent; its text is the message's refusal, not its content.
	const refused = `{"role":"assistant","content":[{"type":"text","text":"Well,"},{"type":"refusal","refusal":"I can't help with that."}]}`
	var r messages.Message
	if err := json.Unmarshal([]byte(refused), &r); err != nil {
		t.Fatal(err)
	}
	if r.Content != "Well," || r.RefusalText() != "I can't help with that." {
		t.Fatalf("content %q refusal %q", r.Content, r.RefusalText())
	}
	if b, _ := json.Marshal(r); string(b) != refused {
		t.Fatalf("written back as\n%s\nnot\n%s", b, refused)
	}
	// A string stays a string; an assistant's refusal is kept.
	var a messages.Message
	_ = json.Unmarshal([]byte(`{"role":"assistant","content":null,"refusal":"no"}`), &a)
	if b, _ := json.Marshal(a); string(b) != `{"role":"assistant","content":"","refusal":"no"}` {
		t.Fatalf("%s", b)
	}
}

func TestContentPartsValidation(t *testing.T) {
	turn := func(m messages.Message) error {
		t := messages.Turn{RequestID: "r", ConversationID: "c", User: "u", Messages: []messages.Message{m}}
		return t.Validate()
	}
	refusal := func(text string) messages.ContentPart {
		return messages.ContentPart{Type: messages.PartRefusal, Refusal: &text}
	}
	img := func(url string) messages.ContentPart {
		return messages.ContentPart{Type: messages.PartImage, ImageURL: &messages.ImageURL{URL: url}}
	}
	for _, c := range []struct {
		m     messages.Message
		field string
	}{
		{messages.Message{Role: "user", Parts: []messages.ContentPart{img("https://x.example/a.png")}}, ""},
		{messages.Message{Role: "user", Parts: []messages.ContentPart{img("data:image/jpeg;base64,/9j/4AAQ")}}, ""},
		{messages.Message{Role: "user", Parts: []messages.ContentPart{img("file:///etc/passwd")}}, "messages[0].content[0].image_url.url"},
		{messages.Message{Role: "user", Parts: []messages.ContentPart{{Type: messages.PartImage}}}, "messages[0].content[0].image_url.url"},
		{messages.Message{Role: "system", Parts: []messages.ContentPart{img("https://x.example/a.png")}}, "messages[0].content[0].type"},
		{messages.Message{Role: "user", Parts: []messages.ContentPart{{Type: "input_audio"}}}, "messages[0].content[0].type"},
		{messages.Message{Role: "assistant", Parts: []messages.ContentPart{refusal("no")}}, ""},
		{messages.Message{Role: "assistant", Parts: []messages.ContentPart{refusal("")}}, ""},
		{messages.Message{Role: "assistant", Parts: []messages.ContentPart{{Type: messages.PartRefusal}}}, "messages[0].content[0].refusal"},
		{messages.Message{Role: "user", Parts: []messages.ContentPart{refusal("no")}}, "messages[0].content[0].type"},
		{messages.Message{Role: "assistant", Parts: []messages.ContentPart{refusal("bad \xff")}}, "messages[0].content"},
		{messages.Message{Role: "assistant", Parts: []messages.ContentPart{refusal(strings.Repeat("a", messages.MaxContentBytes+1))}}, "messages[0].content"},
		{messages.Message{Role: "user", Parts: []messages.ContentPart{img("https://x.example/" + strings.Repeat("a", messages.MaxContentBytes))}}, "messages[0].content"},
	} {
		err := turn(c.m)
		var fe *messages.FieldError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: %v", c.m, err)
		case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
			t.Errorf("%+v: %v, want field %s", c.m.Parts[0].Type, err, c.field)
		}
	}
}
