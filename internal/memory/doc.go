// Package memory stores completed chat turns durably and serves
// conversation history, with a hash chain over every commit for audit.
//
// The persist stage appends a [TurnRecord] per finished turn and acks the
// JetStream message only after [Store.Append] returned nil; the llm stage
// reads [Store.History] to build the next prompt.
//
//	store, err := memory.OpenSQLite(ctx, "agentbus.db", memory.SQLiteConfig{})
//	...
//	commits := memory.NewGroupCommitter(store, 0) // batches concurrent appends
//	if err := commits.Append(ctx, &rec); err != nil {
//		return err // Nack: the message is redelivered and appended again
//	}
//	msg.Ack()
//
// Two backends implement [Store] and pass the same conformance tests:
// [SQLiteStore] (modernc.org/sqlite, WAL, one writer connection with
// BEGIN IMMEDIATE, a query-only read pool, synchronous=FULL) for production,
// and [FileStore] (one indented JSON file per conversation plus an
// append-only chain.jsonl) for development and inspection by eye.
//
// Guarantees:
//
//   - Append is all-or-nothing for the SQLite store (one transaction per
//     call) and commit-ordered for the file store; for both, an error means
//     "retry", and a retry never duplicates: Append is idempotent on
//     RequestID (a turn already stored, or stored and deleted, is skipped).
//   - Append returns nil only after the commit is durable (fsync). Every
//     storage error is returned, wrapped, never logged and dropped. Tested
//     by kill -9 of a writing process: every acknowledged turn is there
//     exactly once.
//   - Every committed turn gets a link in a hash chain: content_hash =
//     sha256(canonical JSON of the turn's content) ([ContentHash]), hash =
//     sha256(prev_hash, content_hash, seq, request_id) ([LinkHash]). Delete
//     removes a conversation's content but keeps its links (marked deleted),
//     so [Store.VerifyChain] still verifies the whole chain and names the
//     first turn whose link or stored content was altered.
//   - Conversation ids are opaque: any string works, and two ids never share
//     storage (the file store names files by a hash of the exact id).
//   - A read after a successful Append sees the appended turn
//     (read-your-writes).
package memory
