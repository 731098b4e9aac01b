package pipeline

import (
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// retry retries a failed handler run in-process cc.Retries times with
// exponential backoff from cc.RetryInterval, each run with a fresh timeout
// (ResetContextOnRetry: the timeout is inside the retry). Permanent errors
// and a step another replica runs (ErrStepBusy) are not retried. Every
// field is set: a zero field would mean no retries.
func retry(cc ConsumerConfig) middleware.Retry {
	return middleware.Retry{
		MaxRetries:          cc.Retries,
		InitialInterval:     cc.RetryInterval,
		MaxInterval:         2 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.3,
		ResetContextOnRetry: true,
		ShouldRetry: func(p middleware.RetryParams) bool {
			return !errors.Is(p.Err, ErrPermanent) && !errors.Is(p.Err, ErrStepBusy)
		},
	}
}
