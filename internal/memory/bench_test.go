package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppendGroupCommit measures committed messages per second with
// 64 concurrent callers going through a GroupCommitter (as persist does).
func BenchmarkAppendGroupCommit(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b, b.TempDir())
			defer s.Close()
			g := NewGroupCommitter(s, 0)
			defer g.Close()
			const callers, msgsPerTurn = 64, 4
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						rec := turn(fmt.Sprintf("r%d", i), fmt.Sprintf("c%d", c), msgsPerTurn)
						if err := g.Append(context.Background(), &rec); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N*msgsPerTurn)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
		})
	}
}

// BenchmarkHistory reads a 200-turn (800-message) conversation.
func BenchmarkHistory(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b, b.TempDir())
			defer s.Close()
			batch := make([]TurnRecord, 200)
			for i := range batch {
				batch[i] = turn(fmt.Sprintf("r%d", i), "c", 4)
			}
			mustAppend(b, s, batch...)
			mustAppend(b, s, turn("other", "d", 4))
			b.ResetTimer()
			for b.Loop() {
				h, err := s.History(context.Background(), "c")
				if err != nil || len(h) != 800 {
					b.Fatal(len(h), err)
				}
			}
			b.ReportMetric(float64(800*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
