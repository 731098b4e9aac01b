package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/messages"
)

type backend struct {
	name string
	// open opens (or reopens) the store kept in dir.
	open func(t testing.TB, dir string) Store
}

var backends = []backend{
	{"sqlite", func(t testing.TB, dir string) Store {
		t.Helper()
		s, err := OpenSQLite(context.Background(), filepath.Join(dir, "memory.db"), SQLiteConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"files", func(t testing.TB, dir string) Store {
		t.Helper()
		s, err := OpenFiles(filepath.Join(dir, "files"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)

func turn(rid, conv string, n int) TurnRecord {
	r := TurnRecord{RequestID: rid, ConversationID: conv, User: "alice", CreatedAt: t0.Add(time.Duration(len(rid)) * time.Second),
		Meta: json.RawMessage(`{"model":"gpt-4o","usage":{"total_tokens":42}}`)}
	r.Messages = append(r.Messages, messages.Message{Role: "user", Content: "question of " + rid})
	for i := 1; i < n; i++ {
		r.Messages = append(r.Messages, messages.Message{Role: "assistant", Content: fmt.Sprintf("answer %d of %s", i, rid)})
	}
	return r
}

func toolTurn(rid, conv string) TurnRecord {
	return TurnRecord{RequestID: rid, ConversationID: conv, User: "bob", CreatedAt: t0, Messages: []messages.Message{
		{Role: "user", Content: "weather?"},
		{Role: "assistant", ToolCalls: []messages.ToolCall{{ID: "c1", Type: "function", Function: messages.FunctionCall{Name: "weather", Arguments: `{"city":"Paris"}`}}}},
		{Role: "tool", ToolCallID: "c1", Content: `{"temp":21}`},
		{Role: "assistant", Content: "21C"},
	}}
}

func mustAppend(t testing.TB, s Store, turns ...TurnRecord) {
	t.Helper()
	if err := s.Append(context.Background(), turns...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func history(t testing.TB, s Store, conv string) []messages.Message {
	t.Helper()
	h, err := s.History(context.Background(), conv)
	if err != nil {
		t.Fatalf("History(%q): %v", conv, err)
	}
	return h
}

func verifyOK(t testing.TB, s Store) ChainReport {
	t.Helper()
	rep, err := s.VerifyChain(context.Background())
	if err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("VerifyChain: %v", rep.Broken)
	}
	return rep
}

// TestConformance runs every Store behaviour against every backend.
func TestConformance(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, s Store, reopen func() Store)
	}{
		{"append and read back", func(t *testing.T, s Store, _ func() Store) {
			a, b, c := turn("r1", "c1", 2), toolTurn("r2", "c1"), turn("r3", "c2", 1)
			in := []TurnRecord{a, b, c}
			mustAppend(t, s, in...)
			for i, r := range in {
				if r.Seq != int64(i+1) || r.Hash == "" || (i > 0 && r.PrevHash != in[i-1].Hash) {
					t.Fatalf("turn %d: seq %d hash %q prev %q", i, r.Seq, r.Hash, r.PrevHash)
				}
			}
			want := append(append([]messages.Message{}, a.Messages...), b.Messages...)
			if got := history(t, s, "c1"); !reflect.DeepEqual(got, want) {
				t.Fatalf("History = %+v\nwant %+v", got, want)
			}
			turns, err := s.Turns(ctx, "c1")
			if err != nil || len(turns) != 2 {
				t.Fatalf("Turns = %d, %v", len(turns), err)
			}
			if !reflect.DeepEqual(turns[0], in[0]) || !reflect.DeepEqual(turns[1], in[1]) {
				t.Fatalf("Turns[0] = %+v\nwant %+v", turns[0], in[0])
			}
			if h := history(t, s, "nope"); len(h) != 0 {
				t.Fatalf("unknown conversation has %d messages", len(h))
			}
			if rep := verifyOK(t, s); rep.Links != 3 || rep.Head != in[2].Hash {
				t.Fatalf("report %+v", rep)
			}
		}},
		{"idempotent re-append", func(t *testing.T, s Store, _ func() Store) {
			first := []TurnRecord{turn("r1", "c", 2), turn("r2", "c", 2)}
			mustAppend(t, s, first...)
			again := []TurnRecord{turn("r2", "c", 5), turn("r3", "c", 1), turn("r3", "c", 1), turn("r1", "c", 1)}
			mustAppend(t, s, again...)
			if again[0].Seq != first[1].Seq || again[0].Hash != first[1].Hash || again[3].Seq != 1 || again[1].Seq != 3 || again[2].Seq != 3 {
				t.Fatalf("links of skipped turns not reported: %+v", again)
			}
			mustAppend(t, s, first...)
			if got := len(history(t, s, "c")); got != 5 {
				t.Fatalf("History has %d messages, want 5", got)
			}
			if rep := verifyOK(t, s); rep.Links != 3 {
				t.Fatalf("%d links, want 3", rep.Links)
			}
		}},
		{"conversations", func(t *testing.T, s Store, _ func() Store) {
			mustAppend(t, s, turn("a1", "alpha", 2), turn("b1", "beta", 1), turn("a222", "alpha", 3))
			got, err := s.Conversations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []ConversationInfo{{ID: "alpha", Owner: "alice", Turns: 2, Messages: 5, Updated: t0.Add(4 * time.Second)}, {ID: "beta", Owner: "alice", Turns: 1, Messages: 1, Updated: t0.Add(2 * time.Second)}}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Conversations = %+v\nwant %+v", got, want)
			}
		}},
		{"owner is the first turn's user", func(t *testing.T, s Store, reopen func() Store) {
			if _, err := s.Owner(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Owner(unknown) = %v, want ErrNotFound", err)
			}
			bobs := turn("o2", "owned", 1)
			bobs.User = "bob" // a later turn by someone else does not change the owner
			mustAppend(t, s, turn("o1", "owned", 1), bobs)
			for i := range 2 {
				if i == 1 {
					s = reopen()
				}
				if o, err := s.Owner(ctx, "owned"); err != nil || o != "alice" {
					t.Fatalf("Owner = %q, %v", o, err)
				}
			}
			if err := s.Delete(ctx, "owned"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Owner(ctx, "owned"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Owner(deleted) = %v, want ErrNotFound", err)
			}
		}},
		{"delete keeps the chain", func(t *testing.T, s Store, reopen func() Store) {
			mustAppend(t, s, turn("r1", "gone", 2), turn("r2", "kept", 1), turn("r3", "gone", 1))
			if err := s.Delete(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Delete(unknown) = %v, want ErrNotFound", err)
			}
			if err := s.Delete(ctx, "gone"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "gone"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second Delete = %v, want ErrNotFound", err)
			}
			if h := history(t, s, "gone"); len(h) != 0 {
				t.Fatalf("deleted conversation still has %d messages", len(h))
			}
			mustAppend(t, s, turn("r1", "gone", 2)) // redelivery of a deleted turn: not resurrected
			if h := history(t, s, "gone"); len(h) != 0 {
				t.Fatalf("deleted turn resurrected: %v", h)
			}
			mustAppend(t, s, turn("r4", "gone", 1)) // the id can be reused by new turns
			s = reopen()
			if h := history(t, s, "gone"); len(h) != 1 || h[0].Content != "question of r4" {
				t.Fatalf("History after reuse = %+v", h)
			}
			convs, _ := s.Conversations(ctx)
			if len(convs) != 2 || convs[0].Turns != 1 {
				t.Fatalf("Conversations = %+v", convs)
			}
			if rep := verifyOK(t, s); rep.Links != 4 || rep.Deleted != 2 {
				t.Fatalf("report %+v, want 4 links, 2 deleted", rep)
			}
		}},
		{"ids never collide", func(t *testing.T, s Store, _ func() Store) {
			long := strings.Repeat("x", 300)
			ids := []string{"Conv", "conv", "CONV", "a/b", "a_b", "a:b", "a.b", "a\\b", "../etc/passwd", ".", "..", " ", "con", "NUL", "日本", "a\x00b", long, long + "y", long[:299] + "X"}
			for i, id := range ids {
				mustAppend(t, s, turn(fmt.Sprintf("r%d", i), id, 1))
			}
			for i, id := range ids {
				h := history(t, s, id)
				if len(h) != 1 || h[0].Content != fmt.Sprintf("question of r%d", i) {
					t.Fatalf("conversation %q: %+v", id, h)
				}
			}
			convs, _ := s.Conversations(ctx)
			if len(convs) != len(ids) {
				t.Fatalf("%d conversations, want %d", len(convs), len(ids))
			}
		}},
		{"invalid records store nothing", func(t *testing.T, s Store, _ func() Store) {
			for _, bad := range []TurnRecord{{ConversationID: "c"}, {RequestID: "r"}, {RequestID: "r", ConversationID: "c", Meta: json.RawMessage(`{"a":`)}} {
				err := s.Append(ctx, turn("ok", "c", 1), bad)
				var re *RecordError
				if !errors.Is(err, ErrInvalidRecord) || !errors.As(err, &re) || re.Index != 1 {
					t.Fatalf("Append(%+v) = %v, want RecordError at 1", bad, err)
				}
			}
			if h := history(t, s, "c"); len(h) != 0 {
				t.Fatalf("partial batch stored: %v", h)
			}
		}},
		{"meta is canonical JSON", func(t *testing.T, s Store, _ func() Store) {
			r := turn("r", "c", 1)
			r.Meta = json.RawMessage(` { "b": 1.50, "a": [true, null] } `)
			mustAppend(t, s, r)
			ts, _ := s.Turns(ctx, "c")
			if string(ts[0].Meta) != `{"a":[true,null],"b":1.50}` {
				t.Fatalf("Meta = %s", ts[0].Meta)
			}
		}},
		{"zero time set", func(t *testing.T, s Store, _ func() Store) {
			r := turn("r", "c", 1)
			r.CreatedAt = time.Time{}
			before := time.Now()
			mustAppend(t, s, r)
			ts, _ := s.Turns(ctx, "c")
			if ts[0].CreatedAt.Before(before.Add(-time.Second)) || ts[0].CreatedAt.Location() != time.UTC {
				t.Fatalf("CreatedAt = %v", ts[0].CreatedAt)
			}
		}},
		{"reopen continues the chain", func(t *testing.T, s Store, reopen func() Store) {
			mustAppend(t, s, turn("r1", "c", 1), turn("r2", "c", 1))
			s = reopen()
			mustAppend(t, s, turn("r1", "c", 1), turn("r3", "c", 1))
			if rep := verifyOK(t, s); rep.Links != 3 {
				t.Fatalf("report %+v", rep)
			}
			if h := history(t, s, "c"); len(h) != 3 {
				t.Fatalf("%d messages", len(h))
			}
		}},
		{"concurrent appends to one conversation lose nothing", func(t *testing.T, s Store, _ func() Store) {
			const workers, each = 8, 10
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						if err := s.Append(ctx, turn(fmt.Sprintf("w%d-%d", w, i), "shared", 2)); err != nil {
							t.Error(err)
						}
						if i%3 == 0 {
							if _, err := s.History(ctx, "shared"); err != nil {
								t.Error(err)
							}
						}
					}
				}()
			}
			wg.Wait()
			ts, err := s.Turns(ctx, "shared")
			if err != nil || len(ts) != workers*each {
				t.Fatalf("%d turns (%v), want %d", len(ts), err, workers*each)
			}
			seen := map[string]bool{}
			for i, r := range ts {
				if seen[r.RequestID] || r.Seq != int64(i+1) {
					t.Fatalf("turn %d: %s seq %d (dup %v)", i, r.RequestID, r.Seq, seen[r.RequestID])
				}
				seen[r.RequestID] = true
			}
			verifyOK(t, s)
		}},
		{"cancelled context", func(t *testing.T, s Store, _ func() Store) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := s.Append(cctx, turn("r", "c", 1)); !errors.Is(err, context.Canceled) {
				t.Fatalf("Append = %v, want context.Canceled", err)
			}
			if h := history(t, s, "c"); len(h) != 0 {
				t.Fatal("stored despite cancelled context")
			}
		}},
		{"closed", func(t *testing.T, s Store, _ func() Store) {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := s.Append(ctx, turn("r", "c", 1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close = %v", err)
			}
			if _, err := s.History(ctx, "c"); !errors.Is(err, ErrClosed) {
				t.Fatalf("History after Close = %v", err)
			}
		}},
		{"empty store verifies", func(t *testing.T, s Store, _ func() Store) {
			if rep := verifyOK(t, s); rep.Links != 0 || rep.Head != "" {
				t.Fatalf("report %+v", rep)
			}
			if err := s.Append(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, be := range backends {
		for _, tc := range cases {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				s := be.open(t, dir)
				t.Cleanup(func() { s.Close() })
				reopen := func() Store {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = be.open(t, dir)
					return s
				}
				tc.run(t, s, reopen)
			})
		}
	}
}
