// Package cli implements the agentbus command line: serve (every stage in
// one process on an embedded NATS server), one-stage runners for the
// cmd/<stage> binaries, and the client and operator commands (chat, keys,
// sanitize, firewall, history, replay, audit, dlq, rebuild, nats, bench,
// completion, help). Only this package and main read flags and
// environment.
//
// One table of commands drives dispatch, `agentbus --help`, every
// command's -h and the shell completion scripts. Every flag of serve and
// of the commands that connect to a running system takes its default from
// AGENTBUS_<FLAG>. Help that was asked for goes to stdout with exit status
// 0; a bad command line prints the usage to stderr and exits 2.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/pipeline"
)

// Env is the process environment the CLI reads (os.Getenv in main).
type Env struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string

	// flagSets, when set, sees every flag set a command defines (shell
	// completion collects the flags of the command table through it).
	flagSets func(name string, fs *flag.FlagSet)
}

// ErrUsage is returned for bad command lines (exit status 2).
var ErrUsage = errors.New("usage")

// ExitError carries a specific exit status (audit violations exit 1).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return "exit status " + strconv.Itoa(e.Code) }

// Main runs the command line and returns the process exit status.
func Main(env Env) int {
	err := run(env)
	var ee ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(env.Stderr, "agentbus:", err)
		return 2
	default:
		fmt.Fprintln(env.Stderr, "agentbus:", err)
		return 1
	}
}

func run(env Env) error {
	args := env.Args
	if len(args) > 0 && isHelp(args[0]) && args[0] != "help" {
		writeUsage(env.Stdout)
		return nil
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	c, ok := findCommand(name)
	if !ok {
		writeUsage(env.Stderr)
		return fmt.Errorf("%w: unknown command %q", ErrUsage, name)
	}
	return dispatch(env, c, args)
}

// RunStage is the main of the cmd/<stage> binaries: one stage, an external
// NATS server by default.
func RunStage(stage string, env Env) int {
	var err error
	if len(env.Args) > 0 && env.Args[0] == "health" {
		err = stageHealth(env, stage, env.Args[1:])
	} else {
		err = serve(env, env.Args, []string{stage}, "agentbus-"+stage)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(env.Stderr, "agentbus-"+stage+":", err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// stageHealth is `<stage> health`: a container health check. It connects
// as the stage would (--nats, --nats-creds and their environment) and
// succeeds when an instance of the stage reports itself ready.
func stageHealth(env Env, stage string, args []string) error {
	f := newFlags(env, "agentbus-"+stage+" health")
	cf := addConnFlags(f)
	timeout := f.duration("health-timeout", 3*time.Second, "how long to wait for an answer")
	if err := f.parse(args); err != nil {
		return err
	}
	if *cf.url == "" {
		return fmt.Errorf("%w: --nats is required", ErrUsage)
	}
	nc, _, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	m, err := nc.Request(pipeline.HealthSubject(stage)+".ready", nil, *timeout)
	if err != nil {
		return fmt.Errorf("%s readiness: %w", stage, err)
	}
	var rep pipeline.HealthReport
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return fmt.Errorf("%s readiness: undecodable answer", stage)
	}
	fmt.Fprintf(env.Stdout, "%s %s\n", stage, rep.Status)
	if rep.Status != pipeline.Healthy {
		return ExitError{Code: 1}
	}
	return nil
}

// flags wraps a FlagSet whose defaults come from AGENTBUS_* variables.
// Its name is the command path ("keys create"), or the program name for
// serve and the stage binaries.
type flags struct {
	*flag.FlagSet
	env Env
}

func newFlags(env Env, name string) *flags {
	f := &flags{flag.NewFlagSet(name, flag.ContinueOnError), env}
	f.Usage = f.usage
	if env.flagSets != nil {
		env.flagSets(name, f.FlagSet)
	}
	return f
}

// usage explains the command from the command table, then its flags.
func (f *flags) usage() {
	w := f.Output()
	path := f.Name()
	if path == "agentbus" {
		path = "serve"
	}
	if c, ok := findCommand(path); ok {
		if path == "serve" {
			path = "[serve]"
		}
		fmt.Fprintf(w, "Usage: agentbus %s %s\n\n%s.\n\n", path, c.args, capitalize(c.summary))
	} else {
		fmt.Fprintf(w, "Usage: %s [flags]\n\n", f.Name())
	}
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "Flags:")
		f.PrintDefaults()
	}
}

func envName(flagName string) string {
	return "AGENTBUS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f *flags) str(name, def, help string) *string {
	if v := f.env.Getenv(envName(name)); v != "" {
		def = v
	}
	return f.String(name, def, help+" ($"+envName(name)+")")
}

func (f *flags) integer(name string, def int, help string) *int {
	if v, err := strconv.Atoi(f.env.Getenv(envName(name))); err == nil {
		def = v
	}
	return f.Int(name, def, help+" ($"+envName(name)+")")
}

func (f *flags) boolean(name string, def bool, help string) *bool {
	if v, err := strconv.ParseBool(f.env.Getenv(envName(name))); err == nil {
		def = v
	}
	return f.Bool(name, def, help+" ($"+envName(name)+")")
}

func (f *flags) float(name string, def float64, help string) *float64 {
	if v, err := strconv.ParseFloat(f.env.Getenv(envName(name)), 64); err == nil {
		def = v
	}
	return f.Float64(name, def, help+" ($"+envName(name)+")")
}

// sanitizeFlags are the sanitizer's thresholds; 0 means the value chosen
// when the model was trained.
type sanitizeFlags struct {
	action                             *string
	blockAt, flagAt, resBlock, resFlag *float64
}

func addSanitizeFlags(f *flags) sanitizeFlags {
	return sanitizeFlags{
		action:   f.str("sanitize-action", "block", "what a prompt-injection score at or above the block threshold does: block (reject) or flag (admit, record the verdict)"),
		blockAt:  f.float("sanitize-block-at", 0, "prompt-injection score (0..1) at which client input is blocked; 0 = the trained default"),
		flagAt:   f.float("sanitize-flag-at", 0, "prompt-injection score (0..1) at which client input is flagged; 0 = the trained default"),
		resBlock: f.float("sanitize-result-block-at", 0, "prompt-injection score (0..1) at which a tool result is withheld from the model; 0 = the trained default"),
		resFlag:  f.float("sanitize-result-flag-at", 0, "prompt-injection score (0..1) at which a tool result is passed on with a warning; 0 = the trained default"),
	}
}

// config applies the flags to c.
func (sf sanitizeFlags) config(c *sanitize.Config) {
	c.Action = *sf.action
	c.BlockThreshold, c.FlagThreshold = *sf.blockAt, *sf.flagAt
	c.ResultBlockThreshold, c.ResultFlagThreshold = *sf.resBlock, *sf.resFlag
}

func (f *flags) duration(name string, def time.Duration, help string) *time.Duration {
	if v, err := time.ParseDuration(f.env.Getenv(envName(name))); err == nil {
		def = v
	}
	return f.Duration(name, def, help+" ($"+envName(name)+")")
}

// size is a byte count flag: a number with an optional KiB, MiB, GiB
// (or KB, MB, GB: the same binary units) suffix.
func (f *flags) size(name string, def int64, help string) *int64 {
	v := &sizeValue{n: def}
	if s := f.env.Getenv(envName(name)); s != "" {
		_ = v.Set(s) // a bad environment value keeps the default; the flag reports errors
	}
	f.Var(v, name, help+" ($"+envName(name)+")")
	return &v.n
}

type sizeValue struct{ n int64 }

func (v *sizeValue) String() string {
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v.n >= u.n && v.n%u.n == 0 {
			return strconv.FormatInt(v.n/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(v.n, 10)
}

func (v *sizeValue) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.s) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.s)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a byte count such as 512MiB, got %q", s)
	}
	v.n = n * mult
	return nil
}

// parse parses args. Asked for (-h), the usage goes to stdout and the
// error is flag.ErrHelp (exit status 0); with a bad flag, the message and
// the usage go to stderr and the error is an ErrUsage.
func (f *flags) parse(args []string) error {
	var out bytes.Buffer
	f.SetOutput(&out)
	err := f.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = f.env.Stdout.Write(out.Bytes())
		return err
	case err != nil:
		_, _ = f.env.Stderr.Write(out.Bytes())
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}

type logFlags struct{ level, format *string }

func addLogFlags(f *flags) logFlags {
	return logFlags{
		level:  f.str("log-level", "info", "log level: debug, info, warn, error"),
		format: f.str("log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text, json"),
	}
}

func (l logFlags) logger(w io.Writer) (*slog.Logger, error) {
	lvl, err := pipeline.ParseLevel(*l.level)
	if err != nil {
		return nil, fmt.Errorf("%w: --log-level: %v", ErrUsage, err)
	}
	return pipeline.NewLogger(w, lvl, *l.format), nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ignoreHangups keeps SIGHUP (a closed terminal, or a reload request out of
// habit) from killing a serving process: the process reads its
// configuration only at start, so a hangup is logged and otherwise
// ignored. stop restores the default.
func ignoreHangups(log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				log.Info("SIGHUP ignored: configuration is read only at start; restart to change it (SIGINT or SIGTERM shut down gracefully)")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// serve runs stages until SIGINT/SIGTERM; SIGHUP is logged and ignored.
func serve(env Env, args []string, stages []string, name string) error {
	f := newFlags(env, name)
	o := app.DefaultOptions()
	embedded := len(stages) > 1
	natsDefault := ""
	if !embedded {
		natsDefault = "nats://127.0.0.1:4222"
	}
	natsURL := f.str("nats", natsDefault, "NATS server URL"+map[bool]string{true: "; empty starts an embedded server", false: ""}[embedded])
	listen := f.str("nats-listen", o.Pipeline.Embedded.Listen, "client address of the embedded NATS server")
	httpAddr := f.str("http", o.HTTPAddr, "HTTP listen address of the OpenAI-compatible API")
	data := f.str("data", o.DataDir, "data directory (embedded NATS store, conversation store)")
	store := f.str("store", o.Store, "conversation store: sqlite or files")
	providers := f.str("providers", "", "provider config file (JSON); default: OPENAI_BASE_URL/OPENAI_API_KEY/AGENTBUS_MODEL, else the offline model")
	auth := f.boolean("auth", true, "require API keys on /v1/*")
	syncAlways := f.boolean("sync-always", false, "survive power loss: the embedded NATS server and the SQLite store fsync every write before acking (see docs/decisions/0002-durability.md)")
	maxAge := f.duration("max-age", 0, "how long the stream keeps turn events (0: until --max-bytes pushes the oldest out)")
	maxBytes := f.size("max-bytes", o.Pipeline.Streams.MaxBytes, "bound of the turn stream; the oldest events are dropped beyond it (embedded server: at most half its storage)")
	dlqMaxAge := f.duration("dlq-max-age", o.Pipeline.Streams.DLQMaxAge, "how long dead letters are kept")
	dlqMaxBytes := f.size("dlq-max-bytes", o.Pipeline.Streams.DLQMaxBytes, "bound of the dead-letter stream (oldest dropped first)")
	maxBody := f.size("max-body-bytes", o.Ingest.MaxBodyBytes, "largest HTTP request body or NATS entry request (413 beyond)")
	maxTurn := f.size("max-turn-bytes", int64(o.Ingest.MaxTurnBytes), "largest turn once encoded for the bus (413 payload_too_large beyond; at most 512KiB, half the bus's max payload)")
	readTimeout := f.duration("http-read-timeout", o.Ingest.ReadTimeout, "bound of reading a whole HTTP request: slower clients are disconnected")
	maxConns := f.integer("http-max-conns", o.Ingest.MaxConns, "most open HTTP connections at once")
	completeOnDisconnect := f.boolean("complete-on-disconnect", false, "let a turn whose HTTP client went away run to the end and be stored (default: cancel it and its model call)")
	allowUnknown := f.boolean("allow-unknown-params", false, "pass request parameters OpenAI does not define through to the providers (default: 400 unknown_parameter, as OpenAI answers)")
	replicas := f.integer("replicas", 1, "stream replicas (3 in a cluster)")
	concurrency := f.integer("concurrency", o.Pipeline.Consumer.Concurrency, "parallel handler runs per stage instance")
	userRPM := f.integer("user-rpm", 120, "requests per minute per user (0 = unlimited)")
	userTPM := f.integer("user-tpm", 200_000, "estimated tokens per minute per user (0 = unlimited)")
	globalRPM := f.integer("global-rpm", 0, "requests per minute for everybody together (0 = unlimited)")
	handlerTimeout := f.duration("handler-timeout", o.Pipeline.Consumer.HandlerTimeout, "bound of one handler run (all stages but llm)")
	ackWait := f.duration("ack-wait", o.Pipeline.Consumer.AckWait, "JetStream ack wait: how soon a crashed replica's messages are redelivered (running handlers keep theirs with in-progress acks)")
	llmTimeout := f.duration("llm-timeout", o.LLMTimeout, "bound of one llm handler run (provider timeouts, retries, failover)")
	failOpen := f.boolean("ratelimit-fail-open", false, "admit requests when the shared rate-limit state is unreachable (default: reject with 503)")
	sanitizeOpts := addSanitizeFlags(f)
	quotaUserReq := f.integer("quota-user-requests", 0, "requests per user per UTC day (0 = unlimited)")
	quotaUserTok := f.integer("quota-user-tokens", 0, "tokens per user per UTC day (0 = unlimited)")
	quotaModelTok := f.integer("quota-model-tokens", 0, "tokens per model per UTC day, all users (0 = unlimited)")
	cacheTTL := f.duration("cache-ttl", o.Cache.TTL, "how long the llm stage's response cache keeps an answer (0: cache off; keys and requests opt in, see docs/operations.md)")
	cacheMaxBytes := f.size("cache-max-bytes", o.Cache.MaxBytes, "bound of the response cache (oldest entries dropped first)")
	cacheMaxEntries := f.integer("cache-max-entries", int(o.Cache.MaxEntries), "most answers in the response cache (oldest dropped first)")
	cacheMaxEntry := f.size("cache-max-entry-bytes", int64(o.Cache.MaxEntryBytes), "largest answer the response cache keeps")
	cacheShared := f.boolean("cache-shared", false, "let all users share response cache entries (default: each user's own)")
	fetchHosts := f.str("fetch-allow-hosts", "", "comma-separated hosts the http_fetch tool may reach (empty: tool disabled)")
	remoteTools := f.str("remote-tools", "", "comma-separated names of remote tools (NATS micro service agentbus-tools) the model may be offered; discovery alone allows none")
	natsCreds := f.str("nats-creds", "", "NATS credentials file for every connection of this process (see agentbus nats creds); default: with the embedded server or an authority in --data, one identity per stage")
	natsAuth := f.boolean("nats-auth", true, "the embedded NATS server requires credentials (false is accepted on a loopback --nats-listen only)")
	natsTLSCert := f.str("nats-tls-cert", "", "TLS certificate (PEM) of the embedded server's client port")
	natsTLSKey := f.str("nats-tls-key", "", "TLS key (PEM) for --nats-tls-cert")
	natsCA := f.str("nats-ca", "", "CA certificate (PEM) that verifies an external TLS NATS server")
	natsCert := f.str("nats-cert", "", "client certificate (PEM) for an external NATS server that requires mutual TLS")
	natsKey := f.str("nats-key", "", "client key (PEM) for --nats-cert")
	toolsFile := toolsFlag(f)
	metricsListen := f.str("metrics-listen", "", "extra listen address serving GET /metrics (Prometheus); default none (with ingest, /metrics is on the HTTP listener)")
	metricsUsers := f.str("metrics-users", "", "comma-separated users that get their own label value in the metrics (default: the first --metrics-max-users seen; the rest are \"other\")")
	metricsMaxUsers := f.integer("metrics-max-users", o.Observe.Labels.MaxUsers, "without --metrics-users: how many distinct users get their own label value (0: all \"other\")")
	traceContent := f.boolean("trace-content", false, "put prompts and answers on the model call spans (OTEL_* configures the exporter; tracing is off when it names none)")
	prices := f.str("prices", "", "price table (JSON: US dollars per million input and output tokens per model; see docs/operations.md): cost on completed events, the spend ledger, agentbus usage")
	budget := f.float("budget-usd", 0, "daily spend limit of each API key in US dollars (needs --prices; 0 = none): over it a turn gets 429 budget_exceeded until 00:00 UTC")
	lf := addLogFlags(f)
	version := f.str("version-tag", "dev", "version reported by health")
	if err := f.parse(args); err != nil {
		return err
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	if !embedded && *natsURL == "" {
		return fmt.Errorf("%w: --nats is required for a single stage", ErrUsage)
	}
	o.Stages = stages
	o.Pipeline.NATSURL = *natsURL
	o.Pipeline.Embedded.Listen = *listen
	o.Pipeline.Embedded.SyncAlways = *syncAlways
	o.Pipeline.Streams.Replicas = *replicas
	o.Pipeline.Streams.MaxAge = *maxAge
	o.Pipeline.Streams.MaxBytes = *maxBytes
	o.Pipeline.Streams.DLQMaxAge = *dlqMaxAge
	o.Pipeline.Streams.DLQMaxBytes = *dlqMaxBytes
	o.Ingest.MaxBodyBytes = *maxBody
	o.Ingest.MaxTurnBytes = int(*maxTurn)
	o.Ingest.ReadTimeout = *readTimeout
	o.Ingest.MaxConns = *maxConns
	o.Ingest.CompleteOnDisconnect = *completeOnDisconnect
	o.Ingest.AllowUnknownParams = *allowUnknown
	o.Pipeline.Consumer.Concurrency = *concurrency
	o.Pipeline.Consumer.HandlerTimeout = *handlerTimeout
	o.Pipeline.Consumer.AckWait = *ackWait
	o.LLMTimeout = *llmTimeout
	o.Pipeline.Version = *version
	o.Pipeline.Name = name
	o.HTTPAddr = *httpAddr
	o.DataDir = *data
	o.Store = *store
	o.ProvidersFile = *providers
	o.Auth = *auth
	o.Getenv = env.Getenv
	o.Limits = app.LimitsFrom(*globalRPM, *userRPM, *userTPM)
	o.Limits.FailOpen = *failOpen
	sanitizeOpts.config(&o.Sanitizer)
	o.Quota.PerUserRequests = int64(*quotaUserReq)
	o.Quota.PerUserTokens = int64(*quotaUserTok)
	o.Quota.PerModelTokens = int64(*quotaModelTok)
	o.Cache.TTL, o.Cache.MaxBytes, o.Cache.MaxEntries, o.Cache.MaxEntryBytes = *cacheTTL, *cacheMaxBytes, int64(*cacheMaxEntries), int32(min(*cacheMaxEntry, 1<<30))
	o.CacheShared = *cacheShared
	if *fetchHosts != "" {
		o.Tools.FetchAllowHosts = strings.Split(*fetchHosts, ",")
	}
	if *remoteTools != "" {
		o.Tools.RemoteAllow = strings.Split(*remoteTools, ",")
	}
	o.NATSCreds = *natsCreds
	o.NATSAuth = *natsAuth
	o.Pipeline.Embedded.TLSCert, o.Pipeline.Embedded.TLSKey = *natsTLSCert, *natsTLSKey
	o.Pipeline.TLS = pipeline.ClientTLS{CAFile: *natsCA, CertFile: *natsCert, KeyFile: *natsKey}
	if o.Firewall, err = loadTools(*toolsFile); err != nil {
		return err
	}
	o.Observe.MetricsListen = *metricsListen
	if *metricsUsers != "" {
		o.Observe.Labels.Users = strings.Split(*metricsUsers, ",")
	}
	o.Observe.Labels.MaxUsers = *metricsMaxUsers
	o.Observe.TraceContent = *traceContent
	o.Observe.PricesFile = *prices
	o.Observe.BudgetUSD = *budget
	ctx, cancel := signalContext()
	defer cancel()
	defer ignoreHangups(log)()
	return app.Run(ctx, o, log)
}

// toolsFlag declares --tools: the tools file read by serve, the stage
// binaries and the firewall command.
func toolsFlag(f *flags) *string {
	return f.str("tools", "", "tools file (YAML or JSON): the tools the model may call and the policy of each argument, see docs/tools.md (empty: built-in tools, checked against their schemas)")
}

// loadTools reads the tools file at path; "" is the zero configuration.
func loadTools(path string) (firewall.Config, error) {
	if path == "" {
		return firewall.Config{}, nil
	}
	return firewall.LoadConfig(path)
}
