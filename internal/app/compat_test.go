package app_test

// Client compatibility: the official OpenAI SDKs (Go here, Node through
// examples/openai-node) talk to ingest unchanged, with only a base URL and
// an agentbus API key.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/messages"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// countingTransport counts the HTTP requests the SDK sends.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// sdkClient returns an OpenAI Go client aimed at sys's ingest, with the
// SDK's retries off (agentbus retries in one place) and every request
// counted.
func sdkClient(sys *app.System, key string) (openai.Client, *countingTransport) {
	ct := &countingTransport{}
	c := openai.NewClient(
		option.WithBaseURL("http://"+sys.HTTPAddr+"/v1/"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: ct}),
		option.WithRequestTimeout(30*time.Second),
	)
	return c, ct
}

func userParams(text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "agentbus-offline",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)},
	}
}

func TestOpenAIGoSDK(t *testing.T) {
	sys := startSystem(t, func(o *app.Options) {
		o.Limits = app.LimitsFrom(0, 5, 0) // 5 requests/minute per user
	})
	ctx := context.Background()
	client, calls := sdkClient(sys, newKey(t, sys, "sdk-go"))

	t.Run("non-streaming", func(t *testing.T) {
		var raw *http.Response
		res, err := client.Chat.Completions.New(ctx, userParams("Hello from the Go SDK"), option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Choices) != 1 || !strings.Contains(res.Choices[0].Message.Content, "Hello from the Go SDK") {
			t.Fatalf("answer: %s", res.RawJSON())
		}
		if res.Choices[0].FinishReason != "stop" || string(res.Choices[0].Message.Role) != "assistant" {
			t.Fatalf("finish %q role %q", res.Choices[0].FinishReason, res.Choices[0].Message.Role)
		}
		rid := raw.Header.Get("X-Request-Id")
		if res.ID != "chatcmpl-"+rid || !messages.ValidID(rid) || res.Object != "chat.completion" || res.Created == 0 {
			t.Fatalf("id %q (request id %q) object %q created %d", res.ID, rid, res.Object, res.Created)
		}
		u := res.Usage
		if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Fatalf("usage %+v", u)
		}
		// A follow-up on the same conversation sees the first turn.
		conv := raw.Header.Get("X-Conversation-Id")
		res2, err := client.Chat.Completions.New(ctx, userParams("What is 6*7?"), option.WithHeader("X-Conversation-Id", conv))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res2.Choices[0].Message.Content, "42") || res2.ID == res.ID {
			t.Fatalf("follow-up: %s", res2.RawJSON())
		}
	})

	t.Run("streaming", func(t *testing.T) {
		params := userParams("tell me a short story about rivers")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		chunks, withContent := 0, 0
		var text strings.Builder
		for stream.Next() {
			c := stream.Current()
			if !acc.AddChunk(c) {
				t.Fatalf("accumulator refused chunk %s", c.RawJSON())
			}
			chunks++
			if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				withContent++
				text.WriteString(c.Choices[0].Delta.Content)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream ended with %v after %d chunks", err, chunks)
		}
		if err := stream.Close(); err != nil {
			t.Fatal(err)
		}
		if withContent < 2 || !strings.Contains(text.String(), "rivers") {
			t.Fatalf("%d chunks, %d with content, text %q", chunks, withContent, text.String())
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != text.String() || acc.Choices[0].FinishReason != "stop" {
			t.Fatalf("accumulated %+v", acc.ChatCompletion.Choices)
		}
		if !strings.HasPrefix(acc.ID, "chatcmpl-req_") || acc.Usage.TotalTokens <= 0 {
			t.Fatalf("accumulated id %q usage %+v", acc.ID, acc.Usage)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
			if m.Object != "model" || m.OwnedBy == "" {
				t.Fatalf("model %s", m.RawJSON())
			}
		}
		if len(ids) == 0 || ids[0] != "agentbus-offline" {
			t.Fatalf("models %v", ids)
		}
		// The auto-pager stops after the one page.
		iter := client.Models.ListAutoPaging(ctx)
		n := 0
		for iter.Next() {
			n++
		}
		if iter.Err() != nil || n != len(ids) {
			t.Fatalf("auto-paging: %d models, err %v", n, iter.Err())
		}
	})

	t.Run("bad key", func(t *testing.T) {
		bad, badCalls := sdkClient(sys, "ab-zzzzzzzz_"+strings.Repeat("A", 43))
		for name, call := range map[string]func() error{
			"chat": func() error {
				_, err := bad.Chat.Completions.New(ctx, userParams("hi"))
				return err
			},
			"stream": func() error {
				s := bad.Chat.Completions.NewStreaming(ctx, userParams("hi"))
				for s.Next() {
				}
				return s.Err()
			},
			"models": func() error {
				_, err := bad.Models.List(ctx)
				return err
			},
		} {
			err := call()
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("%s: want *openai.Error, got %T %v", name, err, err)
			}
			if apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" || apiErr.Type != "authentication_error" || apiErr.Message == "" {
				t.Fatalf("%s: status %d code %q type %q message %q", name, apiErr.StatusCode, apiErr.Code, apiErr.Type, apiErr.Message)
			}
			if strings.Contains(apiErr.Message, "AAAAAAAA") {
				t.Fatalf("%s: error echoes the key: %q", name, apiErr.Message)
			}
		}
		if n := badCalls.n.Load(); n != 3 {
			t.Fatalf("%d requests for 3 calls", n)
		}
	})

	t.Run("rate limited, no SDK retry", func(t *testing.T) {
		// Five requests per minute per user: the subtests above spent
		// three (models and bad keys are not limited), so the third
		// request here is refused at the latest.
		before := calls.n.Load()
		var apiErr *openai.Error
		sent := 0
		for i := 0; i < 6 && apiErr == nil; i++ {
			sent++
			_, err := client.Chat.Completions.New(ctx, userParams("one more, please"))
			if err != nil && !errors.As(err, &apiErr) {
				t.Fatalf("want *openai.Error, got %T %v", err, err)
			}
		}
		if apiErr == nil || apiErr.StatusCode != 429 || apiErr.Code != messages.CodeRateLimited || apiErr.Type != "rate_limit_error" {
			t.Fatalf("after %d requests: %v", sent, apiErr)
		}
		if apiErr.Response.Header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After: %v", apiErr.Response.Header)
		}
		// With SDK retries on, the 429 would have been sent up to 3 times.
		if got := calls.n.Load() - before; got != int64(sent) {
			t.Fatalf("%d HTTP requests for %d SDK calls: the SDK retried", got, sent)
		}
	})
}

// nodeExample returns the path of examples/<name> when node and the
// example's node_modules are there, else skips the test.
func nodeExample(t *testing.T, name string) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH")
	}
	dir, err = filepath.Abs(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Skipf("%s/node_modules is missing: run `npm ci --prefix examples/%s`", dir, name)
	}
	return node, dir
}

func TestOpenAINodeSDK(t *testing.T) {
	node, dir := nodeExample(t, "openai-node")
	sys := startSystem(t, nil)
	key := newKey(t, sys, "sdk-node")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL=http://"+sys.HTTPAddr+"/v1", "API_KEY="+key)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check.mjs: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var got struct {
		SDKVersion string `json:"sdk_version"`
		Completion struct {
			ID           string         `json:"id"`
			Content      string         `json:"content"`
			FinishReason string         `json:"finish_reason"`
			Usage        messages.Usage `json:"usage"`
		} `json:"completion"`
		Stream struct {
			Chunks       int    `json:"chunks"`
			Content      string `json:"content"`
			FinishReason string `json:"finish_reason"`
			ID           string `json:"id"`
		} `json:"stream"`
		BadKey struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		} `json:"bad_key"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	c := got.Completion
	if !strings.Contains(c.Content, "Hello from Node") || c.FinishReason != "stop" || !strings.HasPrefix(c.ID, "chatcmpl-req_") ||
		c.Usage.TotalTokens <= 0 || c.Usage.TotalTokens != c.Usage.PromptTokens+c.Usage.CompletionTokens {
		t.Fatalf("completion %+v", c)
	}
	s := got.Stream
	if s.Chunks < 3 || !strings.Contains(s.Content, "lighthouses") || s.FinishReason != "stop" || !strings.HasPrefix(s.ID, "chatcmpl-req_") {
		t.Fatalf("stream %+v", s)
	}
	if got.BadKey.Status != 401 || got.BadKey.Code != "invalid_api_key" {
		t.Fatalf("bad key %+v", got.BadKey)
	}
	t.Logf("openai npm %s ok", got.SDKVersion)
}
