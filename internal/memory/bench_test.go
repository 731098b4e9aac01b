package memory

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/cputime"
	"github.com/agentbus/agentbus/messages"
)

// BenchmarkAppendGroupCommit measures committed turns and messages per
// second, and the process's CPU time per turn, with 1, 16 and 64
// concurrent callers going through a GroupCommitter (as persist does), for
// SQLite at synchronous NORMAL and FULL and for the file store. Each turn
// is what persist stores for a turn with one tool call (CompletedTurn: 4
// messages, the completed event as meta); every caller writes its own
// conversation.
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
	cpu := cputime.PerOp()
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
				rec, err := benchTurn(fmt.Sprintf("r%d", i), fmt.Sprintf("c%d", c))
				if err == nil {
					err = g.Append(context.Background(), &rec)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Closing is measured: the SQLite store checkpoints its WAL into the
	// database on close, work that its commits left for later.
	g.Close()
	if err := s.Close(); err != nil {
		b.Error(err)
	}
	b.StopTimer()
	if us, ok := cpu(b.N); ok {
		b.ReportMetric(us, "cpu-µs/turn")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
	b.ReportMetric(float64(b.N*msgsPerTurn)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(0, "ns/op")
}

// benchTurn is the record persist stores for a turn in which the model
// called one tool: the user's question, the assistant's call, the tool's
// result and the answer, with the completed event as meta.
func benchTurn(rid, conv string) (TurnRecord, error) {
	call := messages.Message{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{{ID: "call_" + rid, Type: "function",
		Function: messages.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`}}}}
	result := messages.Message{Role: messages.RoleTool, ToolCallID: "call_" + rid, Content: `{"city":"Paris","temperature":21,"conditions":"partly cloudy","humidity":0.62}`}
	answer := messages.Message{Role: messages.RoleAssistant, Content: "It is 21 °C in Paris and partly cloudy, with 62% humidity. " +
		"A light jacket is enough for the evening; no rain is expected before Thursday, when showers may reach the city in the afternoon."}
	return CompletedTurn([]messages.Message{{Role: messages.RoleUser, Content: "What's the weather like in Paris right now? Do I need a coat tonight?"}}, messages.Completed{
		SchemaVersion: messages.SchemaVersion, RequestID: rid, ConversationID: conv, User: "alice", KeyID: "key_1", Endpoint: "nats",
		Model: "gpt-4o-mini", Provider: "openai", Message: answer, Steps: []messages.Message{call, result, answer},
		ToolVerdicts: []messages.ToolVerdict{{ToolCallID: "call_" + rid, Tool: "get_weather", Verdict: "allow", ResultVerdict: "allow", DurationMS: 12}},
		Guard:        messages.Verdict{Action: "allow", Score: 0.02, EstimatedTokens: 31},
		Usage:        messages.Usage{PromptTokens: 412, CompletionTokens: 57, TotalTokens: 469}, CostUSD: 0.0000960, FinishReason: "stop",
		CreatedAt: time.Now(),
	})
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

// BenchmarkContentHash hashes the record persist stores for a turn
// (benchTurn's), as VerifyChain does for every stored turn.
func BenchmarkContentHash(b *testing.B) {
	rec, err := benchTurn("r1", "c1")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ContentHash(&rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSQLiteAppend commits batches of 4 turns (benchTurn's, in 16
// conversations) from one goroutine, at synchronous NORMAL: the commit path
// alone, without the group committer's scheduling. ns/op is per turn, as
// is the process's CPU time (steadier than ns/op, which includes waiting
// for the disk).
func BenchmarkSQLiteAppend(b *testing.B) {
	s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "memory.db"), SQLiteConfig{Synchronous: SyncNormal})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 4
	tmpl := make([]TurnRecord, 16)
	for c := range tmpl {
		if tmpl[c], err = benchTurn("r", fmt.Sprintf("c%d", c)); err != nil {
			b.Fatal(err)
		}
	}
	recs := make([]TurnRecord, batch)
	b.ResetTimer()
	cpu := cputime.PerOp()
	for n := range b.N {
		k := n % batch
		recs[k] = tmpl[n%len(tmpl)]
		recs[k].RequestID = "r" + strconv.Itoa(n)
		if k == batch-1 || n == b.N-1 {
			if err := s.Append(context.Background(), recs[:k+1]...); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The last checkpoint (on close) is part of the cost.
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if us, ok := cpu(b.N); ok {
		b.ReportMetric(us, "cpu-µs/turn")
	}
}
