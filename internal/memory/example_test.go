package memory_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/messages"
)

func Example() {
	dir, _ := os.MkdirTemp("", "memory-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	store, err := memory.OpenSQLite(ctx, filepath.Join(dir, "memory.db"), memory.SQLiteConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	commits := memory.NewGroupCommitter(store, 0)
	defer commits.Close()

	rec := memory.TurnRecord{RequestID: "req-1", ConversationID: "conv-1", User: "alice", Messages: []messages.Message{
		{Role: "user", Content: "Hi!"},
		{Role: "assistant", Content: "Hello, Alice."},
	}}
	// Ack the JetStream message only when this returns nil; a redelivery
	// appends the same request id again, which is skipped.
	if err := commits.Append(ctx, &rec); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored as link", rec.Seq)
	again := rec
	_ = commits.Append(ctx, &again)
	fmt.Println("again: link", again.Seq)

	history, _ := store.History(ctx, "conv-1")
	for _, m := range history {
		fmt.Println(m.Role+":", m.Content)
	}
	report, _ := store.VerifyChain(ctx)
	fmt.Println("links:", report.Links, "intact:", report.OK())
	// Output:
	// stored as link 1
	// again: link 1
	// user: Hi!
	// assistant: Hello, Alice.
	// links: 1 intact: true
}
