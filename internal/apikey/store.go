package apikey

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Store keeps Records by id. Implementations must be safe for concurrent use.
type Store interface {
	// Put stores a new record; ErrExists if its id is taken (a record is
	// never overwritten, so a key id can never be taken over).
	Put(ctx context.Context, rec Record) error
	// Get returns the record with id, or ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// List returns every record, ordered by CreatedAt then ID.
	List(ctx context.Context) ([]Record, error)
	// Revoke marks the record revoked (keeping the first RevokedAt if it
	// already is), or returns ErrNotFound.
	Revoke(ctx context.Context, id string) error
}

// MemoryStore is a Store in memory, for tests and single-process use.
type MemoryStore struct {
	mu   sync.RWMutex
	recs map[string]Record
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{recs: map[string]Record{}} }

// Put implements Store.
func (m *MemoryStore) Put(ctx context.Context, rec Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rec.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.recs[rec.ID]; ok {
		return fmt.Errorf("%w: %s", ErrExists, rec.ID)
	}
	m.recs[rec.ID] = clone(rec)
	return nil
}

// Get implements Store.
func (m *MemoryStore) Get(ctx context.Context, id string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	rec, ok := m.recs[id]
	if !ok {
		return Record{}, ErrNotFound
	}
	return clone(rec), nil
}

// List implements Store.
func (m *MemoryStore) List(ctx context.Context) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	out := make([]Record, 0, len(m.recs))
	for _, r := range m.recs {
		out = append(out, clone(r))
	}
	m.mu.RUnlock()
	SortRecords(out)
	return out, nil
}

// Revoke implements Store.
func (m *MemoryStore) Revoke(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs[id]
	if !ok {
		return ErrNotFound
	}
	m.recs[id] = MarkRevoked(rec, time.Now())
	return nil
}

// MarkRevoked returns rec revoked at now, or unchanged if it already is.
// Store implementations use it.
func MarkRevoked(rec Record, now time.Time) Record {
	if rec.Revoked {
		return rec
	}
	at := now.UTC()
	rec.Revoked, rec.RevokedAt = true, &at
	return rec
}

// SortRecords orders records by CreatedAt then ID (the order of List).
func SortRecords(recs []Record) {
	slices.SortFunc(recs, func(a, b Record) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
}

func clone(r Record) Record {
	if r.RevokedAt != nil {
		at := *r.RevokedAt
		r.RevokedAt = &at
	}
	return r
}

// Issue generates a key for user (see Generate) and stores its record,
// retrying on the (unlikely) id collision.
func Issue(ctx context.Context, s Store, user string, rpm, tpm int) (plaintext string, rec Record, err error) {
	return IssueModels(ctx, s, user, rpm, tpm, nil)
}

// IssueModels is Issue for a key limited to models (nil: every model).
func IssueModels(ctx context.Context, s Store, user string, rpm, tpm int, models []string) (plaintext string, rec Record, err error) {
	return IssueWith(ctx, s, user, Options{RPM: rpm, TPM: tpm, Models: models})
}

// Options are what a key may do besides authenticating its user.
type Options struct {
	// RPM and TPM are the key's own per-minute limits (0: the user's).
	RPM, TPM int
	// Models limits the key to these models (nil: every model).
	Models []string
	// Cache lets the key's turns use the response cache.
	Cache bool
}

// IssueWith is Issue with every option of a key.
func IssueWith(ctx context.Context, s Store, user string, o Options) (plaintext string, rec Record, err error) {
	rpm, tpm, models := o.RPM, o.TPM, o.Models
	if err := validModels(models); err != nil {
		return "", Record{}, err
	}
	for range 3 {
		plaintext, rec, err = Generate(user, rpm, tpm)
		if err != nil {
			return "", Record{}, err
		}
		rec.Models, rec.Cache = models, o.Cache
		if err = s.Put(ctx, rec); err == nil || !errors.Is(err, ErrExists) {
			break
		}
	}
	if err != nil {
		return "", Record{}, err
	}
	return plaintext, rec, nil
}
