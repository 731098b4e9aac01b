package firewall

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPathResolve(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Skip("no symlinks:", err)
	}
	for _, resolve := range []bool{false, true} {
		p, _ := compilePath(&PathPolicy{Roots: []string{root}, Resolve: resolve})
		got := p.check(filepath.Join(root, "link", "secret"))
		if resolve != (got != nil && got.rule == RulePathRoot) {
			t.Errorf("resolve=%v: got %v", resolve, got)
		}
		if f := p.check(filepath.Join(root, "new", "file")); f != nil {
			t.Errorf("resolve=%v: a path that does not exist yet: %v", resolve, f)
		}
	}
}

func TestPathRelative(t *testing.T) {
	p, _ := compilePath(&PathPolicy{Roots: []string{"/srv"}})
	if f := p.check("a.txt"); f == nil || f.rule != RulePathRelative {
		t.Fatalf("got %v", f)
	}
	p, _ = compilePath(&PathPolicy{Roots: []string{"/srv"}, Base: "/srv/x"})
	if f := p.check("a.txt"); f != nil {
		t.Fatalf("got %v", f)
	}
	p, _ = compilePath(&PathPolicy{Roots: []string{"/srv"}, Base: "/tmp"})
	if f := p.check("a.txt"); f == nil || f.rule != RulePathRoot {
		t.Fatalf("got %v", f)
	}
}

func TestURLPolicy(t *testing.T) {
	p := compileURL(&URLPolicy{Schemes: []string{"https", "http"}, Hosts: []string{"example.com", "*.example.org", "10.0.0.1", "[::1]"}, Ports: []int{443, 80, 8443}, Paths: []string{"/api/"}})
	for u, rule := range map[string]string{
		"https://example.com/api/x":          "",
		"http://example.com:8443/api/":       "",
		"https://a.example.org/api/v1?x=1#y": "",
		"https://example.org/api/":           RuleURLHost,
		"https://10.0.0.1/api/":              "",
		"https://[::1]/api/":                 "",
		"https://[0:0::1]/api/":              "", // the same address
		"https://10.0.0.2/api/":              RuleURLHost,
		"https://167772161/api/":             RuleURLHost, // 10.0.0.1 as a number
		"https://example.com:22/api/":        RuleURLPort,
		"https://example.com/other":          RuleURLPath,
		"https://example.com/api/../admin":   RuleURLPath,
		"https://example.com/api/%2e%2e/x":   RuleURLPath,
		"ftp://example.com/api/":             RuleURLScheme,
		"https://user@example.com/api/":      RuleURLUserinfo,
		"https://exa_mple.com/api/":          RuleURLSyntax,
	} {
		got := p.check(u)
		switch {
		case rule == "" && got != nil:
			t.Errorf("%s: refused: %v", u, got)
		case rule != "" && (got == nil || got.rule != rule):
			t.Errorf("%s: got %v, want %s", u, got, rule)
		}
	}
}
