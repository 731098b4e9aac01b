package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentbus/agentbus/internal/spend"
	"github.com/nats-io/nats.go/jetstream"
)

// usageCmd is `agentbus usage`: the spend ledger (calls, tokens, cost per
// day, API key, user and model) from the running system's KV bucket.
func usageCmd(env Env, args []string) error {
	f := newFlags(env, "usage")
	cf := addConnFlags(f)
	user := f.String("user", "", "only this user")
	since := f.String("since", "7d", "from this many days back (7d, 30d) or a date (2006-01-02), UTC")
	asJSON := f.Bool("json", false, "print one JSON object per line")
	if err := f.parse(args); err != nil {
		return err
	}
	from, err := sinceDay(*since, time.Now())
	if err != nil {
		return fmt.Errorf("%w: --since: %v", ErrUsage, err)
	}
	nc, js, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := js.KeyValue(context.Background(), spend.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("no spend recorded: bucket %s does not exist (serve with --prices)", spend.Bucket)
	}
	if err != nil {
		return err
	}
	rows, err := spend.Rows(kv, from, *user)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		for _, r := range rows {
			if err := enc.Encode(struct {
				spend.Row
				CostUSD float64 `json:"cost_usd"`
			}{r, r.USD()}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DAY\tKEY\tUSER\tMODEL\tCALLS\tINPUT\tOUTPUT\tCOST USD\t")
	var total spend.Entry
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.6f\t\n", r.Day, r.Key, r.User, r.Model, r.Calls, r.InputTokens, r.OutputTokens, r.USD())
		total.Calls += r.Calls
		total.InputTokens += r.InputTokens
		total.OutputTokens += r.OutputTokens
		total.NanoUSD += r.NanoUSD
	}
	fmt.Fprintf(tw, "total\t\t\t\t%d\t%d\t%d\t%.6f\t\n", total.Calls, total.InputTokens, total.OutputTokens, total.USD())
	return tw.Flush()
}

// sinceDay turns "7d" (today and the 6 days before) or a date into a
// ledger day.
func sinceDay(s string, now time.Time) (string, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 3660 {
			return "", fmt.Errorf("want Nd with N in 1..3660, got %q", s)
		}
		return spend.Day(now.UTC().AddDate(0, 0, -(n - 1))), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return "", fmt.Errorf("want Nd or YYYY-MM-DD, got %q", s)
	}
	return spend.Day(t), nil
}
