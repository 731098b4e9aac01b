package firewall

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// chmod: the mode is parsed the way chmod parses it, octal or symbolic
// with comma-separated clauses, and refused when it adds setuid, setgid or
// sticky bits, grants write to group or others (also through "=" or a
// clause without "who", which means everyone), or copies permissions from
// one class to another. A mode chmod would not parse the same way is
// refused, and so is --reference (the mode of another file).
//
// kill: only positive process ids other than 1, or job specs, may be
// signalled: -1 is every process, 0 and negative ids are process groups.

func init() {
	register(&model{invoke: invokeChmod}, "chmod")
	register(&model{invoke: invokeKill}, "kill")
}

var chmodFlags = set("-R", "--recursive", "-c", "--changes", "-f", "--silent", "--quiet", "-v", "--verbose",
	"--preserve-root", "--no-preserve-root", "--help", "--version")

func invokeChmod(c *shellCheck, pp *programPolicy, args []word) *finding {
	var opts []opt
	mode := -1
	end := false
	for i, w := range args {
		a := w.text
		switch {
		case !end && a == "--":
			end = true
		case !end && strings.HasPrefix(a, "--reference"):
			return &finding{RuleShellMode, "chmod --reference copies the mode of another file, which the firewall cannot see"}
		case !end && chmodFlags[a]:
			opts = append(opts, interpOpt(i, a))
		case !end && len(a) > 1 && a[0] == '-' && isLetters(a[1:]) && strings.Trim(a[1:], "Rcfv") == "":
			opts = append(opts, interpOpt(i, a)) // bundled flags: -Rv
		case mode < 0:
			mode = i
		default:
			if why := c.pathProblem(w); why != "" {
				return &finding{RuleShellPath, fmt.Sprintf("chmod argument %s: %s", a, why)}
			}
		}
	}
	if why := flagProblem(pp, pp.model, opts); why != "" {
		return &finding{RuleShellFlag, why}
	}
	if mode < 0 {
		return &finding{RuleShellMode, "chmod without a mode"}
	}
	if why := modeProblem(args[mode].text); why != "" {
		return &finding{RuleShellMode, "chmod " + args[mode].text + ": " + why}
	}
	return nil
}

var (
	octalMode  = regexp.MustCompile(`^[0-7]+$`)
	symbolicRe = regexp.MustCompile(`^([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)$`)
	actionRe   = regexp.MustCompile(`[-+=](?:[ugo]|[rwxXst]*)`)
)

// modeProblem says why a chmod mode opens permissions or cannot be read
// the way chmod reads it, or "".
func modeProblem(mode string) string {
	if octalMode.MatchString(mode) {
		v, err := strconv.ParseUint(mode, 8, 32)
		if err != nil || v > 07777 {
			return "not a mode chmod accepts"
		}
		switch {
		case v&07000 != 0:
			return "sets the setuid, setgid or sticky bit"
		case v&0022 != 0:
			return "grants write to group or others"
		}
		return ""
	}
	if mode == "" {
		return "empty mode"
	}
	for _, clause := range strings.Split(mode, ",") {
		m := symbolicRe.FindStringSubmatch(clause)
		if m == nil {
			return "not a mode the firewall reads the way chmod does"
		}
		who := m[1]
		if who == "" || strings.Contains(who, "a") {
			who = "ugo" // no who: everyone (umask aside)
		}
		for _, act := range actionRe.FindAllString(m[2], -1) {
			op, perms := act[0], act[1:]
			if op == '-' {
				continue
			}
			switch {
			case strings.ContainsAny(perms, "st"):
				return "sets the setuid, setgid or sticky bit"
			case strings.Contains(perms, "w") && strings.ContainsAny(who, "go"):
				return "grants write to group or others"
			case perms != "" && strings.Trim(perms, "ugo") == "":
				return "copies permissions from one class to another"
			case op == '=' && strings.ContainsAny(who, "go") && strings.Contains(m[2], "w"):
				return "grants write to group or others"
			}
		}
	}
	return ""
}

func invokeKill(c *shellCheck, pp *programPolicy, args []word) *finding {
	i := 0
	var opts []opt
	if len(args) > 0 {
		switch a := args[0].text; {
		case a == "-l" || a == "-L" || a == "--list" || a == "--table":
			return nil // lists signal names
		case a == "-s" || a == "-n" || a == "--signal":
			opts = append(opts, interpOpt(0, a))
			i = 2
		case a == "--":
		case len(a) > 1 && a[0] == '-':
			opts = append(opts, opt{idx: 0, name: a, valueIdx: -1}) // the signal: -9, -KILL, -SIGKILL
			i = 1
		}
	}
	if why := flagProblem(pp, pp.model, opts); why != "" {
		return &finding{RuleShellFlag, why}
	}
	if i < len(args) && args[i].text == "--" {
		i++
	}
	if i >= len(args) {
		return nil
	}
	for _, w := range args[i:] {
		a := w.text
		if strings.HasPrefix(a, "%") {
			continue // a job of this shell
		}
		n, err := strconv.ParseInt(a, 10, 64)
		switch {
		case err != nil:
			return &finding{RuleShellSignal, fmt.Sprintf("kill %s: not a process id", a)}
		case n == -1:
			return &finding{RuleShellSignal, "kill -1 signals every process the user can"}
		case n <= 0:
			return &finding{RuleShellSignal, fmt.Sprintf("kill %s signals a whole process group", a)}
		case n == 1:
			return &finding{RuleShellSignal, "kill 1 signals init"}
		}
	}
	return nil
}
