package firewall

import (
	"fmt"
	"strings"
)

// Runners run another command given in their arguments (env, timeout,
// nice, nohup, stdbuf, setsid, ionice, time, xargs, watch). Their own
// options are checked as usual and the command they run is checked like
// any command: its program must be allowed too. env -S, which splits a
// string into a command line by its own rules, is refused; variables set
// through env must be allowed by the policy's env. xargs runs its command
// with arguments read from its input, which the firewall cannot see, so
// the programs xargs may run must be listed in its subcommands; watch runs
// its arguments as a shell command line, which is parsed and checked.

// runner describes where a runner's command starts: after its options
// (parsed in POSIX order, the first operand starts the command) and after
// skip leading operands (timeout's duration).
type runner struct {
	m         *model
	skip      int
	mayBeNone bool // without a command it does something harmless
}

func init() {
	for _, r := range []struct {
		names string
		r     runner
	}{
		{"timeout", runner{m: &model{values: flags("-s --signal -k --kill-after"), text: flags("-s --signal -k --kill-after")}, skip: 1}},
		{"nice", runner{m: &model{values: flags("-n --adjustment"), text: flags("-n --adjustment")}, mayBeNone: true}},
		{"nohup", runner{m: &model{}}},
		{"stdbuf", runner{m: &model{values: flags("-i --input -o --output -e --error"), text: flags("-i --input -o --output -e --error")}}},
		{"setsid", runner{m: &model{}}},
		{"ionice", runner{m: &model{values: flags("-c --class -n --classdata -p --pid -P --pgid -u --uid"), text: flags("-c --class -n --classdata -p --pid -P --pgid -u --uid")}, mayBeNone: true}},
		{"time", runner{m: &model{values: flags("-f --format -o --output"), text: flags("-f --format")}}},
	} {
		rr := r.r
		rr.m.invoke = func(c *shellCheck, pp *programPolicy, args []word) *finding { return c.runCommand(pp, rr, args) }
		register(rr.m, strings.Fields(r.names)...)
	}
	register(&model{
		values:     flags("-u --unset -C --chdir -S --split-string"),
		text:       flags("-u --unset"),
		riskyFlags: riskyAll("splits a string into a command line by rules the firewall does not implement", "-S --split-string -P"),
		invoke:     invokeEnv,
	}, "env")
	register(&model{
		values: flags("-a --arg-file -d --delimiter -E -I -L --max-lines -n --max-args -P --max-procs -s --max-chars --process-slot-var"),
		text:   flags("-d --delimiter -E -I -L --max-lines -n --max-args -P --max-procs -s --max-chars --process-slot-var"),
		invoke: invokeXargs,
	}, "xargs")
	register(&model{
		values: flags("-n --interval -q --equexit"),
		text:   flags("-n --interval -q --equexit"),
		invoke: invokeWatch,
	}, "watch")
}

// runCommand checks a runner's options and the command it runs.
func (c *shellCheck) runCommand(pp *programPolicy, r runner, args []word) *finding {
	inv := &invocation{pp: pp, m: r.m, args: args, subAt: -1}
	inv.opts, inv.operands = parseArgs(r.m, args, true)
	if f := c.checkOpts(inv); f != nil {
		return f
	}
	if len(inv.operands) <= r.skip {
		if r.mayBeNone {
			return nil
		}
		return &finding{RuleShellSyntax, pp.name + " needs a command to run"}
	}
	start := inv.operands[0] + r.skip
	return c.inner(args[start:])
}

func invokeEnv(c *shellCheck, pp *programPolicy, args []word) *finding {
	m := pp.model
	inv := &invocation{pp: pp, m: m, args: args, subAt: -1}
	inv.opts, inv.operands = parseArgs(m, args, true)
	if f := c.checkOpts(inv); f != nil {
		return f
	}
	if len(inv.operands) == 0 {
		return &finding{RuleShellProgram, "env without a command prints the environment, which may hold secrets"}
	}
	i := inv.operands[0]
	for ; i < len(args); i++ {
		a := args[i].text
		eq := strings.IndexByte(a, '=')
		if eq <= 0 || !envName.MatchString(a[:eq]) {
			break
		}
		if !c.p.env[a[:eq]] {
			return &finding{RuleShellEnv, fmt.Sprintf("env sets the variable %s, which the policy does not allow (it can change what programs run or load)", a[:eq])}
		}
	}
	if i >= len(args) {
		return &finding{RuleShellProgram, "env without a command prints the environment, which may hold secrets"}
	}
	return c.inner(args[i:])
}

func invokeXargs(c *shellCheck, pp *programPolicy, args []word) *finding {
	m := pp.model
	inv := &invocation{pp: pp, m: m, args: args, subAt: -1}
	inv.opts, inv.operands = parseArgs(m, args, true)
	if f := c.checkOpts(inv); f != nil {
		return f
	}
	cmd := []word{literalWord("echo")}
	if len(inv.operands) > 0 {
		cmd = args[inv.operands[0]:]
	}
	if !pp.subs[cmd[0].text] {
		return &finding{RuleShellSubcommand, fmt.Sprintf("xargs runs %s with arguments read from its input, which the firewall cannot see; list %s in the subcommands of xargs to allow it", cmd[0].text, cmd[0].text)}
	}
	return c.inner(cmd)
}

func invokeWatch(c *shellCheck, pp *programPolicy, args []word) *finding {
	m := pp.model
	inv := &invocation{pp: pp, m: m, args: args, subAt: -1}
	inv.opts, inv.operands = parseArgs(m, args, true)
	if f := c.checkOpts(inv); f != nil {
		return f
	}
	if len(inv.operands) == 0 {
		return &finding{RuleShellSyntax, "watch needs a command"}
	}
	rest := args[inv.operands[0]:]
	if inv.has("-x") || inv.has("--exec") {
		return c.inner(rest)
	}
	parts := make([]string, len(rest))
	for i, w := range rest {
		parts[i] = w.text
	}
	// watch joins its arguments and runs them with sh -c
	return c.nested(strings.Join(parts, " "))
}
