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

// TestSQLiteMigrateV1 opens a database written with schema version 1 (the
// layout with messages.id as primary key and turns.request_id UNIQUE) and
// checks that it migrates to the current layout keeping every turn, link
// and deletion, and that appends go on from the old chain head.
func TestSQLiteMigrateV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	all := migrations
	migrations = all[:1]
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
		t.Fatalf("v1 chain: %+v, %v", before, err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, path)
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 1 {
		t.Fatalf("old layout has user_version %d (%v)", v, err)
	}
	if got := strings.Join(indexes(t, raw), " "); !strings.Contains(got, "sqlite_autoindex_messages_1") || !strings.Contains(got, "sqlite_autoindex_turns_1") {
		t.Fatalf("old layout indexes: %s", got)
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
	want := "chain_conversation messages_conversation messages_seq sqlite_autoindex_chain_1 turns_conversation"
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
	verifyOK(t, s)
	// Reopening does not migrate again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenSQLite(ctx, path, SQLiteConfig{}); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, s)
}
