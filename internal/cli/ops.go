package cli

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentbus/agentbus/internal/memory"
	"github.com/agentbus/agentbus/internal/replay"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/validation"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type replayFlags struct {
	conv    *string
	user    *string
	since   *string
	fromSeq *uint64
}

func addReplayFlags(f *flags) replayFlags {
	return replayFlags{
		conv:    f.String("conversation", "", "only this conversation"),
		user:    f.String("user", "", "only this user's events (what the user may see)"),
		since:   f.String("since", "", "start at this time (RFC 3339, or a duration ago such as 1h)"),
		fromSeq: f.Uint64("from-seq", 0, "start at this stream sequence"),
	}
}

func (r replayFlags) options() (replay.Options, error) {
	o := replay.Options{Conversation: *r.conv, User: *r.user, FromSeq: *r.fromSeq}
	if *r.since != "" {
		if d, err := time.ParseDuration(*r.since); err == nil {
			o.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *r.since); err == nil {
			o.Since = t
		} else {
			return o, fmt.Errorf("%w: --since %q: want RFC 3339 or a duration", ErrUsage, *r.since)
		}
		if o.FromSeq != 0 {
			return o, fmt.Errorf("%w: --since and --from-seq exclude each other", ErrUsage)
		}
	}
	return o, nil
}

func replayCmd(env Env, args []string) error {
	f := newFlags(env, "replay")
	cf := addConnFlags(f)
	rf := addReplayFlags(f)
	asJSON := f.Bool("json", false, "one JSON object per event")
	if err := f.parse(args); err != nil {
		return err
	}
	opts, err := rf.options()
	if err != nil {
		return err
	}
	nc, js, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	prog := replay.NewProgress(env.Stderr, false)
	if f := stderrFile(env); f != nil {
		prog = replay.TerminalProgress(f)
	}
	opts.Progress = prog.Update
	defer prog.Finish()
	enc := json.NewEncoder(env.Stdout)
	n := 0
	err = replay.Replay(context.Background(), js, opts, func(ev replay.Event) error {
		n++
		if *asJSON {
			return enc.Encode(map[string]any{"seq": ev.Seq, "time": ev.Time, "event": ev.Event, "request_id": ev.RequestID,
				"conversation_id": ev.ConversationID, "subject": ev.Subject, "data": ev.Data})
		}
		return replay.Format(env.Stdout, ev)
	})
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(env.Stderr, "no events matched")
	}
	return nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func auditCmd(env Env, args []string) error {
	f := newFlags(env, "audit")
	cf := addConnFlags(f)
	rf := addReplayFlags(f)
	var forbid, require, must, mustNot multi
	f.Var(&forbid, "forbid-tool", "a tool that must never be called (repeatable)")
	f.Var(&require, "require-tool", "a tool every conversation must call (repeatable)")
	f.Var(&must, "must-contain", "text every response must contain (repeatable)")
	f.Var(&mustNot, "must-not-contain", "text no response may contain (repeatable)")
	maxTurns := f.Int("max-turns", 0, "maximum turns per conversation (0 = no limit)")
	maxLen := f.Int("max-length", 0, "maximum response length in characters (0 = no limit)")
	minLen := f.Int("min-length", 0, "minimum response length in characters")
	strict := f.Bool("strict", false, "stop at the first violation")
	verify := f.Bool("verify", false, "verify the store's hash chain instead (through the running persist stage, or --data)")
	offline := f.Bool("offline", false, "with --verify: open the store in --data directly instead of asking the running persist stage")
	store := f.String("store", "sqlite", "with --verify --data: sqlite or files")
	if err := f.parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	if *verify {
		data := ""
		if *offline {
			data = *cf.data
		}
		return verifyChain(ctx, env, cf, data, *store)
	}
	opts, err := rf.options()
	if err != nil {
		return err
	}
	v := validation.New()
	if *maxTurns > 0 {
		v.MaxTurns(*maxTurns)
	}
	for _, t := range forbid {
		v.ForbidToolCall(t)
	}
	for _, t := range require {
		v.RequireToolCall(t)
	}
	for _, s := range must {
		v.ResponseMustContain(s)
	}
	for _, s := range mustNot {
		v.ResponseMustNotContain(s)
	}
	if *maxLen > 0 {
		v.MaxResponseLength(*maxLen)
	}
	if *minLen > 0 {
		v.MinResponseLength(*minLen)
	}
	if *strict {
		v.Strict()
	}
	if err := v.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	nc, js, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	col := replay.NewCollector()
	if err := replay.Replay(ctx, js, opts, col.Add); err != nil {
		return err
	}
	rep := v.Validate(col.Turns())
	for _, vi := range rep.Violations {
		fmt.Fprintf(env.Stdout, "VIOLATION %s conversation=%s turn=%d request=%s: %s\n", vi.Constraint, vi.ConversationID, vi.Turn, vi.RequestID, vi.Message)
	}
	fmt.Fprintf(env.Stdout, "audited %d turns in %d conversations: %d violations\n", rep.Turns, rep.Conversations, len(rep.Violations))
	if !rep.OK() {
		return ExitError{Code: 1}
	}
	return nil
}

func verifyChain(ctx context.Context, env Env, cf connFlags, data, store string) error {
	var rep memory.ChainReport
	if data != "" {
		s, err := openStore(ctx, data, store)
		if err != nil {
			return err
		}
		defer s.Close()
		if rep, err = s.VerifyChain(ctx); err != nil {
			return err
		}
	} else {
		nc, _, err := cf.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		if err := (&persist.Client{NC: nc, Timeout: time.Minute}).Call(ctx, persist.SubjectVerify, struct{}{}, &rep); err != nil {
			return err
		}
	}
	if rep.Broken != nil {
		fmt.Fprintf(env.Stdout, "BROKEN at seq %d (request %s, conversation %s): %s\n", rep.Broken.Seq, rep.Broken.RequestID, rep.Broken.ConversationID, rep.Broken.Reason)
		return ExitError{Code: 1}
	}
	fmt.Fprintf(env.Stdout, "hash chain intact: %d links (%d of deleted conversations), head %s\n", rep.Links, rep.Deleted, rep.Head)
	return nil
}

func openStore(ctx context.Context, dir, kind string) (memory.Store, error) {
	if kind == "files" {
		return memory.OpenFiles(filepath.Join(dir, "conversations"))
	}
	return memory.OpenSQLite(ctx, filepath.Join(dir, "agentbus.db"), memory.SQLiteConfig{})
}

func dlq(env Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: agentbus dlq list|show ID|redrive ID|redrive --all", ErrUsage)
	}
	sub, args := args[0], args[1:]
	f := newFlags(env, "dlq "+sub)
	cf := addConnFlags(f)
	all := f.Bool("all", false, "redrive every dead letter")
	lead, args := leadingArgs(args)
	if err := f.parse(args); err != nil {
		return err
	}
	pos := append(lead, f.Args()...)
	nc, js, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := deadLetters(js)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTAGE\tSUBJECT\tATTEMPTS\tDELIVERIES\tAT\tREASON")
		for _, e := range entries {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", e.seq, e.dl.Stage, e.dl.Subject, e.dl.Attempts, e.dl.Deliveries, e.dl.At.Format(time.RFC3339), truncate(e.dl.Reason, 100))
		}
		return tw.Flush()
	case "show":
		e, err := findDL(entries, pos)
		if err != nil {
			return err
		}
		out := map[string]any{"id": e.seq, "stage": e.dl.Stage, "subject": e.dl.Subject, "msg_id": e.dl.MsgID, "attempts": e.dl.Attempts,
			"deliveries": e.dl.Deliveries, "reason": e.dl.Reason, "at": e.dl.At, "headers": e.dl.Headers}
		if json.Valid(e.dl.Payload) {
			out["payload"] = json.RawMessage(e.dl.Payload)
		} else {
			out["payload_text"] = string(e.dl.Payload)
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "redrive":
		targets := entries
		if !*all {
			e, err := findDL(entries, pos)
			if err != nil {
				return err
			}
			targets = []dlEntry{e}
		}
		var refused error
		for _, e := range targets {
			if err := Redrive(js, e.seq, e.subject, e.dl); errors.Is(err, ErrRedriveRefused) {
				fmt.Fprintln(env.Stderr, err)
				refused = err
				continue
			} else if err != nil {
				return err
			}
			fmt.Fprintf(env.Stderr, "redrove %d to %s\n", e.seq, e.dl.Subject)
		}
		return refused
	default:
		return fmt.Errorf("%w: unknown dlq command %q", ErrUsage, sub)
	}
}

// leadingArgs splits off the positional arguments given before the flags
// ("dlq show 12 --nats URL"); the flag package stops at the first one.
func leadingArgs(args []string) (lead, rest []string) {
	i := 0
	for i < len(args) && !strings.HasPrefix(args[i], "-") {
		i++
	}
	return args[:i], args[i:]
}

type dlEntry struct {
	seq     uint64
	subject string // the DLQ subject it was stored on: agentbus.dlq.<stage>
	dl      messages.DeadLetter
}

func deadLetters(js jetstream.JetStream) ([]dlEntry, error) {
	ctx := context.Background() // the JetStream client's default timeout bounds each call
	stream, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream: %w", err)
	}
	info := stream.CachedInfo()
	var out []dlEntry
	if info.State.Msgs == 0 {
		return nil, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			continue
		}
		out = append(out, dlEntry{seq, raw.Subject, dl})
	}
	return out, nil
}

func findDL(entries []dlEntry, args []string) (dlEntry, error) {
	if len(args) != 1 {
		return dlEntry{}, fmt.Errorf("%w: give one dead-letter ID (see agentbus dlq list)", ErrUsage)
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return dlEntry{}, fmt.Errorf("%w: ID must be a number", ErrUsage)
	}
	for _, e := range entries {
		if e.seq == id {
			return e, nil
		}
	}
	return dlEntry{}, fmt.Errorf("no dead letter %d", id)
}

// ErrRedriveRefused is returned for a dead letter that redrive will not
// republish.
var ErrRedriveRefused = errors.New("redrive refused")

// RedriveSubject checks a dead letter before it is republished and returns
// the subject to publish on. A dead letter is redriven only when it was
// written by a stage (stored on agentbus.dlq.<stage> for the stage it
// names, which only that stage's identity may publish) and names a turn
// subject agentbus.turn.<event>.<request id> of an event that stage
// consumes (messages.Routes): never a KV, JetStream API or any other
// subject.
func RedriveSubject(dlqSubject string, dl messages.DeadLetter) (string, error) {
	if !slices.Contains(messages.Stages, dl.Stage) || dlqSubject != messages.DLQSubject(dl.Stage) {
		return "", fmt.Errorf("%w: dead letter on %q names stage %q: not written by a stage", ErrRedriveRefused, dlqSubject, dl.Stage)
	}
	event, rid, err := messages.ParseSubject(dl.Subject)
	if err != nil || !messages.ValidID(rid) || messages.Subject(event, rid) != dl.Subject {
		return "", fmt.Errorf("%w: %q is not a turn subject", ErrRedriveRefused, dl.Subject)
	}
	if r, _ := messages.RouteOf(event); !slices.Contains(r.To, dl.Stage) {
		return "", fmt.Errorf("%w: stage %s does not consume %q events", ErrRedriveRefused, dl.Stage, event)
	}
	return dl.Subject, nil
}

// Redrive republishes a dead letter's payload on its original subject and
// removes it from the DLQ, after RedriveSubject allowed it. Only the
// agentbus headers it carried are restored. The message id is the
// original id plus "/redrive/<dlq id>": a redrive done twice is dropped as
// a duplicate, and it is not mistaken for the original still inside the
// duplicate window.
func Redrive(js jetstream.JetStream, seq uint64, dlqSubject string, dl messages.DeadLetter) error {
	subj, err := RedriveSubject(dlqSubject, dl)
	if err != nil {
		return fmt.Errorf("redrive %d: %w", seq, err)
	}
	ctx := context.Background() // the JetStream client's default timeout bounds each call
	m := nats.NewMsg(subj)
	m.Data = dl.Payload
	if dl.PayloadOmitted {
		// A reference: the original is still in the turn stream.
		var raw *jetstream.RawStreamMsg
		turns, err := js.Stream(ctx, messages.StreamTurns)
		if err == nil {
			raw, err = turns.GetMsg(ctx, dl.StreamSeq)
		}
		if err != nil {
			return fmt.Errorf("redrive %d: the original (stream sequence %d) is gone from the turn stream: %w", seq, dl.StreamSeq, err)
		}
		if raw.Subject != subj {
			return fmt.Errorf("%w: stream sequence %d is on %s, not %s", ErrRedriveRefused, dl.StreamSeq, raw.Subject, subj)
		}
		m.Data = raw.Data
	}
	for k, v := range dl.Headers {
		if strings.HasPrefix(k, "Agentbus-") {
			m.Header.Set(k, v)
		}
	}
	m.Header.Set(nats.MsgIdHdr, dl.MsgID+"/redrive/"+strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("redrive %d: %w", seq, err)
	}
	dlq, err := js.Stream(ctx, messages.StreamDLQ)
	if err == nil {
		err = dlq.DeleteMsg(ctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("redrive %d: republished, but not removed from the DLQ: %w", seq, err)
	}
	return nil
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// rebuild re-materialises the conversation store from the stream: every
// completed turn, with its input from the received event.
func rebuild(env Env, args []string) error {
	f := newFlags(env, "rebuild")
	cf := addConnFlags(f)
	data := cf.data // the store in --data is (re)built
	store := f.str("store", "sqlite", "conversation store: sqlite or files")
	if err := f.parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	nc, js, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := os.MkdirAll(*data, 0o750); err != nil {
		return err
	}
	s, err := openStore(ctx, *data, *store)
	if err != nil {
		return err
	}
	defer s.Close()
	n, missing, err := Rebuild(ctx, js, s)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "rebuilt %d turns into %s\n", n, *data)
	if missing > 0 {
		fmt.Fprintf(env.Stderr, "%d completed turns not rebuilt: their received event is gone from the stream (max age or purge)\n", missing)
	}
	return nil
}

// rebuildWindow bounds how many turns Rebuild holds back waiting for an
// earlier link of the chain.
const rebuildWindow = 4096

// Rebuild replays the turn stream into store and returns how many turns it
// appended (already stored turns are skipped by the store) and how many
// completed turns it could not rebuild because their received event is no
// longer in the stream. Each turn is memory.CompletedTurn of its received
// messages and its completed event, as the persist stage stored it, and
// turns are appended in the original chain's order (the completed events'
// chain_seq; concurrent turns complete in another order than they commit),
// so that the rebuilt hash chain is the original one when the stream holds
// every turn.
func Rebuild(ctx context.Context, js jetstream.JetStream, store memory.Store) (appended, missing int, err error) {
	inputs := map[string][]messages.Message{}
	var batch []memory.TurnRecord
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := store.Append(ctx, batch...)
		batch = batch[:0]
		return err
	}
	add := func(rec memory.TurnRecord) error {
		batch = append(batch, rec)
		appended++
		if len(batch) >= 256 {
			return flush()
		}
		return nil
	}
	// Turns wait in held until every earlier link is added. A link that
	// never comes (its turn is not in the stream) holds the rest back only
	// until rebuildWindow turns wait, or the stream ends.
	held := &heldTurns{}
	next := int64(1)
	release := func(all bool) error {
		for held.Len() > 0 && ((*held)[0].seq <= next || all || held.Len() >= rebuildWindow) {
			t := heap.Pop(held).(heldTurn)
			next = max(next, t.seq+1)
			if err := add(t.rec); err != nil {
				return err
			}
		}
		return nil
	}
	err = replay.Replay(ctx, js, replay.Options{Events: []string{messages.EventReceived, messages.EventCompleted}}, func(ev replay.Event) error {
		switch ev.Event {
		case messages.EventReceived:
			var t messages.Turn
			if json.Unmarshal(ev.Data, &t) == nil {
				inputs[t.RequestID] = t.Messages
			}
		case messages.EventCompleted:
			var c messages.Completed
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				return fmt.Errorf("completed event at stream sequence %d: %w", ev.Seq, err)
			}
			in, ok := inputs[c.RequestID]
			if !ok {
				if c.ChainSeq == 0 || c.ChainSeq >= next { // else a repeat of a rebuilt turn
					missing++ // its input is gone from the stream
				}
				return nil
			}
			delete(inputs, c.RequestID)
			rec, err := memory.CompletedTurn(in, c)
			if err != nil {
				return err
			}
			if c.ChainSeq == 0 { // from a build before chain_seq: stream order
				if err := release(true); err != nil {
					return err
				}
				return add(rec)
			}
			heap.Push(held, heldTurn{c.ChainSeq, rec})
			return release(false)
		}
		return nil
	})
	if err == nil {
		err = release(true)
	}
	if err == nil {
		err = flush()
	}
	return appended, missing, err
}

// heldTurn is a rebuilt turn waiting for its place in the chain.
type heldTurn struct {
	seq int64 // the completed event's chain_seq
	rec memory.TurnRecord
}

// heldTurns is a min-heap of held turns by seq (container/heap).
type heldTurns []heldTurn

func (h heldTurns) Len() int           { return len(h) }
func (h heldTurns) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h heldTurns) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *heldTurns) Push(x any)        { *h = append(*h, x.(heldTurn)) }
func (h *heldTurns) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func stderrFile(env Env) *os.File {
	if f, ok := env.Stderr.(*os.File); ok {
		return f
	}
	return nil
}
