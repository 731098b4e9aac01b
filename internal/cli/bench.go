package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/agentbus/agentbus/internal/bench"
)

func benchCmd(env Env, args []string) error {
	f := newFlags(env, "bench")
	n := f.Int("n", 2000, "turns to send")
	c := f.Int("c", 16, "turns in flight")
	sc := f.Int("stage-concurrency", 16, "handler concurrency of each stage")
	store := f.String("store", "sqlite", "conversation store: sqlite or files")
	sync := f.String("sqlite-sync", "", "SQLite synchronous setting: FULL or NORMAL (default: NORMAL, as serve without --sync-always)")
	asJSON := f.Bool("json", false, "print one JSON object")
	noAuth := f.Bool("no-nats-auth", false, "run the embedded server without authentication (to measure its cost)")
	observe := f.Bool("observe", false, "metrics and tracing on (spans recorded, exported to nowhere), to measure their cost")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the measured pipeline run to this file (go tool pprof FILE)")
	if err := f.parse(args); err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	cfg := bench.Config{Turns: *n, Concurrency: *c, StageConcurrency: *sc, Store: *store, SQLiteSync: *sync, NoNATSAuth: *noAuth, Observe: *observe}
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		cfg.CPUProfile = pf
	}
	res, err := bench.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	p, b := res.Pipeline, res.Baseline
	obsNote := ""
	if *observe {
		obsNote = ", metrics and tracing on"
	}
	fmt.Fprintf(env.Stdout, "agentbus bench: %d turns, concurrency %d, %d JetStream hops, offline model%s\n", p.Turns, res.Concurrency, res.Hops, obsNote)
	fmt.Fprintf(env.Stdout, "  pipeline: %8.0f turns/s   p50 %6.2f ms   p90 %6.2f ms   p99 %6.2f ms   errors %d\n", p.TurnsPerSec, p.P50ms, p.P90ms, p.P99ms, p.Errors)
	fmt.Fprintf(env.Stdout, "  baseline: %8.0f turns/s   p50 %6.2f ms   p90 %6.2f ms   p99 %6.2f ms   (raw JetStream, same hops)\n", b.TurnsPerSec, b.P50ms, b.P90ms, b.P99ms)
	fmt.Fprintf(env.Stdout, "  pipeline/baseline throughput: %.0f%%   baseline/pipeline p50: %.0f%%\n", res.Ratio*100, res.P50Ratio*100)
	return nil
}
