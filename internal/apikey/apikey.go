package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"
)

// Key format: Prefix, an 8-character id of [a-z0-9], "_", and a 43-character
// secret (32 random bytes, base64url without padding):
//
//	ab-3k9x0q2m_Jv9dH3...(43 chars)
const (
	// Prefix starts every key (and makes leaked keys easy to scan for).
	Prefix = "ab-"
	// IDLen is the length of a key id.
	IDLen = 8
	// SecretLen is the length of the encoded secret (32 bytes).
	SecretLen = 43
	// KeyLen is the length of a whole key.
	KeyLen = len(Prefix) + IDLen + 1 + SecretLen
)

const (
	idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	sep        = '_'
	maxUserLen = 128
)

// Errors. Every message is safe to show to a client and to log: none
// contains the key.
var (
	// ErrMissing: no key was presented (or not as a Bearer token).
	ErrMissing = errors.New("apikey: missing API key: send \"Authorization: Bearer <key>\"")
	// ErrMalformed is wrapped by ErrMalformedPrefix, ErrMalformedLength and
	// ErrMalformedCharset.
	ErrMalformed = errors.New("apikey: malformed API key")
	// ErrMalformedPrefix: the key does not start with Prefix.
	ErrMalformedPrefix = fmt.Errorf("%w: it must start with %q", ErrMalformed, Prefix)
	// ErrMalformedLength: the key is not KeyLen characters long.
	ErrMalformedLength = fmt.Errorf("%w: it must be %d characters long", ErrMalformed, KeyLen)
	// ErrMalformedCharset: a character is not allowed at its position.
	ErrMalformedCharset = fmt.Errorf("%w: invalid character", ErrMalformed)
	// ErrUnknown: no such key (unknown id or wrong secret; the two are not
	// told apart).
	ErrUnknown = errors.New("apikey: invalid API key")
	// ErrRevoked: the key was revoked.
	ErrRevoked = errors.New("apikey: API key revoked")
	// ErrNotFound: Store.Get or Store.Revoke found no record with the id.
	ErrNotFound = errors.New("apikey: no such key id")
	// ErrExists: Store.Put found a record with the same id.
	ErrExists = errors.New("apikey: key id already exists")
	// ErrUnavailable: the Store could not be reached.
	ErrUnavailable = errors.New("apikey: key store unavailable")
	// ErrInvalid: a Record or argument that cannot be used.
	ErrInvalid = errors.New("apikey: invalid")
)

// Record is what is stored about an issued key. It never holds the secret,
// only its SHA-256.
type Record struct {
	// ID is the key id (the 8 characters after Prefix).
	ID string `json:"id"`
	// User is the user the key authenticates as.
	User string `json:"user"`
	// Hash is the hex SHA-256 of the whole plaintext key.
	Hash string `json:"hash"`
	// RPM and TPM are the key's own requests and tokens per minute
	// (0: only the user's limits apply).
	RPM int `json:"rpm,omitempty"`
	TPM int `json:"tpm,omitempty"`
	// Models, when set, are the only models the key may use (and list);
	// empty: every model.
	Models []string `json:"models,omitempty"`
	// Cache lets the key's turns use the response cache (deterministic
	// model calls, or any a request asks to cache).
	Cache bool `json:"cache,omitempty"`
	// CreatedAt is when the key was generated (UTC).
	CreatedAt time.Time `json:"created_at"`
	// Revoked keys are refused; RevokedAt says since when.
	Revoked   bool       `json:"revoked,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Matches reports whether plaintext is the key r was issued for, in
// constant time (crypto/subtle) with respect to the stored hash.
func (r Record) Matches(plaintext string) bool {
	sum := sha256.Sum256([]byte(plaintext))
	var got [2 * sha256.Size]byte
	hex.Encode(got[:], sum[:])
	return subtle.ConstantTimeCompare(got[:], []byte(r.Hash)) == 1
}

// LogValue logs r without its hash.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", r.ID), slog.String("user", r.User),
		slog.Int("rpm", r.RPM), slog.Int("tpm", r.TPM), slog.Any("models", r.Models), slog.Bool("cache", r.Cache), slog.Bool("revoked", r.Revoked),
	)
}

// Validate reports every problem of r, joined; each wraps ErrInvalid.
func (r Record) Validate() error {
	var errs []error
	if !ValidID(r.ID) {
		errs = append(errs, fmt.Errorf("%w record: id must be %d characters of [a-z0-9]", ErrInvalid, IDLen))
	}
	errs = append(errs, validUser(r.User))
	if len(r.Hash) != 2*sha256.Size {
		errs = append(errs, fmt.Errorf("%w record: hash must be %d hex digits", ErrInvalid, 2*sha256.Size))
	} else if _, err := hex.DecodeString(r.Hash); err != nil {
		errs = append(errs, fmt.Errorf("%w record: hash is not hex", ErrInvalid))
	}
	if r.RPM < 0 || r.TPM < 0 {
		errs = append(errs, fmt.Errorf("%w record: rpm and tpm must not be negative", ErrInvalid))
	}
	errs = append(errs, validModels(r.Models))
	return errors.Join(errs...)
}

// MaxModels bounds a key's model list.
const MaxModels = 64

func validModels(models []string) error {
	if len(models) > MaxModels {
		return fmt.Errorf("%w: at most %d models per key", ErrInvalid, MaxModels)
	}
	for _, m := range models {
		if m == "" || len(m) > 128 || !utf8.ValidString(m) {
			return fmt.Errorf("%w: a model name must be 1-128 bytes of UTF-8", ErrInvalid)
		}
	}
	return nil
}

// Allows reports whether the key may use model.
func (r Record) Allows(model string) bool {
	if len(r.Models) == 0 {
		return true
	}
	for _, m := range r.Models {
		if m == model {
			return true
		}
	}
	return false
}

func validUser(user string) error {
	if user == "" || len(user) > maxUserLen || !utf8.ValidString(user) {
		return fmt.Errorf("%w: user must be 1-%d bytes of UTF-8", ErrInvalid, maxUserLen)
	}
	return nil
}

// ValidID reports whether id is a well-formed key id.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return false
		}
	}
	return true
}

func isIDChar(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isSecretChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Generate issues a new key for user with per-key limits rpm and tpm (0:
// none). It returns the plaintext, to hand to the user once, and the Record
// to store. The id and secret come from crypto/rand.
func Generate(user string, rpm, tpm int) (plaintext string, rec Record, err error) {
	if err := validUser(user); err != nil {
		return "", Record{}, err
	}
	if rpm < 0 || tpm < 0 {
		return "", Record{}, fmt.Errorf("%w: rpm and tpm must not be negative", ErrInvalid)
	}
	id := make([]byte, 0, IDLen)
	var buf [16]byte
	for len(id) < IDLen {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", Record{}, fmt.Errorf("apikey: random: %w", err)
		}
		for _, b := range buf {
			// 252 = 7*36: reject the rest so every character is equally likely.
			if b < 252 && len(id) < IDLen {
				id = append(id, idAlphabet[b%36])
			}
		}
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Record{}, fmt.Errorf("apikey: random: %w", err)
	}
	plaintext = Prefix + string(id) + string(sep) + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(plaintext))
	rec = Record{
		ID: string(id), User: user, Hash: hex.EncodeToString(sum[:]),
		RPM: rpm, TPM: tpm, CreatedAt: time.Now().UTC(),
	}
	return plaintext, rec, nil
}

// Parse checks the format of key and returns its id. It does not check that
// the key exists. Errors: ErrMissing, ErrMalformedPrefix,
// ErrMalformedLength, ErrMalformedCharset (the last three wrap
// ErrMalformed); messages name a position, never the key's content.
func Parse(key string) (id string, err error) {
	switch {
	case key == "":
		return "", ErrMissing
	case len(key) < len(Prefix) || key[:len(Prefix)] != Prefix:
		return "", ErrMalformedPrefix
	case len(key) != KeyLen:
		return "", fmt.Errorf("%w, got %d", ErrMalformedLength, len(key))
	}
	for i := len(Prefix); i < KeyLen; i++ {
		c := key[i]
		var ok bool
		switch {
		case i < len(Prefix)+IDLen:
			ok = isIDChar(c)
		case i == len(Prefix)+IDLen:
			ok = c == sep
		default:
			ok = isSecretChar(c)
		}
		if !ok {
			return "", fmt.Errorf("%w at position %d", ErrMalformedCharset, i+1)
		}
	}
	return key[len(Prefix) : len(Prefix)+IDLen], nil
}

// Redact returns a log-safe form of a key: its first 4 and last 4
// characters around "…", or "****" for input shorter than 16 characters.
// It never returns more than 8 characters of its input.
func Redact(key string) string {
	r := []rune(key)
	if len(r) < 16 {
		return "****"
	}
	return string(r[:4]) + "…" + string(r[len(r)-4:])
}
