package firewall

import (
	"strings"
)

// This file parses a command's options the way getopt does and matches
// them against the policy's and the program model's flags.
//
// GNU getopt_long accepts any unambiguous prefix of a long option
// ("--recursiv", "--rec" for "--recursive") and a value after "=" or in
// the next word; getopt accepts short options bundled ("-vRf") with a
// value attached to the last one ("-n5", "-ofile"). Programs with
// single-dash long options (find, go) neither bundle nor abbreviate, and
// go accepts "--name" for "-name". A flag spec matches an option in all
// of its spellings, so a denied "--recursive" also refuses "--rec=yes".

// opt is one option in a command's arguments.
type opt struct {
	idx      int    // index of the option's word in the arguments
	name     string // the word up to "=": "--rec", "-vRf", "-exec"
	long     bool   // "--name", or any option of a single-dash-long program
	letters  string // the bundled letters of a short option, up to a value-taking one
	value    string // its value, attached or in the next word
	hasValue bool
	valueIdx int // index of the value's word when separate, else -1
}

// parseArgs splits arguments into options and operands. Options may come
// anywhere (GNU permutes) until "--"; with posixOrder the first operand
// ends them (runners: the rest is another command's).
func parseArgs(m *model, args []word, posixOrder bool) (opts []opt, operands []int) {
	end := false
	for i := 0; i < len(args); i++ {
		a := args[i].text
		if end || len(a) < 2 || a[0] != '-' {
			operands = append(operands, i)
			if posixOrder {
				end = true
			}
			continue
		}
		if a == "--" {
			end = true
			continue
		}
		o := opt{idx: i, valueIdx: -1}
		if m.singleDashLong() || strings.HasPrefix(a, "--") {
			o.long = true
			o.name = a
			if eq := strings.IndexByte(a, '='); eq > 0 {
				o.name, o.value, o.hasValue = a[:eq], a[eq+1:], true
			} else if m.takesValue(o.name, true) && i+1 < len(args) {
				o.value, o.hasValue, o.valueIdx = args[i+1].text, true, i+1
				i++
			}
			opts = append(opts, o)
			continue
		}
		o.name = a
		letters := a[1:]
		if eq := strings.IndexByte(letters, '='); eq >= 0 {
			letters = letters[:eq]
		}
		for j := 0; j < len(letters); j++ {
			if !m.takesValue("-"+letters[j:j+1], false) {
				continue
			}
			if rest := a[1+j+1:]; rest != "" {
				o.value, o.hasValue = rest, true
			} else if i+1 < len(args) {
				o.value, o.hasValue, o.valueIdx = args[i+1].text, true, i+1
				i++
			}
			letters = letters[:j+1]
			break
		}
		o.letters = letters
		opts = append(opts, o)
	}
	return opts, operands
}

// matches reports whether the option is spec ("--name", "-x" or "-name")
// in any spelling the program (model m) accepts.
func (o opt) matches(spec string, m *model) bool {
	if m.singleDashLong() {
		return spec != "" && spec[0] == '-' && strings.TrimLeft(o.name, "-") == strings.TrimLeft(spec, "-")
	}
	switch {
	case strings.HasPrefix(spec, "--"):
		if !o.long || len(o.name) <= 2 {
			return false
		}
		if o.name == spec {
			return true
		}
		// an abbreviation, unless the program does not abbreviate or the
		// option is one of its own exactly (getopt prefers exact matches)
		return !(m != nil && m.noAbbrev) && !m.knowsLong(o.name) && strings.HasPrefix(spec, o.name)
	case len(spec) == 2:
		return !o.long && strings.IndexByte(o.letters, spec[1]) >= 0
	default:
		return o.name == spec
	}
}

// flagProblem checks the options of one program invocation against the
// program's deny list, the model's risky flags (unless the program's
// Flags list them) and the program's allowlist, and says which option is
// refused, or "".
func flagProblem(pp *programPolicy, m *model, opts []opt) string {
	sdl := m.singleDashLong()
	for _, o := range opts {
		if d := deniedBy(pp.denyFlags, o, m); d != "" {
			return o.name + " is a spelling of " + d + ", which the policy denies for " + pp.name
		}
		for _, r := range m.risky() {
			if o.matchesAny(r.spec, m) && !contains(pp.flags, r.spec) {
				return o.name + " " + r.why + "; list " + r.spec + " in the flags of " + pp.name + " to allow it"
			}
		}
		if len(pp.flags) > 0 && !allowedFlag(pp.flags, o, sdl) && !allowedByAlias(pp.flags, o, m) {
			return o.name + " is not among the flags allowed for " + pp.name
		}
	}
	return ""
}

// allowedFlag reports whether an option is allowed by an allowlist: a
// long option must be one listed or abbreviate exactly one listed; every
// letter of a bundle must be listed (digits are values: "-n5", "-20").
func allowedFlag(allowed []string, o opt, sdl bool) bool {
	if sdl || !o.long && len(o.letters) == 0 {
		return contains(allowed, o.name) || sdl && contains(allowed, "-"+strings.TrimLeft(o.name, "-"))
	}
	if o.long {
		if contains(allowed, o.name) {
			return true
		}
		n := 0
		for _, a := range allowed {
			if strings.HasPrefix(a, "--") && len(o.name) > 2 && strings.HasPrefix(a, o.name) {
				n++
			}
		}
		return n == 1
	}
	if contains(allowed, o.name) {
		return true
	}
	for i := 0; i < len(o.letters); i++ {
		ch := o.letters[i]
		if ch >= '0' && ch <= '9' {
			continue
		}
		if !contains(allowed, "-"+string(ch)) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// matchesAny reports whether the option is spec or one of its aliases in
// the program's model ("-f" and "--force" name the same flag).
func (o opt) matchesAny(spec string, m *model) bool {
	if o.matches(spec, m) {
		return true
	}
	for _, a := range m.aliasesOf(spec) {
		if o.matches(a, m) {
			return true
		}
	}
	return false
}

// allowedByAlias reports whether an option is allowed because its alias
// is listed: "--force" when "-f" is, every letter of a bundle included.
func allowedByAlias(allowed []string, o opt, m *model) bool {
	if m == nil || len(m.aliases) == 0 {
		return false
	}
	if o.long {
		for _, a := range allowed {
			for _, alias := range m.aliasesOf(a) {
				if o.matches(alias, m) {
					return true
				}
			}
		}
		return false
	}
	for i := 0; i < len(o.letters); i++ {
		ch := o.letters[i]
		if ch >= '0' && ch <= '9' || contains(allowed, "-"+string(ch)) {
			continue
		}
		long, ok := m.aliases["-"+string(ch)]
		if !ok || !contains(allowed, long) {
			return false
		}
	}
	return true
}

// deniedBy returns the denied flag the option spells, or "": a direct
// spelling first, then one through an alias.
func deniedBy(deny []string, o opt, m *model) string {
	for _, d := range deny {
		if o.matches(d, m) {
			return d
		}
	}
	for _, d := range deny {
		if o.matchesAny(d, m) {
			return d
		}
	}
	return ""
}
