package firewall

import (
	"fmt"
	"strings"
)

// Build tools. They run code from the working directory by design (go
// test runs tests, make runs recipes, npm runs package scripts): the
// firewall checks the command line, not what the build runs, so tools
// that build need a sandbox as well. What the command line can add is
// refused: go -exec, -toolexec and -overlay, an external linker in
// -ldflags, and the subcommands that run arbitrary programs (go run,
// generate, tool); make --eval and variable assignments on the command
// line (SHELL=..., MAKEFLAGS=...) unless the variable is in the policy's
// env; npm exec and explore and --script-shell.

func init() {
	goBuild := &model{
		sdl: true,
		values: flags(`-run -skip -count -timeout -bench -benchtime -benchmem -p -parallel -tags -o -coverprofile -cpuprofile
-memprofile -blockprofile -mutexprofile -trace -mod -C -modfile -gcflags -ldflags -asmflags -buildmode -compiler
-installsuffix -pkgdir -exec -toolexec -vettool -overlay -shuffle -fuzz -fuzztime -fuzzminimizetime -covermode -coverpkg -list
-outputdir -f -json -vet -failfast -pgo -buildvcs -debug-actiongraph -debug-runtime-trace -debug-trace`),
		text: flags(`-run -skip -count -timeout -bench -benchtime -p -parallel -tags -mod -gcflags -ldflags -asmflags -buildmode
-compiler -installsuffix -shuffle -fuzz -fuzztime -fuzzminimizetime -covermode -coverpkg -list -f -vet -pgo -buildvcs`),
		riskyFlags: append(
			riskyAll("runs the test binary, every tool or the vet tool through the given program", "-exec -toolexec -vettool"),
			riskyAll("replaces source files with others", "-overlay")...),
		check: checkGoFlags,
	}
	goEnv := &model{sdl: true, riskyFlags: riskyAll("writes the go environment configuration (GOFLAGS can add -toolexec)", "-w -u")}
	register(&model{
		sdl:        true,
		subcommand: true,
		mustSub:    true,
		values:     flags("-C"),
		knownSubs:  strings.Fields("build test vet fmt list version mod env run generate tool get install clean doc fix work bug help telemetry"),
		riskySubs: map[string]string{
			"run":      "builds and runs a program",
			"generate": "runs the commands written in //go:generate comments",
			"tool":     "runs a tool binary",
			"bug":      "opens a browser",
		},
		subDefault: goBuild,
		subModels:  map[string]*model{"env": goEnv},
	}, "go")
	register(&model{
		subcommand: true,
		allSubs:    true,
		values:     flags("-f --file --makefile -C --directory -I --include-dir -j --jobs -l --load-average --max-load -o --old-file --assume-old -W --what-if --new-file --assume-new -O --output-sync --eval -E"),
		text:       flags("-j --jobs -l --load-average --max-load -O --output-sync"),
		riskyFlags: riskyAll("evaluates make code, which can run shell commands", "--eval -E"),
		invoke:     invokeMake,
	}, "make", "gmake")
	register(&model{
		subcommand: true,
		mustSub:    true,
		values:     flags("--prefix -C -w --workspace --script-shell --registry"),
		text:       flags("-w --workspace --registry"),
		riskyFlags: riskyAll("runs package scripts with the given shell", "--script-shell"),
		riskySubs: map[string]string{
			"exec":    "runs a package binary",
			"x":       "runs a package binary",
			"explore": "runs a shell in a package",
		},
		subDefault: &model{values: flags("--script-shell"), riskyFlags: riskyAll("runs package scripts with the given shell", "--script-shell")},
	}, "npm", "pnpm", "yarn")
	register(&model{
		subcommand: true,
		mustSub:    true,
		values:     flags("--config -Z -C --manifest-path --target-dir"),
		text:       flags("-Z"),
		riskyFlags: riskyAll("sets configuration, which can name runners and linkers", "--config -Z"),
		subDefault: &model{values: flags("--config --manifest-path --target-dir -p --package --features -j --jobs --target"), text: flags("-p --package --features -j --jobs --target"), riskyFlags: riskyAll("sets configuration, which can name runners and linkers", "--config")},
		riskySubs:  map[string]string{"run": "builds and runs a program", "install": "builds and installs a program from anywhere"},
	}, "cargo")
}

// checkGoFlags refuses an external linker passed through -ldflags.
func checkGoFlags(c *shellCheck, inv *invocation) *finding {
	for _, v := range inv.values("-ldflags", "-gcflags", "-asmflags") {
		if strings.Contains(v.text, "extld") || strings.Contains(v.text, "-toolexec") {
			return &finding{RuleShellFlag, fmt.Sprintf("go %s %s names an external program", inv.sub, v.text)}
		}
	}
	return nil
}

// invokeMake checks variable assignments given as operands (they override
// the makefile's, SHELL included) before the targets.
func invokeMake(c *shellCheck, pp *programPolicy, args []word) *finding {
	var rest []word
	for _, w := range args {
		a := w.text
		if eq := strings.IndexByte(a, '='); eq > 0 && !strings.HasPrefix(a, "-") {
			name := strings.TrimRight(a[:eq], ":+?!")
			if !c.p.env[name] {
				return &finding{RuleShellEnv, fmt.Sprintf("make %s sets the variable %s, which the policy does not allow (it can change the shell and commands make runs)", a, name)}
			}
			continue
		}
		rest = append(rest, w)
	}
	return c.generic(pp, pp.model, rest)
}
