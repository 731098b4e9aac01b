package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentbus/agentbus/internal/apikey"
)

func generate(t testing.TB, user string, rpm, tpm int) (string, apikey.Record) {
	t.Helper()
	key, rec, err := apikey.Generate(user, rpm, tpm)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return key, rec
}

func TestGenerate(t *testing.T) {
	key, rec := generate(t, "alice", 60, 1000)
	if len(key) != apikey.KeyLen || !strings.HasPrefix(key, apikey.Prefix+rec.ID+"_") {
		t.Fatalf("key %s has the wrong shape (len %d)", apikey.Redact(key), len(key))
	}
	id, err := apikey.Parse(key)
	if err != nil || id != rec.ID {
		t.Fatalf("Parse(generated) = %q, %v; want %q", id, err, rec.ID)
	}
	if err := rec.Validate(); err != nil {
		t.Fatalf("generated record invalid: %v", err)
	}
	if rec.User != "alice" || rec.RPM != 60 || rec.TPM != 1000 || rec.Revoked || rec.CreatedAt.IsZero() {
		t.Fatalf("record %+v", rec)
	}
	if !rec.Matches(key) {
		t.Fatal("record does not match its key")
	}
	secret := key[len(key)-apikey.SecretLen:]
	if strings.Contains(fmt.Sprintf("%+v", rec), secret) || strings.Contains(fmt.Sprintf("%+v", rec), key) {
		t.Fatal("record holds the secret")
	}
	key2, rec2 := generate(t, "alice", 0, 0)
	if key2 == key || rec2.ID == rec.ID || rec2.Hash == rec.Hash {
		t.Fatal("two keys are not distinct")
	}
	last := "A"
	if strings.HasSuffix(key, "A") {
		last = "B" // the altered key must differ from the real one
	}
	for _, other := range []string{key2, key[:len(key)-1] + last, "", key + " "} {
		if rec.Matches(other) {
			t.Errorf("record matches another key %s", apikey.Redact(other))
		}
	}
	for _, bad := range []struct {
		user     string
		rpm, tpm int
	}{{"", 0, 0}, {strings.Repeat("u", 129), 0, 0}, {"\xff", 0, 0}, {"bob", -1, 0}, {"bob", 0, -1}} {
		if _, _, err := apikey.Generate(bad.user, bad.rpm, bad.tpm); !errors.Is(err, apikey.ErrInvalid) {
			t.Errorf("Generate(%q, %d, %d) = %v, want ErrInvalid", bad.user, bad.rpm, bad.tpm, err)
		}
	}
}

func TestGenerateIDsAreUniform(t *testing.T) {
	counts := map[rune]int{}
	for range 500 {
		_, rec := generate(t, "u", 0, 0)
		for _, c := range rec.ID {
			counts[c]++
		}
	}
	// 4000 characters over 36 symbols: ~111 each; a biased generator
	// (e.g. b%36 without rejection, or a missing symbol) fails this.
	if len(counts) != 36 {
		t.Fatalf("%d distinct id characters, want 36", len(counts))
	}
	for c, n := range counts {
		if n < 50 || n > 190 {
			t.Errorf("character %q appears %d times of 4000", c, n)
		}
	}
}

func TestParse(t *testing.T) {
	valid := apikey.Prefix + "abcd1234_" + strings.Repeat("A", 42) + "-"
	tests := []struct {
		name string
		key  string
		want error
		also error
	}{
		{"valid", valid, nil, nil},
		{"empty", "", apikey.ErrMissing, nil},
		{"no prefix", "sk-abcd1234_" + strings.Repeat("A", 43), apikey.ErrMalformedPrefix, apikey.ErrMalformed},
		{"prefix case", "AB-abcd1234_" + strings.Repeat("A", 43), apikey.ErrMalformedPrefix, apikey.ErrMalformed},
		{"prefix only", "ab-", apikey.ErrMalformedLength, apikey.ErrMalformed},
		{"too short", valid[:len(valid)-1], apikey.ErrMalformedLength, apikey.ErrMalformed},
		{"too long", valid + "x", apikey.ErrMalformedLength, apikey.ErrMalformed},
		{"upper id", apikey.Prefix + "ABCD1234_" + strings.Repeat("A", 43), apikey.ErrMalformedCharset, apikey.ErrMalformed},
		{"bad separator", apikey.Prefix + "abcd1234-" + strings.Repeat("A", 43), apikey.ErrMalformedCharset, apikey.ErrMalformed},
		{"plus in secret", apikey.Prefix + "abcd1234_" + strings.Repeat("A", 42) + "+", apikey.ErrMalformedCharset, apikey.ErrMalformed},
		{"space in secret", apikey.Prefix + "abcd1234_" + strings.Repeat("A", 20) + " " + strings.Repeat("A", 22), apikey.ErrMalformedCharset, apikey.ErrMalformed},
		{"non-ascii", apikey.Prefix + "abcd123é" + strings.Repeat("A", 43), apikey.ErrMalformedCharset, apikey.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := apikey.Parse(tt.key)
			if tt.want == nil {
				if err != nil || id != "abcd1234" {
					t.Fatalf("Parse = %q, %v; want abcd1234", id, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || (tt.also != nil && !errors.Is(err, tt.also)) || id != "" {
				t.Fatalf("Parse = %q, %v; want %v", id, err, tt.want)
			}
			for _, other := range []error{apikey.ErrMissing, apikey.ErrMalformedPrefix, apikey.ErrMalformedLength, apikey.ErrMalformedCharset} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "ab-", "ab-abcd1234_" + strings.Repeat("x", 43), "Bearer ab-x", strings.Repeat("\x00", 55), "ab-abcd1234_" + strings.Repeat("é", 22)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		id, err := apikey.Parse(key)
		if err != nil {
			if id != "" {
				t.Fatalf("id %q with error %v", id, err)
			}
			if len(key) >= 4 && strings.Contains(err.Error(), key) {
				t.Fatalf("error %q contains the key", err)
			}
			if !errors.Is(err, apikey.ErrMissing) && !errors.Is(err, apikey.ErrMalformed) {
				t.Fatalf("error %v is neither ErrMissing nor ErrMalformed", err)
			}
			return
		}
		if len(key) != apikey.KeyLen || !apikey.ValidID(id) || key[3:11] != id {
			t.Fatalf("accepted %q with id %q", key, id)
		}
	})
}

func TestRedact(t *testing.T) {
	key, _ := generate(t, "u", 0, 0)
	tests := []struct{ in, want string }{
		{"", "****"},
		{"short", "****"},
		{"ab-123456789012", "****"},
		{"ab-1234567890123", "ab-1…0123"},
		{key, key[:4] + "…" + key[len(key)-4:]},
		{"ключ-ключ-ключ-ключ", "ключ…ключ"},
	}
	for _, tt := range tests {
		if got := apikey.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{"", "ab-abcd1234_" + strings.Repeat("x", 43), "\xff\xfe", "0123456789abcdef"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		got := apikey.Redact(key)
		if got == "****" {
			return
		}
		shown := strings.Replace(got, "…", "", 1)
		if utf8.RuneCountInString(shown) > 8 || utf8.RuneCountInString(key) < 16 {
			t.Fatalf("Redact(%q) = %q shows %d characters", key, got, utf8.RuneCountInString(shown))
		}
	})
}

func TestRecordLogValue(t *testing.T) {
	_, rec := generate(t, "alice", 1, 2)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("key", "rec", rec)
	if out := buf.String(); strings.Contains(out, rec.Hash) || !strings.Contains(out, rec.ID) {
		t.Fatalf("log line %q: want the id and not the hash", out)
	}
}

func TestMemoryStore(t *testing.T) {
	ctx := context.Background()
	s := apikey.NewMemoryStore()
	_, a := generate(t, "alice", 0, 0)
	_, b := generate(t, "bob", 0, 0)
	b.CreatedAt = a.CreatedAt.Add(time.Second)
	for _, r := range []apikey.Record{b, a} {
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, a); !errors.Is(err, apikey.ErrExists) {
		t.Fatalf("duplicate Put = %v, want ErrExists", err)
	}
	if err := s.Put(ctx, apikey.Record{ID: "x"}); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("invalid Put = %v, want ErrInvalid", err)
	}
	if _, err := s.Get(ctx, "zzzzzzzz"); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Get missing = %v", err)
	}
	if err := s.Revoke(ctx, "zzzzzzzz"); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Revoke missing = %v", err)
	}
	if err := s.Revoke(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, a.ID)
	if err != nil || !got.Revoked || got.RevokedAt == nil {
		t.Fatalf("after Revoke: %+v, %v", got, err)
	}
	first := *got.RevokedAt
	if err := s.Revoke(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Get(ctx, a.ID); !again.RevokedAt.Equal(first) {
		t.Fatalf("second Revoke moved RevokedAt %v -> %v", first, again.RevokedAt)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("List = %+v, %v; want alice then bob", list, err)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// countingStore counts Gets and can fail them.
type countingStore struct {
	apikey.Store
	mu   sync.Mutex
	gets int
	err  error
}

func (c *countingStore) Get(ctx context.Context, id string) (apikey.Record, error) {
	c.mu.Lock()
	c.gets++
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return apikey.Record{}, err
	}
	return c.Store.Get(ctx, id)
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	mem := apikey.NewMemoryStore()
	good, goodRec, err := apikey.Issue(ctx, mem, "alice", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	revoked, revRec, _ := apikey.Issue(ctx, mem, "bob", 0, 0)
	if err := mem.Revoke(ctx, revRec.ID); err != nil {
		t.Fatal(err)
	}
	unknown, _ := generate(t, "carol", 0, 0)
	wrongSecret := good[:len(good)-5] + "AAAAA"
	if wrongSecret == good {
		wrongSecret = good[:len(good)-5] + "BBBBB"
	}
	tests := []struct {
		name   string
		header string
		want   error
		user   string
	}{
		{"ok", "Bearer " + good, nil, "alice"},
		{"scheme case and spaces", "  bearer   " + good + " ", nil, "alice"},
		{"no header", "", apikey.ErrMissing, ""},
		{"basic auth", "Basic " + good, apikey.ErrMissing, ""},
		{"bare key", good, apikey.ErrMissing, ""},
		{"empty token", "Bearer ", apikey.ErrMissing, ""},
		{"other vendor key", "Bearer sk-proj-" + strings.Repeat("x", 40), apikey.ErrMalformedPrefix, ""},
		{"truncated", "Bearer " + good[:30], apikey.ErrMalformedLength, ""},
		{"bad char", "Bearer " + good[:20] + "!" + good[21:], apikey.ErrMalformedCharset, ""},
		{"unknown id", "Bearer " + unknown, apikey.ErrUnknown, ""},
		{"wrong secret", "Bearer " + wrongSecret, apikey.ErrUnknown, ""},
		{"revoked", "Bearer " + revoked, apikey.ErrRevoked, ""},
	}
	v, err := apikey.NewVerifier(mem, apikey.VerifierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := v.Verify(ctx, tt.header)
			if tt.want == nil {
				if err != nil || rec.User != tt.user || rec.ID != goodRec.ID || rec.RPM != 10 {
					t.Fatalf("Verify = %+v, %v; want alice's record", rec, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			for _, k := range []string{good, revoked, unknown, wrongSecret} {
				if strings.Contains(err.Error(), k[12:]) {
					t.Fatalf("error %q contains a key's secret", err)
				}
			}
		})
	}
}

func TestVerifierCache(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	cs := &countingStore{Store: apikey.NewMemoryStore()}
	key, rec, err := apikey.Issue(ctx, cs, "alice", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := apikey.NewVerifier(cs, apikey.VerifierConfig{CacheTTL: time.Second, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := v.VerifyKey(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if cs.gets != 1 {
		t.Fatalf("%d store lookups for 5 verifications within the TTL, want 1", cs.gets)
	}
	// A wrong secret for a cached id is still refused.
	wrong := key[:len(key)-3] + "zzz"
	if wrong == key {
		wrong = key[:len(key)-3] + "yyy"
	}
	if _, err := v.VerifyKey(ctx, wrong); !errors.Is(err, apikey.ErrUnknown) {
		t.Fatalf("wrong secret with cached id: %v", err)
	}
	if err := cs.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	clk.advance(999 * time.Millisecond)
	if _, err := v.VerifyKey(ctx, key); err != nil {
		t.Fatalf("within the TTL the cached record is used: %v", err)
	}
	clk.advance(time.Millisecond)
	if _, err := v.VerifyKey(ctx, key); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("1s after revocation: %v, want ErrRevoked", err)
	}
	// Store failures are ErrUnavailable, not "invalid key".
	cs.err = errors.New("connection refused")
	key2, _, _ := apikey.Issue(ctx, cs.Store, "bob", 0, 0)
	if _, err := v.VerifyKey(ctx, key2); !errors.Is(err, apikey.ErrUnavailable) {
		t.Fatalf("store down: %v, want ErrUnavailable", err)
	}
}

func TestVerifierConfigValidate(t *testing.T) {
	tests := []struct {
		cfg apikey.VerifierConfig
		ok  bool
	}{
		{apikey.VerifierConfig{}, true},
		{apikey.VerifierConfig{CacheTTL: time.Second}, true},
		{apikey.VerifierConfig{CacheTTL: -1}, true},
		{apikey.VerifierConfig{CacheTTL: 2 * time.Second}, false},
		{apikey.VerifierConfig{CacheSize: -1}, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.cfg), func(t *testing.T) {
			_, err := apikey.NewVerifier(apikey.NewMemoryStore(), tt.cfg)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, apikey.ErrInvalid)) {
				t.Fatalf("NewVerifier = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func Example() {
	ctx := context.Background()
	store := apikey.NewMemoryStore()
	key, rec, err := apikey.Issue(ctx, store, "alice", 60, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(key), key[:3], apikey.Redact(key) != key)

	v, _ := apikey.NewVerifier(store, apikey.VerifierConfig{})
	got, err := v.Verify(ctx, "Bearer "+key)
	fmt.Println(got.User, got.RPM, err)

	_ = store.Revoke(ctx, rec.ID)
	uncached, _ := apikey.NewVerifier(store, apikey.VerifierConfig{CacheTTL: -1}) // v sees it within 500ms
	_, err = uncached.Verify(ctx, "Bearer "+key)
	fmt.Println(err)
	_, err = v.Verify(ctx, "Bearer sk-123")
	fmt.Println(err)
	// Output:
	// 55 ab- true
	// alice 60 <nil>
	// apikey: API key revoked
	// apikey: malformed API key: it must start with "ab-"
}

func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	store := apikey.NewMemoryStore()
	key, _, err := apikey.Issue(ctx, store, "alice", 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	v, _ := apikey.NewVerifier(store, apikey.VerifierConfig{})
	h := "Bearer " + key
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzVerify: any Authorization header either authenticates as the one
// issued key or fails with a known error that does not echo the header.
func FuzzVerify(f *testing.F) {
	ctx := context.Background()
	store := apikey.NewMemoryStore()
	key, _, err := apikey.Issue(ctx, store, "alice", 0, 0)
	if err != nil {
		f.Fatal(err)
	}
	v, err := apikey.NewVerifier(store, apikey.VerifierConfig{CacheTTL: -1})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"Bearer " + key, "bearer " + key[:40], "Bearer " + key[:54] + "x", "Basic abc", "", "Bearer", "Bearer ab-" + strings.Repeat("a", 52)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		rec, err := v.Verify(ctx, header)
		if err == nil {
			if rec.User != "alice" || !strings.Contains(header, key) {
				t.Fatalf("header %q authenticated as %+v", header, rec)
			}
			return
		}
		known := false
		for _, e := range []error{apikey.ErrMissing, apikey.ErrMalformed, apikey.ErrUnknown} {
			known = known || errors.Is(err, e)
		}
		if !known {
			t.Fatalf("Verify(%q) = %v: not a documented error", header, err)
		}
		if tok := strings.TrimSpace(strings.TrimPrefix(header, "Bearer ")); len(tok) >= 8 && strings.Contains(err.Error(), tok) {
			t.Fatalf("error %q echoes the token", err)
		}
	})
}
