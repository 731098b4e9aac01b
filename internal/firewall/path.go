package firewall

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// This file checks file system paths (kind path). What tools read
// differently is refused outright: "..", which a tool resolves after
// following symbolic links while a lexical check resolves it before;
// backslashes (separators on Windows); percent escapes (decoded by tools
// that take URLs); a leading "~" (expanded by some tools); a URL scheme or
// drive letter; control characters (NUL truncates a path in C). What is
// left is cleaned and must be under a root and not under a denied
// directory; with Resolve, symbolic links are resolved on this machine and
// the result is checked again.

// Path rules.
const (
	RulePathSyntax    = "path.syntax"
	RulePathTraversal = "path.traversal"
	RulePathRoot      = "path.root"
	RulePathDenied    = "path.denied"
	RulePathRelative  = "path.relative"
)

type pathPolicy struct {
	roots, deny []string
	base        string
	resolve     bool
	// resolved roots and deny, when resolve is set
	rroots, rdeny []string
}

func compilePath(p *PathPolicy) (*pathPolicy, error) {
	pp := &pathPolicy{roots: p.Roots, deny: p.Deny, base: p.Base, resolve: p.Resolve}
	if p.Resolve {
		pp.rroots = resolveAll(p.Roots)
		pp.rdeny = resolveAll(p.Deny)
	}
	return pp, nil
}

func resolveAll(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		out = append(out, resolveExisting(p))
	}
	return out
}

// resolveExisting resolves the symbolic links of the longest existing
// prefix of the clean absolute path p and appends the rest.
func resolveExisting(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return path.Join(filepath.ToSlash(r), rest)
		}
		parent := path.Dir(cur)
		if parent == cur {
			return p
		}
		rest = path.Join(path.Base(cur), rest)
		cur = parent
	}
}

var (
	percentEscape = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)
	schemeOrDrive = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

func (p *pathPolicy) check(s string) *finding {
	switch {
	case s == "":
		return &finding{RulePathSyntax, "the path is empty"}
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return &finding{RulePathSyntax, "the path holds a control character (NUL truncates a path in C)"}
	case strings.Contains(s, `\`):
		return &finding{RulePathSyntax, "the path holds a backslash, a separator on Windows"}
	case percentEscape.MatchString(s):
		return &finding{RulePathSyntax, "the path holds a percent escape, which tools that take URLs decode"}
	case strings.ContainsAny(s, "$`;|&<>"):
		return &finding{RulePathSyntax, "the path holds a character that only means something to a shell ($ ` ; | & < >), in case the tool passes it to one"}
	case !isASCII(s) && compatChanged(s):
		return &finding{RulePathSyntax, "the path holds characters that normalise to '.', '/' or '\\' (NFKC), which some tools apply"}
	case strings.HasPrefix(s, "~"):
		return &finding{RulePathSyntax, "the path starts with ~, which some tools expand to a home directory"}
	case schemeOrDrive.MatchString(s):
		return &finding{RulePathSyntax, "the path starts with a URL scheme or a drive letter"}
	}
	for _, comp := range strings.Split(s, "/") {
		if comp == ".." {
			return &finding{RulePathTraversal, "the path holds \"..\", which a tool resolves after following links"}
		}
	}
	abs := s
	if !path.IsAbs(s) {
		if p.base == "" {
			return &finding{RulePathRelative, "a relative path, and the policy has no base directory"}
		}
		abs = path.Join(p.base, s)
	}
	abs = path.Clean(abs)
	if f := p.inside(abs, p.roots, p.deny); f != nil {
		return f
	}
	if p.resolve {
		if f := p.inside(resolveExisting(abs), p.rroots, p.rdeny); f != nil {
			f.reason += " (after resolving symbolic links)"
			return f
		}
	}
	return nil
}

func (p *pathPolicy) inside(abs string, roots, deny []string) *finding {
	for _, d := range deny {
		if within(abs, d) {
			return &finding{RulePathDenied, fmt.Sprintf("%s is under %s, which the policy denies", abs, d)}
		}
	}
	for _, r := range roots {
		if within(abs, r) {
			return nil
		}
	}
	return &finding{RulePathRoot, fmt.Sprintf("%s is outside the allowed roots %s", abs, strings.Join(roots, ", "))}
}

// compatChanged reports whether NFKC normalisation changes how many
// dots, slashes or backslashes s holds ("．．／" becomes "../").
func compatChanged(s string) bool {
	n := norm.NFKC.String(s)
	for _, c := range []string{".", "/", `\`} {
		if strings.Count(n, c) != strings.Count(s, c) {
			return true
		}
	}
	return false
}
