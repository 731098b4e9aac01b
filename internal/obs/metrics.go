// Package obs is agentbus's observability outside the pipeline runtime:
// the Prometheus metrics of the stages' own work (providers, tokens and
// spend, guard verdicts, limits, tools, persist commits, entry requests),
// the OpenTelemetry tracer provider configured from the standard OTEL_*
// environment, and the bounded label sets that keep metric cardinality
// fixed. The runtime's per-stage metrics live in pipeline (observe.go).
//
// Every method of *Metrics is safe on a nil receiver (metrics off), and
// every label value comes from a bounded set: users from an allowlist or
// the first MaxUsers seen, models and tools likewise; never a request id.
package obs

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Config configures the metrics' label bounds.
type Config struct {
	// Users, when set, are the only users with their own label value;
	// every other user is counted as "other". Default: none (MaxUsers
	// decides).
	Users []string
	// MaxUsers bounds the user label values when Users is empty: the
	// first MaxUsers distinct users a process sees get their own value,
	// later ones "other". 0 labels every user "other". Default 20.
	MaxUsers int
	// MaxModels bounds the model label values likewise. Default 50.
	MaxModels int
	// MaxTools bounds the tool label values likewise. Default 50.
	MaxTools int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{MaxUsers: 20, MaxModels: 50, MaxTools: 50} }

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MaxUsers < 0 || c.MaxUsers > 10_000 {
		errs = append(errs, fmt.Errorf("metrics max users must be 0..10000, got %d", c.MaxUsers))
	}
	if c.MaxModels < 1 || c.MaxModels > 10_000 {
		errs = append(errs, fmt.Errorf("metrics max models must be 1..10000, got %d", c.MaxModels))
	}
	if c.MaxTools < 1 || c.MaxTools > 10_000 {
		errs = append(errs, fmt.Errorf("metrics max tools must be 1..10000, got %d", c.MaxTools))
	}
	for _, u := range c.Users {
		if strings.TrimSpace(u) == "" {
			errs = append(errs, errors.New("metrics users: empty user name"))
		}
	}
	return errors.Join(errs...)
}

// Other is the label value of everything beyond a label's bound.
const Other = "other"

// Labels bounds the values of one label: an allowlist, or the first Max
// distinct values seen; everything else is Other.
type Labels struct {
	mu    sync.RWMutex
	allow map[string]bool
	seen  map[string]bool
	max   int
}

// NewLabels returns a bound: allow (when not empty) or the first max values.
func NewLabels(allow []string, max int) *Labels {
	l := &Labels{seen: map[string]bool{}, max: max}
	if len(allow) > 0 {
		l.allow = map[string]bool{}
		for _, a := range allow {
			l.allow[a] = true
		}
	}
	return l
}

// Value returns v when it has its own label value, else Other.
func (l *Labels) Value(v string) string {
	if v == "" {
		return ""
	}
	if l.allow != nil {
		if l.allow[v] {
			return v
		}
		return Other
	}
	l.mu.RLock()
	ok, n := l.seen[v], len(l.seen)
	l.mu.RUnlock()
	if ok {
		return v
	}
	if n >= l.max {
		return Other
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[v] {
		return v
	}
	if len(l.seen) >= l.max {
		return Other
	}
	l.seen[v] = true
	return v
}

// Buckets of the histograms.
var (
	// LatencyBuckets (seconds) for model calls and time to first token.
	LatencyBuckets = []float64{.05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120}
	// TokenBuckets are the OpenTelemetry GenAI advice for
	// gen_ai.client.token.usage.
	TokenBuckets = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	// OperationBuckets are the OpenTelemetry GenAI advice for
	// gen_ai.client.operation.duration (seconds).
	OperationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	// CommitBuckets (seconds) for persist commits.
	CommitBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	// BatchBuckets (turns) for persist batches.
	BatchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
	// RequestBuckets (seconds) for entry requests.
	RequestBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
)

// Metrics are the stages' own metrics on one registry.
type Metrics struct {
	Registry *prometheus.Registry

	users, models, tools *Labels

	providerCalls    *prometheus.CounterVec
	providerLatency  *prometheus.HistogramVec
	providerTTFT     *prometheus.HistogramVec
	genaiTokens      *prometheus.HistogramVec
	genaiDuration    *prometheus.HistogramVec
	tokens           *prometheus.CounterVec
	cost             *prometheus.CounterVec
	guardVerdicts    *prometheus.CounterVec
	limitRejections  *prometheus.CounterVec
	toolCalls        *prometheus.CounterVec
	commitDuration   prometheus.Histogram
	commitBatch      prometheus.Histogram
	requests         *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	cacheLookups     *prometheus.CounterVec
	cacheSavedTokens *prometheus.CounterVec
	cacheSavedUSD    *prometheus.CounterVec
	breakerCollector *breakerCollector
}

// New returns the metrics on a fresh registry that also holds the Go
// runtime and process collectors.
func New(c Config) (*Metrics, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		users:    NewLabels(c.Users, c.MaxUsers),
		models:   NewLabels(nil, c.MaxModels),
		tools:    NewLabels(nil, c.MaxTools),

		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_provider_calls_total",
			Help: "Model calls per provider (each attempt, failover included) by outcome: ok, rate_limited, timeout, unavailable, bad_request, error, canceled."}, []string{"provider", "outcome"}),
		providerLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentbus_provider_call_duration_seconds",
			Help: "Duration of one model call attempt per provider.", Buckets: LatencyBuckets}, []string{"provider"}),
		providerTTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentbus_provider_time_to_first_token_seconds",
			Help: "Time from the start of a streamed model call to its first content delta, per provider.", Buckets: LatencyBuckets}, []string{"provider"}),
		genaiTokens: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gen_ai_client_token_usage",
			Help: "OpenTelemetry GenAI gen_ai.client.token.usage: tokens per model call by token type (input, output).", Buckets: TokenBuckets},
			[]string{"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"}),
		genaiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gen_ai_client_operation_duration_seconds",
			Help: "OpenTelemetry GenAI gen_ai.client.operation.duration: duration of a model call (error_type set when it failed).", Buckets: OperationBuckets},
			[]string{"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_tokens_total",
			Help: "Tokens used by model calls, by model, user (bounded) and type (input, output)."}, []string{"model", "user", "type"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_cost_usd_total",
			Help: "Spend of model calls in US dollars from the price table, by model and user (bounded)."}, []string{"model", "user"}),
		guardVerdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_guard_verdicts_total",
			Help: "Guard sanitizer verdicts (allow, flag, block) by rule (\"\" when no rule matched); a verdict with several rules counts once per rule."}, []string{"verdict", "rule"}),
		limitRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_limit_rejections_total",
			Help: "Turns refused by a limit: kind rate (ingest pre-check or guard, by tier), quota (daily, by limit) or budget (daily spend per key)."}, []string{"stage", "kind", "tier"}),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_tool_calls_total",
			Help: "Tool calls by tool (bounded) and firewall verdict (allow, block)."}, []string{"tool", "verdict"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentbus_persist_commit_duration_seconds",
			Help: "Duration of one persist group commit (one transaction).", Buckets: CommitBuckets}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentbus_persist_commit_batch_size",
			Help: "Turns per persist group commit.", Buckets: BatchBuckets}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_requests_total",
			Help: "Chat requests answered by the entry (http, nats) by status code."}, []string{"entry", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentbus_request_duration_seconds",
			Help: "Duration of entry requests (chat completions) until answered.", Buckets: RequestBuckets}, []string{"entry"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_cache_lookups_total",
			Help: "Model calls of turns that may use the response cache, by result: hit (answered from the cache), miss (the provider answered, the answer was stored), bypass (not cacheable)."}, []string{"model", "result"}),
		cacheSavedTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_cache_saved_tokens_total",
			Help: "Tokens of the answers served from the response cache (no provider billed them), by model and user (bounded)."}, []string{"model", "user"}),
		cacheSavedUSD: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentbus_cache_saved_usd_total",
			Help: "What the answers served from the response cache would have cost, in US dollars from the price table, by model and user (bounded)."}, []string{"model", "user"}),
		breakerCollector: &breakerCollector{},
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.providerCalls, m.providerLatency, m.providerTTFT, m.genaiTokens, m.genaiDuration, m.tokens, m.cost,
		m.guardVerdicts, m.limitRejections, m.toolCalls, m.commitDuration, m.commitBatch, m.requests, m.requestDuration,
		m.cacheLookups, m.cacheSavedTokens, m.cacheSavedUSD, m.breakerCollector,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// User returns the bounded label value of a user.
func (m *Metrics) User(u string) string {
	if m == nil {
		return ""
	}
	return m.users.Value(u)
}

// Model returns the bounded label value of a model.
func (m *Metrics) Model(model string) string {
	if m == nil {
		return ""
	}
	return m.models.Value(model)
}

// Usage records one model call's tokens and cost for model and user.
func (m *Metrics) Usage(model, user string, in, out int, costUSD float64) {
	if m == nil {
		return
	}
	model, user = m.models.Value(model), m.users.Value(user)
	m.tokens.WithLabelValues(model, user, "input").Add(float64(in))
	m.tokens.WithLabelValues(model, user, "output").Add(float64(out))
	if costUSD > 0 {
		m.cost.WithLabelValues(model, user).Add(costUSD)
	}
}

// Cache records one model call's response cache result (hit, miss,
// bypass); a hit records what it saved.
func (m *Metrics) Cache(model, user, result string, savedTokens int, savedUSD float64) {
	if m == nil {
		return
	}
	model = m.models.Value(model)
	m.cacheLookups.WithLabelValues(model, result).Inc()
	if savedTokens > 0 || savedUSD > 0 {
		user = m.users.Value(user)
		m.cacheSavedTokens.WithLabelValues(model, user).Add(float64(savedTokens))
		if savedUSD > 0 {
			m.cacheSavedUSD.WithLabelValues(model, user).Add(savedUSD)
		}
	}
}

// GuardVerdict records a guard verdict with its rules.
func (m *Metrics) GuardVerdict(verdict string, rules []string) {
	if m == nil {
		return
	}
	if len(rules) == 0 {
		m.guardVerdicts.WithLabelValues(verdict, "").Inc()
		return
	}
	for _, r := range rules {
		m.guardVerdicts.WithLabelValues(verdict, r).Inc()
	}
}

// Limit kinds of LimitRejected.
const (
	LimitRate   = "rate"
	LimitQuota  = "quota"
	LimitBudget = "budget"
)

// LimitRejected records a turn refused by a limit.
func (m *Metrics) LimitRejected(stage, kind, tier string) {
	if m == nil {
		return
	}
	m.limitRejections.WithLabelValues(stage, kind, tier).Inc()
}

// ToolCall records one tool call's firewall verdict.
func (m *Metrics) ToolCall(tool, verdict string) {
	if m == nil {
		return
	}
	m.toolCalls.WithLabelValues(m.tools.Value(strings.ToLower(tool)), verdict).Inc()
}

// Commit records one persist group commit.
func (m *Metrics) Commit(d time.Duration, turns int) {
	if m == nil {
		return
	}
	m.commitDuration.Observe(d.Seconds())
	m.commitBatch.Observe(float64(turns))
}

// Request records one answered chat request (probes, scrapes and model
// listings are not counted).
func (m *Metrics) Request(entry string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(entry, statusText(status)).Inc()
	m.requestDuration.WithLabelValues(entry).Observe(d.Seconds())
}

var statusTexts sync.Map

func statusText(code int) string {
	if v, ok := statusTexts.Load(code); ok {
		return v.(string)
	}
	s := fmt.Sprint(code)
	statusTexts.Store(code, s)
	return s
}
