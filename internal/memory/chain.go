package memory

import (
	"context"
	"iter"
)

// storedLink is one link of a store's hash chain as read back for
// verification, with what the store holds for its turn.
type storedLink struct {
	link
	// deleted: the turn's conversation was deleted; its content is gone by
	// design and only the link is checked.
	deleted bool
	// turn is the stored content of the link's turn; nil when the store
	// holds none (a break, unless deleted).
	turn *TurnRecord
}

// verifyChain is VerifyChain for every store: it walks links in commit
// order and reports the first link that does not verify. A link verifies
// when its seq is the next one (from 1), its prev_hash is the previous
// link's hash, its hash is LinkHash of its fields and, unless its
// conversation was deleted, the stored turn's ContentHash equals its
// content_hash. An error from links (a failed read) ends the walk and is
// returned; so is a done ctx.
func verifyChain(ctx context.Context, links iter.Seq2[storedLink, error]) (ChainReport, error) {
	var rep ChainReport
	prev := ""
	for l, err := range links {
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return rep, err
		}
		rep.Links++
		rep.Head = l.Hash
		reason := ""
		switch {
		case l.Seq != int64(rep.Links):
			reason = ReasonSeqGap
		case l.PrevHash != prev:
			reason = ReasonPrevHash
		case LinkHash(l.PrevHash, l.ContentHash, l.Seq, l.RequestID) != l.Hash:
			reason = ReasonHash
		case l.deleted:
			rep.Deleted++
		case l.turn == nil:
			reason = ReasonMissing
		default:
			if h, err := ContentHash(l.turn); err != nil || h != l.ContentHash {
				reason = ReasonContentHash
			}
		}
		if reason != "" {
			rep.Broken = &ChainBreak{Seq: l.Seq, RequestID: l.RequestID, ConversationID: l.ConversationID, Reason: reason}
			return rep, nil
		}
		prev = l.Hash
	}
	return rep, nil
}
