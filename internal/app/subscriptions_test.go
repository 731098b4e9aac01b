package app_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// A turn costs no subscription: ingest waits for terminal events on
// subscriptions it holds for the process, not on one per request (each
// would be a SUB, an UNSUB and churn in the server's subject cache).
func TestNoSubscriptionPerTurn(t *testing.T) {
	sys := startSystem(t, nil)
	key := newKey(t, sys, "alice")
	if r := post(t, sys, key, "", chatBody("warm up")); r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	inserts := func() uint64 {
		t.Helper()
		s, err := sys.Runtime.Server().Subsz(&server.SubszOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.NumInserts
	}
	const turns = 40
	for _, tc := range []struct {
		name string
		body string
	}{
		{"plain", chatBody("hello")},
		// Deltas come on the instance's own stream subject, routed by
		// request id: no subscription per streaming request either.
		{"streaming", `{"model":"agentbus-offline","stream":true,"messages":[{"role":"user","content":"tell me a short story about streams"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := inserts()
			for range turns {
				r := post(t, sys, key, "", tc.body)
				if r.status != 200 {
					t.Fatalf("status %d: %s", r.status, r.raw)
				}
				if strings.Contains(tc.body, `"stream":true`) && (strings.Count(r.raw, "data: ") < 4 || !strings.Contains(r.raw, "[DONE]")) {
					t.Fatalf("not a stream of chunks: %s", r.raw)
				}
			}
			// The stages' pull requests subscribe once per fetched batch
			// (about one for every two turns here, one at a time); a
			// subscription per turn would add one more for every turn.
			if n := inserts() - before; n >= turns {
				t.Fatalf("%d subscriptions made for %d turns", n, turns)
			}
		})
	}
}
