// Package provider calls language models: an OpenAI-compatible HTTP
// client, a deterministic offline model, and a failover that puts each
// provider behind its own circuit breaker and retries in exactly one place.
//
// Every model is a [Provider]:
//
//	p, err := provider.Build(cfg, os.Getenv) // *Failover over the configured providers
//	resp, err := p.Complete(ctx, provider.Request{
//		Messages: []messages.Message{{Role: "user", Content: "What is 17*23?"}},
//		Tools:    []provider.ToolSpec{{Name: "calculator", Parameters: schema}},
//	}, func(delta string) { publish(delta) }) // nil onDelta: no streaming
//	if err != nil {
//		status, code := provider.Classify(err)   // 400 / 429 / 503 / 504 / 502
//		retry, _ := provider.RetryAfter(err)     // NAK delay, Retry-After header
//	}
//	// resp.Message (content or tool calls), resp.Usage, resp.Provider
//
// # Providers
//
// [OpenAI] speaks Chat Completions over net/http (no SDK, so no hidden
// retries) to OpenAI, OpenRouter, Ollama, vLLM, llama.cpp or any compatible
// server: tool calling, usage, SSE streaming with tool-call deltas
// accumulated by index, refusals, logprobs, every request parameter as
// OpenAI names it. [Anthropic] speaks Anthropic's Messages API over
// net/http, mapping system prompts, tool use and tool results, images,
// streaming events, stop reasons and usage both ways. [Offline]
// ("agentbus-offline") needs no network and answers deterministically in
// microseconds; it is the default when nothing is configured. [Failover]
// tries an ordered list of providers.
//
// # Models, routing and capabilities
//
// Every provider declares the models it serves (its default model, its
// "models" and its "aliases"; "*" forwards any name). A request is routed
// by its model: only the providers serving it are tried, in configuration
// order, each behind its own breaker; a model nobody serves is a
// [*ModelNotFoundError] (404 model_not_found). Each provider also has
// [Capabilities] (by kind, see [KindCapabilities], overridable in the
// file): a provider that cannot honour a request parameter (seed for
// Anthropic, images for a local text model, ...) is skipped, and when no
// provider of the model can, the request is refused with an
// [*UnsupportedError] naming the parameter (400 unsupported_parameter),
// never sent with the parameter dropped. [Failover.Catalog] lists all of
// it; the llm stage serves it to ingest, which lists it on /v1/models and
// checks requests against it.
//
// # Errors
//
// HTTP errors are [*Error] (Status, Code, Message, RetryAfter) wrapping one
// sentinel: [ErrRateLimited] (429), [ErrContextLength] (also
// [ErrBadRequest]), [ErrBadRequest] (other 4xx), [ErrAuth] (401/403),
// [ErrUnavailable] (5xx, 408, connection errors, timeouts, truncated or
// malformed responses). [IsBreakerFailure] decides what counts against a
// breaker: only provider faults, never the client's (4xx, cancellation) and
// never back-pressure (429). When no provider can answer, Failover returns a
// [*FailoverError] wrapping [ErrAllProvidersUnavailable] with the shortest
// RetryAfter, without waiting for any timeout.
//
// # Configuration file
//
// [LoadConfig] reads JSON; unknown fields are errors; durations are strings
// ("30s") or numbers of seconds; zero or absent fields take the defaults
// shown:
//
//	{
//	  "providers": [
//	    {
//	      "name": "primary",                  // required, unique
//	      "kind": "openai",                   // openai openrouter ollama vllm llamacpp local compatible anthropic offline
//	      "base_url": "https://api.openai.com/v1", // default per kind; required for local, compatible
//	      "api_key_env": "OPENAI_API_KEY",    // the variable holding the key; required for openai, openrouter, anthropic
//	      "model": "gpt-4o-mini",             // default model: models[0], else gpt-4o-mini (agentbus-offline for offline; required for anthropic)
//	      "models": ["gpt-4o"],               // more models served; ["*"] forwards any name; default: only model
//	      "aliases": {"fast": "gpt-4o-mini"}, // more names clients may use -> the provider's own name
//	      "capabilities": {"images": true},   // override what the kind honours (KindCapabilities)
//	      "max_tokens": 4096,                 // answer bound when the API needs one and the request sets none (anthropic)
//	      "timeout": "30s",                   // per attempt (streams: first delta); default breaker.call_timeout
//	      "stream_idle_timeout": "60s",
//	      "headers": {"HTTP-Referer": "https://example.org"},
//	      "breaker": {"failure_threshold": 5, "success_threshold": 2, "open_timeout": "60s",
//	                  "half_open_max_probes": 1, "call_timeout": "30s"}
//	    },
//	    {"name": "claude", "kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY", "model": "claude-sonnet-4-5"},
//	    {"name": "local", "kind": "ollama", "model": "llama3.2", "aliases": {"gpt-4o-mini": "llama3.2"}}
//	  ],
//	  "retry": {"max_attempts": 2, "base_delay": "200ms", "max_delay": "5s"}
//	}
//
// The file never holds a key: api_key_env names an environment variable and
// [Build] reads it through the getenv it is given. [FromEnv] builds a
// one-provider config from OPENAI_BASE_URL, OPENAI_API_KEY and
// AGENTBUS_MODEL (a comma-separated list of models, the first the
// default); with none set it selects the Offline provider.
//
// # Guarantees
//
//   - Retries happen only in Failover: at most MaxAttempts per provider, with
//     exponential backoff and full jitter, and only for provider faults.
//   - A 400 or context-length error is returned at once, uncounted; a 429 or
//     401/403 fails over to the next provider, uncounted; a cancelled caller
//     is never counted as a provider failure.
//   - An open breaker is skipped without waiting: with every breaker open,
//     Complete returns in microseconds.
//   - Once a streaming call has delivered a delta, Failover never switches
//     provider (the text would be duplicated); it returns the error.
//   - A stream that breaks before [DONE] (or a finish_reason) is an error,
//     never a silently truncated answer; a stream that goes silent fails after
//     StreamIdleTimeout; every call ends when its ctx does.
//   - API keys never appear in errors or logs: configs implement
//     slog.LogValuer, and provider error text is scrubbed of the key and of
//     anything key-like ("sk-...", "Bearer ...").
package provider
