package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/messages"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigAndBuild(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, map[string]any{"choices": []any{map[string]any{"finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": "hi"}}}})
	})
	path := writeFile(t, `{
	  "providers": [
	    {"name": "primary", "kind": "openai", "base_url": "`+f.URL+`/v1", "api_key_env": "MY_KEY",
	     "models": ["gpt-4o-mini", "gpt-4o"], "timeout": "5s",
	     "breaker": {"failure_threshold": 3, "open_timeout": 10, "call_timeout": "20s"}},
	    {"name": "fallback", "kind": "offline"}
	  ],
	  "retry": {"max_attempts": 3, "base_delay": "100ms", "max_delay": "1s"}
	}`)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Providers[0].Breaker.OpenTimeout != Duration(10*time.Second) || cfg.Retry.MaxAttempts != 3 {
		t.Fatalf("cfg %+v", cfg)
	}
	env := map[string]string{"MY_KEY": testKey}
	fo, err := Build(cfg, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	resp, err := fo.Complete(context.Background(), userReq, nil)
	if err != nil || resp.Provider != "primary" || resp.Message.Content != "hi" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
	if body := f.request(0); body["model"] != "gpt-4o-mini" {
		t.Fatalf("default model from models[0]: %v", body["model"])
	}
	if got := f.headers[0].Get("Authorization"); got != "Bearer "+testKey {
		t.Fatalf("auth %q", got)
	}
	resp, err = fo.Complete(context.Background(), Request{Model: "agentbus-offline"}, nil)
	if err != nil || resp.Provider != "fallback" {
		t.Fatalf("model routing: %+v %v", resp, err)
	}
	// Requests are routed by model: one no provider declares is refused.
	if _, err = fo.Complete(context.Background(), Request{Model: "other-model"}, nil); !errors.Is(err, ErrModelNotFound) {
		t.Fatalf("unknown model: %v", err)
	}
	snap := fo.Snapshot()
	if len(snap) != 2 || snap[0].Timeout != "5s" || snap[1].Name != "fallback" || snap[1].Timeout != "30s" {
		t.Fatalf("snapshot %+v", snap)
	}

	// A missing variable is an error that names the variable, not a key.
	_, err = Build(cfg, func(string) string { return "" })
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "MY_KEY is empty") {
		t.Fatalf("err %v", err)
	}
	env["MY_KEY"] = "sk-bad"
	_, err = Build(cfg, func(k string) string { return env[k] })
	if !errors.Is(err, ErrInvalidKey) || strings.Contains(err.Error(), "sk-bad") {
		t.Fatalf("err %v", err)
	}
}

func TestBuildEmptyIsOffline(t *testing.T) {
	fo, err := Build(FileConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := fo.Complete(context.Background(), userReq, nil)
	if err != nil || resp.Provider != OfflineName || resp.Message.Content != "You said: hi" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
}

func TestFileConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string
	}{
		{"empty is fine", `{}`, nil},
		{"unknown field", `{"providers":[{"name":"a","kind":"openai","api_key":"sk-x"}]}`, []string{`unknown field "api_key"`}},
		{"trailing", `{} {}`, []string{"trailing data"}},
		{"bad duration", `{"retry":{"base_delay":"soon"}}`, []string{`duration "soon"`}},
		{"many problems", `{"providers":[
			{"kind":"azure"},
			{"name":"a","kind":"openai","api_key_env":"sk-proj-0123456789abcdef","base_url":"not a url","timeout":"-1s"},
			{"name":"a","kind":"local"},
			{"name":"o","kind":"offline","base_url":"http://x"},
			{"name":"r","kind":"openrouter","api_key_env":"1BAD","headers":{"authorization":"x"},"models":[""],"breaker":{"failure_threshold":-1}}
		],"retry":{"max_attempts":-2}}`, []string{
			`providers[0]: name is required`,
			`providers[0]: kind "azure" is unknown`,
			`providers[1] ("a"): base_url must be an absolute http(s) URL`,
			`providers[1] ("a"): api_key_env must name an environment variable, not hold the key`,
			`providers[1] ("a"): timeout must not be negative`,
			`providers[2] ("a"): name is used by another provider`,
			`providers[2] ("a"): base_url is required for kind "local"`,
			`providers[3] ("o"): kind offline takes no base_url or api_key_env`,
			`providers[4] ("r"): api_key_env must be an environment variable name`,
			`providers[4] ("r"): models[0] must be 1-128 bytes`,
			`providers[4] ("r"): headers must not set Authorization`,
			`providers[4] ("r"): breaker: invalid breaker config: failure_threshold must not be negative`,
			`retry.max_attempts must not be negative`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeFile(t, tt.json))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err %v does not wrap ErrInvalidConfig", err)
			}
			errs := flatten(err)
			if len(tt.want) == 1 {
				errs = []error{err}
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[min(i, len(errs)-1)].Error(), w) {
					t.Fatalf("error %d = %q\nwant it to contain %q", i, errs[i], w)
				}
			}
			if strings.Contains(err.Error(), "0123456789abcdef") {
				t.Fatal("key echoed")
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string // kind/name/base/keyenv/model
	}{
		{nil, "offline/agentbus-offline///"},
		{map[string]string{"AGENTBUS_MODEL": "gpt-4o"}, "offline/agentbus-offline///"},
		{map[string]string{"OPENAI_API_KEY": testKey}, "openai/primary//OPENAI_API_KEY/"},
		{map[string]string{"OPENAI_API_KEY": testKey, "AGENTBUS_MODEL": "gpt-4o"}, "openai/primary//OPENAI_API_KEY/gpt-4o"},
		{map[string]string{"OPENAI_BASE_URL": "https://openrouter.ai/api/v1", "OPENAI_API_KEY": "sk-or-x"}, "openrouter/primary/https://openrouter.ai/api/v1/OPENAI_API_KEY/"},
		{map[string]string{"OPENAI_BASE_URL": "http://localhost:11434/v1", "AGENTBUS_MODEL": "llama3.2"}, "local/primary/http://localhost:11434/v1//llama3.2"},
		{map[string]string{"OPENAI_BASE_URL": "https://api.groq.com/openai/v1", "OPENAI_API_KEY": "gsk_x"}, "compatible/primary/https://api.groq.com/openai/v1/OPENAI_API_KEY/"},
		{map[string]string{"OPENAI_API_KEY": testKey, "AGENTBUS_MODEL": OfflineName}, "offline/agentbus-offline///"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			cfg := FromEnv(func(k string) string { return tt.env[k] })
			if len(cfg.Providers) != 1 {
				t.Fatalf("providers %+v", cfg.Providers)
			}
			p := cfg.Providers[0]
			if got := strings.Join([]string{p.Kind, p.Name, p.BaseURL, p.APIKeyEnv, p.Model}, "/"); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func ExampleBuild() {
	// No provider configured: the deterministic offline model.
	cfg := FromEnv(func(string) string { return "" })
	p, err := Build(cfg, os.Getenv)
	if err != nil {
		panic(err)
	}
	resp, _ := p.Complete(context.Background(), Request{Messages: []messages.Message{{Role: "user", Content: "What is 6*7?"}}}, nil)
	fmt.Println(resp.Provider+":", resp.Message.Content)
	fmt.Println(p.Snapshot()[0].Breaker.State)
	// Output:
	// agentbus-offline: 6*7 = 42
	// closed
}
