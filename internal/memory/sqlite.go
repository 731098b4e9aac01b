package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentbus/agentbus/messages"
	_ "modernc.org/sqlite" // driver "sqlite", pure Go
)

// Synchronous modes of SQLiteConfig.
const (
	// SyncFull fsyncs the WAL on every commit: a committed (and so acked)
	// turn survives power loss. The default.
	SyncFull = "FULL"
	// SyncNormal fsyncs only at checkpoints: commits survive a process
	// crash but the last ones may roll back on power loss or an OS crash.
	// Acceptable only where the store is rebuilt by replaying the stream.
	SyncNormal = "NORMAL"
)

// SQLiteConfig configures OpenSQLite.
type SQLiteConfig struct {
	// BusyTimeout is how long a connection waits for a lock held by
	// another connection or process. Default 5s.
	BusyTimeout time.Duration
	// Synchronous is SyncFull (default) or SyncNormal. FULL is the default
	// because persist acks the JetStream message after Append returns: with
	// NORMAL in WAL mode a power loss can undo a commit that was already
	// acked, and the turn would be gone from both the store and the stream's
	// pending set. Group commit keeps the cost of FULL to one fsync per batch.
	Synchronous string
	// ReadConns is the size of the read pool (the writer is one separate
	// connection). Default 4.
	ReadConns int
}

// Validate reports every invalid field.
func (c SQLiteConfig) Validate() error {
	var errs []error
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: busy_timeout %v is negative", ErrInvalidConfig, c.BusyTimeout))
	}
	switch strings.ToUpper(c.Synchronous) {
	case "", SyncFull, SyncNormal:
	default:
		errs = append(errs, fmt.Errorf("%w: synchronous %q is not FULL or NORMAL", ErrInvalidConfig, c.Synchronous))
	}
	if c.ReadConns < 0 {
		errs = append(errs, fmt.Errorf("%w: read_conns %d is negative", ErrInvalidConfig, c.ReadConns))
	}
	return errors.Join(errs...)
}

func (c SQLiteConfig) withDefaults() SQLiteConfig {
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	c.Synchronous = strings.ToUpper(c.Synchronous)
	if c.Synchronous == "" {
		c.Synchronous = SyncFull
	}
	if c.ReadConns == 0 {
		c.ReadConns = 4
	}
	return c
}

// migrations[i] brings the schema from user_version i to i+1.
var migrations = []string{
	`CREATE TABLE chain (
		seq             INTEGER PRIMARY KEY,
		request_id      TEXT NOT NULL UNIQUE,
		conversation_id TEXT NOT NULL,
		content_hash    TEXT NOT NULL,
		prev_hash       TEXT NOT NULL,
		hash            TEXT NOT NULL,
		deleted_at      TEXT
	) STRICT;
	CREATE INDEX chain_conversation ON chain(conversation_id);
	CREATE TABLE turns (
		seq             INTEGER PRIMARY KEY REFERENCES chain(seq),
		request_id      TEXT NOT NULL UNIQUE,
		conversation_id TEXT NOT NULL,
		user            TEXT NOT NULL,
		meta            TEXT,
		created_at      TEXT NOT NULL
	) STRICT;
	CREATE INDEX turns_conversation ON turns(conversation_id, seq);
	CREATE TABLE messages (
		id              TEXT PRIMARY KEY,
		seq             INTEGER NOT NULL REFERENCES turns(seq),
		idx             INTEGER NOT NULL,
		conversation_id TEXT NOT NULL,
		role            TEXT NOT NULL,
		body            TEXT NOT NULL
	) STRICT;
	CREATE INDEX messages_conversation ON messages(conversation_id, seq, idx);`,
	// 2: drop the two indexes no query uses, each costing a B-tree insert
	// per row on every Append: messages.id's primary key (random text keys;
	// a message is found by conversation or by seq, never by id, and
	// idempotence rests on chain.request_id) and turns.request_id's UNIQUE
	// (a turn row is only ever written with its chain link, whose
	// request_id is unique). messages gets an index on (seq, idx) instead,
	// which Turns and VerifyChain read by and which only ever grows at its
	// right edge. SQLite cannot drop a constraint, so both tables are
	// rebuilt (the documented create-copy-drop-rename procedure, in the
	// migration's transaction). The id column stays, for operators' queries.
	`CREATE TABLE turns_v2 (
		seq             INTEGER PRIMARY KEY REFERENCES chain(seq),
		request_id      TEXT NOT NULL,
		conversation_id TEXT NOT NULL,
		user            TEXT NOT NULL,
		meta            TEXT,
		created_at      TEXT NOT NULL
	) STRICT;
	INSERT INTO turns_v2 (seq, request_id, conversation_id, user, meta, created_at)
		SELECT seq, request_id, conversation_id, user, meta, created_at FROM turns ORDER BY seq;
	CREATE TABLE messages_v2 (
		id              TEXT NOT NULL,
		seq             INTEGER NOT NULL REFERENCES turns(seq),
		idx             INTEGER NOT NULL,
		conversation_id TEXT NOT NULL,
		role            TEXT NOT NULL,
		body            TEXT NOT NULL
	) STRICT;
	INSERT INTO messages_v2 (id, seq, idx, conversation_id, role, body)
		SELECT id, seq, idx, conversation_id, role, body FROM messages ORDER BY seq, idx;
	DROP TABLE messages;
	DROP TABLE turns;
	ALTER TABLE turns_v2 RENAME TO turns;
	ALTER TABLE messages_v2 RENAME TO messages;
	CREATE INDEX turns_conversation ON turns(conversation_id, seq);
	CREATE UNIQUE INDEX messages_seq ON messages(seq, idx);
	CREATE INDEX messages_conversation ON messages(conversation_id, seq, idx);`,
	// 3: drop the two indexes on conversation_id that only History and
	// Delete read, each costing a B-tree insert per row (per message, for
	// messages_conversation) and, as a batch's turns belong to different
	// conversations, a page written per turn on every commit (a commit of
	// 4 turns wrote 24 pages, now 15): a conversation's messages are found
	// through its turns (turns_conversation, then messages_seq), and Delete
	// marks the links of the turns it deletes by seq.
	`DROP INDEX messages_conversation;
	DROP INDEX chain_conversation;`,
}

// timeLayout is fixed-width so that stored times sort as strings.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// SQLiteStore is a Store on SQLite (modernc.org/sqlite, no cgo) in WAL mode:
// one writer connection taking the write lock at BEGIN (_txlock=immediate)
// and a pool of query-only readers. Every error is returned, never logged
// and dropped.
type SQLiteStore struct {
	path string
	cfg  SQLiteConfig
	// Append's statements, prepared once on the single writer connection
	// (preparing them per transaction re-parses the SQL every commit) and
	// closed by Close.
	stHead, stExists, stInsChain, stInsTurn, stInsMsg *sql.Stmt
	w, r                                              *sql.DB
	closed                                            atomic.Bool
}

var _ Store = (*SQLiteStore)(nil)

// dsn is the connection string of the writer or a reader. The writer keeps
// SQLite's wal_autocheckpoint (a checkpoint when the WAL reaches 1000
// pages, run by the commit that crosses it): 4000 or 16000 pages spent no
// less CPU per turn once their checkpoints were counted
// (BenchmarkSQLiteAppend, BenchmarkAppendGroupCommit, which include the
// checkpoint on close), and would grow the WAL file (it is reused, not
// truncated) and the stall of the commit that checkpoints.
func dsn(path string, cfg SQLiteConfig, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)+")")
	if writer {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous("+cfg.Synchronous+")")
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
		q.Set("_txlock", "deferred")
	}
	return "file:" + path + "?" + q.Encode()
}

// OpenSQLite opens (creating if needed) the database at path and migrates
// its schema. path must not contain '?' or '#'.
func OpenSQLite(ctx context.Context, path string, cfg SQLiteConfig) (*SQLiteStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: sqlite path %q", ErrInvalidConfig, path)
	}
	cfg = cfg.withDefaults()
	s := &SQLiteStore{path: path, cfg: cfg}
	var err error
	if s.w, err = sql.Open("sqlite", dsn(path, cfg, true)); err != nil {
		return nil, fmt.Errorf("memory: open %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := s.migrate(ctx); err != nil {
		s.w.Close()
		return nil, err
	}
	if err := s.prepareAppend(ctx); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("memory: open %s: %w", path, err)
	}
	if s.r, err = sql.Open("sqlite", dsn(path, cfg, false)); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("memory: open %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(cfg.ReadConns)
	s.r.SetMaxIdleConns(cfg.ReadConns)
	if err := s.r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("memory: open %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLiteStore) prepareAppend(ctx context.Context) error {
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = s.w.PrepareContext(ctx, q)
		return st
	}
	s.stHead = prep("SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1")
	s.stExists = prep("SELECT seq, prev_hash, hash FROM chain WHERE request_id = ?")
	// A turn already stored is detected by the insert itself (no row
	// inserted), saving a lookup per new turn; only then is it read back.
	s.stInsChain = prep("INSERT INTO chain (seq, request_id, conversation_id, content_hash, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING")
	s.stInsTurn = prep("INSERT INTO turns (seq, request_id, conversation_id, user, meta, created_at) VALUES (?, ?, ?, ?, ?, ?)")
	s.stInsMsg = prep("INSERT INTO messages (id, seq, idx, conversation_id, role, body) VALUES (?, ?, ?, ?, ?, ?)")
	return err
}

func (s *SQLiteStore) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("memory: migrate %s: %w", s.path, err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("memory: migrate %s: %w", s.path, err)
	}
	if v > len(migrations) {
		return fmt.Errorf("%w: %s has user_version %d, this build knows %d", ErrSchemaTooNew, s.path, v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("memory: migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(i+1)); err != nil {
			return fmt.Errorf("memory: migration %d: %w", i+1, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("memory: migrate %s: %w", s.path, err)
	}
	return nil
}

// SchemaVersion returns the database's user_version.
func (s *SQLiteStore) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

func (s *SQLiteStore) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Append implements Store: one IMMEDIATE transaction for all turns.
func (s *SQLiteStore) Append(ctx context.Context, turns ...TurnRecord) error {
	if err := s.check(); err != nil {
		return err
	}
	if len(turns) == 0 {
		return nil
	}
	preps, err := prepare(turns, time.Now())
	if err != nil {
		return err
	}
	links, err := s.appendTx(ctx, turns, preps)
	if err != nil {
		return fmt.Errorf("memory: append %d turns: %w", len(turns), err)
	}
	for i := range turns {
		turns[i].Seq, turns[i].PrevHash, turns[i].Hash = links[i].Seq, links[i].PrevHash, links[i].Hash
	}
	return nil
}

func (s *SQLiteStore) appendTx(ctx context.Context, turns []TurnRecord, preps []prepared) ([]link, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var headSeq int64
	var headHash string
	// The writer pool has one connection, on which the statements were
	// prepared: tx.StmtContext reuses them without re-preparing.
	switch err := tx.StmtContext(ctx, s.stHead).QueryRowContext(ctx).Scan(&headSeq, &headHash); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, err
	}
	exists := tx.StmtContext(ctx, s.stExists)
	insChain := tx.StmtContext(ctx, s.stInsChain)
	insTurn := tx.StmtContext(ctx, s.stInsTurn)
	insMsg := tx.StmtContext(ctx, s.stInsMsg)
	links := make([]link, len(turns))
	inBatch := make(map[string]int, len(turns))
	for i := range turns {
		t := &turns[i]
		if j, ok := inBatch[t.RequestID]; ok {
			links[i] = links[j]
			continue
		}
		inBatch[t.RequestID] = i
		l := &links[i]
		*l = link{Seq: headSeq + 1, RequestID: t.RequestID, ConversationID: t.ConversationID, ContentHash: preps[i].hash, PrevHash: headHash}
		l.Hash = LinkHash(l.PrevHash, l.ContentHash, l.Seq, l.RequestID)
		res, err := insChain.ExecContext(ctx, l.Seq, l.RequestID, l.ConversationID, l.ContentHash, l.PrevHash, l.Hash)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 0 { // already stored: idempotent skip, learn its link
			if err := exists.QueryRowContext(ctx, t.RequestID).Scan(&l.Seq, &l.PrevHash, &l.Hash); err != nil {
				return nil, err
			}
			continue
		}
		var meta any
		if len(t.Meta) > 0 {
			meta = string(t.Meta)
		}
		if _, err := insTurn.ExecContext(ctx, l.Seq, t.RequestID, t.ConversationID, t.User, meta, t.CreatedAt.Format(timeLayout)); err != nil {
			return nil, err
		}
		for k, body := range preps[i].bodies {
			if _, err := insMsg.ExecContext(ctx, t.RequestID+"#"+strconv.Itoa(k), l.Seq, k, t.ConversationID, t.Messages[k].Role, string(body)); err != nil {
				return nil, err
			}
		}
		headSeq, headHash = l.Seq, l.Hash
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return links, nil
}

// Statements that find a conversation's rows through turns_conversation
// (the schema has no other index on conversation_id); TestSQLiteQueryPlans
// checks that none of them scans a table or sorts.
const (
	qHistory = `SELECT m.body FROM turns t JOIN messages m ON m.seq = t.seq
		WHERE t.conversation_id = ? ORDER BY t.seq, m.idx`
	// qMarkDeleted marks the links of a conversation's turns deleted;
	// args: deleted_at, conversation id twice.
	qMarkDeleted = `UPDATE chain SET deleted_at = ?
		WHERE seq IN (SELECT seq FROM turns WHERE conversation_id = ?) AND conversation_id = ? AND deleted_at IS NULL`
	qDeleteMessages = `DELETE FROM messages WHERE seq IN (SELECT seq FROM turns WHERE conversation_id = ?)`
	qDeleteTurns    = `DELETE FROM turns WHERE conversation_id = ?`
	qOwner          = `SELECT user FROM turns WHERE conversation_id = ? ORDER BY seq LIMIT 1`
)

// History implements Store.
func (s *SQLiteStore) History(ctx context.Context, conversationID string) ([]messages.Message, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, qHistory, conversationID)
	if err != nil {
		return nil, fmt.Errorf("memory: history %q: %w", conversationID, err)
	}
	defer rows.Close()
	var out []messages.Message
	var body []byte
	for rows.Next() {
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("memory: history %q: %w", conversationID, err)
		}
		var m messages.Message
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("memory: history %q: corrupt message: %w", conversationID, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("memory: history %q: %w", conversationID, err)
	}
	return out, nil
}

// turnRows reads turns joined with their chain links and messages; where is
// a condition on turns (alias t), args its arguments. It reads inside one
// read transaction so turns and messages are consistent.
func (s *SQLiteStore) turnRows(ctx context.Context, where string, args ...any) ([]TurnRecord, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT t.seq, t.request_id, t.conversation_id, t.user, t.meta, t.created_at, c.prev_hash, c.hash
		FROM turns t JOIN chain c ON c.seq = t.seq WHERE `+where+` ORDER BY t.seq`, args...)
	if err != nil {
		return nil, err
	}
	var out []TurnRecord
	bySeq := map[int64]int{}
	for rows.Next() {
		var t TurnRecord
		var meta sql.NullString
		var created string
		if err := rows.Scan(&t.Seq, &t.RequestID, &t.ConversationID, &t.User, &meta, &created, &t.PrevHash, &t.Hash); err != nil {
			rows.Close()
			return nil, err
		}
		if meta.Valid {
			t.Meta = json.RawMessage(meta.String)
		}
		if t.CreatedAt, err = time.Parse(time.RFC3339Nano, created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("turn %d: created_at: %w", t.Seq, err)
		}
		bySeq[t.Seq] = len(out)
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	mrows, err := tx.QueryContext(ctx, `SELECT seq, body FROM messages WHERE seq IN (SELECT seq FROM turns t WHERE `+where+`) ORDER BY seq, idx`, args...)
	if err != nil {
		return nil, err
	}
	defer mrows.Close()
	for mrows.Next() {
		var seq int64
		var body []byte
		if err := mrows.Scan(&seq, &body); err != nil {
			return nil, err
		}
		i, ok := bySeq[seq]
		if !ok {
			continue
		}
		var m messages.Message
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("turn %d: corrupt message: %w", seq, err)
		}
		out[i].Messages = append(out[i].Messages, m)
	}
	return out, mrows.Err()
}

// Turns implements Store.
func (s *SQLiteStore) Turns(ctx context.Context, conversationID string) ([]TurnRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	out, err := s.turnRows(ctx, "t.conversation_id = ?", conversationID)
	if err != nil {
		return nil, fmt.Errorf("memory: turns %q: %w", conversationID, err)
	}
	return out, nil
}

// Conversations implements Store.
func (s *SQLiteStore) Conversations(ctx context.Context) ([]ConversationInfo, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT t.conversation_id, COUNT(*), MAX(t.created_at),
		SUM((SELECT COUNT(*) FROM messages m WHERE m.seq = t.seq)),
		(SELECT o.user FROM turns o WHERE o.conversation_id = t.conversation_id ORDER BY o.seq LIMIT 1)
		FROM turns t GROUP BY t.conversation_id ORDER BY t.conversation_id`)
	if err != nil {
		return nil, fmt.Errorf("memory: conversations: %w", err)
	}
	defer rows.Close()
	var out []ConversationInfo
	for rows.Next() {
		var c ConversationInfo
		var updated string
		if err := rows.Scan(&c.ID, &c.Turns, &updated, &c.Messages, &c.Owner); err != nil {
			return nil, fmt.Errorf("memory: conversations: %w", err)
		}
		if c.Updated, err = time.Parse(time.RFC3339Nano, updated); err != nil {
			return nil, fmt.Errorf("memory: conversations: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("memory: conversations: %w", err)
	}
	return out, nil
}

// Owner implements Store.
func (s *SQLiteStore) Owner(ctx context.Context, conversationID string) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	var user string
	err := s.r.QueryRowContext(ctx, qOwner, conversationID).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("memory: owner of %q: %w", conversationID, err)
	}
	return user, nil
}

// Delete implements Store: content rows are deleted, chain rows are kept
// with deleted_at set, in one transaction.
func (s *SQLiteStore) Delete(ctx context.Context, conversationID string) error {
	if err := s.check(); err != nil {
		return err
	}
	err := func() error {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		// The turns' links and messages first, found by the turns' seqs.
		if _, err := tx.ExecContext(ctx, qMarkDeleted, time.Now().UTC().Format(timeLayout), conversationID, conversationID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, qDeleteMessages, conversationID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, qDeleteTurns, conversationID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return tx.Commit()
	}()
	if err != nil {
		return fmt.Errorf("memory: delete %q: %w", conversationID, err)
	}
	return nil
}

// VerifyChain implements Store. It reads one consistent snapshot.
func (s *SQLiteStore) VerifyChain(ctx context.Context) (ChainReport, error) {
	if err := s.check(); err != nil {
		return ChainReport{}, err
	}
	rep, err := s.verify(ctx)
	if err != nil {
		return rep, fmt.Errorf("memory: verify chain: %w", err)
	}
	return rep, nil
}

func (s *SQLiteStore) verify(ctx context.Context) (ChainReport, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return ChainReport{}, err
	}
	defer tx.Rollback()
	links, err := tx.QueryContext(ctx, `SELECT c.seq, c.request_id, c.conversation_id, c.content_hash, c.prev_hash, c.hash,
		c.deleted_at IS NOT NULL, t.seq IS NOT NULL, t.request_id, t.conversation_id, t.user, t.meta, t.created_at
		FROM chain c LEFT JOIN turns t ON t.seq = c.seq ORDER BY c.seq`)
	if err != nil {
		return ChainReport{}, err
	}
	defer links.Close()
	msgs, err := tx.QueryContext(ctx, "SELECT seq, body FROM messages ORDER BY seq, idx")
	if err != nil {
		return ChainReport{}, err
	}
	defer msgs.Close()
	var (
		pending bool // msgs holds an unconsumed row
		mSeq    int64
		mBody   []byte
	)
	nextMsg := func() error {
		if msgs.Next() {
			pending = true
			return msgs.Scan(&mSeq, &mBody)
		}
		pending = false
		return msgs.Err()
	}
	// read returns the next link with its turn, merging in the messages
	// (ordered by seq too); ok is false after the last link.
	read := func() (l storedLink, ok bool, err error) {
		if !links.Next() {
			return l, false, links.Err()
		}
		var present bool
		var tRID, tCID, tUser, tCreated, tMeta sql.NullString
		if err := links.Scan(&l.Seq, &l.RequestID, &l.ConversationID, &l.ContentHash, &l.PrevHash, &l.Hash,
			&l.deleted, &present, &tRID, &tCID, &tUser, &tMeta, &tCreated); err != nil {
			return l, false, err
		}
		// Messages of seqs without a link belong to nothing and are not hashed.
		for pending && mSeq < l.Seq {
			if err := nextMsg(); err != nil {
				return l, false, err
			}
		}
		var ms []messages.Message
		for pending && mSeq == l.Seq {
			var m messages.Message
			if err := json.Unmarshal(mBody, &m); err != nil {
				m = messages.Message{Content: string(mBody)} // corrupt JSON: content hash mismatch
			}
			ms = append(ms, m)
			if err := nextMsg(); err != nil {
				return l, false, err
			}
		}
		if present {
			t := &TurnRecord{RequestID: tRID.String, ConversationID: tCID.String, User: tUser.String, Messages: ms}
			if tMeta.Valid {
				t.Meta = json.RawMessage(tMeta.String)
			}
			t.CreatedAt, _ = time.Parse(time.RFC3339Nano, tCreated.String)
			l.turn = t
		}
		return l, true, nil
	}
	if err := nextMsg(); err != nil {
		return ChainReport{}, err
	}
	return verifyChain(ctx, func(yield func(storedLink, error) bool) {
		for {
			l, ok, err := read()
			if !ok && err == nil {
				return
			}
			if !yield(l, err) || err != nil {
				return
			}
		}
	})
}

// Close closes both connection pools. It is safe to call more than once.
func (s *SQLiteStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, st := range []*sql.Stmt{s.stHead, s.stExists, s.stInsChain, s.stInsTurn, s.stInsMsg} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}
