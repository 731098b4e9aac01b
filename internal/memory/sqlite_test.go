package memory

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func openSQLite(t *testing.T) (*SQLiteStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := OpenSQLite(context.Background(), path, SQLiteConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// rawDB opens the database file directly, as an attacker or an operator would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLiteTamperDetected(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, sql string
		seq       int64
		reason    string
	}{
		{"message edited", `UPDATE messages SET body = replace(body, 'answer 1', 'answer X') WHERE id = 'r2#1'`, 2, ReasonContentHash},
		{"message deleted", `DELETE FROM messages WHERE id = 'r3#0'`, 3, ReasonContentHash},
		{"meta edited", `UPDATE turns SET meta = '{"model":"cheap"}' WHERE request_id = 'r2'`, 2, ReasonContentHash},
		{"user edited", `UPDATE turns SET user = 'mallory' WHERE request_id = 'r3'`, 3, ReasonContentHash},
		{"turn removed", `DELETE FROM messages WHERE seq = 2; DELETE FROM turns WHERE seq = 2`, 2, ReasonMissing},
		{"link removed", `DELETE FROM messages WHERE seq = 2; DELETE FROM turns WHERE seq = 2; DELETE FROM chain WHERE seq = 2`, 3, ReasonSeqGap},
		{"content hash rewritten", `UPDATE chain SET content_hash = 'x' WHERE seq = 3`, 3, ReasonHash},
		{"link hash rewritten", `UPDATE chain SET hash = 'x' WHERE seq = 2`, 2, ReasonHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openSQLite(t)
			mustAppend(t, s, turn("r1", "c1", 2), turn("r2", "c1", 2), turn("r3", "c2", 2))
			verifyOK(t, s)
			if _, err := rawDB(t, path).Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			rep, err := s.VerifyChain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Broken == nil || rep.Broken.Seq != tc.seq || rep.Broken.Reason != tc.reason {
				t.Fatalf("Broken = %v, want seq %d: %s", rep.Broken, tc.seq, tc.reason)
			}
			if !strings.Contains(rep.Broken.Error(), rep.Broken.RequestID) {
				t.Fatalf("error %q does not name the request", rep.Broken.Error())
			}
		})
	}
}

// TestSQLiteWriteFailures makes the disk refuse writes (tests run as root,
// so chmod would not stop them) and checks that Append reports it, stores
// nothing, and works again once the disk accepts writes.
func TestSQLiteWriteFailures(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		break_, fix   string
		turnsPerBatch int
	}{
		{"read-only", "PRAGMA query_only = ON", "PRAGMA query_only = OFF", 3},
		// A full disk: the file may not grow past its current size.
		{"disk full", "PRAGMA max_page_count = %d", "PRAGMA max_page_count = 1073741823", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openSQLite(t)
			mustAppend(t, s, turn("before", "c", 1))
			q := tc.break_
			if strings.Contains(q, "%d") {
				var pages int
				if err := s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
					t.Fatal(err)
				}
				q = strings.Replace(q, "%d", itoa(pages), 1)
			}
			if _, err := s.w.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
			var batch []TurnRecord
			for i := range tc.turnsPerBatch {
				r := turn("after-"+itoa(i), "c", 8)
				r.Messages[0].Content = strings.Repeat("big ", 500)
				batch = append(batch, r)
			}
			if err := s.Append(ctx, batch...); err == nil {
				t.Fatal("Append succeeded on a disk that refuses writes")
			}
			if h := history(t, s, "c"); len(h) != 1 {
				t.Fatalf("%d messages stored, want only the 1 from before", len(h))
			}
			if _, err := s.w.ExecContext(ctx, tc.fix); err != nil {
				t.Fatal(err)
			}
			mustAppend(t, s, batch...)
			if h := history(t, s, "c"); len(h) != 1+8*tc.turnsPerBatch {
				t.Fatalf("%d messages after recovery", len(h))
			}
			verifyOK(t, s)
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestSQLiteSchema(t *testing.T) {
	ctx := context.Background()
	s, path := openSQLite(t)
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
	var mode, sync string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != "2" {
		t.Fatalf("synchronous = %q (%v), want 2 (FULL)", sync, err)
	}
	var busy int
	if err := s.r.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil || busy != 5000 {
		t.Fatalf("busy_timeout = %d, %v", busy, err)
	}
	// Readers cannot write.
	if _, err := s.r.ExecContext(ctx, "DELETE FROM chain"); err == nil {
		t.Fatal("read pool accepted a write")
	}
	s.Close()
	if _, err := rawDB(t, path).Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQLite(ctx, path, SQLiteConfig{}); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open newer schema = %v, want ErrSchemaTooNew", err)
	}
}

func TestSQLiteConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  SQLiteConfig
		errs int
	}{
		{SQLiteConfig{}, 0},
		{SQLiteConfig{Synchronous: "normal", ReadConns: 2}, 0},
		{SQLiteConfig{Synchronous: "OFF"}, 1},
		{SQLiteConfig{Synchronous: "OFF", BusyTimeout: -1, ReadConns: -1}, 3},
	} {
		err := tc.cfg.Validate()
		n := 0
		if err != nil {
			n = len(err.(interface{ Unwrap() []error }).Unwrap())
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%+v: not ErrInvalidConfig", tc.cfg)
			}
		}
		if n != tc.errs {
			t.Errorf("%+v: %d errors (%v), want %d", tc.cfg, n, err, tc.errs)
		}
	}
	if _, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "x.db"), SQLiteConfig{Synchronous: "OFF"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("OpenSQLite with bad config = %v", err)
	}
}

// TestSQLiteQueryPlans checks that the statements that find a
// conversation's rows search indexes: none scans a table or sorts.
func TestSQLiteQueryPlans(t *testing.T) {
	s, _ := openSQLite(t)
	for _, tc := range []struct {
		name, query string
		args        []any
	}{
		{"history", qHistory, []any{"c"}},
		{"mark deleted", qMarkDeleted, []any{"now", "c", "c"}},
		{"delete messages", qDeleteMessages, []any{"c"}},
		{"delete turns", qDeleteTurns, []any{"c"}},
		{"owner", qOwner, []any{"c"}},
	} {
		rows, err := s.w.Query("EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(plan) == 0 {
			t.Fatalf("%s: no plan (%v)", tc.name, err)
		}
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN ") || strings.Contains(step, "TEMP B-TREE") {
				t.Errorf("%s: plan %q", tc.name, plan)
				break
			}
		}
	}
}

// indexes lists the database's indexes, automatic ones included.
func indexes(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query("SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// TestSQLiteMigrate opens databases written with each older schema version
// and checks that they migrate to the current layout keeping every turn,
// link and deletion, and that appends go on from the old chain head.
func TestSQLiteMigrate(t *testing.T) {
	for _, tc := range []struct {
		version int
		// indexes that only the old layout has
		oldIndexes []string
	}{
		// messages.id as primary key and turns.request_id UNIQUE
		{1, []string{"sqlite_autoindex_messages_1", "sqlite_autoindex_turns_1", "messages_conversation", "chain_conversation"}},
		// indexes on conversation_id for messages and chain
		{2, []string{"messages_conversation", "chain_conversation"}},
	} {
		t.Run("v"+itoa(tc.version), func(t *testing.T) { testSQLiteMigrate(t, tc.version, tc.oldIndexes) })
	}
}

func testSQLiteMigrate(t *testing.T, version int, oldIndexes []string) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	all := migrations
	migrations = all[:version]
	old, err := OpenSQLite(ctx, path, SQLiteConfig{})
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustAppend(t, old, turn("a"+itoa(i), "keep", 3), turn("b"+itoa(i), "gone", 2))
	}
	if err := old.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	before, err := old.VerifyChain(ctx)
	if err != nil || before.Broken != nil || before.Links != 10 || before.Deleted != 5 {
		t.Fatalf("v%d chain: %+v, %v", version, before, err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, path)
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != version {
		t.Fatalf("old layout has user_version %d (%v)", v, err)
	}
	got := " " + strings.Join(indexes(t, raw), " ") + " "
	for _, ix := range oldIndexes {
		if !strings.Contains(got, " "+ix+" ") {
			t.Fatalf("old layout indexes: %s, want %s among them", got, ix)
		}
	}
	raw.Close()

	s, err := OpenSQLite(ctx, path, SQLiteConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
	want := "messages_seq sqlite_autoindex_chain_1 turns_conversation"
	if got := strings.Join(indexes(t, s.w), " "); got != want {
		t.Fatalf("indexes after migration:\n %s\nwant\n %s", got, want)
	}
	after, err := s.VerifyChain(ctx)
	if err != nil || after != before {
		t.Fatalf("chain after migration %+v (%v), want %+v", after, err, before)
	}
	if h := history(t, s, "keep"); len(h) != 15 || h[0].Content != "question of a0" || h[14].Content != "answer 2 of a4" {
		t.Fatalf("history after migration: %d messages", len(h))
	}
	var id string
	if err := s.r.QueryRowContext(ctx, "SELECT id FROM messages WHERE seq = 1 AND idx = 2").Scan(&id); err != nil || id != "a0#2" {
		t.Fatalf("message id after migration = %q, %v", id, err)
	}
	// An old turn appended again is skipped and learns its stored link; a
	// new one chains onto the old head.
	again := []TurnRecord{turn("a2", "keep", 3), turn("new", "keep", 1)}
	mustAppend(t, s, again...)
	if again[0].Seq != 5 || again[1].Seq != 11 || again[1].PrevHash != before.Head {
		t.Fatalf("after migration: re-append seq %d, new seq %d prev %.8s (head %.8s)", again[0].Seq, again[1].Seq, again[1].PrevHash, before.Head)
	}
	if h := history(t, s, "keep"); len(h) != 16 {
		t.Fatalf("%d messages", len(h))
	}
	if cs, err := s.Conversations(ctx); err != nil || len(cs) != 1 || cs[0].ID != "keep" || cs[0].Turns != 6 || cs[0].Messages != 16 {
		t.Fatalf("conversations after migration: %+v, %v", cs, err)
	}
	verifyOK(t, s)
	// Deleting after the migration marks the old links and the new one.
	if err := s.Delete(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.VerifyChain(ctx); err != nil || !rep.OK() || rep.Links != 11 || rep.Deleted != 11 {
		t.Fatalf("chain after deleting: %+v, %v", rep, err)
	}
	var left int
	if err := s.r.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM messages) + (SELECT COUNT(*) FROM turns)").Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d rows left after deleting every conversation (%v)", left, err)
	}
	// Reopening does not migrate again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenSQLite(ctx, path, SQLiteConfig{}); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, s)
}
