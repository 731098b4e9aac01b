// Package cli implements the agentbus command line: serve (every stage in
// one process on an embedded NATS server), one-stage runners for the
// cmd/<stage> binaries, and the client and operator commands (chat, keys,
// sanitize, firewall, history, replay, audit, dlq, rebuild, bench). Only
// this package and main read flags and environment.
package cli

import (
	"context"
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
}

// ErrUsage is returned for bad command lines (exit status 2).
var ErrUsage = errors.New("usage")

// ExitError carries a specific exit status (audit violations exit 1).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return "exit status " + strconv.Itoa(e.Code) }

const usage = `agentbus: an event-driven harness for LLM agents over NATS JetStream.

Usage:
  agentbus [serve] [flags]          run every stage in one process (embedded NATS by default)
  agentbus chat [flags] "text"      send a chat turn, print the answer
  agentbus keys create --user NAME [--rpm N] [--tpm N] | list | revoke KEY_ID
  agentbus sanitize [--explain] [--results]  JSONL {"text": ...} on stdin -> verdicts on stdout
  agentbus firewall                 JSONL {"tool": ..., "arguments": {...}} on stdin -> verdicts
  agentbus history CONVERSATION_ID [--json] [--pruned --budget N --strategy S] | --list | --delete
  agentbus replay [--conversation ID] [--since TIME | --from-seq N] [--json]
  agentbus audit [--max-turns N --forbid-tool X --require-tool Y --must-contain S ...] [--verify]
  agentbus dlq list | show ID | redrive ID | redrive --all
  agentbus rebuild                  re-materialise the conversation store from the stream
  agentbus bench [-n N] [-c C] [--json]

Run 'agentbus COMMAND -h' for a command's flags. Every flag has an
environment equivalent (AGENTBUS_<FLAG>, e.g. AGENTBUS_NATS for --nats).
`

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
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(env, args, app.AllStages, "agentbus")
	case "chat":
		return chat(env, args)
	case "keys":
		return keys(env, args)
	case "sanitize":
		return sanitizeCmd(env, args)
	case "firewall":
		return firewallCmd(env, args)
	case "history":
		return history(env, args)
	case "replay":
		return replayCmd(env, args)
	case "audit":
		return auditCmd(env, args)
	case "dlq":
		return dlq(env, args)
	case "rebuild":
		return rebuild(env, args)
	case "bench":
		return benchCmd(env, args)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	default:
		fmt.Fprint(env.Stderr, usage)
		return fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
	}
}

// RunStage is the main of the cmd/<stage> binaries: one stage, an external
// NATS server by default.
func RunStage(stage string, env Env) int {
	err := serve(env, env.Args, []string{stage}, "agentbus-"+stage)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(env.Stderr, "agentbus-"+stage+":", err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// flags wraps a FlagSet whose defaults come from AGENTBUS_* variables.
type flags struct {
	*flag.FlagSet
	env Env
}

func newFlags(env Env, name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return &flags{fs, env}
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

func (f *flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
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

// serve runs stages until SIGINT/SIGTERM.
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
	maxAge := f.duration("max-age", 0, "how long the stream keeps turn events (0 = forever: the stream is the system of record)")
	replicas := f.integer("replicas", 1, "stream replicas (3 in a cluster)")
	concurrency := f.integer("concurrency", o.Pipeline.Consumer.Concurrency, "parallel handler runs per stage instance")
	userRPM := f.integer("user-rpm", 120, "requests per minute per user (0 = unlimited)")
	userTPM := f.integer("user-tpm", 200_000, "estimated tokens per minute per user (0 = unlimited)")
	globalRPM := f.integer("global-rpm", 0, "requests per minute for everybody together (0 = unlimited)")
	handlerTimeout := f.duration("handler-timeout", o.Pipeline.Consumer.HandlerTimeout, "bound of one handler run (all stages but llm)")
	ackWait := f.duration("ack-wait", o.Pipeline.Consumer.AckWait, "JetStream ack wait: redelivery after a crash; must exceed handler-timeout x 3")
	llmTimeout := f.duration("llm-timeout", o.LLMTimeout, "bound of one llm handler run (provider timeouts, retries, failover)")
	failOpen := f.boolean("ratelimit-fail-open", false, "admit requests when the shared rate-limit state is unreachable (default: reject with 503)")
	sanitizeOpts := addSanitizeFlags(f)
	quotaUserReq := f.integer("quota-user-requests", 0, "requests per user per UTC day (0 = unlimited)")
	quotaUserTok := f.integer("quota-user-tokens", 0, "tokens per user per UTC day (0 = unlimited)")
	quotaModelTok := f.integer("quota-model-tokens", 0, "tokens per model per UTC day, all users (0 = unlimited)")
	fetchHosts := f.str("fetch-allow-hosts", "", "comma-separated hosts the http_fetch tool may reach (empty: tool disabled)")
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
	if *fetchHosts != "" {
		o.Tools.FetchAllowHosts = strings.Split(*fetchHosts, ",")
	}
	ctx, cancel := signalContext()
	defer cancel()
	return app.Run(ctx, o, log)
}
