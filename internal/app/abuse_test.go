package app_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
)

// 200 connections that send their body slowly (a valid key, then nothing)
// are each closed within the read timeout, and a normal request is served
// meanwhile; a request without a key is answered without its body.
func TestSlowBodiesAreCutOff(t *testing.T) {
	sys := startSystem(t, func(o *app.Options) {
		o.Ingest.ReadTimeout = time.Second
		o.Ingest.MaxConns = 256
	})
	key := newKey(t, sys, "slowpoke")
	const n = 200
	var wg sync.WaitGroup
	closedIn := make(chan time.Duration, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", sys.HTTPAddr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\":", key)
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, _ = io.Copy(io.Discard, c) // returns when the server closes
			closedIn <- time.Since(start)
		}()
	}
	// Served while the slow connections are open.
	if r := post(t, sys, key, "", chatBody("hello while others are slow")); r.status != 200 {
		t.Fatalf("normal request: %d %s", r.status, r.raw)
	}
	wg.Wait()
	close(closedIn)
	count := 0
	for d := range closedIn {
		count++
		if d > 5*time.Second {
			t.Fatalf("a slow connection stayed open %s (read timeout 1s)", d)
		}
	}
	if count != n {
		t.Fatalf("%d of %d slow connections were closed", count, n)
	}

	// No key: 401 at once, the body never read, the connection closed.
	c, err := net.Dial("tcp", sys.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 401") || !strings.Contains(string(b), "invalid_api_key") {
		t.Fatalf("unauthenticated slow body: %q", b)
	}
}

// A body over the limit is 413, as OpenAI clients expect.
func TestTooLargeBodyIs413(t *testing.T) {
	sys := startSystem(t, func(o *app.Options) { o.Ingest.MaxBodyBytes = 64 << 10 })
	key := newKey(t, sys, "big")
	r := post(t, sys, key, "", chatBody(strings.Repeat("a", 70<<10)))
	if r.status != 413 || errCode(r) != "request_too_large" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}
