package persist_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/internal/tokens"
	"github.com/agentbus/agentbus/messages"
)

// BenchmarkHistory measures serving a 200-message conversation's pruned
// history for gpt-4o, from the LRU cache and from SQLite.
func BenchmarkHistory(b *testing.B) {
	ctx := context.Background()
	store, err := memory.OpenSQLite(ctx, filepath.Join(b.TempDir(), "h.db"), memory.SQLiteConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	for i := range 100 {
		err := store.Append(ctx, memory.TurnRecord{RequestID: fmt.Sprintf("r%d", i), ConversationID: "c1", User: "u",
			Messages: []messages.Message{{Role: "user", Content: fmt.Sprintf("question %d about the roadmap?", i)}, {Role: "assistant", Content: "an answer of moderate length, repeated a few times to look real"}}})
		if err != nil {
			b.Fatal(err)
		}
	}
	tokens.For("gpt-4o").Count("warm up the encoder") // loaded once per process
	for _, cached := range []bool{true, false} {
		b.Run(fmt.Sprintf("cached=%v", cached), func(b *testing.B) {
			cfg := persist.DefaultConfig()
			if !cached {
				cfg.CacheSize = 1
			}
			h, err := persist.New(cfg, persist.Deps{Store: store})
			if err != nil {
				b.Fatal(err)
			}
			req := persist.HistoryRequest{ConversationID: "c1", Model: "gpt-4o"}
			for b.Loop() {
				if !cached {
					h.Forget("c1")
				}
				rep, err := h.History(ctx, req)
				if err != nil || rep.Total != 200 {
					b.Fatal(rep.Total, err)
				}
			}
		})
	}
}
