package pipeline

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"
)

// gate NAKs messages that arrive once shutdown began, so they go to another
// replica instead of starting work this process will not finish.
func (r *Runtime) gate(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if r.draining.Load() {
			return nil, errDraining
		}
		return h(msg)
	}
}

var errDraining = errors.New("stage is shutting down")
