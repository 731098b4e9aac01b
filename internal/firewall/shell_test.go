package firewall

import (
	"testing"
)

// shellFirewall is a terminal with the given programs YAML and a root.
func shellCheckFor(t *testing.T, programs string, extra string) *shellPolicy {
	t.Helper()
	cfg, err := ParseConfig([]byte("tools:\n  t:\n    arguments:\n      c:\n        shell:\n          roots: [/w]\n" + extra + "          programs:\n" + programs))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fw.tools["t"].args["c"].shell
}

func TestFlagSpellings(t *testing.T) {
	p := shellCheckFor(t, "            rm: {deny_flags: [--recursive, -f]}\n            ls: {flags: [-l, -a, --color]}\n            go: {}\n            docker: {}\n", "")
	for _, tt := range []struct {
		cmd  string
		rule string
	}{
		{"rm x", ""},
		{"rm --recursive x", RuleShellFlag},
		{"rm --recursiv x", RuleShellFlag},
		{"rm --rec x", RuleShellFlag},
		{"rm --recursive=yes x", RuleShellFlag},
		{"rm -r x", RuleShellFlag},  // alias of --recursive
		{"rm -R x", RuleShellFlag},  // alias of --recursive
		{"rm -vf x", RuleShellFlag}, // bundle
		{"rm --force x", RuleShellFlag},
		{"rm --forc x", RuleShellFlag},
		{"rm '-f' x", RuleShellFlag},
		{"rm -\\f x", RuleShellFlag},
		{"rm -- -f", ""}, // an operand after --
		{"rm -v x", ""},
		{"ls -la", ""},
		{"ls -l -a --color=auto", ""},
		{"ls --col=auto", ""}, // an abbreviation of an allowed flag
		{"ls -lh", RuleShellFlag},
		{"ls --full-time", RuleShellFlag},
		{"go test -toolexec=x ./...", RuleShellFlag},
		{"go test --toolexec x ./...", RuleShellFlag}, // Go's flag package reads -- like -
		{"go test -toolexe x ./...", ""},              // Go does not abbreviate: an unknown flag
		{"docker run --volume x:/y alpine", ""},       // exact --volume is not --volumes-from
		{"docker run --volumes x:/y alpine", ""},      // pflag does not abbreviate
	} {
		got := newShellCheck(p).line(tt.cmd)
		switch {
		case tt.rule == "" && got != nil:
			t.Errorf("%s: refused: %v", tt.cmd, got)
		case tt.rule != "" && (got == nil || got.rule != tt.rule):
			t.Errorf("%s: got %v, want %s", tt.cmd, got, tt.rule)
		}
	}
}

func TestWordsAndPaths(t *testing.T) {
	p := shellCheckFor(t, "            cat: {}\n            echo: {}\n            ls: {}\n", "          deny_paths: [.git, a/b]\n          globs: anchored\n")
	for _, tt := range []struct {
		cmd  string
		rule string
	}{
		{`c"a"t x`, ""},
		{`c\at x`, ""},
		{`'cat' x`, ""},
		{`cat /w/x`, ""},
		{`cat /w`, ""},
		{`cat /wx`, RuleShellPath},
		{`cat /w/../x`, RuleShellPath},
		{`cat ./x/../y`, RuleShellPath},
		{`cat x/.git/config`, RuleShellPath},
		{`cat ./.gi?/config`, RuleShellPath},
		{`cat x/a/b/c`, RuleShellPath},
		{`cat x/a/c`, ""},
		{`cat ./*/x`, ""}, // * does not match .. or .git
		{`cat ./.*/x`, RuleShellPath},
		{`cat ./[.]./x`, RuleShellPath},
		{`cat *.txt`, RuleShellGlob},
		{`cat -- *.txt`, RuleShellGlob},
		{`cat ./*.txt`, ""},
		{`cat x --opt=*.txt`, ""},
		{`cat "*.txt"`, ""}, // quoted: no glob
		{`cat /w/*.txt`, ""},
		{`cat /w*/x`, RuleShellPath},
		{`cat x=/etc/passwd`, RuleShellPath},
		{`cat @/etc/passwd`, RuleShellPath},
		{`echo /etc/passwd`, ""}, // echo's operands are text
		{`cat < /w/x`, ""},
		{`cat > /dev/null`, ""},
		{`cat 2>&1 >&-`, ""},
		{`cat > /w/../x`, RuleShellRedirect},
		{`cat >& /etc/x`, RuleShellRedirect},
		{`cat <<< "$x"`, RuleShellExpansion},
		{"cat <<'E'\n$x\nE", ""},
		{"cat <<E\n$x\nE", RuleShellExpansion},
		{`cat ~`, RuleShellExpansion},
		{`cat x=~/y`, RuleShellExpansion},
		{`cat HEAD~1`, ""},
		{`cat {a,b}`, RuleShellGlob},
		{`cat {}`, ""},
		{`cat x{1..3}`, RuleShellGlob},
		{`cat $'x'`, RuleShellExpansion},
		{`ls | cat`, ""},
		{`ls & cat`, RuleShellOperator},
		{`ls; cat`, ""},
		{"ls\ncat", ""},
		{`f() { ls; }`, RuleShellConstruct},
		{`X=1 ls`, RuleShellEnv},
		{`ls "unterminated`, RuleShellSyntax},
	} {
		got := newShellCheck(p).line(tt.cmd)
		switch {
		case tt.rule == "" && got != nil:
			t.Errorf("%s: refused: %v", tt.cmd, got)
		case tt.rule != "" && (got == nil || got.rule != tt.rule):
			t.Errorf("%s: got %v, want %s", tt.cmd, got, tt.rule)
		}
	}
}

func TestRunnersAndXargs(t *testing.T) {
	p := shellCheckFor(t, "            ls: {}\n            grep: {}\n            xargs: {subcommands: [grep]}\n            env: {}\n            timeout: {}\n            watch: {}\n", "          env: [LC_ALL]\n")
	for _, tt := range []struct {
		cmd  string
		rule string
	}{
		{"ls | xargs grep -l x", ""},
		{"ls | xargs ls", RuleShellSubcommand},
		{"ls | xargs", RuleShellSubcommand}, // runs echo
		{"env LC_ALL=C ls", ""},
		{"env PATH=/tmp ls", RuleShellEnv},
		{"env", RuleShellProgram},
		{"env -S 'ls'", RuleShellFlag},
		{"timeout 5 ls", ""},
		{"timeout 5", RuleShellSyntax},
		{"timeout 5 rm x", RuleShellProgram},
		{"watch -n 1 ls -la", ""},
		{"watch -n 1 'ls; rm x'", RuleShellProgram},
		{"env timeout 5 env ls", ""},
	} {
		got := newShellCheck(p).line(tt.cmd)
		switch {
		case tt.rule == "" && got != nil:
			t.Errorf("%s: refused: %v", tt.cmd, got)
		case tt.rule != "" && (got == nil || got.rule != tt.rule):
			t.Errorf("%s: got %v, want %s", tt.cmd, got, tt.rule)
		}
	}
}

func TestModeProblem(t *testing.T) {
	for mode, bad := range map[string]bool{
		"644": false, "0644": false, "755": false, "0700": false, "600": false, "u+x": false, "+x": false, "go-w": false,
		"u=rwx,go=rx": false, "a+X": false, "u+rw,g-w,o-rwx": false, "=r": false,
		"777": true, "666": true, "4755": true, "2755": true, "1777": true, "0o777": true, "8": true, "77777": true,
		"+w": true, "a+w": true, "o+w": true, "g+w": true, "u+s": true, "+t": true, "o=u": true, "g=u": true, "=rwx": true,
		"u+x,o+w": true, "": true, "u+z": true, "ug+s": true,
	} {
		if got := modeProblem(mode) != ""; got != bad {
			t.Errorf("modeProblem(%q) refused=%v, want %v", mode, got, bad)
		}
	}
}

func TestSedAndAwkPrograms(t *testing.T) {
	for script, bad := range map[string]bool{
		"p": false, "1,20p": false, "s/a/b/g": false, "/^#/d": false, "$!N;P;D": false, "s|/usr|/opt|": false,
		"1i\\\nheader": false, "a text": false, ":a;N;$!ba;s/\\n/ /g": false, "y/abc/xyz/": false, "s/[/]/x/": false,
		"\\,x,d": false, "{p;d}": false, "s/a/b/2": false, "/x/I,+3d": false,
		"1e id": true, "e": true, "s/x/id/e": true, "s/x/y/w f": true, "w f": true, "r /etc/passwd": true, "R f": true,
		"W f": true, "s/[/]/x/e": true, "1{e id\n}": true, "k": true, "s/a/b": true, "p x": true, "s/a/b/Me": true,
	} {
		if got := sedProblem(script) != ""; got != bad {
			t.Errorf("sedProblem(%q) refused=%v, want %v (%s)", script, got, bad, sedProblem(script))
		}
	}
	for prog, bad := range map[string]bool{
		"{print $1}": false, "NR > 1 && $3 > 100 {s += $3} END {print s}": false, "{ if ($2 > m) m = $2 } END { print m }": false,
		"/a|b/ {print}": false, "{print (a > b)}": false, "length > 80": false, `{print "a|b"}`: false, "$1 ~ /x>y/": false,
		"{x = a || b}": false, "# system()\n{print}": false, "{print 10 / 2 / 5}": false,
		`BEGIN{system("id")}`: true, `{print | "sh"}`: true, `BEGIN{"id" | getline}`: true, `{print > "f"}`: true,
		`{printf "%s", $0 >> "f"}`: true, `BEGIN{getline x < "/etc/passwd"}`: true, `@load "x"`: true, "{print |& \"sh\"}": true,
		`{print "x`: true, "{print (}": true, `BEGIN{system ("id")}`: true,
	} {
		if got := awkProblem(prog) != ""; got != bad {
			t.Errorf("awkProblem(%q) refused=%v, want %v (%s)", prog, got, bad, awkProblem(prog))
		}
	}
}
