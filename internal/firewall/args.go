package firewall

import (
	"fmt"
)

// argPolicy is one declared argument's policy, compiled.
type argPolicy struct {
	kind   string // shell, argv, sql, python, path, url, data
	shell  *shellPolicy
	sql    *sqlPolicy
	python *pythonPolicy
	path   *pathPolicy
	url    *urlPolicy
}

// maxListLen bounds the elements of a list-valued argument that are checked.
const maxListLen = 1024

func compileArg(a ArgPolicy) (*argPolicy, error) {
	var err error
	ap := &argPolicy{}
	switch {
	case a.Shell != nil:
		ap.kind = "shell"
		ap.shell, err = compileShell(a.Shell)
	case a.Argv != nil:
		ap.kind = "argv"
		ap.shell, err = compileShell(a.Argv)
	case a.SQL != nil:
		ap.kind = "sql"
		ap.sql = compileSQL(a.SQL)
	case a.Python != nil:
		ap.kind = "python"
		ap.python = compilePython(a.Python)
	case a.Path != nil:
		ap.kind = "path"
		ap.path, err = compilePath(a.Path)
	case a.URL != nil:
		ap.kind = "url"
		ap.url = compileURL(a.URL)
	default:
		ap.kind = "data"
	}
	return ap, err
}

// check applies the policy to the value of argument name.
func (a *argPolicy) check(name string, v any) *finding {
	switch a.kind {
	case "data":
		return nil
	case "argv":
		argv, ok := stringList(v)
		if !ok || len(argv) == 0 {
			return &finding{RuleArgType, fmt.Sprintf("argument %q must be a non-empty array of strings (an argument vector), got %s", name, typeName(v))}
		}
		return newShellCheck(a.shell).argv(argv)
	}
	if s, ok := v.(string); ok {
		return a.checkString(s)
	}
	list, ok := stringList(v)
	if !ok {
		return &finding{RuleArgType, fmt.Sprintf("argument %q must be a string or an array of strings, got %s", name, typeName(v))}
	}
	if len(list) > maxListLen {
		return &finding{RuleTooComplex, fmt.Sprintf("argument %q has more than %d elements", name, maxListLen)}
	}
	for _, s := range list {
		if fd := a.checkString(s); fd != nil {
			return fd
		}
	}
	return nil
}

func (a *argPolicy) checkString(s string) *finding {
	switch a.kind {
	case "shell":
		return newShellCheck(a.shell).line(s)
	case "sql":
		return a.sql.check(s)
	case "python":
		return a.python.check(s)
	case "path":
		return a.path.check(s)
	case "url":
		return a.url.check(s)
	}
	return &finding{RuleArgType, "unknown argument kind " + a.kind}
}

func stringList(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}
