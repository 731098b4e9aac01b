// Package ratelimit admits or rejects requests against token buckets in
// four tiers (global, endpoint, user, API key), each with a requests bucket
// and an LLM-tokens bucket, with state shared between processes through a
// compare-and-swap [Store].
//
// A [Limit] is a token bucket: Rate tokens per Per, holding at most Burst.
// [PerMinute](60) is "60 requests (or tokens) per minute, burst 60". A
// [Config] sets the limits of each tier; [New] builds a [Limiter]:
//
//	lim, err := ratelimit.New(ratelimit.Config{
//		Global: ratelimit.TierLimits{Requests: ratelimit.PerSecond(200)},
//		User:   ratelimit.TierLimits{Requests: ratelimit.PerMinute(60), Tokens: ratelimit.PerMinute(90_000)},
//	}, kvstore.New(kv), nil)
//	...
//	d, err := lim.Allow(ctx, ratelimit.Request{User: t.User, Endpoint: t.Endpoint, Cost: t.Cost, Tokens: est})
//	switch {
//	case err != nil: // store unreachable (fail closed) or ctx ended: retry later
//	case !d.Allowed: // reject: d.Err(), d.RetryAfter, d.Headers()
//	}
//	// after the provider answered:
//	err = lim.Reconcile(ctx, req, float64(usage.TotalTokens))
//
// Guarantees:
//
//   - Every enabled bucket of a request is checked before any is charged,
//     and a request is charged to all of them or to none: a rejected
//     request spends nothing (see [Limiter.Allow] for the algorithm and why
//     it is safe).
//   - Limiters sharing a Store (guard replicas on one NATS KV bucket) share
//     the limits: over any interval t a bucket admits at most
//     Burst + Rate*t, however many replicas there are.
//   - Errors only ever make the limiter stricter: a conflict, a lost refund
//     or a corrupt stored value can reject a request that would have fit,
//     never admit one that does not.
//   - When the Store is unreachable Allow fails closed (an error wrapping
//     [ErrUnavailable]) unless Config.FailOpen.
//   - State is bounded: [MemoryStore] holds at most MaxKeys keys (LRU); a
//     KV bucket should use [Limiter.StateTTL] as its TTL. Store keys are
//     hashed names, always valid NATS KV keys.
//
// Time comes from an injected [Clock]. Replicas' clocks need not agree: a
// clock behind the stored time refills nothing until it catches up.
//
// The global tier is one key every request writes: with a shared KV store
// its throughput is bounded by compare-and-swap round trips on that key
// (conflicts are retried with backoff, up to Config.MaxRetries). Leave it
// unlimited unless a global limit is needed.
package ratelimit
