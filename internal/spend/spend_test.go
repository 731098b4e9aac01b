package spend

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
)

func TestCostIsThePriceTablesArithmetic(t *testing.T) {
	p := &Prices{Models: map[string]Price{"m": {InputPerMillion: 2.5, OutputPerMillion: 10}, "other": {InputPerMillion: 1, OutputPerMillion: 1}}}
	u := messages.Usage{PromptTokens: 1234, CompletionTokens: 567, TotalTokens: 1801}
	got, ok := p.Cost(u, "unknown-resolved", "m")
	want := 1234*2.5/1e6 + 567*10/1e6 // 0.003085 + 0.00567
	if !ok || math.Abs(got-want) > 1e-15 || math.Abs(got-0.008755) > 1e-12 {
		t.Fatalf("cost %g, want %g", got, want)
	}
	if c, ok := p.Cost(u, "other", "m"); !ok || math.Abs(c-1801/1e6) > 1e-15 {
		t.Fatalf("the first priced name wins: %g", c)
	}
	if c, ok := p.Cost(u, "nope"); ok || c != 0 {
		t.Fatalf("unpriced model: %g %v", c, ok)
	}
	if NanoUSD(want) != 8_755_000 {
		t.Fatalf("nano %d", NanoUSD(want))
	}
}

func TestLoadPricesRejectsBadTables(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":    `{"models":{}}`,
		"negative": `{"models":{"m":{"input_per_million":-1,"output_per_million":1}}}`,
		"unknown":  `{"models":{"m":{"input":1}}}`,
		"syntax":   `{"models":`,
	} {
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadPrices(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEscapeRoundTrips(t *testing.T) {
	for _, s := range []string{"", "alice", "a.b", "bob@example.com", "gpt-4.1-mini", "x=y", "ünï", "a b/c*>"} {
		e := Escape(s)
		for i := 0; i < len(e); i++ {
			c := e[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '=') {
				t.Fatalf("Escape(%q) = %q has %q", s, e, c)
			}
		}
		if Unescape(e) != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, Unescape(e))
		}
	}
}

func TestLedgerSumsConcurrentCallsAndEnforcesTheBudget(t *testing.T) {
	nc := testutil.Conn(t, testutil.NATSServer(t))
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: Bucket})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	l := &Ledger{KV: kv, Budget: 0.01, now: func() time.Time { return now }}
	u := messages.Usage{PromptTokens: 100, CompletionTokens: 50}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := "alice"
			if i%2 == 1 {
				user = "bob.b"
			}
			if err := l.Record(context.Background(), "key_1", user, "gpt-4.1", u, 0.0004); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	spent, err := l.Spent("key_1")
	if err != nil || math.Abs(spent-0.008) > 1e-12 {
		t.Fatalf("spent %g %v", spent, err)
	}
	if err := l.Check("key_1"); err != nil {
		t.Fatalf("under budget: %v", err)
	}
	if err := l.Record(context.Background(), "key_1", "alice", "gpt-4.1", u, 0.002); err != nil {
		t.Fatal(err)
	}
	err = l.Check("key_1")
	var be *BudgetError
	if !errors.As(err, &be) || !errors.Is(err, ErrBudgetExceeded) || be.RetryAfter != time.Hour {
		t.Fatalf("at budget: %v", err)
	}
	if l.Check("key_2") != nil {
		t.Fatal("another key is not over budget")
	}
	rows, err := Rows(kv, "20261130", "")
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows %+v %v", rows, err)
	}
	if r := rows[0]; r.User != "alice" || r.Calls != 11 || r.InputTokens != 1100 || r.OutputTokens != 550 || math.Abs(r.USD()-0.006) > 1e-12 || r.Model != "gpt-4.1" || r.Key != "key_1" {
		t.Fatalf("alice %+v", r)
	}
	if r := rows[1]; r.User != "bob.b" || r.Calls != 10 {
		t.Fatalf("bob %+v", r)
	}
	if rows, _ := Rows(kv, "20261201", ""); len(rows) != 0 {
		t.Fatalf("since tomorrow: %v", rows)
	}
	if rows, _ := Rows(kv, "20261130", "bob.b"); len(rows) != 1 {
		t.Fatalf("bob only: %v", rows)
	}
}
