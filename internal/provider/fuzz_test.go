package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/messages"
)

func FuzzSSE(f *testing.F) {
	f.Add("data: {\"a\":1}\n\ndata: [DONE]\n\n")
	f.Add("data: a\ndata: b\n\n: comment\nevent: x\nid: 3\n\ndata:c\r\n\r\n")
	f.Add("data: partial")
	f.Add("\n\n\n")
	f.Add("data: [DONE]")
	f.Fuzz(func(t *testing.T, in string) {
		r := newSSEReader(strings.NewReader(in), nil)
		for i := 0; ; i++ {
			data, err := r.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errSSELineTooLong) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(data) > len(in) {
				t.Fatalf("event longer than input")
			}
			if i > len(in) {
				t.Fatalf("more events than input bytes: no progress")
			}
		}
	})
}

// FuzzStream feeds arbitrary SSE bodies to the OpenAI stream reader: it must
// return (never hang or panic), and the deltas it delivered must be exactly
// the content of a successful response.
func FuzzStream(f *testing.F) {
	f.Add(`data: {"choices":[{"index":0,"delta":{"content":"a"}}]}` + "\n\ndata: [DONE]\n\n")
	f.Add(`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"id":"x","function":{"name":"n","arguments":"{"}}]}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"id":"y","function":{"arguments":"}"}}]},"finish_reason":"tool_calls"}]}` + "\n\n")
	f.Add(`data: {"error":"nope"}` + "\n\n")
	p := &OpenAI{cfg: OpenAIConfig{Name: "fuzz", APIKey: testKey}.WithDefaults()}
	f.Fuzz(func(t *testing.T, body string) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		var got strings.Builder
		resp, err := p.readStream(ctx, cancel, strings.NewReader(body), func(d string) { got.WriteString(d) })
		if err != nil {
			if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrRateLimited) && !errors.Is(err, ErrAuth) {
				t.Fatalf("unclassified error %v", err)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatal("key leaked")
			}
			return
		}
		if resp.Message.Content != got.String() {
			t.Fatalf("content %q != deltas %q", resp.Message.Content, got.String())
		}
		for _, tc := range resp.Message.ToolCalls {
			if tc.ID == "" || tc.Type == "" {
				t.Fatalf("incomplete tool call %+v", tc)
			}
		}
	})
}

func FuzzErrorBody(f *testing.F) {
	f.Add(401, `{"error":{"message":"Incorrect API key provided: `+testKey+`","code":"invalid_api_key"}}`)
	f.Add(400, `{"error":{"message":"maximum context length","code":null}}`)
	f.Add(429, `{"error":"slow"}`)
	f.Add(500, `<html>`)
	f.Add(422, `{"detail":[{"msg":"x"}]}`)
	p := &OpenAI{cfg: OpenAIConfig{Name: "fuzz", APIKey: testKey}.WithDefaults()}
	f.Fuzz(func(t *testing.T, status int, body string) {
		if status < 300 || status > 599 {
			return
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
		err := p.httpError(resp)
		var pe *Error
		if !errors.As(err, &pe) || pe.Status != status {
			t.Fatalf("not an *Error: %v", err)
		}
		if strings.Contains(err.Error(), testKey) {
			t.Fatalf("key leaked: %v", err)
		}
		if len(pe.Message) > 515 || len(pe.Code) > 67 {
			t.Fatalf("not truncated: %d", len(pe.Message))
		}
		if IsBreakerFailure(err) != (status >= 500 || status == 408 || status < 400) {
			if !errors.Is(err, ErrRateLimited) { // a 5xx body may say rate_limit_exceeded
				t.Fatalf("status %d classified %v", status, errors.Unwrap(err))
			}
		}
	})
}

func FuzzOfflineArithmetic(f *testing.F) {
	for _, s := range []string{"What is 17*23?", "compute (2+3)*4", "2^3^2", "1/0", "((((1", "-(-(-1))", "9^9^9", "1.2.3", "3 % 0"} {
		f.Add(s)
	}
	o := NewOffline()
	f.Fuzz(func(t *testing.T, s string) {
		expr := findExpression(s)
		if expr != "" {
			if !strings.Contains(s, expr) || !looksArithmetic(expr) {
				t.Fatalf("findExpression(%q) = %q", s, expr)
			}
		}
		req := Request{Messages: []messages.Message{{Role: "user", Content: s}}, Tools: []ToolSpec{{Name: "calculator"}}}
		resp, err := o.Complete(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if expr != "" {
			var args struct{ Expression string }
			if len(resp.Message.ToolCalls) != 1 || json.Unmarshal([]byte(resp.Message.ToolCalls[0].Function.Arguments), &args) != nil || args.Expression != expr {
				t.Fatalf("tool call %+v for %q", resp.Message.ToolCalls, expr)
			}
		} else if !strings.HasPrefix(resp.Message.Content, "You said: ") {
			t.Fatalf("reply %q", resp.Message.Content)
		}
	})
}

func FuzzValidateKey(f *testing.F) {
	for _, k := range Kinds {
		f.Add(k, "sk-#secret-value-0123456789")
		f.Add(k, "")
	}
	f.Add("openrouter", "sk-or-#abc")
	f.Fuzz(func(t *testing.T, kind, key string) {
		err := ValidateKey(kind, key)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrInvalidKey) {
			t.Fatal("does not wrap ErrInvalidKey")
		}
		if strings.Contains(key, "#") && len(key) >= 4 && strings.Contains(err.Error(), key) {
			t.Fatalf("key echoed: %v", err)
		}
	})
}

func FuzzRedact(f *testing.F) {
	f.Add("Incorrect API key provided: sk-abc***xyz", "sk-abcdefghijklmnopqrstuvwxyz")
	f.Add("Authorization: Bearer tok123", "tok123")
	f.Fuzz(func(t *testing.T, s, key string) {
		out := redact(s, key)
		if len(key) >= 8 && strings.Contains(out, key) && !strings.Contains("[redacted]", key) {
			t.Fatalf("redact(%q) = %q still has the key", s, out)
		}
		tr := truncate(out, 64)
		if len(tr) > 67 || !strings.HasPrefix(out, strings.TrimSuffix(tr, "...")) {
			t.Fatalf("truncate: %q", tr)
		}
	})
}
