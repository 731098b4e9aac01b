package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// server starts a test server on 127.0.0.1 and returns its host:port.
func server(t *testing.T, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.URL)
	return s, u.Host
}

func fetchArgs(u string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"url": u})
	return b
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func TestHTTPFetchRefusesLoopbackByDefault(t *testing.T) {
	hits := 0
	_, hostport := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	tests := []struct {
		name string
		cfg  HTTPFetchConfig
		url  string
		want error
	}{
		{"loopback IP literal, host allowed", HTTPFetchConfig{AllowHosts: []string{"127.0.0.1"}}, "http://" + hostport + "/", ErrAddressBlocked},
		{"localhost resolves to loopback", HTTPFetchConfig{AllowHosts: []string{"localhost"}}, "http://localhost:" + strings.Split(hostport, ":")[1] + "/", ErrAddressBlocked},
		{"any host allowed, still loopback", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://" + hostport + "/", ErrAddressBlocked},
		{"host not on allowlist", HTTPFetchConfig{AllowHosts: []string{"example.com"}}, "http://" + hostport + "/", ErrHostNotAllowed},
		{"empty allowlist", HTTPFetchConfig{}, "http://" + hostport + "/", ErrHostNotAllowed},
		{"metadata address", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://169.254.169.254/latest/meta-data/", ErrAddressBlocked},
		{"private", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://10.1.2.3/", ErrAddressBlocked},
		{"cgnat", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://100.64.0.1/", ErrAddressBlocked},
		{"unspecified", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://0.0.0.0:" + strings.Split(hostport, ":")[1] + "/", ErrAddressBlocked},
		{"ipv6 loopback", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://[::1]/", ErrAddressBlocked},
		{"ipv6 ula", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://[fd00::1]/", ErrAddressBlocked},
		{"ipv4-mapped ipv6", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://[::ffff:127.0.0.1]/", ErrAddressBlocked},
		{"nat64 of private", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://[64:ff9b::a00:1]/", ErrAddressBlocked},
		{"scheme", HTTPFetchConfig{AllowHosts: []string{"*"}}, "file:///etc/passwd", ErrBadURL},
		{"gopher", HTTPFetchConfig{AllowHosts: []string{"*"}}, "gopher://" + hostport + "/", ErrBadURL},
		{"credentials", HTTPFetchConfig{AllowHosts: []string{"*"}}, "http://u:p@" + hostport + "/", ErrBadURL},
		{"relative", HTTPFetchConfig{AllowHosts: []string{"*"}}, "/etc/passwd", ErrBadURL},
		{"wildcard does not match apex", HTTPFetchConfig{AllowHosts: []string{"*.example.com"}}, "http://example.com/", ErrHostNotAllowed},
		{"wildcard suffix trick", HTTPFetchConfig{AllowHosts: []string{"*.example.com"}}, "http://evilexample.com/", ErrHostNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewHTTPFetch(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			out, err := f.Call(context.Background(), fetchArgs(tt.url))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Call(%s) = %q, %v; want %v", tt.url, out, err, tt.want)
			}
		})
	}
	if hits != 0 {
		t.Fatalf("the loopback server was reached %d times", hits)
	}
}

func TestHTTPFetchAllowedLoopback(t *testing.T) {
	_, hostport := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok":true}`)
		case "/big":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, strings.Repeat("é", 600)) // 1200 bytes
		case "/png":
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte{0x89, 'P', 'N', 'G', 0, 1, 2})
		case "/404":
			http.NotFound(w, r)
		case "/ua":
			fmt.Fprint(w, r.UserAgent())
		}
	}))
	f, err := NewHTTPFetch(HTTPFetchConfig{AllowHosts: []string{"127.0.0.1"}, AllowNetworks: loopback, MaxBytes: 1001})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path      string
		contains  []string
		truncated bool
	}{
		{"/json", []string{"HTTP 200 OK", "Content-Type: application/json", `{"ok":true}`}, false},
		{"/big", []string{strings.Repeat("é", 500) + "\n[truncated: response longer than 1001 bytes]"}, true},
		{"/png", []string{"[binary content not shown: 7 bytes read]"}, false},
		{"/404", []string{"HTTP 404 Not Found", "404 page not found"}, false},
		{"/ua", []string{"agentbus-http-fetch/1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			out, err := f.Call(context.Background(), fetchArgs("http://"+hostport+tt.path))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.contains {
				if !strings.Contains(out, c) {
					t.Errorf("output %q does not contain %q", out, c)
				}
			}
			if strings.Contains(out, "[truncated") != tt.truncated {
				t.Errorf("truncated = %v, want %v", !tt.truncated, tt.truncated)
			}
			if strings.Contains(out, "\uFFFD") {
				t.Error("a character was cut in half")
			}
		})
	}
}

func TestHTTPFetchRedirects(t *testing.T) {
	var target string
	s, hostport := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-private":
			http.Redirect(w, r, "http://10.0.0.1/", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/to-other-loopback":
			http.Redirect(w, r, "http://127.0.0.2:"+strings.Split(target, ":")[1]+"/ok", http.StatusFound)
		case "/to-foreign-host":
			http.Redirect(w, r, "http://evil.example/", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/chain3":
			http.Redirect(w, r, "/chain2", http.StatusFound)
		case "/chain2":
			http.Redirect(w, r, "/chain1", http.StatusFound)
		case "/chain1":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/ok":
			fmt.Fprint(w, "landed")
		}
	}))
	_ = s
	target = hostport
	f, err := NewHTTPFetch(HTTPFetchConfig{AllowHosts: []string{"127.0.0.1", "127.0.0.2", "10.0.0.1", "169.254.169.254"}, AllowNetworks: loopback})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want error
	}{
		{"/to-private", ErrAddressBlocked},
		{"/to-metadata", ErrAddressBlocked},
		{"/to-other-loopback", ErrAddressBlocked},
		{"/to-foreign-host", ErrHostNotAllowed},
		{"/to-file", ErrBadURL},
		{"/loop", ErrTooManyRedirects},
		{"/chain3", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			out, err := f.Call(context.Background(), fetchArgs("http://"+hostport+tt.path))
			if tt.want == nil {
				if err != nil || !strings.HasSuffix(out, "landed") {
					t.Fatalf("got %q, %v", out, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %q, %v; want %v", out, err, tt.want)
			}
		})
	}
}

func TestHTTPFetchTimeout(t *testing.T) {
	_, hostport := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	f, err := NewHTTPFetch(HTTPFetchConfig{AllowHosts: []string{"127.0.0.1"}, AllowNetworks: loopback, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = f.Call(context.Background(), fetchArgs("http://"+hostport+"/slow"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestHTTPFetchConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  HTTPFetchConfig
		ok   bool
	}{
		{"zero", HTTPFetchConfig{}, true},
		{"hosts", HTTPFetchConfig{AllowHosts: []string{"example.com", "*.example.org", "*", "::1", "10.0.0.1"}}, true},
		{"url instead of host", HTTPFetchConfig{AllowHosts: []string{"https://example.com/"}}, false},
		{"empty host", HTTPFetchConfig{AllowHosts: []string{" "}}, false},
		{"negatives", HTTPFetchConfig{MaxBytes: -1, Timeout: -1}, false},
		{"bad prefix", HTTPFetchConfig{AllowNetworks: []netip.Prefix{{}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestBlockedReason(t *testing.T) {
	tests := []struct {
		addr string
		want string
	}{
		{"8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"127.0.0.1", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"192.168.1.1", "private"},
		{"169.254.169.254", "link-local"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.255", "CGNAT"},
		{"0.0.0.0", "unspecified"},
		{"224.0.0.1", "link-local"},
		{"239.1.2.3", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"fd12:3456::1", "unique-local"},
		{"fe80::1", "link-local"},
		{"ff02::1", "link-local"},
		{"64:ff9b::7f00:1", "loopback (embedded IPv4)"},
		{"2002:c0a8:0101::1", "private (embedded IPv4)"},
		{"64:ff9b::808:808", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := blockedReason(netip.MustParseAddr(tt.addr).Unmap()); got != tt.want {
				t.Errorf("blockedReason(%s) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}
