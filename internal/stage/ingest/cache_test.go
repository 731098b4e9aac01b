package ingest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/cache/kvstore"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
)

// count is how many upstream requests carried text in their messages.
func (f *fakeOpenAI) count(text string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.reqs {
		b, _ := json.Marshal(r["messages"])
		if strings.Contains(string(b), text) {
			n++
		}
	}
	return n
}

func cacheKey(t *testing.T, sys *app.System, user string) string {
	t.Helper()
	plain, _, err := apikey.IssueWith(context.Background(), sys.Keys, user, apikey.Options{Cache: true})
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

type cachedAnswer struct {
	status  int
	xcache  string
	content string
}

// ask sends a chat request and returns its status, X-Cache and answer
// (the streamed deltas put together for a stream).
func ask(t *testing.T, sys *app.System, key, body string, header ...string) cachedAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := cachedAnswer{status: resp.StatusCode, xcache: resp.Header.Get("X-Cache")}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			var c struct {
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("chunk %s: %v", data, err)
			}
			for _, ch := range c.Choices {
				a.content += ch.Delta.Content
			}
		}
		return a
	}
	b, _ := io.ReadAll(resp.Body)
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &c); err != nil || len(c.Choices) != 1 {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
	}
	a.content = c.Choices[0].Message.Content
	return a
}

// completedCache reads the cache record of the last completed event whose
// answer contains text, from the turn stream.
func completedCache(t *testing.T, sys *app.System, text string) *messages.CacheUse {
	t.Helper()
	nc, _ := apptest.Conn(t, sys, app.RoleOperator, "cache-audit", app.GrantOptions{})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(context.Background(), messages.StreamTurns,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{messages.Subject(messages.EventCompleted, "*")}})
	if err != nil {
		t.Fatal(err)
	}
	var last *messages.CacheUse
	found := false
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		var c messages.Completed
		if json.Unmarshal(m.Data(), &c) == nil && strings.Contains(c.Message.Content, text) {
			last, found = c.Cache, true
		}
	}
	if !found {
		t.Fatalf("no completed event answers %q", text)
	}
	return last
}

func TestResponseCache(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f))
	alice, bob := cacheKey(t, sys, "alice"), cacheKey(t, sys, "bob")
	plainKey := issueKey(t, sys, "carol", 0)
	zero := `"temperature":0`

	t.Run("the same request twice: one provider call, the second a hit", func(t *testing.T) {
		b := body("fake-1", "cache me once", zero)
		first := ask(t, sys, alice, b)
		second := ask(t, sys, alice, b)
		if first.status != 200 || second.status != 200 || first.xcache != "miss" || second.xcache != "hit" {
			t.Fatalf("first %+v, second %+v", first, second)
		}
		if first.content != second.content || first.content != "fake says: cache me once" {
			t.Fatalf("answers %q and %q", first.content, second.content)
		}
		if n := f.count("cache me once"); n != 1 {
			t.Fatalf("%d provider calls", n)
		}
		cu := completedCache(t, sys, "cache me once")
		if cu == nil || cu.Hits != 1 || cu.Misses != 0 || cu.Saved.TotalTokens != 9 {
			t.Fatalf("completed event's cache record %+v", cu)
		}
		resp, err := http.Get("http://" + sys.HTTPAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`agentbus_cache_lookups_total{model="fake-1",result="hit"} 1`, `agentbus_cache_lookups_total{model="fake-1",result="miss"} 1`,
			`agentbus_cache_saved_tokens_total{model="fake-1",user="alice"} 9`} {
			if !strings.Contains(string(m), want) {
				t.Errorf("/metrics has no %s", want)
			}
		}
	})
	t.Run("streamed from the cache as a stream", func(t *testing.T) {
		b := body("fake-1", "stream me from the cache", zero, `"stream":true`)
		first := ask(t, sys, alice, b)
		second := ask(t, sys, alice, b)
		if first.xcache != "miss" || second.xcache != "hit" || first.content != second.content || first.content != "fake says: stream me from the cache" {
			t.Fatalf("first %+v, second %+v", first, second)
		}
		if n := f.count("stream me from the cache"); n != 1 {
			t.Fatalf("%d provider calls", n)
		}
	})
	t.Run("tenants do not share", func(t *testing.T) {
		b := body("fake-1", "one question, two tenants", zero)
		if a := ask(t, sys, alice, b); a.xcache != "miss" {
			t.Fatalf("alice %+v", a)
		}
		if a := ask(t, sys, bob, b); a.xcache != "miss" {
			t.Fatalf("bob got alice's entry: %+v", a)
		}
		if n := f.count("one question, two tenants"); n != 2 {
			t.Fatalf("%d provider calls", n)
		}
	})
	t.Run("a key without the cache never uses it", func(t *testing.T) {
		b := body("fake-1", "no cache for carol", zero)
		for range 2 {
			if a := ask(t, sys, plainKey, b); a.xcache != "" || a.status != 200 {
				t.Fatalf("%+v", a)
			}
		}
		if n := f.count("no cache for carol"); n != 2 {
			t.Fatalf("%d provider calls", n)
		}
	})
	t.Run("temperature above 0 is not cached unless asked", func(t *testing.T) {
		b := body("fake-1", "a creative answer", `"temperature":0.8`)
		for range 2 {
			if a := ask(t, sys, alice, b); a.xcache != "bypass" {
				t.Fatalf("%+v", a)
			}
		}
		if n := f.count("a creative answer"); n != 2 {
			t.Fatalf("%d provider calls", n)
		}
		asked := body("fake-1", "cache it anyway", `"temperature":0.8`, `"cache":true`)
		if a := ask(t, sys, plainKey, asked); a.xcache != "miss" {
			t.Fatalf("%+v", a)
		}
		if a := ask(t, sys, plainKey, asked); a.xcache != "hit" {
			t.Fatalf("%+v", a)
		}
		if n := f.count("cache it anyway"); n != 1 {
			t.Fatalf("%d provider calls", n)
		}
	})
	t.Run("Cache-Control and cache:false", func(t *testing.T) {
		b := body("fake-1", "controlled", zero)
		ask(t, sys, alice, b)
		if a := ask(t, sys, alice, b, "Cache-Control", "no-store"); a.xcache != "" {
			t.Fatalf("no-store: %+v", a)
		}
		if a := ask(t, sys, alice, body("fake-1", "controlled", zero, `"cache":false`)); a.xcache != "" {
			t.Fatalf("cache:false: %+v", a)
		}
		if a := ask(t, sys, alice, b, "Cache-Control", "no-cache"); a.xcache != "miss" {
			t.Fatalf("no-cache: %+v", a)
		}
		if a := ask(t, sys, alice, b); a.xcache != "hit" {
			t.Fatalf("after a refresh: %+v", a)
		}
		if n := f.count("controlled"); n != 4 {
			t.Fatalf("%d provider calls, want 4 (first, no-store, cache:false, no-cache)", n)
		}
	})
	t.Run("a bad cache field is a 400", func(t *testing.T) {
		if a := askStatus(t, sys, alice, body("fake-1", "hi", `"cache":"yes"`)); a != http.StatusBadRequest {
			t.Fatalf("status %d", a)
		}
	})
	t.Run("an unreachable cache degrades to the provider", func(t *testing.T) {
		nc, _ := apptest.Conn(t, sys, app.RoleOperator, "cache-breaker", app.GrantOptions{})
		js, _ := jetstream.New(nc)
		b := body("fake-1", "cache outage", zero)
		ask(t, sys, alice, b)
		if err := js.DeleteKeyValue(context.Background(), kvstore.Bucket); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if a := ask(t, sys, alice, b); a.status != 200 || a.xcache != "miss" || a.content != "fake says: cache outage" {
				t.Fatalf("%+v", a)
			}
		}
		if n := f.count("cache outage"); n != 3 {
			t.Fatalf("%d provider calls", n)
		}
	})
}

func askStatus(t *testing.T, sys *app.System, key, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An entry expires after --cache-ttl: the provider is called again.
func TestResponseCacheExpires(t *testing.T) {
	f := newFakeOpenAI(t)
	sys := startWith(t, fakeProviders(t, f), func(o *app.Options) { o.Cache.TTL = time.Second })
	key := cacheKey(t, sys, "alice")
	b := body("fake-1", "short-lived", `"temperature":0`)
	if a := ask(t, sys, key, b); a.xcache != "miss" {
		t.Fatalf("%+v", a)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := ask(t, sys, key, b)
		if a.xcache == "miss" {
			break // expired: answered by the provider again
		}
		if a.xcache != "hit" || time.Now().After(deadline) {
			t.Fatalf("%+v (15s after a 1s TTL)", a)
		}
		time.Sleep(100 * time.Millisecond) // polling for the expiry
	}
	if n := f.count("short-lived"); n != 2 {
		t.Fatalf("%d provider calls", n)
	}
}

// BenchmarkResponseCache: a turn answered from the cache against one the
// provider answers (a local fake that answers at once, so the difference
// is the pipeline's own: a real provider adds its latency to the miss).
//
//	go test ./stage/ingest -run '^$' -bench ResponseCache -benchtime 200x
func BenchmarkResponseCache(b *testing.B) {
	f := newFakeOpenAI(b)
	sys := startWith(b, fakeProviders(b, f), func(o *app.Options) { o.Limits = app.LimitsFrom(0, 0, 0) })
	plain, _, err := apikey.IssueWith(context.Background(), sys.Keys, "bench", apikey.Options{Cache: true})
	if err != nil {
		b.Fatal(err)
	}
	nocache, _, err := apikey.Issue(context.Background(), sys.Keys, "bench-nocache", 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	post := func(b *testing.B, key, text string, want string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+sys.HTTPAddr+"/v1/chat/completions", strings.NewReader(body("fake-1", text, `"temperature":0`)))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != want {
			b.Fatalf("HTTP %d X-Cache %q, want %q", resp.StatusCode, resp.Header.Get("X-Cache"), want)
		}
	}
	b.Run("hit", func(b *testing.B) {
		post(b, plain, "the same question", "miss")
		b.ResetTimer()
		for b.Loop() {
			post(b, plain, "the same question", "hit")
		}
	})
	b.Run("miss", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			post(b, plain, "question "+strconv.Itoa(i), "miss")
		}
	})
	b.Run("cache off", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			post(b, nocache, "other question "+strconv.Itoa(i), "")
		}
	})
}
