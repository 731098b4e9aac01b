package provider

import (
	"fmt"
	"strings"
	"unicode"
)

// Provider kinds understood by ValidateKey, Build and the config file.
const (
	KindOpenAI     = "openai"     // api.openai.com; key "sk-..." required
	KindOpenRouter = "openrouter" // openrouter.ai; key "sk-or-..." required
	KindOllama     = "ollama"     // local Ollama; key optional
	KindVLLM       = "vllm"       // vLLM server; key optional
	KindLlamaCpp   = "llamacpp"   // llama.cpp server; key optional
	KindLocal      = "local"      // any local OpenAI-compatible server; key optional
	KindCompatible = "compatible" // any other OpenAI-compatible API; key optional, any format
	KindAnthropic  = "anthropic"  // Anthropic's Messages API; key "sk-ant-..." required
	KindOffline    = "offline"    // the built-in deterministic Offline provider; no key
)

// Kinds lists every provider kind.
var Kinds = []string{KindOpenAI, KindOpenRouter, KindOllama, KindVLLM, KindLlamaCpp, KindLocal, KindCompatible, KindAnthropic, KindOffline}

// DefaultBaseURL returns the base URL a kind uses when none is configured
// ("" for local, compatible and offline, which need one or none).
func DefaultBaseURL(kind string) string {
	switch kind {
	case KindOpenAI:
		return "https://api.openai.com/v1"
	case KindOpenRouter:
		return "https://openrouter.ai/api/v1"
	case KindOllama:
		return "http://localhost:11434/v1"
	case KindVLLM:
		return "http://localhost:8000/v1"
	case KindLlamaCpp:
		return "http://localhost:8080/v1"
	case KindAnthropic:
		return "https://api.anthropic.com/v1"
	}
	return ""
}

// MinKeyLen is the shortest key accepted for kinds that require one.
const MinKeyLen = 20

// ValidateKey checks an API key against the rules of a provider kind:
//
//	openai       required, starts with "sk-", at least MinKeyLen characters
//	openrouter   required, starts with "sk-or-", at least MinKeyLen characters
//	anthropic    required, starts with "sk-ant-", at least MinKeyLen characters
//	ollama, vllm, llamacpp, local, compatible
//	             optional (any non-empty key is sent as a Bearer token)
//	offline      ignored
//
// For every kind a key must not contain whitespace or control characters
// (a pasted newline would corrupt the Authorization header). Errors wrap
// ErrInvalidKey and never contain the key.
func ValidateKey(kind, key string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidKey, kind, fmt.Sprintf(format, a...))
	}
	var prefix string
	switch kind {
	case KindOpenAI:
		prefix = "sk-"
	case KindOpenRouter:
		prefix = "sk-or-"
	case KindAnthropic:
		prefix = "sk-ant-"
	case KindOllama, KindVLLM, KindLlamaCpp, KindLocal, KindCompatible:
	case KindOffline:
		return nil
	default:
		return fmt.Errorf("%w: unknown provider kind %q (want one of %s)", ErrInvalidKey, kind, strings.Join(Kinds, ", "))
	}
	if prefix != "" && key == "" {
		return bad("API key is required (set the environment variable named by api_key_env)")
	}
	if strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return bad("API key contains whitespace or control characters")
	}
	if prefix != "" && !strings.HasPrefix(key, prefix) {
		return bad("API key must start with %q", prefix)
	}
	if prefix != "" && len(key) < MinKeyLen {
		return bad("API key is too short (%d characters, need at least %d)", len(key), MinKeyLen)
	}
	return nil
}
