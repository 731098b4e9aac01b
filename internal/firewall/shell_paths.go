package firewall

import (
	"path"
	"strings"
)

// pathProblem checks a word that the program may take as a path (an
// operand, a flag's value, a redirection target) and says what is wrong
// with it, or "". A word is taken as its whole text, the part after an
// "=" ("of=/dev/sda", "--output=x") and the part after a leading "@"
// (curl -d @file). For each:
//
//   - a ".." component is refused, also one a glob could match (".?"),
//     so relative paths stay under the working directory and absolute
//     ones under their prefix;
//   - a component sequence in DenyPaths is refused (".git", also ".gi?");
//   - an absolute path must be under one of the roots (after cleaning; a
//     glob's literal directory must be) and not under an absolute
//     DenyPaths entry; /dev/null, /dev/stdin, /dev/stdout and /dev/stderr
//     are always allowed.
func (c *shellCheck) pathProblem(w word) string {
	for _, cand := range pathCandidates(w) {
		if why := c.onePath(cand); why != "" {
			return why
		}
	}
	return ""
}

func pathCandidates(w word) []word {
	out := []word{w}
	if i := strings.IndexByte(w.text, '='); i >= 0 {
		out = append(out, sub(w, i+1))
	}
	for _, x := range out {
		if strings.HasPrefix(x.text, "@") {
			out = append(out, sub(x, 1))
			break
		}
	}
	return out
}

// sub returns the word from byte i of its text on.
func sub(w word, i int) word {
	s := word{text: w.text[i:], pattern: escapeGlob(w.text[i:]), globAt: -1}
	if w.globAt >= i {
		// re-derive the pattern of the tail: count escaped characters
		// in the pattern up to text index i
		s.pattern = patternTail(w.pattern, i)
		s.globAt = w.globAt - i
	}
	return s
}

// patternTail skips the first n text characters of pattern (where "\x"
// stands for one character).
func patternTail(pattern string, n int) string {
	j := 0
	for k := 0; k < n && j < len(pattern); k++ {
		if pattern[j] == '\\' {
			j++
		}
		j++
	}
	if j > len(pattern) {
		return ""
	}
	return pattern[j:]
}

func (c *shellCheck) onePath(w word) string {
	if w.text == "" {
		return ""
	}
	comps := strings.Split(w.pattern, "/")
	for _, comp := range comps {
		if comp == ".." {
			return "\"..\" leaves the directory it follows"
		}
		if w.globAt >= 0 && globCanMatch(comp, "..") {
			return "the glob " + comp + " can match \"..\""
		}
	}
	for _, deny := range c.p.denyComps {
		if matchComponents(comps, deny) {
			return "the path names " + strings.Join(deny, "/") + ", which the policy denies"
		}
	}
	if !strings.HasPrefix(w.text, "/") {
		return ""
	}
	if devFiles[w.text] {
		return ""
	}
	p := w.text
	if w.globAt >= 0 {
		p = p[:w.globAt]
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			p = p[:i+1]
		}
	}
	p = path.Clean(p)
	for _, d := range c.p.denyAbs {
		if within(p, d) {
			return "the path is under " + d + ", which the policy denies"
		}
	}
	for _, r := range c.p.roots {
		if within(p, r) {
			return ""
		}
	}
	if len(c.p.roots) == 0 {
		return "absolute paths are not allowed (the policy has no roots)"
	}
	return "the path is outside the allowed roots " + strings.Join(c.p.roots, ", ")
}

// matchComponents reports whether the component patterns comps contain the
// sequence deny (a pattern component matches when it could name deny's).
func matchComponents(comps, deny []string) bool {
	for i := 0; i+len(deny) <= len(comps); i++ {
		ok := true
		for j, d := range deny {
			c := comps[i+j]
			if c == d {
				continue
			}
			if !globCanMatch(c, d) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// within reports whether the clean absolute path p is root or under it.
func within(p, root string) bool {
	return root == "/" || p == root || strings.HasPrefix(p, root+"/")
}

// globCanMatch reports whether the glob component pattern can match the
// file name name. As in the shell, * and ? do not match a leading dot;
// an explicit dot or a bracket expression may.
func globCanMatch(pattern, name string) bool {
	if !strings.ContainsAny(pattern, "*?[") {
		return false
	}
	if strings.HasPrefix(name, ".") && !(strings.HasPrefix(pattern, ".") || strings.HasPrefix(pattern, "[") || strings.HasPrefix(pattern, `\.`)) {
		return false
	}
	ok, _ := path.Match(pattern, name)
	return ok
}
