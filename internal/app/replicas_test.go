package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Three guard replicas share one user's limit: with a burst of 5 per
// minute, exactly 5 of 20 concurrent turns get through, wherever they land.
func TestThreeGuardReplicasHoldOneLimit(t *testing.T) {
	srv := testutil.NATSServer(t)
	limits := app.LimitsFrom(0, 5, 0)
	startSystem(t, func(o *app.Options) {
		o.Pipeline.NATSURL = srv.ClientURL()
		o.Stages = []string{app.StageLLM, app.StageToolexec, app.StagePersist}
	})
	for i := range 3 {
		o := app.DefaultOptions()
		o.Pipeline.NATSURL = srv.ClientURL()
		o.DataDir = t.TempDir()
		o.Stages = []string{app.StageGuard}
		o.Limits = limits
		o.Pipeline.Name = fmt.Sprintf("guard-%d", i)
		g, err := app.Start(context.Background(), o, testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
	}
	nc := testutil.Conn(t, srv)
	js, _ := jetstream.New(nc)
	var mu sync.Mutex
	outcomes := map[string]string{}
	sub, _ := nc.Subscribe("agentbus.turn.*.*", func(m *nats.Msg) {
		ev, rid, _ := messages.ParseSubject(m.Subject)
		if messages.Terminal(ev) {
			mu.Lock()
			outcomes[rid] = ev
			mu.Unlock()
		}
	})
	defer sub.Unsubscribe()
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rid := fmt.Sprintf("lim%02d", i)
			if err := apptest.Publish(js, messages.EventReceived, rid, apptest.Turn(rid, "dave", "hi")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	waitUntil(t, 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(outcomes) == n })
	count := map[string]int{}
	for _, ev := range outcomes {
		count[ev]++
	}
	if count[messages.EventCompleted] != 5 || count[messages.EventRejected] != 15 {
		t.Fatalf("outcomes %v, want 5 completed and 15 rejected", count)
	}
	// The work really was spread over the replicas: each reports its own
	// counters on the health subject, every instance answers. A replica
	// counts a message once its handler returned, and the guard also
	// consumes the completed events (token reconciliation), which the test
	// saw before the guard has handled the last one: wait until all n+5
	// are counted, then check that no message was counted twice.
	inbox := nc.NewRespInbox()
	hs, _ := nc.SubscribeSync(inbox)
	defer hs.Unsubscribe()
	stats := func() (busy int, total int64) {
		t.Helper()
		if err := nc.PublishRequest(pipeline.HealthSubject("guard"), inbox, nil); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			m, err := hs.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var rep pipeline.HealthReport
			if err := json.Unmarshal(m.Data, &rep); err != nil {
				t.Fatal(err)
			}
			total += rep.Stats["processed"]
			if rep.Stats["processed"] > 0 {
				busy++
			}
		}
		return busy, total
	}
	var busy int
	var total int64
	waitUntil(t, 15*time.Second, func() bool {
		busy, total = stats()
		return total >= n+5 // 20 received + 5 completed
	})
	if busy < 2 || total != n+5 {
		t.Fatalf("%d replicas did work, %d turns processed, want %d", busy, total, n+5)
	}
}
