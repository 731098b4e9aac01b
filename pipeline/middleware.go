package pipeline

import (
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// handlerMiddleware wraps a stage handler with, from outside in (one file
// each): observation (observe.go), gate (middleware_gate.go: stop taking
// work during shutdown), dead letters (middleware_deadletter.go), retry
// with backoff (middleware_retry.go), timeout (Watermill's), panic recovery
// (middleware_recover.go), publishing of the handler's events
// (middleware_publish.go) and the turn's deadline (middleware_deadline.go). With recovery
// innermost a panic is an ordinary error: it is retried and then
// dead-lettered, never NAKed forever. Publishing is inside the chain, so a
// publish that fails is retried and dead-lettered like a handler error
// (never redelivered without bound), and an event too large for the bus
// becomes the turn's payload_too_large failure.
func (r *Runtime) handlerMiddleware(stage string, produces []string, conn *stageConn, cc ConsumerConfig, stats *Stats, obs *eventObs, log *slog.Logger, h message.HandlerFunc) message.NoPublishHandlerFunc {
	recovered := recoverer(stats, log)
	timeout := middleware.Timeout(cc.HandlerTimeout)
	inner := retry(cc).Middleware(timeout(recovered(r.publishing(stage, produces, conn, log, h))))
	dlq := r.deadLetterMiddleware(stage, conn, cc, stats, obs, log)
	full := r.gate(dlq(inner))
	if obs != nil {
		full = obs.observe(full)
	}
	return func(msg *message.Message) error {
		_, err := full(msg)
		return err
	}
}
