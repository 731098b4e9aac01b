package firewall

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string
	}{
		{"zero value", ``, nil},
		{"blocklist", `mode: blocklist`, nil},
		{"bad mode", `mode: permissive`, []string{"mode"}},
		{"negatives", "max_calls_per_turn: -1\nmax_rounds: -1\nmax_arg_bytes: -1", []string{"max_calls_per_turn", "max_rounds", "max_arg_bytes"}},
		{"empty names", "allow: [\"\\u200b\"]\ndeny: [\" \"]", []string{"allow[0]", "deny[0]"}},
		{"two kinds", "tools:\n  t:\n    arguments:\n      a: {data: {}, path: {roots: [/x]}}", []string{"tools.t.arguments.a: want exactly one"}},
		{"no kind", "tools:\n  t:\n    arguments:\n      a: {}", []string{"tools.t.arguments.a: want exactly one"}},
		{"same tool twice", "tools:\n  Read_File: {}\n  read_file: {}", []string{"same tool"}},
		{"shell problems", `
tools:
  t:
    arguments:
      c:
        shell:
          programs:
            sudo: {}
            ./x: {}
            git: {flags: [x], deny_flags: ["--a=b"], subcommands: ["-x"]}
          roots: [relative, /a/../b]
          deny_paths: [../x]
          operators: ["&&", "|||"]
          env: ["1X"]
          globs: some
          python: {imports: ["os;"]}`, []string{"programs.sudo: cannot be allowed", "programs../x", "flags[0]", "deny_flags[0]", "subcommands[0]", "roots[0]", "roots[1]", "deny_paths[0]", "operators[1]", "env[0]", "globs", "python.imports[0]"}},
		{"shell needs programs", "tools:\n  t:\n    arguments:\n      c: {shell: {}}", []string{"programs: at least one"}},
		{"sql problems", "tools:\n  t:\n    arguments:\n      q: {sql: {dialect: oracle, statements: [selekt], tables: [\"a b\"], functions: [\"f()\"], keys: [\"\"]}}", []string{"dialect", "statements[0]", "tables[0]", "functions[0]", "keys[0]"}},
		{"path problems", "tools:\n  t:\n    arguments:\n      p: {path: {roots: [], deny: [rel], base: rel}}", []string{"roots: at least one", "deny[0]", "base"}},
		{"url problems", "tools:\n  t:\n    arguments:\n      u: {url: {hosts: [], schemes: [HTTPS], ports: [0], paths: [docs]}}", []string{"hosts: at least one", "schemes[0]", "ports[0]", "paths[0]"}},
		{"bad host", "tools:\n  t:\n    arguments:\n      u: {url: {hosts: [\"Exa mple.com\"]}}", []string{"hosts[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ParseConfig accepted it")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseConfigIsStrict(t *testing.T) {
	for name, in := range map[string]string{
		"unknown field":     "tools:\n  t:\n    argumnets: {}",
		"unknown kind":      "tools:\n  t:\n    arguments:\n      a: {shel: {programs: {ls: {}}}}",
		"repeated key":      "tools:\n  t: {}\n  t: {}",
		"two documents":     "mode: allowlist\n---\nmode: blocklist",
		"not a mapping":     "- a\n- b",
		"bad program field": "tools:\n  t:\n    arguments:\n      c: {shell: {programs: {ls: {deny: [-r]}}}}",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseConfig([]byte(in)); err == nil || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want an ErrInvalidConfig error", err)
			}
		})
	}
	t.Run("JSON", func(t *testing.T) {
		c, err := ParseConfig([]byte(`{"tools": {"t": {"remote": true, "arguments": {"q": {"data": {}}}}}}`))
		if err != nil || !c.Tools["t"].Remote {
			t.Fatalf("%+v %v", c, err)
		}
	})
}

func TestLoadConfig(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
	p := filepath.Join(t.TempDir(), "tools.yaml")
	if err := os.WriteFile(p, []byte("mode: nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("got %v", err)
	}
}

// The documented example is the configuration the tables run against.
func TestDocsExampleIsTheTestedConfiguration(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "tools.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tested, err := os.ReadFile(filepath.Join("testdata", "tools.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, tested) {
		t.Fatal("docs/tools.example.yaml and testdata/tools.yaml differ: copy the tested file to docs")
	}
}

func TestRemoteTools(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("testdata", "tools.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.RemoteTools(), ",")
	if got != "orders_db,python,read_file,sql_console,terminal,web_fetch" {
		t.Fatalf("RemoteTools() = %s", got)
	}
}

func TestNewReportsBadSchemas(t *testing.T) {
	cfg, _ := ParseConfig([]byte("tools:\n  t:\n    schema: {type: object, maxLenght: 3}\n    arguments:\n      a: {data: {}}"))
	if _, err := New(cfg, nil); err == nil || !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "tools.t.schema") {
		t.Fatalf("got %v", err)
	}
}
