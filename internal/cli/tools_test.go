package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/cli"
)

// referenceTools is the tools file the firewall's tables and docs/tools.md
// use.
var referenceTools = filepath.Join("..", "firewall", "testdata", "tools.yaml")

func TestFirewallCommandChecksATableAgainstTheToolsFile(t *testing.T) {
	in := strings.Join([]string{
		`{"tool": "terminal", "arguments": {"command": "git status && go test ./..."}}`,
		`{"tool": "terminal", "arguments": {"command": "rm --recursiv build"}}`,
		`{"tool": "sql_console", "arguments": {"query": "SELECT 1 /*!50000 ; DROP TABLE users */"}}`,
		`{"tool": "read_file", "arguments": "{\"path\":\"/srv/agent/data/a.txt\",\"PATH\":\"/etc/passwd\"}"}`,
		`{"tool": "calculator", "arguments": {"expression": "1+1"}}`,
	}, "\n") + "\n"
	want := []string{`"allow"`, `"shell.flag"`, `"sql.comment"`, `"args.duplicate_key"`, `"allow"`}
	check := func(t *testing.T, code int, out, errOut string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != len(want) {
			t.Fatalf("exit %d, %d lines:\n%s\n%s", code, len(lines), out, errOut)
		}
		for i, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d: %s, want %s", i, lines[i], w)
			}
		}
	}
	t.Run("flag", func(t *testing.T) {
		code, out, errOut := run(t, in, "firewall", "--tools", referenceTools)
		check(t, code, out, errOut)
	})
	t.Run("environment", func(t *testing.T) {
		var out, errb bytes.Buffer
		getenv := func(k string) string {
			if k == "AGENTBUS_TOOLS" {
				return referenceTools
			}
			return ""
		}
		code := cli.Main(cli.Env{Args: []string{"firewall"}, Stdin: strings.NewReader(in), Stdout: &out, Stderr: &errb, Getenv: getenv})
		check(t, code, out.String(), errb.String())
	})
	t.Run("without a tools file the terminal is unknown", func(t *testing.T) {
		code, out, _ := run(t, in, "firewall")
		if code != 0 || !strings.Contains(strings.Split(out, "\n")[0], "tool.denied") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

func TestBadToolsFileStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "tools.yaml")
	if err := os.WriteFile(bad, []byte("tools:\n  terminal:\n    arguments:\n      command:\n        shell:\n          programs:\n            sudo: {}\n          roots: [relative]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--tools", bad, "--data", dir},
		{"firewall", "--tools", bad},
		{"firewall", "--tools", filepath.Join(dir, "missing.yaml")},
	} {
		code, _, errOut := run(t, "", args...)
		if code != 1 || !strings.Contains(errOut, "tools file") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
	_, _, errOut := run(t, "", "firewall", "--tools", bad)
	for _, want := range []string{"programs.sudo", "roots[0]"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error does not name %s: %s", want, errOut)
		}
	}
}
