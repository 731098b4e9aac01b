package pipeline

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
)

// attemptsKey holds, in a message's context, the count of handler runs
// of the current delivery (the dead-letter middleware reads it).
type attemptsKey struct{}

// recoverer turns a handler panic into an error (counted in stats): with
// recovery innermost, a panic is retried and then dead-lettered like any
// error, never NAKed forever. It also counts the handler's runs.
func recoverer(stats *Stats, log *slog.Logger) func(message.HandlerFunc) message.HandlerFunc {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (out []*message.Message, err error) {
			if p, ok := msg.Context().Value(attemptsKey{}).(*atomic.Int32); ok {
				p.Add(1)
			}
			defer func() {
				if v := recover(); v != nil {
					stats.Panics.Add(1)
					log.Error("handler panic", "msg_id", msg.UUID, "panic", fmt.Sprint(v))
					out, err = nil, fmt.Errorf("panic: %v", v)
				}
			}()
			return h(msg)
		}
	}
}
