package firewall

import (
	"fmt"
	"path"
	"strings"
)

// simple checks one simple command: the program must be allowed, and its
// arguments are parsed the way the program parses them (its model, or GNU
// conventions for programs without one) and checked: denied, unknown and
// risky flags, subcommands, and every argument that may be a path.
func (c *shellCheck) simple(argv []word) *finding {
	if f := c.spend(); f != nil {
		return f
	}
	pp, f := c.program(argv[0].text)
	if f != nil {
		return f
	}
	if m := pp.model; m != nil && m.invoke != nil {
		return m.invoke(c, pp, argv[1:])
	}
	return c.generic(pp, pp.model, argv[1:])
}

// inner checks a command run by another program (env, timeout, find
// -exec, ...).
func (c *shellCheck) inner(argv []word) *finding {
	if len(argv) == 0 {
		return nil
	}
	if c.depth++; c.depth > maxShellDepth {
		return &finding{RuleTooComplex, "commands nested deeper than the analysis limit"}
	}
	defer func() { c.depth-- }()
	return c.simple(argv)
}

// program looks up the policy of the program a command names.
func (c *shellCheck) program(name string) (*programPolicy, *finding) {
	if pp := c.p.programs[name]; pp != nil {
		return pp, nil
	}
	if strings.Contains(name, "/") {
		clean := path.Clean(name)
		if path.IsAbs(name) && trustedBinDirs[path.Dir(clean)] {
			if pp := c.p.programs[path.Base(clean)]; pp != nil {
				return pp, nil
			}
		}
		return nil, &finding{RuleShellProgram, fmt.Sprintf("the program %q is not allowed (allowed programs are named by their name, or by their path in /bin, /usr/bin, /usr/local/bin, /sbin or /usr/sbin)", name)}
	}
	return nil, &finding{RuleShellProgram, fmt.Sprintf("the program %q is not allowed", name)}
}

// invocation is a command's arguments parsed for checking.
type invocation struct {
	pp       *programPolicy
	m        *model
	args     []word
	opts     []opt
	operands []int  // indexes into args
	sub      string // the subcommand, if the program has them
	subAt    int    // index in args of the subcommand, or -1
}

// operandText returns the text of the i-th operand.
func (inv *invocation) operand(i int) word { return inv.args[inv.operands[i]] }

// has reports whether an option matching spec was given.
func (inv *invocation) has(spec string) bool {
	for _, o := range inv.opts {
		if o.matches(spec, inv.m) {
			return true
		}
	}
	return false
}

// values returns the values of the options matching any of specs.
func (inv *invocation) values(specs ...string) []word {
	var out []word
	for _, o := range inv.opts {
		for _, s := range specs {
			if o.hasValue && o.matches(s, inv.m) {
				out = append(out, inv.valueWord(o))
				break
			}
		}
	}
	return out
}

// valueWord returns an option's value as a word.
func (inv *invocation) valueWord(o opt) word {
	if o.valueIdx >= 0 {
		return inv.args[o.valueIdx]
	}
	w := inv.args[o.idx]
	return sub(w, len(w.text)-len(o.value))
}

// generic checks a program invocation with model m (nil: GNU conventions,
// no knowledge of the program).
func (c *shellCheck) generic(pp *programPolicy, m *model, args []word) *finding {
	if m.hasSubcommands() || len(pp.subs) > 0 {
		return c.withSubcommand(pp, m, args)
	}
	inv := &invocation{pp: pp, m: m, args: args, subAt: -1}
	inv.opts, inv.operands = parseArgs(m, args, m.posixOrder())
	return c.checkInvocation(inv, 0)
}

// withSubcommand checks "prog [global options] sub [options and operands]":
// the options before the subcommand are the program's, the rest the
// subcommand's (m.subModels).
func (c *shellCheck) withSubcommand(pp *programPolicy, m *model, args []word) *finding {
	global := &invocation{pp: pp, m: m, args: args, subAt: -1}
	global.opts, global.operands = parseArgs(m, args, true)
	if len(global.operands) == 0 {
		if len(pp.subs) > 0 || m.requiresSub() {
			return &finding{RuleShellSubcommand, pp.name + " without a subcommand is not allowed (allowed: " + strings.Join(sortedKeys(pp.subs), ", ") + ")"}
		}
		return c.checkInvocation(global, 0)
	}
	at := global.operands[0]
	global.operands = nil
	subName := args[at].text
	if f := c.checkOpts(global); f != nil {
		return f
	}
	if f := c.checkSub(pp, m, subName); f != nil {
		return f
	}
	sm := m.subModel(subName)
	rest := args[at+1:]
	inv := &invocation{pp: pp, m: sm, args: rest, sub: subName, subAt: -1}
	inv.opts, inv.operands = parseArgs(sm, rest, sm.posixOrder())
	if m.subsAll() {
		for _, i := range inv.operands {
			if strings.Contains(rest[i].text, "=") {
				continue // an assignment, checked by the model
			}
			if f := c.checkSub(pp, m, rest[i].text); f != nil {
				return f
			}
		}
	}
	return c.checkInvocation(inv, 0)
}

// checkSub checks a subcommand against the policy and the model.
func (c *shellCheck) checkSub(pp *programPolicy, m *model, sub string) *finding {
	switch {
	case pp.denySubs[sub]:
		return &finding{RuleShellSubcommand, fmt.Sprintf("%s %s is denied", pp.name, sub)}
	case len(pp.subs) > 0 && !pp.subs[sub]:
		return &finding{RuleShellSubcommand, fmt.Sprintf("%s %s is not an allowed subcommand (allowed: %s)", pp.name, sub, strings.Join(sortedKeys(pp.subs), ", "))}
	case pp.subs[sub]:
		return nil
	}
	if why := m.riskySub(sub); why != "" {
		return &finding{RuleShellSubcommand, fmt.Sprintf("%s %s %s; list it in the subcommands of %s to allow it", pp.name, sub, why, pp.name)}
	}
	if !m.knowsSub(sub) {
		return &finding{RuleShellSubcommand, fmt.Sprintf("%s %s is not a subcommand %s has (an alias or a plugin runs whatever it is configured to)", pp.name, sub, pp.name)}
	}
	return nil
}

// checkOpts checks the options of an invocation.
func (c *shellCheck) checkOpts(inv *invocation) *finding {
	if why := flagProblem(inv.pp, inv.m, inv.opts); why != "" {
		return &finding{RuleShellFlag, why}
	}
	for _, o := range inv.opts {
		if !o.hasValue || inv.m.isText(o) {
			continue
		}
		if why := c.pathProblem(inv.valueWord(o)); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("%s %s %s: %s", inv.pp.name, o.name, o.value, why)}
		}
	}
	return nil
}

// checkInvocation checks options, then operands from the first-th on:
// text operands are skipped, the others checked as paths, then the model's
// own rules run.
func (c *shellCheck) checkInvocation(inv *invocation, first int) *finding {
	if f := c.checkOpts(inv); f != nil {
		return f
	}
	text := inv.m.textOperands()
	for _, u := range inv.m.textUnlessFlags() {
		if inv.has(u) {
			text = 0
		}
	}
	for n := first; n < len(inv.operands); n++ {
		if text < 0 || n-first < text {
			continue
		}
		w := inv.operand(n)
		if why := c.pathProblem(w); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("%s argument %s: %s", inv.pp.name, w.text, why)}
		}
	}
	if inv.m != nil && inv.m.check != nil {
		return inv.m.check(c, inv)
	}
	return nil
}
