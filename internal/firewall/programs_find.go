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
	fp := &findParser{c: c, pp: pp, args: args}
	for _, step := range []func() *finding{fp.options, fp.startingPoints, fp.expression} {
		if f := step(); f != nil {
			return f
		}
	}
	return nil
}

// findParser is the state of parsing one find command line.
type findParser struct {
	c    *shellCheck
	pp   *programPolicy
	args []word
	i    int
}

// flag checks one option or primary against the policy and the model.
func (fp *findParser) flag(name string) *finding {
	if why := flagProblem(fp.pp, findModel, []opt{{idx: fp.i, name: name, long: true, valueIdx: -1}}); why != "" {
		return &finding{RuleShellFlag, why}
	}
	return nil
}

// options reads -H, -L, -P, -D debugopts and -Olevel before the
// starting points.
func (fp *findParser) options() *finding {
	for ; fp.i < len(fp.args); fp.i++ {
		a := fp.args[fp.i].text
		if a != "-H" && a != "-L" && a != "-P" && a != "-D" && !strings.HasPrefix(a, "-O") {
			return nil
		}
		if f := fp.flag(a); f != nil {
			return f
		}
		if a == "-D" {
			fp.i++
		}
	}
	return nil
}

func (fp *findParser) startingPoints() *finding {
	for ; fp.i < len(fp.args); fp.i++ {
		w := fp.args[fp.i]
		if strings.HasPrefix(w.text, "-") || w.text == "(" || w.text == "!" {
			return nil
		}
		if why := fp.c.pathProblem(w); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("find starting point %s: %s", w.text, why)}
		}
	}
	return nil
}

func (fp *findParser) expression() *finding {
	for ; fp.i < len(fp.args); fp.i++ {
		a := fp.args[fp.i].text
		var f *finding
		switch {
		case a == "-exec" || a == "-execdir" || a == "-ok" || a == "-okdir":
			f = fp.exec(a)
		case findNoValue[a]:
			f = fp.flag(a)
		case findText[a]:
			f = fp.flag(a)
			fp.i++
		case findPath[a] || a == "-fprintf" || strings.HasPrefix(a, "-newer") && len(a) == 8:
			f = fp.pathPrimary(a)
		default:
			f = &finding{RuleShellFlag, fmt.Sprintf("find %s is not a primary the firewall knows", a)}
		}
		if f != nil {
			return f
		}
	}
	return nil
}

// exec checks the command of -exec, -execdir, -ok or -okdir, which ends
// at ';' or '+'; "{}" stands for a path under a starting point.
func (fp *findParser) exec(a string) *finding {
	if f := fp.flag(a); f != nil {
		return f
	}
	end := fp.i + 1
	for end < len(fp.args) && fp.args[end].text != ";" && fp.args[end].text != "+" {
		end++
	}
	switch {
	case end >= len(fp.args):
		return &finding{RuleShellSyntax, "find " + a + " is not terminated by ';' or '+'"}
	case end == fp.i+1:
		return &finding{RuleShellSyntax, "find " + a + " has no command"}
	}
	cmd := make([]word, 0, end-fp.i-1)
	for _, w := range fp.args[fp.i+1 : end] {
		if strings.Contains(w.text, "{}") {
			w = literalWord(strings.ReplaceAll(w.text, "{}", "found"))
		}
		cmd = append(cmd, w)
	}
	fp.i = end
	return fp.c.inner(cmd)
}

// pathPrimary checks a primary whose value is a path (-newer f,
// -fprint f, -fprintf f format), or a time for -newerXt.
func (fp *findParser) pathPrimary(a string) *finding {
	if f := fp.flag(a); f != nil {
		return f
	}
	fp.i++
	isTime := strings.HasPrefix(a, "-newer") && len(a) == 8 && a[7] == 't'
	if fp.i < len(fp.args) && !isTime {
		if why := fp.c.pathProblem(fp.args[fp.i]); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("find %s %s: %s", a, fp.args[fp.i].text, why)}
		}
	}
	if a == "-fprintf" {
		fp.i++ // the format
	}
	return nil
}
