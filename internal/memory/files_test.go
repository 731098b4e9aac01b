package memory

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func openFiles(t *testing.T, dir string) *FileStore {
	t.Helper()
	s, err := OpenFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFilesTamperDetected(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, dir string)
		seq    int64
		reason string
	}{
		{"message edited", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "conversations", FileName("c1")), "answer 1 of r2", "answer X of r2")
		}, 2, ReasonContentHash},
		{"file removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "conversations", FileName("c2"))); err != nil {
				t.Fatal(err)
			}
		}, 3, ReasonMissing},
		{"chain line edited", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "chain.jsonl"))
			lines := strings.Split(string(b), "\n")
			var l link
			json.Unmarshal([]byte(lines[1]), &l)
			l.ContentHash = strings.Repeat("0", 64)
			nb, _ := json.Marshal(l)
			lines[1] = string(nb)
			os.WriteFile(filepath.Join(dir, "chain.jsonl"), []byte(strings.Join(lines, "\n")), 0o640)
		}, 2, ReasonHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openFiles(t, dir)
			mustAppend(t, s, turn("r1", "c1", 2), turn("r2", "c1", 2), turn("r3", "c2", 2))
			verifyOK(t, s)
			s.Close()
			tc.edit(t, dir)
			s = openFiles(t, dir)
			rep, err := s.VerifyChain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Broken == nil || rep.Broken.Seq != tc.seq || rep.Broken.Reason != tc.reason {
				t.Fatalf("Broken = %v, want seq %d: %s", rep.Broken, tc.seq, tc.reason)
			}
		})
	}
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestFilesLocked(t *testing.T) {
	dir := t.TempDir()
	s := openFiles(t, dir)
	if _, err := OpenFiles(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenFiles = %v, want ErrLocked", err)
	}
	s.Close()
	openFiles(t, dir) // lock released
}

// TestFilesCrashLeftovers simulates the two crash windows of Append: a torn
// chain line, and a conversation file that holds a turn the chain never
// committed. Neither may show up, and a retry stores the turn once.
func TestFilesCrashLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openFiles(t, dir)
	mustAppend(t, s, turn("r1", "c", 1))
	s.Close()

	// Window 1: the file was rewritten with r2, the chain line not written.
	path := filepath.Join(dir, "conversations", FileName("c"))
	var cf convFile
	b, _ := os.ReadFile(path)
	json.Unmarshal(b, &cf)
	ghost := turn("r2", "c", 1)
	ghost.Seq = 2
	cf.Turns = append(cf.Turns, ghost)
	b, _ = json.MarshalIndent(cf, "", "  ")
	os.WriteFile(path, b, 0o640)
	// Window 2: a torn chain line (for r3).
	f, _ := os.OpenFile(filepath.Join(dir, "chain.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":3,"request_id":"r3","conv`)
	f.Close()

	s = openFiles(t, dir)
	if h := history(t, s, "c"); len(h) != 1 {
		t.Fatalf("uncommitted turns visible: %+v", h)
	}
	verifyOK(t, s)
	mustAppend(t, s, turn("r2", "c", 1), turn("r3", "c", 1)) // the retry
	ts, err := s.Turns(ctx, "c")
	if err != nil || len(ts) != 3 || ts[1].RequestID != "r2" || ts[2].RequestID != "r3" {
		t.Fatalf("Turns = %+v, %v", ts, err)
	}
	if rep := verifyOK(t, s); rep.Links != 3 {
		t.Fatalf("%+v", rep)
	}
	// The file is human-readable, indented JSON.
	b, _ = os.ReadFile(path)
	if !strings.Contains(string(b), "\n  \"turns\": [") {
		t.Fatalf("file not indented:\n%s", b)
	}
}

var safeName = regexp.MustCompile(`^[a-z0-9_][a-z0-9_-]{0,40}-[0-9a-f]{32}\.json$`)

func TestFileName(t *testing.T) {
	for _, tc := range []struct{ id, prefix string }{
		{"conv-1_A", "conv-1_a-"},
		{"a/b", "a_b-"},
		{"../../etc", "______etc-"},
		{"", "_-"},
		{strings.Repeat("Z", 100), strings.Repeat("z", 40) + "-"},
	} {
		n := FileName(tc.id)
		if !strings.HasPrefix(n, tc.prefix) || !safeName.MatchString(n) {
			t.Errorf("FileName(%q) = %q, want prefix %q and safe", tc.id, n, tc.prefix)
		}
	}
}

func FuzzFileName(f *testing.F) {
	for _, s := range [][2]string{{"Conv", "conv"}, {"a/b", "a_b"}, {"a.b", "a:b"}, {"", " "}, {"x", "x\x00"}, {"ǅ", "ǆ"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		na, nb := FileName(a), FileName(b)
		if !safeName.MatchString(na) {
			t.Fatalf("FileName(%q) = %q is not a safe name", a, na)
		}
		// Distinct ids never share a file, not even on a case-insensitive FS.
		if a != b && strings.EqualFold(na, nb) {
			t.Fatalf("FileName(%q) and FileName(%q) collide: %q", a, b, na)
		}
		if a == b && na != nb {
			t.Fatal("not deterministic")
		}
	})
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{``, `null`, `{"b":1,"a":2}`, `[1.50, 1e3, -0]`, `"\u00e9<>&"`, `{"a":`, `1 2`, `{"a":{"c":[],"b":{}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := canonicalJSON(raw)
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("canonicalJSON(%q) = %q is not valid JSON", raw, c)
		}
		c2, err := canonicalJSON(c)
		if err != nil || string(c2) != string(c) {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", raw, c, c2, err)
		}
	})
}

func TestTurnRecordLogValue(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("stored", "turn", turn("r1", "c1", 2))
	out := b.String()
	if !strings.Contains(out, `"request_id":"r1"`) || !strings.Contains(out, `"messages":2`) || strings.Contains(out, "question of") {
		t.Fatalf("log line %s", out)
	}
}

// FuzzOpenFilesChain feeds arbitrary chain.jsonl content to OpenFiles: it
// must either refuse it with an error or open a store that verifies
// (reporting a break, not panicking) and still accepts appends.
func FuzzOpenFilesChain(f *testing.F) {
	good := `{"seq":1,"request_id":"r1","conversation_id":"c","content_hash":"x","prev_hash":"","hash":"y"}` + "\n"
	for _, s := range []string{"", good, good + `{"op":"delete","conversation_id":"c"}` + "\n", good + `{"seq":1,"req`, "{}\n", "\n\n", `{"op":"drop"}` + "\n", "[1]\n", good + good} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "chain.jsonl"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := OpenFiles(dir)
		if err != nil {
			return
		}
		defer s.Close()
		if _, err := s.VerifyChain(context.Background()); err != nil {
			return
		}
		if err := s.Append(context.Background(), turn("fuzz-new", "fz", 1)); err != nil {
			t.Fatalf("Append after opening: %v", err)
		}
	})
}
