package cli_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/app"
)

// agentbus usage prints the spend ledger: per day, key, user and model,
// with the cost the price table gives; --user filters.
func TestUsageCommand(t *testing.T) {
	prices := filepath.Join(t.TempDir(), "prices.json")
	if err := os.WriteFile(prices, []byte(`{"models":{"agentbus-offline":{"input_per_million":1000,"output_per_million":2000}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startSystem(t, func(o *app.Options) { o.Observe.PricesFile = prices })
	url, creds := sys.Runtime.URL(), app.OperatorCreds(sys.DataDir)
	if code, out, errOut := run(t, "", "usage", "--nats", url, "--nats-creds", creds, "--json"); code != 0 || out != "" {
		t.Fatalf("before any turn: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "", "chat", "--nats", url, "--nats-creds", creds, "What is 17*23?"); code != 0 {
		t.Fatalf("chat: %d %q %q", code, out, errOut)
	}
	code, out, errOut := run(t, "", "usage", "--nats", url, "--nats-creds", creds, "--json", "--since", "1d")
	if code != 0 {
		t.Fatalf("usage: %d %s", code, errOut)
	}
	var row struct {
		Day, Key, User, Model string
		Calls                 int64
		InputTokens           int64   `json:"input_tokens"`
		OutputTokens          int64   `json:"output_tokens"`
		CostUSD               float64 `json:"cost_usd"`
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &row) != nil {
		t.Fatalf("usage --json:\n%s", out)
	}
	want := float64(row.InputTokens)*1000/1e6 + float64(row.OutputTokens)*2000/1e6
	if row.Model != "agentbus-offline" || row.Key != "none" || row.Calls != 2 || row.InputTokens == 0 || math.Abs(row.CostUSD-want) > 1e-9 {
		t.Fatalf("row %+v, want cost %g", row, want)
	}
	code, table, _ := run(t, "", "usage", "--nats", url, "--nats-creds", creds)
	if code != 0 || !strings.Contains(table, row.User) || !strings.Contains(table, "total") {
		t.Fatalf("table:\n%s", table)
	}
	if code, out, _ := run(t, "", "usage", "--nats", url, "--nats-creds", creds, "--user", "nobody", "--json"); code != 0 || out != "" {
		t.Fatalf("--user nobody: %d %q", code, out)
	}
	if code, _, _ := run(t, "", "usage", "--since", "yesterday"); code != 2 {
		t.Fatalf("bad --since: exit %d", code)
	}
}
