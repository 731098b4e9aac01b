package memory

import (
	"github.com/agentbus/agentbus/internal/dirlock"

	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/messages"
)

// FileStore is a Store of human-readable files:
//
//	dir/LOCK                      process lock (flock) while open
//	dir/chain.jsonl               append-only hash chain: one link per line,
//	                              plus {"op":"delete",...} tombstones
//	dir/conversations/NAME.json   one indented JSON file per conversation
//
// chain.jsonl is the commit log: a turn is committed when its link line is
// fsynced. A conversation file is always replaced whole (temp file, fsync,
// rename, fsync of the directory) before the links of its new turns are
// written, and readers ignore turns a file holds but the chain does not
// (left by a crash between the two), so a crash never exposes half a batch
// and a retry never duplicates a turn. NAME is a readable prefix of the id
// plus a hash of the exact id, so distinct ids never share a file, even on a
// case-insensitive file system.
//
// Writers are serialized by the chain lock (one Append or Delete at a time;
// batch turns, e.g. with GroupCommitter, for throughput); each conversation
// file additionally has its own read/write lock. An append rewrites the
// whole file of each conversation it touches, so its cost grows with the
// conversation: this backend is for development and small deployments;
// use SQLiteStore in production.
type FileStore struct {
	dir, convDir string
	unlockDir    func() error

	wmu   sync.Mutex // serializes Append and Delete (the chain lock)
	chain *os.File   // O_APPEND, guarded by wmu
	size  int64      // committed length of chain.jsonl, guarded by wmu
	fatal error      // set when chain.jsonl may hold a torn write; guarded by wmu

	imu       sync.RWMutex // guards the index below
	links     []link
	deleted   []bool
	byRequest map[string]int   // request id -> index in links
	byConv    map[string][]int // conversation id -> indexes in links
	closed    bool

	convLocks keyedLocks
}

var _ Store = (*FileStore)(nil)

// chainLine is one line of chain.jsonl: a link, or a tombstone (Op "delete").
type chainLine struct {
	Op string `json:"op,omitempty"`
	link
	At time.Time `json:"at,omitzero"`
}

type convFile struct {
	ConversationID string       `json:"conversation_id"`
	Turns          []TurnRecord `json:"turns"`
}

// FileName returns the file name (without directory) that holds
// conversationID: a readable prefix (its first 40 bytes lower-cased, bytes
// outside [a-z0-9_-] as '_', "_" prepended if empty or starting with '-'), '-', 32 hex digits of
// sha256(conversationID), ".json".
func FileName(conversationID string) string {
	var b strings.Builder
	for i := 0; i < len(conversationID) && b.Len() < 40; i++ {
		c := conversationID[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	prefix := b.String()
	if prefix == "" || prefix[0] == '-' {
		prefix = "_" + prefix // never start a file name with '-'
	}
	sum := sha256.Sum256([]byte(conversationID))
	return prefix + "-" + hex.EncodeToString(sum[:16]) + ".json"
}

// OpenFiles opens (creating if needed) the file store in dir. Only one
// process may have a directory open (ErrLocked otherwise). A torn last line
// of chain.jsonl (a crash mid-write, never acknowledged) is truncated.
func OpenFiles(dir string) (*FileStore, error) {
	s := &FileStore{dir: dir, convDir: filepath.Join(dir, "conversations"), byRequest: map[string]int{}, byConv: map[string][]int{}}
	if err := os.MkdirAll(s.convDir, 0o750); err != nil {
		return nil, fmt.Errorf("memory: open %s: %w", dir, err)
	}
	unlock, err := dirlock.Lock(filepath.Join(dir, "LOCK"))
	if errors.Is(err, dirlock.ErrLocked) {
		err = ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("memory: open %s: %w", dir, err)
	}
	s.unlockDir = unlock
	if err := s.load(); err != nil {
		unlock()
		return nil, fmt.Errorf("memory: open %s: %w", dir, err)
	}
	// Files of deleted conversations whose removal was interrupted.
	for conv, idx := range s.byConv {
		if !slices.ContainsFunc(idx, func(i int) bool { return !s.deleted[i] }) {
			os.Remove(filepath.Join(s.convDir, FileName(conv)))
		}
	}
	// Leftover temp files of interrupted writes.
	if tmps, _ := filepath.Glob(filepath.Join(s.convDir, ".tmp-*")); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return s, nil
}

func (s *FileStore) load() error {
	path := filepath.Join(s.dir, "chain.jsonl")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return err
	}
	good := bytes.LastIndexByte(data, '\n') + 1
	if good < len(data) { // torn final line: never committed
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data[:good]))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var cl chainLine
		if err := json.Unmarshal(sc.Bytes(), &cl); err != nil {
			f.Close()
			return fmt.Errorf("chain.jsonl line %d: %w", n, err)
		}
		switch cl.Op {
		case "":
			s.addLink(cl.link)
		case "delete":
			s.markDeleted(cl.ConversationID)
		default:
			f.Close()
			return fmt.Errorf("chain.jsonl line %d: unknown op %q", n, cl.Op)
		}
	}
	f.Close()
	if s.chain, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o640); err != nil {
		return err
	}
	s.size = int64(good)
	return nil
}

func (s *FileStore) addLink(l link) {
	i := len(s.links)
	s.links = append(s.links, l)
	s.deleted = append(s.deleted, false)
	if _, dup := s.byRequest[l.RequestID]; !dup {
		s.byRequest[l.RequestID] = i
	}
	s.byConv[l.ConversationID] = append(s.byConv[l.ConversationID], i)
}

func (s *FileStore) markDeleted(conv string) {
	for _, i := range s.byConv[conv] {
		s.deleted[i] = true
	}
}

// live reports whether request id rid is committed in conv and not deleted;
// callers hold imu.
func (s *FileStore) live(conv, rid string, seq int64) bool {
	i, ok := s.byRequest[rid]
	return ok && !s.deleted[i] && s.links[i].ConversationID == conv && s.links[i].Seq == seq
}

// readConv reads a conversation file and returns its committed, live turns.
func (s *FileStore) readConv(conv string) ([]TurnRecord, error) {
	data, err := os.ReadFile(filepath.Join(s.convDir, FileName(conv)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cf convFile
	if err := json.Unmarshal(data, &cf); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName(conv), err)
	}
	if cf.ConversationID != conv {
		return nil, fmt.Errorf("%s holds conversation %q, not %q", FileName(conv), cf.ConversationID, conv)
	}
	s.imu.RLock()
	defer s.imu.RUnlock()
	out := cf.Turns[:0]
	for _, t := range cf.Turns {
		if s.live(conv, t.RequestID, t.Seq) {
			if len(t.Meta) > 0 { // the file is indented; hand out the stored compact form
				var b bytes.Buffer
				if err := json.Compact(&b, t.Meta); err != nil {
					return nil, fmt.Errorf("%s: turn %s: meta: %w", FileName(conv), t.RequestID, err)
				}
				t.Meta = b.Bytes()
			}
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (s *FileStore) isClosed() bool {
	s.imu.RLock()
	defer s.imu.RUnlock()
	return s.closed
}

// Append implements Store.
func (s *FileStore) Append(ctx context.Context, turns ...TurnRecord) error {
	if len(turns) == 0 {
		return nil
	}
	preps, err := prepare(turns, time.Now())
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	// Assign links; the index only changes under wmu, so reading it here
	// without imu's write lock is consistent.
	s.imu.RLock()
	headSeq, headHash := int64(0), ""
	if n := len(s.links); n > 0 {
		headSeq, headHash = s.links[n-1].Seq, s.links[n-1].Hash
	}
	links := make([]link, len(turns))
	isNew := make([]bool, len(turns))
	inBatch := map[string]int{}
	var convOrder []string
	byConv := map[string][]int{}
	for i := range turns {
		t := &turns[i]
		if j, ok := inBatch[t.RequestID]; ok {
			links[i] = links[j]
			continue
		}
		inBatch[t.RequestID] = i
		if k, ok := s.byRequest[t.RequestID]; ok {
			links[i] = s.links[k]
			continue
		}
		headSeq++
		links[i] = link{Seq: headSeq, RequestID: t.RequestID, ConversationID: t.ConversationID, ContentHash: preps[i].hash, PrevHash: headHash}
		links[i].Hash = LinkHash(headHash, preps[i].hash, headSeq, t.RequestID)
		headHash = links[i].Hash
		isNew[i] = true
		if _, ok := byConv[t.ConversationID]; !ok {
			convOrder = append(convOrder, t.ConversationID)
		}
		byConv[t.ConversationID] = append(byConv[t.ConversationID], i)
	}
	s.imu.RUnlock()
	if len(convOrder) == 0 {
		setLinks(turns, links)
		return nil
	}
	// 1. Conversation files (not yet visible: their new turns are not in the chain).
	for _, conv := range convOrder {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.writeConv(conv, turns, links, byConv[conv]); err != nil {
			return fmt.Errorf("memory: append to %q: %w", conv, err)
		}
	}
	// 2. Commit: the chain lines in one write, then fsync.
	var buf bytes.Buffer
	for i := range turns {
		if isNew[i] {
			b, _ := json.Marshal(chainLine{link: links[i]})
			buf.Write(b)
			buf.WriteByte('\n')
		}
	}
	if err := s.appendChain(buf.Bytes()); err != nil {
		return fmt.Errorf("memory: append %d turns: %w", len(turns), err)
	}
	s.imu.Lock()
	for i := range turns {
		if isNew[i] {
			s.addLink(links[i])
		}
	}
	s.imu.Unlock()
	setLinks(turns, links)
	return nil
}

func setLinks(turns []TurnRecord, links []link) {
	for i := range turns {
		turns[i].Seq, turns[i].PrevHash, turns[i].Hash = links[i].Seq, links[i].PrevHash, links[i].Hash
	}
}

// appendChain writes and fsyncs b at the end of chain.jsonl; on failure it
// truncates the file back so no torn line stays behind (or, if it cannot,
// refuses further writes until the store is reopened). Caller holds wmu.
func (s *FileStore) appendChain(b []byte) error {
	_, err := s.chain.Write(b)
	if err == nil {
		err = s.chain.Sync()
	}
	if err != nil {
		if terr := s.chain.Truncate(s.size); terr != nil {
			s.fatal = errors.Join(err, terr)
		} else if serr := s.chain.Sync(); serr != nil {
			s.fatal = errors.Join(err, serr)
		}
		return err
	}
	s.size += int64(len(b))
	return nil
}

// writeConv rewrites one conversation file with its live turns plus the new
// turns idx of this batch. Caller holds wmu.
func (s *FileStore) writeConv(conv string, turns []TurnRecord, links []link, idx []int) error {
	unlock := s.convLocks.lock(conv, true)
	defer unlock()
	old, err := s.readConv(conv)
	if err != nil {
		return err
	}
	cf := convFile{ConversationID: conv, Turns: old}
	for _, i := range idx {
		t := turns[i]
		t.Seq, t.PrevHash, t.Hash = links[i].Seq, links[i].PrevHash, links[i].Hash
		cf.Turns = append(cf.Turns, t)
	}
	data, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.convDir, FileName(conv), append(data, '\n'))
}

// writeFileAtomic replaces dir/name with data: temp file, fsync, rename,
// fsync dir. Readers see the old or the new content, never a mix.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// History implements Store.
func (s *FileStore) History(ctx context.Context, conversationID string) ([]messages.Message, error) {
	turns, err := s.Turns(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	var out []messages.Message
	for _, t := range turns {
		out = append(out, t.Messages...)
	}
	return out, nil
}

// Turns implements Store.
func (s *FileStore) Turns(ctx context.Context, conversationID string) ([]TurnRecord, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock := s.convLocks.lock(conversationID, false)
	defer unlock()
	turns, err := s.readConv(conversationID)
	if err != nil {
		return nil, fmt.Errorf("memory: turns %q: %w", conversationID, err)
	}
	return turns, nil
}

// Conversations implements Store. It reads every conversation file.
func (s *FileStore) Conversations(ctx context.Context) ([]ConversationInfo, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	s.imu.RLock()
	var convs []string
	for c, idx := range s.byConv {
		for _, i := range idx {
			if !s.deleted[i] {
				convs = append(convs, c)
				break
			}
		}
	}
	s.imu.RUnlock()
	slices.Sort(convs)
	out := make([]ConversationInfo, 0, len(convs))
	for _, c := range convs {
		turns, err := s.Turns(ctx, c)
		if err != nil {
			return nil, err
		}
		if len(turns) == 0 {
			continue
		}
		info := ConversationInfo{ID: c, Turns: len(turns), Owner: turns[0].User}
		for _, t := range turns {
			info.Messages += len(t.Messages)
			if t.CreatedAt.After(info.Updated) {
				info.Updated = t.CreatedAt
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// Owner implements Store.
func (s *FileStore) Owner(ctx context.Context, conversationID string) (string, error) {
	turns, err := s.Turns(ctx, conversationID)
	if err != nil {
		return "", err
	}
	if len(turns) == 0 {
		return "", ErrNotFound
	}
	return turns[0].User, nil
}

// writable reports why the store cannot be written to now (closed, or an
// earlier write left it needing a reopen). Caller holds wmu.
func (s *FileStore) writable() error {
	if s.isClosed() {
		return ErrClosed
	}
	if s.fatal != nil {
		return fmt.Errorf("memory: store needs reopening: %w", s.fatal)
	}
	return nil
}

// Delete implements Store: a tombstone is committed to the chain, then the
// conversation file is removed.
func (s *FileStore) Delete(ctx context.Context, conversationID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	s.imu.RLock()
	found := false
	for _, i := range s.byConv[conversationID] {
		found = found || !s.deleted[i]
	}
	s.imu.RUnlock()
	if !found {
		return fmt.Errorf("memory: delete %q: %w", conversationID, ErrNotFound)
	}
	b, _ := json.Marshal(struct {
		Op             string    `json:"op"`
		ConversationID string    `json:"conversation_id"`
		At             time.Time `json:"at"`
	}{"delete", conversationID, time.Now().UTC()})
	if err := s.appendChain(append(b, '\n')); err != nil {
		return fmt.Errorf("memory: delete %q: %w", conversationID, err)
	}
	s.imu.Lock()
	s.markDeleted(conversationID)
	s.imu.Unlock()
	unlock := s.convLocks.lock(conversationID, true)
	defer unlock()
	if err := os.Remove(filepath.Join(s.convDir, FileName(conversationID))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("memory: delete %q: committed, but removing the file failed: %w", conversationID, err)
	}
	return syncDir(s.convDir)
}

// VerifyChain implements Store. It checks the links committed when it
// starts against the conversation files.
func (s *FileStore) VerifyChain(ctx context.Context) (ChainReport, error) {
	s.imu.RLock()
	if s.closed {
		s.imu.RUnlock()
		return ChainReport{}, ErrClosed
	}
	links := slices.Clone(s.links)
	deleted := slices.Clone(s.deleted)
	s.imu.RUnlock()

	files := map[string]map[string]*TurnRecord{} // conversation -> request id -> record as stored
	load := func(conv string) (map[string]*TurnRecord, error) {
		if m, ok := files[conv]; ok {
			return m, nil
		}
		m := map[string]*TurnRecord{}
		unlock := s.convLocks.lock(conv, false)
		data, err := os.ReadFile(filepath.Join(s.convDir, FileName(conv)))
		unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err == nil {
			var cf convFile
			if err := json.Unmarshal(data, &cf); err != nil {
				return nil, fmt.Errorf("%s: %w", FileName(conv), err)
			}
			for i := range cf.Turns {
				m[cf.Turns[i].RequestID] = &cf.Turns[i]
			}
		}
		files[conv] = m
		return m, nil
	}
	rep, err := verifyChain(ctx, func(yield func(storedLink, error) bool) {
		for i, l := range links {
			sl := storedLink{link: l, deleted: deleted[i]}
			if !sl.deleted {
				m, err := load(l.ConversationID)
				if err != nil {
					yield(sl, err)
					return
				}
				if t, ok := m[l.RequestID]; ok && t.Seq == l.Seq {
					sl.turn = t
				} else {
					s.imu.RLock()
					sl.deleted = s.deleted[i] // deleted since the snapshot
					s.imu.RUnlock()
				}
			}
			if !yield(sl, nil) {
				return
			}
		}
	})
	if err != nil {
		return rep, fmt.Errorf("memory: verify chain: %w", err)
	}
	return rep, nil
}

// Close releases the directory lock. It is safe to call more than once.
func (s *FileStore) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.imu.Lock()
	if s.closed {
		s.imu.Unlock()
		return nil
	}
	s.closed = true
	s.imu.Unlock()
	return errors.Join(s.chain.Close(), s.unlockDir())
}

// keyedLocks is a set of read/write locks by key, holding an entry only
// while someone uses it (bounded by the number of concurrent users).
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	sync.RWMutex
	refs int
}

func (k *keyedLocks) lock(key string, write bool) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	if write {
		l.Lock()
	} else {
		l.RLock()
	}
	return func() {
		if write {
			l.Unlock()
		} else {
			l.RUnlock()
		}
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
