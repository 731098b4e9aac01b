package firewall

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// This file checks URLs (kind url). URL parsers disagree (Go, Python's
// urllib, WHATWG browsers and curl differ on backslashes, user info,
// whitespace, percent-encoded hosts and numeric IPv4 forms), so only the
// plain form every parser reads alike is accepted: scheme://host[:port]
// followed by a path, query or fragment, in ASCII, without user info,
// backslashes, whitespace or control characters, with a host of letters,
// digits, dots and hyphens (or a bracketed IPv6 literal). Then the scheme,
// host and port must be allowed. A host pattern does not look at DNS: a
// name the operator allows may resolve anywhere.

// URL rules.
const (
	RuleURLSyntax   = "url.syntax"
	RuleURLScheme   = "url.scheme"
	RuleURLUserinfo = "url.userinfo"
	RuleURLHost     = "url.host"
	RuleURLPort     = "url.port"
	RuleURLPath     = "url.path"
)

type hostPattern struct {
	exact  string // a host name or an IP literal (canonical)
	suffix string // "*.example.com": ".example.com"
	any    bool   // "*": any host name (not an IP)
}

// parseHostPattern reads a Hosts entry.
func parseHostPattern(h string) (hostPattern, bool) {
	switch {
	case h == "*":
		return hostPattern{any: true}, true
	case strings.HasPrefix(h, "*."):
		if !isHostName(h[2:]) {
			return hostPattern{}, false
		}
		return hostPattern{suffix: h[1:]}, true
	}
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return hostPattern{exact: a.String()}, true
	}
	if !isHostName(h) {
		return hostPattern{}, false
	}
	return hostPattern{exact: h}, true
}

// isHostName reports whether h is a lower-case ASCII DNS name.
func isHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// numericHost reports whether a host name is made of numbers only (as
// inet_aton reads 2130706433, 0x7f.1 or 017700000001), so it is an
// address, not a name.
func numericHost(h string) bool {
	labels := strings.Split(h, ".")
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	if _, err := strconv.ParseUint(last, 0, 64); err == nil {
		return true
	}
	for _, l := range labels {
		if _, err := strconv.ParseUint(l, 0, 64); err != nil {
			return false
		}
	}
	return true
}

type urlPolicy struct {
	schemes map[string]bool
	hosts   []hostPattern
	ports   map[int]bool
	paths   []string
}

var defaultPorts = map[string]int{"https": 443, "http": 80, "wss": 443, "ws": 80, "ftp": 21}

func compileURL(u *URLPolicy) *urlPolicy {
	p := &urlPolicy{schemes: set(u.Schemes...), paths: u.Paths}
	if len(u.Schemes) == 0 {
		p.schemes = set("https")
	}
	for _, h := range u.Hosts {
		if hp, ok := parseHostPattern(h); ok {
			p.hosts = append(p.hosts, hp)
		}
	}
	if len(u.Ports) > 0 {
		p.ports = map[int]bool{}
		for _, port := range u.Ports {
			p.ports[port] = true
		}
	}
	return p
}

func (p *urlPolicy) check(s string) *finding {
	if f := urlCharacters(s); f != nil {
		return f
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 || !urlScheme.MatchString(strings.ToLower(s[:colon])) {
		return &finding{RuleURLSyntax, "not an absolute URL with a scheme"}
	}
	scheme := strings.ToLower(s[:colon])
	if !p.schemes[scheme] {
		return &finding{RuleURLScheme, fmt.Sprintf("the scheme %s is not allowed (allowed: %s)", scheme, strings.Join(sortedKeys(p.schemes), ", "))}
	}
	rest, ok := strings.CutPrefix(s[colon+1:], "//")
	if !ok {
		return &finding{RuleURLSyntax, "the URL has no //host"}
	}
	authEnd := strings.IndexAny(rest, "/?#")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	host, port, f := urlHostPort(rest[:authEnd], scheme)
	if f != nil {
		return f
	}
	// the host as Go's parser reads it, too
	if u, err := url.Parse(s); err != nil || strings.ToLower(u.Hostname()) != strings.Trim(host, "[]") {
		return &finding{RuleURLSyntax, "the URL does not parse to the same host"}
	}
	if f := p.checkHost(host); f != nil {
		return f
	}
	if p.ports != nil && !p.ports[port] || p.ports == nil && port != defaultPorts[scheme] {
		return &finding{RuleURLPort, fmt.Sprintf("the port %d is not allowed", port)}
	}
	return p.checkPath(rest[authEnd:])
}

// urlCharacters refuses what parsers read differently: whitespace,
// control characters, non-ASCII, backslashes.
func urlCharacters(s string) *finding {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= 0x20 || c == 0x7f:
			return &finding{RuleURLSyntax, "the URL holds whitespace or a control character"}
		case c >= 0x80:
			return &finding{RuleURLSyntax, "the URL holds non-ASCII characters (international names must be written in punycode)"}
		case c == '\\':
			return &finding{RuleURLSyntax, "the URL holds a backslash, which browsers read as '/' and Go does not"}
		}
	}
	return nil
}

// urlHostPort splits an authority into its lower-case host and its port
// (the scheme's default when none is written).
func urlHostPort(authority, scheme string) (string, int, *finding) {
	switch {
	case strings.Contains(authority, "@"):
		return "", 0, &finding{RuleURLUserinfo, "the URL carries user info (user@host), which parsers split differently"}
	case strings.Contains(authority, "%"):
		return "", 0, &finding{RuleURLSyntax, "the host holds a percent escape"}
	}
	host, portText, hasPort := authority, "", false
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", 0, &finding{RuleURLSyntax, "unterminated IPv6 literal"}
		}
		host, portText, hasPort = authority[:end+1], strings.TrimPrefix(authority[end+1:], ":"), authority[end+1:] != ""
		if hasPort && !strings.HasPrefix(authority[end+1:], ":") {
			return "", 0, &finding{RuleURLSyntax, "bad host"}
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		host, portText, hasPort = host[:i], host[i+1:], true
	}
	port := defaultPorts[scheme]
	if hasPort {
		n, err := strconv.Atoi(portText)
		if err != nil || n < 1 || n > 65535 || portText[0] == '0' || strings.IndexFunc(portText, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return "", 0, &finding{RuleURLPort, fmt.Sprintf("the port %q is not a plain port number", portText)}
		}
		port = n
	}
	return strings.ToLower(host), port, nil
}

// checkPath checks the path after the authority against the allowed
// prefixes.
func (p *urlPolicy) checkPath(tail string) *finding {
	if len(p.paths) == 0 {
		return nil
	}
	pathPart := tail
	if i := strings.IndexAny(pathPart, "?#"); i >= 0 {
		pathPart = pathPart[:i]
	}
	low := strings.ToLower(pathPart)
	if strings.Contains(low, "%2e") || strings.Contains(low, "%2f") || strings.Contains(low, "%5c") {
		return &finding{RuleURLPath, "the path holds an encoded dot or slash"}
	}
	for _, seg := range strings.Split(pathPart, "/") {
		if seg == ".." || seg == "." {
			return &finding{RuleURLPath, "the path holds a dot segment"}
		}
	}
	for _, pre := range p.paths {
		if strings.HasPrefix(pathPart, pre) {
			return nil
		}
	}
	return &finding{RuleURLPath, fmt.Sprintf("the path %s is not under an allowed prefix", pathPart)}
}

func (p *urlPolicy) checkHost(host string) *finding {
	if strings.HasPrefix(host, "[") {
		a, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil {
			return &finding{RuleURLSyntax, "bad IPv6 literal"}
		}
		for _, hp := range p.hosts {
			if hp.exact == a.String() {
				return nil
			}
		}
		return &finding{RuleURLHost, fmt.Sprintf("the address %s is not allowed", host)}
	}
	if !isHostName(host) {
		return &finding{RuleURLSyntax, fmt.Sprintf("%q is not a plain host name", host)}
	}
	if a, err := netip.ParseAddr(host); err == nil || numericHost(host) {
		for _, hp := range p.hosts {
			if err == nil && hp.exact == a.String() || hp.exact == host {
				return nil
			}
		}
		return &finding{RuleURLHost, fmt.Sprintf("the address %s is not allowed", host)}
	}
	for _, hp := range p.hosts {
		switch {
		case hp.any, hp.exact == host, hp.suffix != "" && strings.HasSuffix(host, hp.suffix):
			return nil
		}
	}
	return &finding{RuleURLHost, fmt.Sprintf("the host %s is not allowed", host)}
}
