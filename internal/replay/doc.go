// Package replay reads the turn stream (messages.StreamTurns, the system of
// record) back for audit: every step of every turn, in stream order, from a
// start point to the end of the stream as it was when the replay began.
//
//	js, _ := jetstream.New(nc)
//	err := replay.Replay(ctx, js, replay.Options{Conversation: "c1"}, func(ev replay.Event) error {
//		return replay.Format(os.Stdout, ev)
//	})
//
// [Format] prints one line per event; a [Collector] (or [TurnsFromEvents])
// rebuilds validation.Turn values from the terminal events so an audit can
// check them against validation constraints; [Progress] shows a counter on
// a terminal.
//
// Like the rest of agentbus, it uses nats.go/jetstream: its ordered
// consumer is a pull consumer that is ephemeral, unacknowledged
// and in memory, and the client recreates it from the last sequence seen
// after a gap or reconnect, so a replay is complete and in order with no
// state on the server. Replay also deletes it when done. A stage that holds
// a nats.Conn gets one with jetstream.New(nc).
//
// Guarantees:
//   - Replay terminates: it reads up to ToSeq or the last sequence present
//     when it started and never waits for new messages (an idle check asks
//     the server whether anything is left if the stream shrank meanwhile).
//   - Events arrive in stream order, each at most once.
//   - It is read-only: it never publishes, acks or changes the stream, and
//     leaves no consumer behind.
//   - Event filters run on the server (subject filters); the conversation
//     filter runs on the client after extracting conversation_id cheaply
//     (see [ConversationID]).
//   - Format quotes and cuts free text, so a payload cannot inject
//     terminal escapes or flood a line.
package replay
