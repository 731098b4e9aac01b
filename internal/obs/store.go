package obs

import (
	"context"
	"time"

	"github.com/agentbus/agentbus/internal/memory"
)

// Store times each commit of the conversation store it wraps (one
// transaction of a group commit) and records its batch size.
type Store struct {
	memory.Store
	Metrics *Metrics
}

// Append commits turns and observes the commit.
func (s Store) Append(ctx context.Context, turns ...memory.TurnRecord) error {
	start := time.Now()
	err := s.Store.Append(ctx, turns...)
	if err == nil {
		s.Metrics.Commit(time.Since(start), len(turns))
	}
	return err
}
