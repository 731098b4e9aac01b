package pipeline

import (
	"sync/atomic"
)

// Stats counts what a stage instance did. All fields are safe for
// concurrent use.
type Stats struct {
	Processed    atomic.Int64 // handler runs that succeeded (message acked)
	Failed       atomic.Int64 // deliveries that failed and were NAKed for redelivery
	DeadLettered atomic.Int64 // messages moved to the dead-letter stream
	Panics       atomic.Int64 // handler panics recovered
}

// Snapshot returns the counters as a map for STATS and health output.
func (s *Stats) Snapshot() map[string]int64 {
	return map[string]int64{
		"processed":     s.Processed.Load(),
		"failed":        s.Failed.Load(),
		"dead_lettered": s.DeadLettered.Load(),
		"panics":        s.Panics.Load(),
	}
}
