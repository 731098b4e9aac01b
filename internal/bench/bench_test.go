package bench

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

// BenchmarkPipeline reports the end-to-end figures of a short run (use
// `agentbus bench` for the full report).
func BenchmarkPipeline(b *testing.B) {
	res, err := Run(context.Background(), Config{Turns: max(b.N, 200), Concurrency: 8, Dir: b.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Pipeline.TurnsPerSec, "turns/s")
	b.ReportMetric(res.Pipeline.P50ms, "p50_ms")
	b.ReportMetric(res.Pipeline.P99ms, "p99_ms")
	b.ReportMetric(res.Baseline.TurnsPerSec, "baseline_turns/s")
	b.ReportMetric(res.Ratio, "ratio")
}

// TestRunSmall runs the bench end to end on a few turns: the report is
// complete and no turn failed.
func TestRunSmall(t *testing.T) {
	res, err := Run(context.Background(), Config{Turns: 30, Concurrency: 4, Dir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Pipeline.Errors != 0 || res.Pipeline.TurnsPerSec <= 0 || res.Baseline.TurnsPerSec <= 0 || res.Ratio <= 0 {
		t.Fatalf("incomplete report %+v", res)
	}
}
