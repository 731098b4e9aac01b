// Package jsctx bounds one call of the nats.go jetstream API the way the
// legacy nats.JetStreamContext's MaxWait did, so that moving a caller from
// the legacy API to the jetstream package keeps its timeouts: a request
// lost to a leader election or a reconnect fails after at most MaxWait,
// not at the end of a long handler deadline.
package jsctx

import (
	"context"
	"time"
)

// MaxWait bounds one call when the caller's context has a later deadline
// (the legacy API's default MaxWait).
const MaxWait = 5 * time.Second

// Bound returns ctx bounded by MaxWait. A ctx without a deadline is
// returned as it is: the jetstream client then applies its own default
// timeout (jetstream.WithDefaultTimeout, 5s unless set).
func Bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); !ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, MaxWait)
}
