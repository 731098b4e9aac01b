package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentbus/agentbus/messages"
)

// BenchmarkReplay100k publishes 100,000 small events once, then replays
// them all per iteration and reports events/s.
//
//	go test -run '^$' -bench Replay100k -benchtime 5x ./internal/replay/
func BenchmarkReplay100k(b *testing.B) {
	const n = 100_000
	js := startJS(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	for i := range n {
		rid := fmt.Sprintf("r%d", i/4)
		data, _ := json.Marshal(messages.Rejected{SchemaVersion: 1, RequestID: rid, ConversationID: fmt.Sprintf("c%d", i%100),
			User: "u", Code: messages.CodeRateLimited, Status: 429, Reason: "slow down"})
		msg := nats.NewMsg(messages.Subject(messages.Events[i%len(messages.Events)], rid))
		msg.Data = data
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		if i%2000 == 1999 || i == n-1 { // stay below the async window
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				b.Fatal("publish timed out")
			}
		}
	}
	b.Logf("published %d events in %v", n, time.Since(start))

	for _, tc := range []struct {
		name string
		opts Options
		want int
	}{
		{"all", Options{}, n},
		{"conversation", Options{Conversation: "c7"}, n / 100},
		{"batch200", Options{Batch: 200}, n},
		{"batch5000", Options{Batch: 5000}, n},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				got := 0
				if err := Replay(ctx, js, tc.opts, func(Event) error { got++; return nil }); err != nil {
					b.Fatal(err)
				}
				if got != tc.want {
					b.Fatalf("replayed %d events, want %d", got, tc.want)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
