package firewall

import (
	"fmt"
	"strings"
)

// Interpreters. A shell's -c command line is parsed and checked by the
// same policy; Python's -c code is checked by the shell policy's python
// policy (refused without one) and -m runs only the modules listed in the
// program's subcommands. Inline code of other interpreters (perl -e,
// node -e, ruby -e, ...) is refused: the firewall has no policy for it. A
// program read from standard input is refused (the firewall does not see
// it); a script file is allowed when the interpreter is, and checked as a
// path: the firewall cannot see what a file contains.

func init() {
	register(&model{invoke: invokeShell}, "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "rbash", "fish", "csh", "tcsh")
	register(&model{invoke: invokePython}, "python", "python2", "python3", "pypy", "pypy3",
		"python3.8", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13", "python3.14")
	for name, inline := range map[string]string{
		"perl":      "-e -E",
		"ruby":      "-e",
		"irb":       "",
		"node":      "-e --eval -p --print -r --require --import --loader --experimental-loader -i --interactive",
		"nodejs":    "-e --eval -p --print -r --require --import --loader --experimental-loader -i --interactive",
		"php":       "-r -B -R -E -F -a --interactive",
		"lua":       "-e -l -i",
		"luajit":    "-e -l -i",
		"Rscript":   "-e --expr",
		"R":         "-e",
		"tclsh":     "",
		"wish":      "",
		"osascript": "-e",
		"jshell":    "",
		"bun":       "-e --eval -p --print",
		"deno":      "",
	} {
		specs := flags(inline)
		register(&model{invoke: func(c *shellCheck, pp *programPolicy, args []word) *finding {
			return invokeInterpreter(c, pp, specs, args)
		}}, name)
	}
}

// interpOpts builds options for flag checks from a bundle or long option.
func interpOpt(i int, a string) opt {
	o := opt{idx: i, name: a, valueIdx: -1}
	if strings.HasPrefix(a, "--") {
		o.long = true
		if eq := strings.IndexByte(a, '='); eq > 0 {
			o.name = a[:eq]
		}
	} else {
		o.letters = a[1:]
	}
	return o
}

func invokeShell(c *shellCheck, pp *programPolicy, args []word) *finding {
	var opts []opt
	command, stdin := false, false
	i := 0
loop:
	for ; i < len(args); i++ {
		a := args[i].text
		switch {
		case a == "--" || a == "-":
			i++
			break loop
		case strings.HasPrefix(a, "--"):
			name := a
			if eq := strings.IndexByte(a, '='); eq > 0 {
				name = a[:eq]
			}
			if name == "--rcfile" || name == "--init-file" {
				return &finding{RuleShellFlag, pp.name + " " + name + " runs a start-up file"}
			}
			opts = append(opts, interpOpt(i, a))
		case len(a) > 1 && (a[0] == '-' || a[0] == '+'):
			opts = append(opts, interpOpt(i, "-"+a[1:]))
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'c':
					command = true
				case 's':
					stdin = true
				case 'i':
					return &finding{RuleShellCode, pp.name + " -i reads commands interactively from its input"}
				case 'o', 'O':
					i++ // the option's name
				}
			}
		default:
			break loop
		}
	}
	if why := flagProblem(pp, pp.model, opts); why != "" {
		return &finding{RuleShellFlag, why}
	}
	switch {
	case command:
		if i >= len(args) {
			return &finding{RuleShellSyntax, pp.name + " -c needs a command line"}
		}
		return c.nested(args[i].text)
	case stdin || i >= len(args):
		return &finding{RuleShellCode, pp.name + " reads its commands from standard input, which the firewall does not see"}
	}
	for _, w := range args[i:] {
		if why := c.pathProblem(w); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("%s argument %s: %s", pp.name, w.text, why)}
		}
	}
	return nil
}

func invokePython(c *shellCheck, pp *programPolicy, args []word) *finding {
	var opts []opt
	i := 0
	mode, value := "", ""
loop:
	for ; i < len(args); i++ {
		a := args[i].text
		switch {
		case a == "-":
			return &finding{RuleShellCode, pp.name + " - reads its program from standard input, which the firewall does not see"}
		case a == "--":
			i++
			break loop
		case strings.HasPrefix(a, "--"):
			opts = append(opts, interpOpt(i, a))
			if a == "--check-hash-based-pycs" {
				i++
			}
		case len(a) > 1 && a[0] == '-':
			opts = append(opts, interpOpt(i, a))
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'c', 'm':
					mode = string(a[j])
					if rest := a[j+1:]; rest != "" {
						value = rest
					} else if i+1 < len(args) {
						i++
						value = args[i].text
					} else {
						return &finding{RuleShellSyntax, pp.name + " -" + mode + " needs an argument"}
					}
					i++
					break loop
				case 'W', 'X':
					if j == len(a)-1 {
						i++
					}
					j = len(a)
				case 'i':
					return &finding{RuleShellCode, pp.name + " -i reads code interactively from its input after the script"}
				}
			}
		default:
			break loop
		}
	}
	if why := flagProblem(pp, pp.model, opts); why != "" {
		return &finding{RuleShellFlag, why}
	}
	switch mode {
	case "c":
		if c.p.python == nil {
			return &finding{RuleShellCode, pp.name + " -c runs inline Python, and the shell policy has no python policy"}
		}
		return c.p.python.check(value)
	case "m":
		if !pp.subs[value] {
			return &finding{RuleShellSubcommand, fmt.Sprintf("%s -m %s runs a module that is not in the subcommands of %s", pp.name, value, pp.name)}
		}
	default:
		if i >= len(args) {
			return &finding{RuleShellCode, pp.name + " reads its program from standard input, which the firewall does not see"}
		}
	}
	for _, w := range args[i:] {
		if why := c.pathProblem(w); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("%s argument %s: %s", pp.name, w.text, why)}
		}
	}
	return nil
}

func invokeInterpreter(c *shellCheck, pp *programPolicy, inline []string, args []word) *finding {
	inv := &invocation{pp: pp, m: nil, args: args, subAt: -1}
	inv.opts, inv.operands = parseArgs(nil, args, true)
	for _, o := range inv.opts {
		for _, s := range inline {
			if o.matches(s, nil) {
				return &finding{RuleShellCode, fmt.Sprintf("%s %s runs inline code, which the firewall has no policy for", pp.name, o.name)}
			}
		}
	}
	if f := c.checkOpts(inv); f != nil {
		return f
	}
	if len(inv.operands) == 0 || args[inv.operands[0]].text == "-" {
		return &finding{RuleShellCode, pp.name + " reads its program from standard input, which the firewall does not see"}
	}
	if pp.name == "deno" || pp.name == "bun" {
		switch args[inv.operands[0]].text {
		case "eval", "repl", "x":
			return &finding{RuleShellCode, pp.name + " " + args[inv.operands[0]].text + " runs code the firewall cannot see"}
		}
	}
	for _, i := range inv.operands {
		if why := c.pathProblem(args[i]); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("%s argument %s: %s", pp.name, args[i].text, why)}
		}
	}
	return nil
}
