package pipeline

import (
	"context"
	"time"
)

// StepStore records the result of each step of a turn (a model call, a
// round of tool calls) so that a redelivered step reuses it instead of
// running again. A stage depends on this interface; StepsOf adapts the
// KV-backed StepCache to it, and a handler's unit test can use an
// in-memory one.
type StepStore interface {
	// Begin looks key up. found: its recorded result is decoded into v
	// (or, for a result that was too large to record, an error wrapping
	// ErrStepTooLarge) and the claim is nil. Otherwise the caller holds
	// the step (for up to max) and must Put its result or Release it. A
	// step another runner holds returns an error wrapping ErrStepBusy (the
	// message is handed back for later).
	Begin(ctx context.Context, key string, max time.Duration, v any) (claim StepClaim, found bool, err error)
}

// StepClaim is a step the caller runs (StepStore.Begin).
type StepClaim interface {
	// Put records the step's result and ends the claim. A result too
	// large to record is recorded as such and returns an error wrapping
	// ErrStepTooLarge (a redelivery finds it so and does not run again).
	Put(ctx context.Context, v any) error
	// Release gives the step up without a result (a later delivery runs
	// it); after Put it does nothing.
	Release()
}

// StepsOf returns c as a StepStore.
func StepsOf(c *StepCache) StepStore { return stepCache{c} }

type stepCache struct{ c *StepCache }

func (s stepCache) Begin(ctx context.Context, key string, max time.Duration, v any) (StepClaim, bool, error) {
	cl, found, err := s.c.Begin(ctx, key, max, v)
	if cl == nil {
		return nil, found, err // a nil *Claim is no claim
	}
	return cl, found, err
}
