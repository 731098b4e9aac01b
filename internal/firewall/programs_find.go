package firewall

import (
	"fmt"
	"strings"
)

// find: the expression is parsed primary by primary; a primary find does
// not have is refused. -exec, -execdir, -ok and -okdir run a command,
// which is checked like any other (its program must be allowed); "{}" is
// replaced by paths under the starting points, which are checked like
// paths. Actions that delete or write files (-delete, -fprint, -fprint0,
// -fprintf, -fls) and following symbolic links (-L, -H, -follow), which
// can leave the roots, are refused unless the program's flags list them.

var findModel = &model{
	sdl: true,
	riskyFlags: append(append(
		riskyAll("deletes every match", "-delete"),
		riskyAll("writes a file", "-fprint -fprint0 -fprintf -fls")...),
		riskyAll("follows symbolic links, which can leave the roots", "-L -H -follow")...),
}

func init() {
	findModel.invoke = invokeFind
	register(findModel, "find")
}

// find primaries: those without a value, with a text value, with a path
// value.
var (
	findNoValue = set("-print", "-print0", "-prune", "-quit", "-true", "-false", "-ls", "-empty", "-readable",
		"-writable", "-executable", "-nouser", "-nogroup", "-depth", "-d", "-mount", "-xdev", "-noleaf",
		"-ignore_readdir_race", "-noignore_readdir_race", "-follow", "-daystart", "-warn", "-nowarn", "-delete",
		"-a", "-and", "-o", "-or", "-not", "!", "(", ")", ",", "-help", "--help", "-version", "--version")
	findText = set("-name", "-iname", "-path", "-ipath", "-wholename", "-iwholename", "-regex", "-iregex", "-lname",
		"-ilname", "-type", "-xtype", "-size", "-perm", "-user", "-group", "-uid", "-gid", "-maxdepth", "-mindepth",
		"-mtime", "-mmin", "-atime", "-amin", "-ctime", "-cmin", "-used", "-inum", "-links", "-printf", "-fstype",
		"-context", "-regextype")
	findPath = set("-newer", "-anewer", "-cnewer", "-samefile", "-fprint", "-fprint0", "-fls", "-files0-from")
)

func invokeFind(c *shellCheck, pp *programPolicy, args []word) *finding {
	// every primary is checked when it is met, so the first refused one
	// names the rule
	var refused *finding
	add := func(i int, name string) {
		if refused != nil {
			return
		}
		if why := flagProblem(pp, findModel, []opt{{idx: i, name: name, long: true, valueIdx: -1}}); why != "" {
			refused = &finding{RuleShellFlag, why}
		}
	}
	i := 0
	// options before the starting points
	for ; i < len(args); i++ {
		a := args[i].text
		switch {
		case a == "-H" || a == "-L" || a == "-P" || strings.HasPrefix(a, "-O"):
			add(i, a)
			continue
		case a == "-D":
			add(i, a)
			i++
			continue
		}
		break
	}
	// starting points
	for ; i < len(args); i++ {
		a := args[i].text
		if strings.HasPrefix(a, "-") || a == "(" || a == "!" {
			break
		}
		if why := c.pathProblem(args[i]); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("find starting point %s: %s", a, why)}
		}
	}
	if refused != nil {
		return refused
	}
	// expression
	for ; i < len(args); i++ {
		if refused != nil {
			return refused
		}
		a := args[i].text
		switch {
		case a == "-exec" || a == "-execdir" || a == "-ok" || a == "-okdir":
			if add(i, a); refused != nil {
				return refused
			}
			end := i + 1
			for end < len(args) && args[end].text != ";" && args[end].text != "+" {
				end++
			}
			if end >= len(args) {
				return &finding{RuleShellSyntax, "find " + a + " is not terminated by ';' or '+'"}
			}
			if end == i+1 {
				return &finding{RuleShellSyntax, "find " + a + " has no command"}
			}
			cmd := make([]word, 0, end-i-1)
			for _, w := range args[i+1 : end] {
				if strings.Contains(w.text, "{}") {
					w = literalWord(strings.ReplaceAll(w.text, "{}", "found"))
				}
				cmd = append(cmd, w)
			}
			if f := c.inner(cmd); f != nil {
				return f
			}
			i = end
		case findNoValue[a]:
			add(i, a)
		case findText[a]:
			add(i, a)
			i++
		case findPath[a] || strings.HasPrefix(a, "-newer") && len(a) == 8:
			if add(i, a); refused != nil {
				return refused
			}
			if i+1 < len(args) && !(strings.HasPrefix(a, "-newer") && len(a) == 8 && a[7] == 't') {
				if why := c.pathProblem(args[i+1]); why != "" {
					return &finding{RuleShellPath, fmt.Sprintf("find %s %s: %s", a, args[i+1].text, why)}
				}
			}
			i++
		case a == "-fprintf":
			if add(i, a); refused != nil {
				return refused
			}
			if i+1 < len(args) {
				if why := c.pathProblem(args[i+1]); why != "" {
					return &finding{RuleShellPath, fmt.Sprintf("find -fprintf %s: %s", args[i+1].text, why)}
				}
			}
			i += 2
		default:
			return &finding{RuleShellFlag, fmt.Sprintf("find %s is not a primary the firewall knows", a)}
		}
	}
	return refused
}
