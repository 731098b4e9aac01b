// Package breaker is a circuit breaker for LLM providers: it stops calling a
// provider that keeps failing, and lets a bounded number of probes find out
// when it has recovered.
//
// A [Breaker] is Closed (every call goes through; FailureThreshold
// consecutive failures open it), Open (every call is rejected at once with an
// [*OpenError] carrying RetryAfter; after OpenTimeout it turns HalfOpen) or
// HalfOpen (at most HalfOpenMaxProbes concurrent probes; SuccessThreshold
// successes close it, one failure opens it again).
//
//	b, err := breaker.New("openai", breaker.Config{}, nil) // defaults
//	t, err := b.Allow()
//	if err != nil {
//		var oe *breaker.OpenError
//		errors.As(err, &oe) // oe.RetryAfter: when to try again
//		return err
//	}
//	resp, err := call(ctx)
//	b.Done(t, err != nil && isProviderFault(err))
//
// or, in one step, b.Execute(ctx, isFailure, fn), which also applies
// CallTimeout.
//
// Guarantees:
//   - Only the caller decides what is a failure: Done takes a boolean, and
//     Release gives a ticket back uncounted (client cancelled, 4xx, 429).
//   - Every transition starts a new generation; a result reported with a
//     ticket of an older generation is ignored, so a slow call started while
//     Closed cannot re-open a breaker that has since recovered, and a stale
//     success cannot close an open one.
//   - HalfOpen never admits more than HalfOpenMaxProbes calls at once; a
//     probe whose ticket is never reported frees its slot after CallTimeout.
//   - Allow never blocks and never sleeps; time comes from the injected
//     [Clock], so the whole state machine is testable without waiting.
//   - Counters are exact under concurrency: Requests = admitted + Rejections
//     and admitted = Successes + Failures + Ignored + InFlight.
//
// A Breaker is in-memory and per process; the llm stage keeps one per
// provider.
package breaker
