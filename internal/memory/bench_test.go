package memory

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppendGroupCommit measures committed turns and messages per
// second with 1, 16 and 64 concurrent callers going through a
// GroupCommitter (as persist does), for SQLite at synchronous NORMAL and
// FULL and for the file store. Each turn has 4 messages; every caller writes
// its own conversation.
//
//	go test -run '^$' -bench AppendGroupCommit -benchtime 3s ./internal/memory/
func BenchmarkAppendGroupCommit(b *testing.B) {
	type store struct {
		name string
		open func(b *testing.B) Store
	}
	sqliteAt := func(sync string) func(b *testing.B) Store {
		return func(b *testing.B) Store {
			s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "memory.db"), SQLiteConfig{Synchronous: sync})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
	}
	stores := []store{
		{"sqlite-NORMAL", sqliteAt(SyncNormal)},
		{"sqlite-FULL", sqliteAt(SyncFull)},
		{"files", func(b *testing.B) Store {
			s, err := OpenFiles(filepath.Join(b.TempDir(), "files"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		for _, callers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/c=%d", st.name, callers), func(b *testing.B) {
				benchGroupCommit(b, st.open(b), callers)
			})
		}
	}
}

func benchGroupCommit(b *testing.B, s Store, callers int) {
	defer s.Close()
	g := NewGroupCommitter(s, 0)
	defer g.Close()
	const msgsPerTurn = 4
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
	b.ReportMetric(float64(b.N*msgsPerTurn)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(0, "ns/op")
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
