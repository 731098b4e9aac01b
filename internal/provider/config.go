package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentbus/agentbus/internal/breaker"
	"github.com/agentbus/agentbus/messages"
)

// Duration is a time.Duration that reads JSON "30s" (a Go duration) or a
// number of seconds, and writes "30s".
type Duration time.Duration

// UnmarshalJSON accepts "1m30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want e.g. \"30s\" or \"500ms\"", s)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration %s: want a string like \"30s\" or a number of seconds", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a string like "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// BreakerConfig is the "breaker" object of a provider in the config file;
// zero fields take breaker.Config's defaults.
type BreakerConfig struct {
	FailureThreshold  int      `json:"failure_threshold,omitempty"`    // default 5
	SuccessThreshold  int      `json:"success_threshold,omitempty"`    // default 2
	OpenTimeout       Duration `json:"open_timeout,omitempty"`         // default 60s
	HalfOpenMaxProbes int      `json:"half_open_max_probes,omitempty"` // default 1
	CallTimeout       Duration `json:"call_timeout,omitempty"`         // default 30s
}

func (b BreakerConfig) config() breaker.Config {
	return breaker.Config{
		FailureThreshold: b.FailureThreshold, SuccessThreshold: b.SuccessThreshold,
		OpenTimeout: time.Duration(b.OpenTimeout), HalfOpenMaxProbes: b.HalfOpenMaxProbes,
		CallTimeout: time.Duration(b.CallTimeout),
	}
}

// RetryFileConfig is the "retry" object of the config file.
type RetryFileConfig struct {
	MaxAttempts int      `json:"max_attempts,omitempty"` // default 2
	BaseDelay   Duration `json:"base_delay,omitempty"`   // default 200ms
	MaxDelay    Duration `json:"max_delay,omitempty"`    // default 5s
}

func (r RetryFileConfig) config() RetryConfig {
	return RetryConfig{MaxAttempts: r.MaxAttempts, BaseDelay: time.Duration(r.BaseDelay), MaxDelay: time.Duration(r.MaxDelay)}
}

// ProviderConfig is one provider of the config file.
type ProviderConfig struct {
	// Name identifies the provider; required, unique.
	Name string `json:"name"`
	// Kind is one of Kinds; required.
	Kind string `json:"kind"`
	// BaseURL defaults to DefaultBaseURL(Kind); required for local and
	// compatible.
	BaseURL string `json:"base_url,omitempty"`
	// APIKeyEnv names the environment variable holding the API key (the
	// file never holds the key itself). Required for openai, openrouter,
	// anthropic.
	APIKeyEnv string `json:"api_key_env,omitempty"`
	// Model is the default model; default Models[0], else the kind's
	// default (gpt-4o-mini; agentbus-offline for offline; required for
	// anthropic).
	Model string `json:"model,omitempty"`
	// Models this provider serves (by the names clients use), besides
	// Model; ["*"] forwards any name. Default: only Model. Requests are
	// routed by model: a model's providers are tried in file order.
	Models []string `json:"models,omitempty"`
	// Aliases are more names clients may use, each mapped to the
	// provider's own name for the model (sent upstream). Default none.
	Aliases map[string]string `json:"aliases,omitempty"`
	// Capabilities override what the kind honours (KindCapabilities):
	// {"images": true, "logprobs": false, ...}; keys in CapabilityNames.
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	// MaxTokens bounds an answer when the request sets no bound and the
	// API needs one (anthropic). Default 4096.
	MaxTokens int `json:"max_tokens,omitempty"`
	// Timeout bounds one attempt (streams: the first delta). Default:
	// breaker.call_timeout.
	Timeout Duration `json:"timeout,omitempty"`
	// StreamIdleTimeout fails a silent stream. Default 60s.
	StreamIdleTimeout Duration `json:"stream_idle_timeout,omitempty"`
	// Headers are extra HTTP headers. Default none.
	Headers map[string]string `json:"headers,omitempty"`
	// Breaker configures the provider's circuit breaker.
	Breaker BreakerConfig `json:"breaker,omitzero"`
}

// FileConfig is the provider configuration file; see the package doc.
type FileConfig struct {
	// Providers in priority order; empty means the Offline provider.
	Providers []ProviderConfig `json:"providers"`
	Retry     RetryFileConfig  `json:"retry,omitzero"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate returns every problem in the file, joined; each wraps
// ErrInvalidConfig and names the provider and field. It never echoes a key.
func (c FileConfig) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, p := range c.Providers {
		where := fmt.Sprintf("providers[%d]", i)
		if p.Name != "" {
			where += fmt.Sprintf(" (%q)", p.Name)
		}
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidConfig, where, fmt.Sprintf(format, a...)))
		}
		switch {
		case p.Name == "":
			bad("name is required")
		case names[p.Name]:
			bad("name is used by another provider")
		}
		names[p.Name] = true
		if !slices.Contains(Kinds, p.Kind) {
			bad("kind %q is unknown (want one of %s)", truncate(p.Kind, 32), strings.Join(Kinds, ", "))
		}
		if p.Kind == KindOffline {
			if p.BaseURL != "" || p.APIKeyEnv != "" {
				bad("kind offline takes no base_url or api_key_env")
			}
		} else {
			base := p.BaseURL
			if base == "" {
				base = DefaultBaseURL(p.Kind)
			}
			if base == "" && slices.Contains(Kinds, p.Kind) {
				bad("base_url is required for kind %q", p.Kind)
			} else if base != "" {
				if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					bad("base_url must be an absolute http(s) URL")
				} else if u.User != nil {
					bad("base_url must not carry credentials (use api_key_env)")
				}
			}
		}
		switch {
		case p.APIKeyEnv == "" && keyRequired(p.Kind):
			bad("api_key_env is required for kind %q", p.Kind)
		case strings.HasPrefix(p.APIKeyEnv, "sk-"):
			bad("api_key_env must name an environment variable, not hold the key")
		case p.APIKeyEnv != "" && !envName.MatchString(p.APIKeyEnv):
			bad("api_key_env must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
		}
		for j, m := range p.Models {
			if m == "" || len(m) > messages.MaxModelLen {
				bad("models[%d] must be 1-%d bytes", j, messages.MaxModelLen)
			}
		}
		for a, m := range p.Aliases {
			if a == "" || a == AnyModel || len(a) > messages.MaxModelLen || m == "" {
				bad("aliases: %q -> %q: both names must be non-empty (and the alias not \"*\")", truncate(a, 32), truncate(m, 32))
			}
		}
		for c := range p.Capabilities {
			if !slices.Contains(CapabilityNames, c) {
				bad("capabilities: %q is unknown (want one of %s)", truncate(c, 32), strings.Join(CapabilityNames, ", "))
			}
		}
		if p.Kind == KindAnthropic && p.Model == "" && !slices.ContainsFunc(p.Models, func(m string) bool { return m != AnyModel }) {
			bad("kind anthropic needs a model (e.g. \"claude-sonnet-4-5\")")
		}
		if p.MaxTokens < 0 {
			bad("max_tokens must not be negative")
		}
		if p.Timeout < 0 {
			bad("timeout must not be negative")
		}
		if p.StreamIdleTimeout < 0 {
			bad("stream_idle_timeout must not be negative")
		}
		for k := range p.Headers {
			if strings.EqualFold(k, "Authorization") {
				bad("headers must not set Authorization (use api_key_env)")
			}
		}
		if err := p.Breaker.config().Validate(); err != nil {
			bad("breaker: %v", err)
		}
	}
	errs = append(errs, flatten(c.Retry.config().Validate())...)
	return errors.Join(errs...)
}

// LoadConfig reads and validates a JSON config file. Unknown fields are
// errors (a misspelt "failure_treshold" must not silently take a default).
func LoadConfig(path string) (FileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, fmt.Errorf("provider config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig decodes and validates a JSON config.
func ParseConfig(b []byte) (FileConfig, error) {
	var c FileConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return FileConfig{}, fmt.Errorf("%w: provider config: %w", ErrInvalidConfig, err)
	}
	if dec.More() {
		return FileConfig{}, fmt.Errorf("%w: provider config: trailing data after the JSON object", ErrInvalidConfig)
	}
	if err := c.Validate(); err != nil {
		return FileConfig{}, err
	}
	return c, nil
}

// BuildOptions are optional hooks for Build.
type BuildOptions struct {
	// HTTPClient is shared by the OpenAI providers. Default: one client on
	// http.DefaultTransport.
	HTTPClient *http.Client
	// Clock drives the breakers. Default: the system clock.
	Clock breaker.Clock
	// OnStateChange is set on every breaker. Default nil.
	OnStateChange func(name string, from, to breaker.State)
	// Sleep and Rand are passed to the Failover (tests). Default real.
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func() float64
}

// Build validates cfg and returns the Failover it describes, reading API
// keys through getenv (os.Getenv in production). Each provider gets its
// own breaker. An empty provider list builds the Offline provider.
func Build(cfg FileConfig, getenv func(string) string) (*Failover, error) {
	return BuildWith(cfg, getenv, BuildOptions{})
}

// BuildWith is Build with options.
func BuildWith(cfg FileConfig, getenv func(string) string, opts BuildOptions) (*Failover, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	providers := cfg.Providers
	if len(providers) == 0 {
		providers = []ProviderConfig{{Name: OfflineName, Kind: KindOffline}}
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	var entries []Entry
	var errs []error
	for _, pc := range providers {
		bc := pc.Breaker.config()
		bc.OnStateChange = opts.OnStateChange
		br, err := breaker.New(pc.Name, bc, opts.Clock)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		model := pc.Model
		if model == "" {
			for _, m := range pc.Models {
				if m != AnyModel {
					model = m
					break
				}
			}
		}
		var p Provider
		switch pc.Kind {
		case KindOffline:
			p = NewOffline()
			if pc.Name != OfflineName {
				p = renamed{p, pc.Name}
			}
			if model == "" {
				model = OfflineName
			}
		default:
			key := ""
			if pc.APIKeyEnv != "" && getenv != nil {
				key = getenv(pc.APIKeyEnv)
			}
			if pc.APIKeyEnv != "" && key == "" && keyRequired(pc.Kind) {
				errs = append(errs, fmt.Errorf("%w: provider %q: environment variable %s is empty", ErrInvalidKey, pc.Name, pc.APIKeyEnv))
				continue
			}
			if pc.Kind == KindAnthropic {
				p, err = NewAnthropic(AnthropicConfig{
					Name: pc.Name, BaseURL: pc.BaseURL, APIKey: key, Model: model, MaxTokens: pc.MaxTokens,
					HTTPClient: client, StreamIdleTimeout: time.Duration(pc.StreamIdleTimeout), Headers: pc.Headers,
				})
			} else {
				if model == "" {
					model = DefaultOpenAIModel
				}
				p, err = NewOpenAI(OpenAIConfig{
					Name: pc.Name, Kind: pc.Kind, BaseURL: pc.BaseURL, APIKey: key, Model: model,
					HTTPClient: client, StreamIdleTimeout: time.Duration(pc.StreamIdleTimeout), Headers: pc.Headers,
				})
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
		}
		caps := KindCapabilities(pc.Kind)
		names := make([]string, 0, len(pc.Capabilities))
		for c := range pc.Capabilities {
			names = append(names, c)
		}
		sort.Strings(names)
		for _, c := range names {
			caps.set(c, pc.Capabilities[c])
		}
		models := []string{model}
		for _, m := range pc.Models {
			if !slices.Contains(models, m) {
				models = append(models, m)
			}
		}
		entries = append(entries, Entry{Provider: p, Breaker: br, Models: models, Aliases: pc.Aliases, Default: model, Kind: pc.Kind,
			Caps: &caps, Timeout: time.Duration(pc.Timeout)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewFailover(entries, FailoverConfig{Retry: cfg.Retry.config(), Sleep: opts.Sleep, Rand: opts.Rand})
}

// keyRequired reports whether a kind cannot work without an API key.
func keyRequired(kind string) bool {
	return kind == KindOpenAI || kind == KindOpenRouter || kind == KindAnthropic
}

// renamed gives a provider another name.
type renamed struct {
	Provider
	name string
}

func (r renamed) Name() string { return r.name }

// Environment variables read by FromEnv.
const (
	EnvBaseURL = "OPENAI_BASE_URL"
	EnvAPIKey  = "OPENAI_API_KEY"
	EnvModel   = "AGENTBUS_MODEL"
)

// FromEnv returns a one-provider config from OPENAI_BASE_URL,
// OPENAI_API_KEY and AGENTBUS_MODEL (the provider is named "primary";
// AGENTBUS_MODEL may list several models, comma-separated, the first being
// the default; without it the provider serves gpt-4o-mini):
//
//	nothing set (or AGENTBUS_MODEL=agentbus-offline)  -> the Offline provider
//	only OPENAI_API_KEY                               -> kind openai
//	OPENAI_BASE_URL on openrouter.ai                  -> kind openrouter
//	OPENAI_BASE_URL on api.openai.com                 -> kind openai
//	OPENAI_BASE_URL on localhost / 127.0.0.1 / ::1    -> kind local
//	any other OPENAI_BASE_URL                         -> kind compatible
//
// The key stays in the environment: the config only names the variable.
func FromEnv(getenv func(string) string) FileConfig {
	base, key, model := getenv(EnvBaseURL), getenv(EnvAPIKey), getenv(EnvModel)
	if (base == "" && key == "") || model == OfflineName {
		return FileConfig{Providers: []ProviderConfig{{Name: OfflineName, Kind: KindOffline}}}
	}
	pc := ProviderConfig{Name: "primary", Kind: KindOpenAI, BaseURL: base}
	for _, m := range strings.Split(model, ",") {
		if m = strings.TrimSpace(m); m != "" {
			pc.Models = append(pc.Models, m)
		}
	}
	if len(pc.Models) > 0 {
		pc.Model, pc.Models = pc.Models[0], pc.Models[1:]
	}
	if key != "" {
		pc.APIKeyEnv = EnvAPIKey
	}
	if base != "" {
		host := ""
		if u, err := url.Parse(base); err == nil {
			host = strings.ToLower(u.Hostname())
		}
		switch {
		case host == "openrouter.ai" || strings.HasSuffix(host, ".openrouter.ai"):
			pc.Kind = KindOpenRouter
		case host == "api.openai.com":
			pc.Kind = KindOpenAI
		case host == "localhost" || host == "127.0.0.1" || host == "::1":
			pc.Kind = KindLocal
		default:
			pc.Kind = KindCompatible
		}
	}
	return FileConfig{Providers: []ProviderConfig{pc}}
}
