package memory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/agentbus/agentbus/messages"
)

// TurnRecord is one completed chat turn: the turn's input messages followed
// by the messages the pipeline produced (assistant tool calls, tool results,
// final answer), in order.
type TurnRecord struct {
	// RequestID identifies the turn; Append is idempotent on it. Required.
	RequestID string `json:"request_id"`
	// ConversationID names the conversation the turn belongs to. Required;
	// any string is accepted (the file store escapes it).
	ConversationID string `json:"conversation_id"`
	// User is the authenticated user.
	User string `json:"user"`
	// Messages are the input messages followed by the produced ones.
	Messages []messages.Message `json:"messages"`
	// Meta is opaque JSON stored with the turn (persist stores the Completed
	// event: model, usage, provider). Empty or valid JSON.
	Meta json.RawMessage `json:"meta,omitempty"`
	// CreatedAt is when the turn entered the system; the store keeps it in
	// UTC without monotonic reading, and sets it to the commit time if zero.
	CreatedAt time.Time `json:"created_at"`

	// Seq is the global commit order, from 1. Set by the store on commit.
	Seq int64 `json:"seq"`
	// Hash is this turn's link in the hash chain. Set by the store.
	Hash string `json:"hash"`
	// PrevHash is the previous turn's Hash ("" for the first). Set by the store.
	PrevHash string `json:"prev_hash"`
}

// CompletedTurn is the record of a completed turn: input (the turn's
// messages as received) followed by c.Steps, with c as Meta. Meta leaves
// out what is known only after the commit (c.CompletedAt, c.ChainSeq), so
// the persist stage, which stores the record before it publishes c, and a
// rebuild from the stream, which reads c and the received turn back, store
// the same content and get the same content hash.
func CompletedTurn(input []messages.Message, c messages.Completed) (TurnRecord, error) {
	c.CompletedAt, c.ChainSeq = time.Time{}, 0
	meta, err := json.Marshal(c)
	if err != nil {
		return TurnRecord{}, fmt.Errorf("memory: turn %s: meta: %w", c.RequestID, err)
	}
	return TurnRecord{
		RequestID:      c.RequestID,
		ConversationID: c.ConversationID,
		User:           c.User,
		Messages:       append(append([]messages.Message(nil), input...), c.Steps...),
		Meta:           meta,
		CreatedAt:      c.CreatedAt,
	}, nil
}

// LogValue logs a turn's ids and sizes, never its messages or meta (user
// content does not belong in logs).
func (r TurnRecord) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("request_id", r.RequestID),
		slog.String("conversation_id", r.ConversationID),
		slog.String("user", r.User),
		slog.Int("messages", len(r.Messages)),
		slog.Int64("seq", r.Seq),
	)
}

// ConversationInfo summarises one stored conversation.
type ConversationInfo struct {
	// ID is the conversation id.
	ID string `json:"id"`
	// Owner is the user of its first stored turn: the conversation
	// belongs to that user.
	Owner string `json:"owner"`
	// Turns and Messages count what is stored.
	Turns    int `json:"turns"`
	Messages int `json:"messages"`
	// Updated is the CreatedAt of the conversation's newest turn.
	Updated time.Time `json:"updated"`
}

// Store is durable conversation memory. Implementations are safe for
// concurrent use.
type Store interface {
	// Append commits all turns in ONE transaction (group commit). Idempotent
	// on RequestID: a turn already stored (or stored and later deleted) is
	// skipped, not duplicated, not an error. Returns only after durable
	// commit; any error means nothing of this call may be assumed stored
	// (the caller Nacks and retries). Append normalises turns[i].CreatedAt
	// and Meta in place; on success it sets Seq, Hash and PrevHash of
	// turns[i] (to the stored values for skipped turns).
	Append(ctx context.Context, turns ...TurnRecord) error
	// History returns all messages of a conversation, chronological; an
	// unknown conversation has no messages (nil, nil).
	History(ctx context.Context, conversationID string) ([]messages.Message, error)
	// Turns returns the turns of a conversation in commit order; an unknown
	// conversation has none (nil, nil).
	Turns(ctx context.Context, conversationID string) ([]TurnRecord, error)
	// Conversations lists every stored conversation, ordered by id.
	Conversations(ctx context.Context) ([]ConversationInfo, error)
	// Owner returns the user of the conversation's first stored turn (its
	// owner); ErrNotFound if the conversation has no stored turns.
	Owner(ctx context.Context, conversationID string) (string, error)
	// Delete removes a conversation's content and keeps its chain links,
	// marked deleted. ErrNotFound if it has no stored turns.
	Delete(ctx context.Context, conversationID string) error
	// VerifyChain walks the hash chain over all committed turns and reports
	// the first broken link. The error is for failures to read, not for a
	// broken chain (see ChainReport.Broken).
	VerifyChain(ctx context.Context) (ChainReport, error)
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// Errors.
var (
	// ErrNotFound: the conversation has no stored turns.
	ErrNotFound = errors.New("memory: conversation not found")
	// ErrClosed: the store or committer was closed.
	ErrClosed = errors.New("memory: store closed")
	// ErrInvalidRecord: a TurnRecord cannot be stored (see RecordError).
	ErrInvalidRecord = errors.New("memory: invalid turn record")
	// ErrLocked: another process holds the file store's directory lock.
	ErrLocked = errors.New("memory: store directory locked by another process")
	// ErrSchemaTooNew: the database was written by a newer build.
	ErrSchemaTooNew = errors.New("memory: database schema is newer than this build")
	// ErrInvalidConfig is wrapped by Config Validate errors.
	ErrInvalidConfig = errors.New("memory: invalid config")
)

// RecordError says which record of an Append call is invalid and why.
type RecordError struct {
	// Index in the Append call and RequestID of the bad record.
	Index     int
	RequestID string
	Reason    string
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("memory: turn %d (request %q): %s", e.Index, e.RequestID, e.Reason)
}

// Unwrap returns ErrInvalidRecord.
func (e *RecordError) Unwrap() error { return ErrInvalidRecord }

// ChainReport is the result of VerifyChain.
type ChainReport struct {
	// Links is the number of chain links checked; Deleted how many of them
	// belong to deleted conversations (link checked, content gone).
	Links, Deleted int
	// Head is the hash of the last link ("" for an empty store).
	Head string
	// Broken is the first broken link, nil if the chain is intact.
	Broken *ChainBreak
}

// OK reports whether the chain is intact.
func (r ChainReport) OK() bool { return r.Broken == nil }

// ChainBreak names the first turn whose link or content does not verify.
// It is an error, so a CLI can return it.
type ChainBreak struct {
	Seq            int64
	RequestID      string
	ConversationID string
	// Reason says what failed: "content hash mismatch", "prev_hash
	// mismatch", "hash mismatch", "sequence gap", "content missing".
	Reason string
}

func (b *ChainBreak) Error() string {
	return fmt.Sprintf("memory: chain broken at seq %d (request %q, conversation %q): %s", b.Seq, b.RequestID, b.ConversationID, b.Reason)
}

// Break reasons.
const (
	ReasonContentHash = "content hash mismatch"
	ReasonPrevHash    = "prev_hash mismatch"
	ReasonHash        = "hash mismatch"
	ReasonSeqGap      = "sequence gap"
	ReasonMissing     = "content missing"
)

// link is one hash-chain row.
type link struct {
	Seq            int64  `json:"seq"`
	RequestID      string `json:"request_id"`
	ConversationID string `json:"conversation_id"`
	ContentHash    string `json:"content_hash"`
	PrevHash       string `json:"prev_hash"`
	Hash           string `json:"hash"`
}

// contentHead is the start of a turn's hashed content (see ContentHash).
type contentHead struct {
	RequestID      string `json:"request_id"`
	ConversationID string `json:"conversation_id"`
	User           string `json:"user"`
}

// ContentHash is the hex sha256 of the canonical JSON of r's content,
// everything except the store-assigned Seq, Hash and PrevHash: the bytes
// json.Marshal writes for
//
//	struct {
//		RequestID      string             `json:"request_id"`
//		ConversationID string             `json:"conversation_id"`
//		User           string             `json:"user"`
//		Messages       []messages.Message `json:"messages"` // nil as []
//		Meta           json.RawMessage    `json:"meta"`     // canonicalJSON(r.Meta)
//		CreatedAt      string             `json:"created_at"` // UTC, RFC 3339 with nanoseconds
//	}
func ContentHash(r *TurnRecord) (string, error) {
	meta, err := canonicalJSON(r.Meta)
	if err != nil {
		return "", err
	}
	bodies, err := marshalMessages(r.Messages)
	if err != nil {
		return "", err
	}
	return contentHash(r, meta, bodies)
}

// marshalMessages encodes each message as json.Marshal does: as the SQLite
// store stores it, and as it is hashed. It calls Message.MarshalJSON
// itself: json.Marshal would only compact its output, which is already
// json.Marshal's (FuzzContentHash compares the two).
func marshalMessages(ms []messages.Message) ([][]byte, error) {
	bodies := make([][]byte, len(ms))
	for k := range ms {
		b, err := ms[k].MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", k, err)
		}
		bodies[k] = b
	}
	return bodies, nil
}

// contentHash is ContentHash with r's Meta already canonical and its
// messages already encoded (bodies). It hashes what json.Marshal would
// write without building it: a struct's encoding is its fields' in order,
// a slice's its elements' between brackets, a json.RawMessage is written
// compacted and HTML-escaped, which canonical JSON already is, and RFC
// 3339 text needs no escaping.
func contentHash(r *TurnRecord, meta json.RawMessage, bodies [][]byte) (string, error) {
	head, err := json.Marshal(contentHead{r.RequestID, r.ConversationID, r.User})
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(head[:len(head)-1]) // without its closing brace
	h.Write([]byte(`,"messages":[`))
	for k, b := range bodies {
		if k > 0 {
			h.Write([]byte{','})
		}
		h.Write(b)
	}
	h.Write([]byte(`],"meta":`))
	h.Write(meta)
	var tail [64]byte
	b := append(tail[:0], `,"created_at":"`...)
	b = r.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	h.Write(append(b, `"}`...))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])), nil
}

// LinkHash is the chain hash of one link: hex sha256 of
// prevHash "\n" contentHash "\n" decimal seq "\n" requestID.
func LinkHash(prevHash, contentHash string, seq int64, requestID string) string {
	h := sha256.New()
	h.Write([]byte(prevHash))
	h.Write([]byte{'\n'})
	h.Write([]byte(contentHash))
	h.Write([]byte{'\n'})
	h.Write(strconv.AppendInt(nil, seq, 10))
	h.Write([]byte{'\n'})
	h.Write([]byte(requestID))
	return hex.EncodeToString(h.Sum(nil))
}

// prepared is what prepare computed for one record.
type prepared struct {
	// hash is the content hash.
	hash string
	// bodies are the messages' JSON encodings (marshalMessages).
	bodies [][]byte
}

// prepare validates and normalises the records of one Append call, encodes
// their messages and computes their content hashes.
func prepare(turns []TurnRecord, now time.Time) ([]prepared, error) {
	preps := make([]prepared, len(turns))
	var errs []error
	for i := range turns {
		t := &turns[i]
		if t.RequestID == "" {
			errs = append(errs, &RecordError{i, t.RequestID, "request id is empty"})
			continue
		}
		if t.ConversationID == "" {
			errs = append(errs, &RecordError{i, t.RequestID, "conversation id is empty"})
			continue
		}
		if t.CreatedAt.IsZero() {
			t.CreatedAt = now
		}
		t.CreatedAt = t.CreatedAt.UTC().Round(0)
		meta, err := canonicalJSON(t.Meta)
		if err != nil {
			errs = append(errs, &RecordError{i, t.RequestID, err.Error()})
			continue
		}
		if string(meta) == "null" {
			t.Meta = nil
		} else {
			t.Meta = meta
		}
		p := &preps[i]
		if p.bodies, err = marshalMessages(t.Messages); err != nil {
			errs = append(errs, &RecordError{i, t.RequestID, err.Error()})
			continue
		}
		if p.hash, err = contentHash(t, meta, p.bodies); err != nil {
			errs = append(errs, &RecordError{i, t.RequestID, err.Error()})
		}
	}
	return preps, errors.Join(errs...)
}
