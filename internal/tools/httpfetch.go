package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Defaults of HTTPFetchConfig.
const (
	DefaultFetchMaxBytes     = 256 << 10
	DefaultFetchTimeout      = 10 * time.Second
	DefaultFetchMaxRedirects = 5
)

// Errors of http_fetch. The model sees their text.
var (
	// ErrHostNotAllowed: the URL's host is not on the allowlist.
	ErrHostNotAllowed = errors.New("host not allowed")
	// ErrAddressBlocked: the host resolved to a refused address (wrapped
	// by *BlockedAddressError).
	ErrAddressBlocked = errors.New("address refused")
	// ErrBadURL: not an absolute http or https URL without credentials.
	ErrBadURL = errors.New("bad url")
	// ErrTooManyRedirects: more redirects than MaxRedirects.
	ErrTooManyRedirects = errors.New("too many redirects")
)

// BlockedAddressError reports a connection refused because of the address
// it would have gone to.
type BlockedAddressError struct {
	Addr   netip.Addr
	Reason string // "loopback", "private", "link-local", ...
}

func (e *BlockedAddressError) Error() string {
	return "refused to connect to " + e.Addr.String() + " (" + e.Reason + " address)"
}

// Unwrap returns ErrAddressBlocked.
func (e *BlockedAddressError) Unwrap() error { return ErrAddressBlocked }

// HTTPFetchConfig configures the http_fetch tool.
type HTTPFetchConfig struct {
	// AllowHosts lists the hosts that may be fetched: "example.com" (that
	// host only), "*.example.com" (its subdomains, not itself), or "*" (any
	// host). An IP literal must be listed as written. Default: none, every
	// URL is refused.
	AllowHosts []string
	// AllowNetworks lists address ranges that may be dialled although
	// they are private, loopback, link-local, unspecified, multicast,
	// CGNAT, IPv6 ULA or otherwise reserved (e.g. 127.0.0.1/32 for tests).
	// Default: none.
	AllowNetworks []netip.Prefix
	// MaxBytes bounds the body read (default 256 KiB); a longer body is
	// truncated with a note.
	MaxBytes int64
	// Timeout bounds a whole fetch including redirects (default 10 s).
	Timeout time.Duration
	// MaxRedirects bounds the redirects followed (default 5; every one is
	// re-checked against AllowHosts and the address rules). Negative
	// means none are followed.
	MaxRedirects int
	// UserAgent is sent with every request (default "agentbus-http-fetch/1").
	UserAgent string
}

// Validate reports every invalid field, joined.
func (c HTTPFetchConfig) Validate() error {
	var errs []error
	for i, h := range c.AllowHosts {
		h = strings.TrimSpace(h)
		if h == "" || (strings.ContainsAny(h, "/:@ ") && !isIPv6Literal(h)) {
			errs = append(errs, fmt.Errorf("http_fetch: allow_hosts[%d] %q: want a host name, *.domain, an IP or *", i, c.AllowHosts[i]))
		}
	}
	for i, p := range c.AllowNetworks {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("http_fetch: allow_networks[%d] is not a valid prefix", i))
		}
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("http_fetch: max_bytes %d is negative", c.MaxBytes))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("http_fetch: timeout %s is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

func isIPv6Literal(h string) bool {
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.Is6()
}

// HTTPFetch is the "http_fetch" tool: {"url": "..."} -> a GET of the URL.
//
// Guarantees: only http and https; only allowlisted hosts, re-checked on
// every redirect; the address actually dialled (after DNS, checked in the
// dialer's Control hook, so DNS rebinding cannot bypass it) must not be
// private, loopback, link-local, unspecified, multicast, CGNAT, IPv6 ULA
// or reserved unless AllowNetworks allows it; no proxy from the
// environment; bounded redirects, size and time.
type HTTPFetch struct {
	cfg    HTTPFetchConfig
	client *http.Client
}

// NewHTTPFetch returns the http_fetch tool.
func NewHTTPFetch(cfg HTTPFetchConfig) (*HTTPFetch, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultFetchMaxBytes
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultFetchTimeout
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultFetchMaxRedirects
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "agentbus-http-fetch/1"
	}
	f := &HTTPFetch{cfg: cfg}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: f.control}
	tr := &http.Transport{
		Proxy:                 nil, // never an environment proxy: it would be dialled instead of the target
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
	}
	f.client = &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: f.checkRedirect}
	return f, nil
}

// Spec describes the tool.
func (f *HTTPFetch) Spec() Spec {
	return Spec{
		Name:        "http_fetch",
		Description: "Fetch a web page or API response with HTTP GET. Only allowlisted hosts are reachable; long bodies are truncated.",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"url":{"type":"string","minLength":1,"maxLength":2048,"description":"absolute http or https URL"}},"required":["url"],"additionalProperties":false}`),
	}
}

// Call fetches {"url": "..."} and returns the status line, the content
// type and the body (text only; binary bodies are summarised).
func (f *HTTPFetch) Call(ctx context.Context, args json.RawMessage) (string, error) {
	var in struct {
		URL string `json:"url"`
	}
	if err := decodeArgs(args, &in); err != nil {
		return "", err
	}
	u, err := f.checkURL(in.URL)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	req.Header.Set("Accept", "text/html, text/plain, application/json, */*;q=0.5")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", cleanFetchError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if err != nil {
		return "", cleanFetchError(err)
	}
	truncated := int64(len(body)) > f.cfg.MaxBytes
	if truncated {
		body = body[:f.cfg.MaxBytes]
		if i := lastRuneStart(body); !utf8.FullRune(body[i:]) {
			body = body[:i] // do not cut a character in half
		}
	}
	ct := resp.Header.Get("Content-Type")
	var b strings.Builder
	b.WriteString("HTTP " + resp.Status + "\n")
	if ct != "" {
		b.WriteString("Content-Type: " + ct + "\n")
	}
	b.WriteString("\n")
	if textual(ct, body) {
		b.WriteString(strings.ToValidUTF8(string(body), "\uFFFD"))
	} else {
		b.WriteString(fmt.Sprintf("[binary content not shown: %d bytes read]", len(body)))
	}
	if truncated {
		b.WriteString("\n[truncated: response longer than " + strconv.FormatInt(f.cfg.MaxBytes, 10) + " bytes]")
	}
	return b.String(), nil
}

func lastRuneStart(b []byte) int {
	i := len(b) - 1
	for i > 0 && !utf8.RuneStart(b[i]) {
		i--
	}
	return max(i, 0)
}

func textual(ct string, body []byte) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt == "" {
		return utf8.Valid(body) || len(body) == 0
	}
	return strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "json") || strings.HasSuffix(mt, "xml") ||
		mt == "application/javascript" || mt == "application/x-www-form-urlencoded" || mt == "application/yaml"
}

func cleanFetchError(err error) error {
	var be *BlockedAddressError
	switch {
	case errors.As(err, &be):
		return be
	case errors.Is(err, ErrHostNotAllowed), errors.Is(err, ErrTooManyRedirects), errors.Is(err, ErrBadURL):
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("fetch timed out: %w", context.DeadlineExceeded)
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return fmt.Errorf("fetch timed out: %w", context.DeadlineExceeded)
	}
	return fmt.Errorf("fetch failed: %w", err)
}

// checkURL parses and vets a URL against the scheme and host rules.
func (f *HTTPFetch) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: scheme %q (only http and https)", ErrBadURL, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the URL are not allowed", ErrBadURL)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return nil, fmt.Errorf("%w: no host", ErrBadURL)
	}
	if !f.hostAllowed(host) {
		return nil, fmt.Errorf("%w: %q", ErrHostNotAllowed, host)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := f.checkAddr(a); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (f *HTTPFetch) hostAllowed(host string) bool {
	for _, h := range f.cfg.AllowHosts {
		h = strings.TrimSuffix(strings.ToLower(strings.Trim(strings.TrimSpace(h), "[]")), ".")
		switch {
		case h == "*":
			return true
		case strings.HasPrefix(h, "*."):
			if strings.HasSuffix(host, h[1:]) && len(host) > len(h)-1 {
				return true
			}
		case h == host:
			return true
		}
	}
	return false
}

func (f *HTTPFetch) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > f.cfg.MaxRedirects || f.cfg.MaxRedirects < 0 {
		return fmt.Errorf("%w: stopped after %d", ErrTooManyRedirects, max(f.cfg.MaxRedirects, 0))
	}
	if _, err := f.checkURL(req.URL.String()); err != nil {
		return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
	}
	return nil
}

// control runs after DNS resolution, before connect: the address is the
// one really dialled.
func (f *HTTPFetch) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrAddressBlocked, address)
	}
	return f.checkAddr(ap.Addr())
}

func (f *HTTPFetch) checkAddr(a netip.Addr) error {
	a = a.Unmap().WithZone("")
	for _, p := range f.cfg.AllowNetworks {
		if p.Contains(a) {
			return nil
		}
	}
	if reason := blockedReason(a); reason != "" {
		return &BlockedAddressError{Addr: a, Reason: reason}
	}
	return nil
}

var reservedPrefixes = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("100.64.0.0/10"), "CGNAT"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF-reserved"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("100::/64"), "discard"},
	{netip.MustParsePrefix("2001::/23"), "IETF-reserved"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	nat64L = netip.MustParsePrefix("64:ff9b:1::/48")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// blockedReason says why an address may not be dialled, or "".
func blockedReason(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		if a.Is6() {
			return "unique-local"
		}
		return "private"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	for _, r := range reservedPrefixes {
		if r.p.Contains(a) {
			return r.reason
		}
	}
	// IPv6 forms that embed an IPv4 address
	if a.Is6() {
		b := a.As16()
		var v4 netip.Addr
		switch {
		case nat64.Contains(a):
			v4 = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		case nat64L.Contains(a):
			return "NAT64-local"
		case sixTo4.Contains(a):
			v4 = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		}
		if v4.IsValid() {
			if r := blockedReason(v4); r != "" {
				return r + " (embedded IPv4)"
			}
		}
	}
	return ""
}
