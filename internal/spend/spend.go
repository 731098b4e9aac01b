// Package spend turns model usage into money and keeps the books: a price
// table (per model, US dollars per million input and output tokens, read
// from a JSON file), a ledger in a JetStream KV bucket summing calls,
// tokens and cost per UTC day for each (API key, user, model) and per key,
// and a daily budget per key checked before each model call.
//
// Price table file (docs/operations.md, "Spend"):
//
//	{
//	  "models": {
//	    "gpt-4.1":      {"input_per_million": 2.00, "output_per_million": 8.00},
//	    "gpt-4.1-mini": {"input_per_million": 0.40, "output_per_million": 1.60}
//	  }
//	}
//
// cost = input_tokens × input_per_million / 10⁶ + output_tokens ×
// output_per_million / 10⁶. A model missing from the table costs 0 (and is
// reported by Known).
package spend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of the ledger.
const Bucket = "agentbus_spend"

// Price is one model's price in US dollars per million tokens.
type Price struct {
	InputPerMillion  float64 `json:"input_per_million"`
	OutputPerMillion float64 `json:"output_per_million"`
}

// Prices is the price table.
type Prices struct {
	// Note is free text (where the prices come from, when they were
	// checked).
	Note string `json:"note,omitempty"`
	// Models maps a model name (as clients name it, or as the provider
	// reports it) to its price.
	Models map[string]Price `json:"models"`
}

// LoadPrices reads and checks a price table file.
func LoadPrices(path string) (*Prices, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("price table: %w", err)
	}
	var p Prices
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("price table %s: %w", path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("price table %s: %w", path, err)
	}
	return &p, nil
}

// Validate reports every problem of the table.
func (p *Prices) Validate() error {
	var errs []error
	if len(p.Models) == 0 {
		errs = append(errs, errors.New("no models"))
	}
	names := make([]string, 0, len(p.Models))
	for m := range p.Models {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		pr := p.Models[m]
		if strings.TrimSpace(m) == "" {
			errs = append(errs, errors.New("empty model name"))
		}
		if pr.InputPerMillion < 0 || pr.OutputPerMillion < 0 || math.IsNaN(pr.InputPerMillion) || math.IsNaN(pr.OutputPerMillion) {
			errs = append(errs, fmt.Errorf("model %q: prices must be non-negative numbers", m))
		}
	}
	return errors.Join(errs...)
}

// Lookup returns the price of the first of names the table has.
func (p *Prices) Lookup(names ...string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	for _, n := range names {
		if pr, ok := p.Models[n]; ok && n != "" {
			return pr, true
		}
	}
	return Price{}, false
}

// Cost is the cost in US dollars of usage priced as the first of names
// the table has (the requested model, then the one the provider
// reported); 0 and false when none is priced.
func (p *Prices) Cost(u messages.Usage, names ...string) (float64, bool) {
	pr, ok := p.Lookup(names...)
	if !ok {
		return 0, false
	}
	return float64(u.PromptTokens)*pr.InputPerMillion/1e6 + float64(u.CompletionTokens)*pr.OutputPerMillion/1e6, true
}

// Entry is one ledger line: a day's calls, tokens and cost.
type Entry struct {
	Calls        int64 `json:"calls"`
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	// NanoUSD is the cost in billionths of a dollar (integers add
	// exactly under compare-and-swap).
	NanoUSD int64 `json:"nano_usd"`
}

// USD is the entry's cost in dollars.
func (e Entry) USD() float64 { return float64(e.NanoUSD) / 1e9 }

// NanoUSD converts dollars to the ledger's unit.
func NanoUSD(usd float64) int64 { return int64(math.Round(usd * 1e9)) }

// Ledger is the spend ledger in the Bucket KV. Keys:
//
//	<yyyymmdd>.<key>                  the key's day total (the budget)
//	<yyyymmdd>.<key>.<user>.<model>   the day's detail
//
// each token escaped to the KV key alphabet (see Escape).
type Ledger struct {
	KV jetstream.KeyValue
	// Budget is the daily spend limit per key in dollars; 0: none.
	Budget float64
	now    func() time.Time
}

// NoKey names the turns made without an API key (authentication off).
const NoKey = "none"

// Day is the ledger day of t (UTC).
func Day(t time.Time) string { return t.UTC().Format("20060102") }

// Escape makes s one KV key token: [A-Za-z0-9_-] kept, every other byte
// as =XX (hex).
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	if b.Len() == 0 {
		return "="
	}
	return b.String()
}

// Unescape reverses Escape.
func Unescape(s string) string {
	if s == "=" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '=' && i+2 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func keyOf(k string) string {
	if k == "" {
		return NoKey
	}
	return k
}

func (l *Ledger) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// Record adds one model call to today's detail and key total.
func (l *Ledger) Record(ctx context.Context, key, user, model string, u messages.Usage, usd float64) error {
	day := Day(l.clock())
	k := Escape(keyOf(key))
	add := Entry{Calls: 1, InputTokens: int64(u.PromptTokens), OutputTokens: int64(u.CompletionTokens), NanoUSD: NanoUSD(usd)}
	return errors.Join(
		l.add(ctx, day+"."+k+"."+Escape(user)+"."+Escape(model), add),
		l.add(ctx, day+"."+k, add),
	)
}

// add adds e to the entry at key with compare-and-swap, retrying races.
func (l *Ledger) add(ctx context.Context, key string, e Entry) error {
	for range 50 {
		if err := ctx.Err(); err != nil {
			return err
		}
		cur, err := l.get(ctx, key)
		var have Entry
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(cur.Value(), &have); err != nil {
				return fmt.Errorf("ledger %s: %w", key, err)
			}
			rev = cur.Revision()
		}
		have.Calls += e.Calls
		have.InputTokens += e.InputTokens
		have.OutputTokens += e.OutputTokens
		have.NanoUSD += e.NanoUSD
		b, _ := json.Marshal(have)
		if rev == 0 {
			_, err = l.KV.Create(context.WithoutCancel(ctx), key, b)
		} else {
			_, err = l.KV.Update(context.WithoutCancel(ctx), key, b, rev)
		}
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return err
		}
	}
	return fmt.Errorf("ledger %s: too many concurrent updates", key)
}

// get reads key. As with the legacy API, the call keeps ctx's values but
// not its cancellation: the JetStream client's default timeout bounds it.
func (l *Ledger) get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	return l.KV.Get(context.WithoutCancel(ctx), key)
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || strings.Contains(err.Error(), "wrong last sequence")
}

// Spent returns key's spend today in dollars.
func (l *Ledger) Spent(key string) (float64, error) {
	e, err := l.get(context.Background(), Day(l.clock())+"."+Escape(keyOf(key)))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var have Entry
	if err := json.Unmarshal(e.Value(), &have); err != nil {
		return 0, err
	}
	return have.USD(), nil
}

// ErrBudgetExceeded is wrapped by every *BudgetError.
var ErrBudgetExceeded = errors.New("budget exceeded")

// BudgetError says that a key spent its daily budget.
type BudgetError struct {
	Key          string
	Spent, Limit float64
	// RetryAfter is the time until the next UTC midnight.
	RetryAfter time.Duration
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("daily budget exceeded: API key %s spent $%.4f of its $%.2f today (resets at 00:00 UTC)", e.Key, e.Spent, e.Limit)
}

// Unwrap returns ErrBudgetExceeded.
func (e *BudgetError) Unwrap() error { return ErrBudgetExceeded }

// Check returns a *BudgetError when key has spent its daily budget (nil
// without a budget).
func (l *Ledger) Check(key string) error {
	if l.Budget <= 0 {
		return nil
	}
	spent, err := l.Spent(key)
	if err != nil {
		return err
	}
	if spent < l.Budget {
		return nil
	}
	now := l.clock().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	return &BudgetError{Key: keyOf(key), Spent: spent, Limit: l.Budget, RetryAfter: midnight.Sub(now)}
}

// Row is one ledger detail line.
type Row struct {
	Day   string `json:"day"`
	Key   string `json:"key"`
	User  string `json:"user"`
	Model string `json:"model"`
	Entry
}

// Rows returns the detail lines from day since on (yyyymmdd), for user
// when not empty, ordered by day, key, user, model.
func Rows(kv jetstream.KeyValue, since, user string) ([]Row, error) {
	ctx := context.Background() // the JetStream client's default timeout bounds each call
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Row
	for _, k := range keys {
		parts := strings.Split(k, ".")
		if len(parts) != 4 || parts[0] < since {
			continue
		}
		r := Row{Day: parts[0], Key: Unescape(parts[1]), User: Unescape(parts[2]), Model: Unescape(parts[3])}
		if user != "" && r.User != user {
			continue
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(e.Value(), &r.Entry); err != nil {
			return nil, fmt.Errorf("ledger %s: %w", k, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Day != b.Day {
			return a.Day < b.Day
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		if a.User != b.User {
			return a.User < b.User
		}
		return a.Model < b.Model
	})
	return out, nil
}
