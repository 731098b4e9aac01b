package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TerminalsBucket records each turn's outcome: request id -> its terminal
// event (completed, rejected or failed).
const TerminalsBucket = "agentbus_terminals"

// TerminalTTL is how long outcomes are kept: a client retrying with the
// same Idempotency-Key within it gets the turn's real outcome.
const TerminalTTL = 48 * time.Hour

// Terminals guarantees one terminal event per turn: whoever ends a turn
// claims its outcome first (a KV create, so exactly one claim wins across
// every stage and replica), and a terminal event that lost the claim is
// never published. A turn is stored if and only if its outcome is
// completed: persist claims before it commits.
//
// An outcome never changes once recorded, so each Terminals remembers the
// last outcomes it claimed or read (a bounded LRU): the claim persist
// makes before its commit and the one the publishing middleware makes for
// the completed event are one KV write, not a write, a refused write and
// two reads.
type Terminals struct {
	kv    jetstream.KeyValue
	known *lru.Cache[string, string]
}

// knownOutcomes bounds the outcomes a Terminals remembers.
const knownOutcomes = 4096

// OpenTerminals opens (or creates) the outcomes bucket.
func OpenTerminals(js jetstream.KeyValueManager, replicas int) (*Terminals, error) {
	kv, err := EnsureKV(js, jetstream.KeyValueConfig{Bucket: TerminalsBucket, Description: "agentbus turn outcomes (one terminal event per turn)",
		TTL: TerminalTTL, History: 1, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, err
	}
	known, err := lru.New[string, string](knownOutcomes)
	if err != nil {
		return nil, err
	}
	return &Terminals{kv: kv, known: known}, nil
}

// Claim records event as the outcome of request rid unless it has one,
// and returns the outcome: event if this claim won, the earlier one
// otherwise. Claiming the same event again (a redelivery) returns it again.
func (t *Terminals) Claim(ctx context.Context, rid, event string) (string, error) {
	out, _, err := t.ClaimNew(ctx, rid, event)
	return out, err
}

// ClaimNew is Claim that also reports whether this call recorded the
// outcome (false: it was there already, maybe the same event).
func (t *Terminals) ClaimNew(ctx context.Context, rid, event string) (outcome string, created bool, err error) {
	if out, ok := t.known.Get(rid); ok {
		return out, false, nil
	}
	var out string
	err = retryKV(ctx, func(ctx context.Context) error {
		if _, err := t.kv.Create(ctx, rid, []byte(event)); err == nil {
			out, created = event, true
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, err := t.kv.Get(ctx, rid)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nats.ErrTimeout // expired meanwhile: claim again
		}
		if err != nil {
			return err
		}
		out = string(e.Value())
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("claim outcome of %s: %w", rid, err)
	}
	t.known.Add(rid, out)
	return out, created, nil
}

// Outcome returns the recorded outcome of rid, if any.
func (t *Terminals) Outcome(ctx context.Context, rid string) (event string, found bool, err error) {
	if out, ok := t.known.Get(rid); ok {
		return out, true, nil
	}
	err = retryKV(ctx, func(ctx context.Context) error {
		e, err := t.kv.Get(ctx, rid)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		event, found = string(e.Value()), true
		return nil
	})
	if found {
		t.known.Add(rid, event)
	}
	return event, found, err
}

// Terminals is the outcomes bucket on a stage's connection (opened on
// first use).
func (r *Runtime) Terminals(stage string) (*Terminals, error) {
	sc, err := r.stageConn(stage)
	if err != nil {
		return nil, err
	}
	return sc.terminals(r.cfg.Streams.Replicas)
}

func (sc *stageConn) terminals(replicas int) (*Terminals, error) {
	sc.termOnce.Do(func() { sc.terms, sc.termErr = OpenTerminals(sc.js, replicas) })
	return sc.terms, sc.termErr
}
