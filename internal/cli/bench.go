package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/agentbus/agentbus/internal/bench"
)

func benchCmd(env Env, args []string) error {
	f := newFlags(env, "bench")
	n := f.Int("n", 2000, "turns to send")
	c := f.String("c", "1,16,64", "turns in flight; a comma-separated list runs one measurement per value")
	sc := f.Int("stage-concurrency", 16, "handler concurrency of each stage")
	store := f.String("store", "sqlite", "conversation store: sqlite or files")
	sync := f.String("sqlite-sync", "", "SQLite synchronous setting: FULL or NORMAL (default: NORMAL, as serve without --sync-always)")
	asJSON := f.Bool("json", false, "print JSON (one object per concurrency level, an array for several)")
	noAuth := f.Bool("no-nats-auth", false, "run the embedded server without authentication (to measure its cost)")
	observe := f.Bool("observe", false, "metrics and tracing on (spans recorded, exported to nowhere), to measure their cost")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the measured pipeline run to this file (go tool pprof FILE)")
	if err := f.parse(args); err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	var levels []int
	for _, v := range strings.Split(*c, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || k < 1 {
			return fmt.Errorf("%w: -c %q: want positive integers, comma-separated", ErrUsage, *c)
		}
		levels = append(levels, k)
	}
	var results []bench.Result
	for i, level := range levels {
		cfg := bench.Config{Turns: *n, Concurrency: level, StageConcurrency: *sc, Store: *store, SQLiteSync: *sync, NoNATSAuth: *noAuth, Observe: *observe}
		if *cpuProfile != "" && i == len(levels)/2 {
			// One profile: of the middle level (16 by default).
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
		results = append(results, res)
		if *asJSON {
			continue
		}
		p, b := res.Pipeline, res.Baseline
		obsNote := ""
		if *observe {
			obsNote = ", metrics and tracing on"
		}
		fmt.Fprintf(env.Stdout, "agentbus bench: %d turns, concurrency %d, %d JetStream hops, offline model%s\n", p.Turns, res.Concurrency, res.Hops, obsNote)
		fmt.Fprintf(env.Stdout, "  pipeline: %8.0f turns/s   p50 %6.2f ms   p90 %6.2f ms   p99 %6.2f ms   errors %d\n", p.TurnsPerSec, p.P50ms, p.P90ms, p.P99ms, p.Errors)
		fmt.Fprintf(env.Stdout, "  baseline: %8.0f turns/s   p50 %6.2f ms   p90 %6.2f ms   p99 %6.2f ms   (plain relay: pull consumers in batches, async publishes)\n", b.TurnsPerSec, b.P50ms, b.P90ms, b.P99ms)
		fmt.Fprintf(env.Stdout, "  pipeline/baseline throughput: %.2f   baseline/pipeline p50: %.2f\n", res.Ratio, res.P50Ratio)
		if p.MsgsPerTurn > 0 {
			fmt.Fprintf(env.Stdout, "  NATS messages in per turn: pipeline %.1f, baseline %.1f\n", p.MsgsPerTurn, b.MsgsPerTurn)
		}
		if p.CPUPerTurnUs > 0 && b.CPUPerTurnUs > 0 {
			fmt.Fprintf(env.Stdout, "  CPU per turn (whole process): pipeline %.0f µs, baseline %.0f µs (ratio %.2f)\n", p.CPUPerTurnUs, b.CPUPerTurnUs, b.CPUPerTurnUs/p.CPUPerTurnUs)
		}
	}
	if *asJSON {
		if len(results) == 1 {
			return json.NewEncoder(env.Stdout).Encode(results[0])
		}
		return json.NewEncoder(env.Stdout).Encode(results)
	}
	return nil
}
