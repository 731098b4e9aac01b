package tokens

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/agentbus/agentbus/messages"
)

// cookbook is the example conversation of OpenAI's "How to count tokens with
// tiktoken" notebook; the API reported 129 prompt tokens for gpt-3.5-turbo and
// gpt-4, and 124 for gpt-4o and gpt-4o-mini.
var cookbook = []messages.Message{
	{Role: "system", Content: "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
	{Role: "system", Name: "example_user", Content: "New synergies will help drive top-line growth."},
	{Role: "system", Name: "example_assistant", Content: "Things working well together will increase revenue."},
	{Role: "system", Name: "example_user", Content: "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
	{Role: "system", Name: "example_assistant", Content: "Let's talk later when we're less busy about how to do better."},
	{Role: "user", Content: "This late pivot means we don't have time to boil the ocean for the client deliverable."},
}

func TestCookbookCounts(t *testing.T) {
	for _, tc := range []struct {
		model string
		want  int
	}{
		{"gpt-3.5-turbo", 129},
		{"gpt-4-0613", 129},
		{"gpt-4o", 124},
		{"gpt-4o-mini", 124},
	} {
		t.Run(tc.model, func(t *testing.T) {
			if got := For(tc.model).CountMessages(cookbook); got != tc.want {
				t.Errorf("CountMessages = %d, want %d (OpenAI API)", got, tc.want)
			}
		})
	}
}

func TestEncodingFor(t *testing.T) {
	for _, tc := range []struct{ model, want string }{
		{"gpt-4o", O200K}, {"gpt-4o-mini-2024-07-18", O200K}, {"GPT-4o", O200K}, {"openai/gpt-4.1-nano", O200K},
		{"o1", O200K}, {"o1-mini", O200K}, {"o3-pro", O200K}, {"o4-mini", O200K}, {"gpt-5", O200K},
		{"gpt-4", CL100K}, {"gpt-4-turbo", CL100K}, {"gpt-4-32k", CL100K}, {"gpt-3.5-turbo-16k", CL100K},
		{"agentbus-offline", Estimate}, {"", Estimate}, {"claude-3-5-sonnet", Estimate}, {"o10", Estimate},
		{"ollama/llama3", Estimate}, {"omni", Estimate},
	} {
		t.Run(tc.model, func(t *testing.T) {
			if got := EncodingFor(tc.model); got != tc.want {
				t.Errorf("EncodingFor(%q) = %q, want %q", tc.model, got, tc.want)
			}
			type named interface{ Encoding() string }
			if got := For(tc.model).(named).Encoding(); got != tc.want {
				t.Errorf("For(%q) uses %q, want %q", tc.model, got, tc.want)
			}
		})
	}
}

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		model, text string
		want        int
	}{
		{"gpt-4", "hello world", 2},
		{"gpt-4o", "hello world", 2},
		{"gpt-4", "", 0},
		{"agentbus-offline", "", 0},
		{"agentbus-offline", "abc", 1},
		{"agentbus-offline", "abcd", 1},
		{"agentbus-offline", "abcde", 2},
		{"gpt-4o", "<|endoftext|>", 7}, // counted as text, never as a special token
	} {
		t.Run(tc.model+"/"+tc.text, func(t *testing.T) {
			if got := For(tc.model).Count(tc.text); got != tc.want {
				t.Errorf("Count(%q) = %d, want %d", tc.text, got, tc.want)
			}
		})
	}
}

// TestOffline proves that building the encoders needs no network: a child
// process (this test binary, re-executed) replaces the HTTP transport with
// one that fails the process on any request, points the proxies nowhere and
// the tiktoken cache at an empty directory, then counts with both
// encodings. In-process, the encoders may already be cached by other tests.
func TestOffline(t *testing.T) {
	if os.Getenv("AGENTBUS_TOKENS_OFFLINE_CHILD") == "1" {
		http.DefaultTransport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			fmt.Fprintln(os.Stderr, "network access:", r.URL)
			os.Exit(7)
			return nil, nil
		})
		if n := For("gpt-4o").Count("hello world"); n != 2 {
			t.Fatalf("o200k: %d", n)
		}
		if n := For("gpt-4").Count("hello world"); n != 2 {
			t.Fatalf("cl100k: %d", n)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOffline$", "-test.count=1")
	cmd.Env = append(os.Environ(), "AGENTBUS_TOKENS_OFFLINE_CHILD=1", "HTTPS_PROXY=http://127.0.0.1:1", "HTTP_PROXY=http://127.0.0.1:1", "TIKTOKEN_CACHE_DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("offline child: %v\n%s", err, out)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestAdditive(t *testing.T) {
	for _, model := range []string{"gpt-4o", "gpt-4", "agentbus-offline"} {
		t.Run(model, func(t *testing.T) {
			c := For(model)
			msgs := append([]messages.Message{}, cookbook...)
			msgs = append(msgs, messages.Message{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}},
				messages.Message{Role: "tool", ToolCallID: "c1", Content: `{"temp":21}`})
			if got := c.CountMessages(nil); got != ReplyPriming {
				t.Fatalf("CountMessages(nil) = %d", got)
			}
			sum := ReplyPriming
			for i := range msgs {
				sum += MessageTokens(c, &msgs[i])
				if a, b := c.CountMessages(msgs[:i+1]), c.CountMessages(msgs[:i])+MessageTokens(c, &msgs[i]); a != b {
					t.Fatalf("not additive at %d: %d != %d", i, a, b)
				}
			}
			if got := c.CountMessages(msgs); got != sum {
				t.Fatalf("CountMessages = %d, sum = %d", got, sum)
			}
			// A tool call costs more than its bare arguments.
			if MessageTokens(c, &msgs[len(msgs)-2]) <= c.Count(`{"city":"Paris"}`) {
				t.Fatal("tool call overhead missing")
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	c := For("gpt-4o")
	want := c.Count(strings.Repeat("concurrency is not parallelism. ", 50))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				if got := For("gpt-4o").Count(strings.Repeat("concurrency is not parallelism. ", 50)); got != want {
					t.Errorf("got %d, want %d", got, want)
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzCount(f *testing.F) {
	for _, s := range []string{"", "hello", "<|endoftext|>", "\xff\xfe", "日本語のテキスト", strings.Repeat("a", 1000)} {
		f.Add(s)
	}
	bpe, est := For("gpt-4o"), For("")
	f.Fuzz(func(t *testing.T, s string) {
		n := bpe.Count(s)
		if (n == 0) != (s == "") || n < 0 || n > len(s) {
			t.Fatalf("Count(%q) = %d", s, n)
		}
		if e := est.Count(s); e*4 < len(s) || (e-1)*4 >= len(s) && s != "" {
			t.Fatalf("estimate(%q) = %d", s, e)
		}
	})
}

func BenchmarkCount(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 45) // ~2 KB
	for _, model := range []string{"gpt-4o", "gpt-4", "agentbus-offline"} {
		c := For(model)
		b.Run(model, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				c.Count(text)
			}
		})
	}
}

func ExampleFor() {
	msgs := []messages.Message{
		{Role: "system", Content: "You are terse."},
		{Role: "user", Content: "What is the capital of France?"},
	}
	fmt.Println(For("gpt-4o").CountMessages(msgs))
	fmt.Println(For("agentbus-offline").Count("twelve chars"))
	// Output:
	// 22
	// 3
}

type countingCounter struct {
	Counter
	calls int
}

func (c *countingCounter) Count(s string) int { c.calls++; return c.Counter.Count(s) }

func TestCached(t *testing.T) {
	inner := &countingCounter{Counter: For("gpt-4o")}
	c := Cached(inner, 2)
	long := strings.Repeat("cache me please ", 10)
	want := For("gpt-4o").Count(long)
	for range 3 {
		if got := c.Count(long); got != want {
			t.Fatalf("Count = %d, want %d", got, want)
		}
	}
	if inner.calls != 1 {
		t.Fatalf("inner called %d times, want 1", inner.calls)
	}
	if got, want := c.CountMessages(cookbook), For("gpt-4o").CountMessages(cookbook); got != want {
		t.Fatalf("CountMessages = %d, want %d", got, want)
	}
	if _, ok := Cached(Estimator{}, 0).(Estimator); !ok {
		t.Fatal("estimator should not be wrapped")
	}
}
