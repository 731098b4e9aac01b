package cli_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/cli"
)

// listed returns the words that follow prefix at the start of an indented
// line of a help text: the commands of `agentbus --help` ("  agentbus
// NAME ...") or the subcommands of `agentbus keys -h` ("  agentbus keys
// NAME ...").
func listed(help, prefix string) []string {
	var out []string
	for _, line := range strings.Split(help, "\n") {
		rest, ok := strings.CutPrefix(line, "  "+prefix+" ")
		if !ok {
			continue
		}
		name := strings.Trim(strings.Fields(rest)[0], "[]")
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Every command `agentbus --help` lists explains itself on -h and --help
// (exit 0, usage on stdout), and so does every subcommand its help lists;
// `agentbus help CMD [SUB]` prints the same.
func TestEveryCommandHelps(t *testing.T) {
	code, top, errOut := run(t, "", "--help")
	if code != 0 || errOut != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{{"-h"}, {"help"}} {
		if code, out, _ := run(t, "", args...); code != 0 || out != top {
			t.Fatalf("%v: exit %d, output differs from --help:\n%s", args, code, out)
		}
	}
	cmds := listed(top, "agentbus")
	for _, want := range []string{"serve", "chat", "keys", "sanitize", "firewall", "history", "replay", "audit", "dlq", "rebuild", "nats", "bench", "completion", "help"} {
		if !slices.Contains(cmds, want) {
			t.Errorf("agentbus --help does not list %s; it lists %v", want, cmds)
		}
	}
	for _, cmd := range cmds {
		t.Run(cmd, func(t *testing.T) {
			code, out, errOut := run(t, "", cmd, "-h")
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: agentbus ") {
				t.Fatalf("%s -h: exit %d\nstdout:\n%s\nstderr:\n%s", cmd, code, out, errOut)
			}
			if code, out2, _ := run(t, "", cmd, "--help"); code != 0 || out2 != out {
				t.Fatalf("%s --help: exit %d, differs from -h:\n%s", cmd, code, out2)
			}
			if code, out2, _ := run(t, "", "help", cmd); code != 0 || out2 != out {
				t.Fatalf("help %s: exit %d, differs from -h:\n%s", cmd, code, out2)
			}
			subs := listed(out, "agentbus "+cmd)
			if strings.Contains(out, "Commands:") != (len(subs) > 0) {
				t.Fatalf("%s -h lists subcommands %v in:\n%s", cmd, subs, out)
			}
			for _, sub := range subs {
				code, sout, errOut := run(t, "", cmd, sub, "-h")
				if code != 0 || errOut != "" || !strings.HasPrefix(sout, "Usage: agentbus "+cmd+" "+sub) || !strings.Contains(sout, "Flags:\n  -") {
					t.Fatalf("%s %s -h: exit %d\nstdout:\n%s\nstderr:\n%s", cmd, sub, code, sout, errOut)
				}
				if code, out2, _ := run(t, "", "help", cmd, sub); code != 0 || out2 != sout {
					t.Fatalf("help %s %s: exit %d, differs from -h:\n%s", cmd, sub, code, out2)
				}
			}
			if noFlags := []string{"firewall", "completion", "help"}; len(subs) == 0 && !slices.Contains(noFlags, cmd) && !strings.Contains(out, "Flags:\n  -") {
				t.Fatalf("%s -h shows no flags:\n%s", cmd, out)
			}
		})
	}
	// The stage binaries too.
	var out, errb bytes.Buffer
	env := cli.Env{Args: []string{"-h"}, Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	if code := cli.RunStage("guard", env); code != 0 || !strings.Contains(out.String(), "-nats string") {
		t.Fatalf("agentbus-guard -h: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// Every flag of serve and of the connecting commands names its
// environment variable, and the variable sets the default.
func TestFlagsKeepTheirEnvironmentEquivalents(t *testing.T) {
	for _, cmd := range [][]string{{"serve"}, {"chat"}, {"keys", "list"}, {"rebuild"}} {
		_, out, _ := run(t, "", append(cmd, "-h")...)
		flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
		names := flagLine.FindAllStringSubmatch(out, -1)
		if len(names) == 0 {
			t.Fatalf("%v -h shows no flags:\n%s", cmd, out)
		}
		for _, m := range names {
			if cmd[0] != "serve" && !strings.HasPrefix(m[1], "nats") && m[1] != "data" {
				continue // command-specific flags of the client commands
			}
			env := "$AGENTBUS_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
			if !strings.Contains(out, env) {
				t.Errorf("%v: flag -%s does not name %s", cmd, m[1], env)
			}
		}
	}
	_, out, _ := runWith(t, map[string]string{"AGENTBUS_NATS": "nats://example.invalid:4222"}, "keys", "list", "-h")
	if !strings.Contains(out, `(default "nats://example.invalid:4222")`) {
		t.Fatalf("AGENTBUS_NATS is not the default of --nats:\n%s", out)
	}
}

func TestCommandUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"keys", "bogus"}, {"nats"}, {"nats", "bogus"}, {"dlq", "bogus"}, {"completion"}, {"completion", "fish"}, {"help", "bogus"}, {"chat", "--nope"}} {
		code, out, errOut := run(t, "", args...)
		if code != 2 || out != "" || errOut == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", args, code, out, errOut)
		}
	}
}

// The completion script completes commands, subcommands and flags from the
// command table; bash runs it.
func TestCompletion(t *testing.T) {
	code, script, errOut := run(t, "", "completion", "bash")
	if code != 0 || !strings.Contains(script, "complete -o default -F _agentbus agentbus") {
		t.Fatalf("completion bash: %d %s\n%s", code, errOut, script)
	}
	code, zsh, _ := run(t, "", "completion", "zsh")
	if code != 0 || !strings.HasPrefix(zsh, "#compdef agentbus\n") || !strings.Contains(zsh, "bashcompinit") || !strings.HasSuffix(zsh, script) {
		t.Fatalf("completion zsh: %d\n%s", code, zsh)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the script")
	}
	path := filepath.Join(t.TempDir(), "agentbus.bash")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		// COMP_WORDS as bash builds it; the last word is being completed.
		var q []string
		for _, w := range words {
			q = append(q, "'"+w+"'")
		}
		prog := "source " + path + "\nCOMP_WORDS=(" + strings.Join(q, " ") + ")\nCOMP_CWORD=" + strconv.Itoa(len(words)-1) +
			"\n_agentbus\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	_, top, _ := run(t, "", "--help")
	if got := complete("agentbus", ""); !slices.Equal(got, listed(top, "agentbus")) {
		t.Errorf("commands: %v, --help lists %v", got, listed(top, "agentbus"))
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"agentbus", "ke"}, []string{"keys"}},
		{[]string{"agentbus", "--sync"}, []string{"--sync-always"}},
		{[]string{"agentbus", "--data", "x", "--nats-l"}, []string{"--nats-listen"}},
		{[]string{"agentbus", "keys", ""}, []string{"create", "list", "revoke", "--help"}},
		{[]string{"agentbus", "keys", "create", "--us"}, []string{"--user"}},
		{[]string{"agentbus", "chat", "--nats-c"}, []string{"--nats-ca", "--nats-cert", "--nats-creds"}},
		{[]string{"agentbus", "dlq", "redrive", "--a"}, []string{"--all"}},
		{[]string{"agentbus", "nats", "creds", "--ro"}, []string{"--role"}},
		{[]string{"agentbus", "rebuild", "--st"}, []string{"--store"}},
		{[]string{"agentbus", "completion", ""}, []string{"bash", "zsh"}},
		{[]string{"agentbus", "help", "reb"}, []string{"rebuild"}},
		{[]string{"agentbus", "chat", "hello"}, nil}, // free text: the shell's default completion
	} {
		if got := complete(tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: completes %v, want %v", tc.words, got, tc.want)
		}
	}
}
