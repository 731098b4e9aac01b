// Package quota enforces daily request and token quotas per user and per
// model, in windows that really reset at the UTC day boundary.
//
//	q, err := quota.New(quota.Config{PerUserRequests: 1000, PerModelTokens: 5_000_000}, nil)
//	if err := q.Admit(user, model); err != nil {
//		var qe *quota.ExceededError
//		errors.As(err, &qe) // qe.Limit, qe.Reset, qe.RetryAfter -> 429 quota_exceeded
//		return err
//	}
//	resp, err := provider.Complete(ctx, req, nil)
//	q.AddTokens(user, model, int64(resp.Usage.TotalTokens))
//
// Check/Record are the two-step form (Check changes nothing; Record counts a
// request and its tokens); Admit/AddTokens count the request atomically with
// the check, so concurrent requests cannot overshoot a request limit. Token
// limits are checked before a call, whose size is unknown until it ends: a
// user under the limit may finish one call that takes it over, and is then
// refused until the reset.
//
// Guarantees:
//   - A window is the UTC calendar day of the injected clock: a counter
//     from an earlier day reads as zero and is reset on its next use.
//   - State is bounded: at most MaxUsers users and MaxModels models are
//     tracked, least recently used first out (a forgotten user starts afresh).
//   - Degraded (any counter at >= 80% of its limit) costs O(counters near
//     their limit), not O(users).
//
// Quota keeps its state in memory, per process. Shared enforces the same
// limits with the counters in a compare-and-swap store shared by every llm
// replica (a JetStream KV bucket through ratelimit's Store), so N replicas
// allow the configured quota, not N times it; agentbus uses Shared.
package quota
