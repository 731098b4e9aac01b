package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
)

// ErrCatalogUnavailable: no llm stage answered the model catalog request.
var ErrCatalogUnavailable = errors.New("model catalog unavailable")

// catalog is the llm stage's model catalog as ingest sees it: asked on
// messages.SubjectModels, kept for Config.CatalogTTL, so /v1/models lists
// exactly what the llm stage can call, also when ingest runs in another
// process with no provider configuration.
type catalog struct {
	nc      *nats.Conn
	ttl     time.Duration
	timeout time.Duration

	mu      sync.Mutex
	cur     provider.Catalog
	fetched time.Time
	have    bool
	// inflight is closed when the running fetch ends (one at a time).
	inflight chan struct{}
}

// get returns the catalog, fetching it when the cached one is older than
// the TTL. When the llm stage does not answer, a catalog fetched before is
// returned (stale beats nothing: model lists change only on restarts);
// without one, ErrCatalogUnavailable.
func (c *catalog) get(ctx context.Context) (provider.Catalog, error) {
	for {
		c.mu.Lock()
		if c.have && time.Since(c.fetched) < c.ttl {
			cur := c.cur
			c.mu.Unlock()
			return cur, nil
		}
		if wait := c.inflight; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return provider.Catalog{}, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.inflight = done
		c.mu.Unlock()

		cat, err := c.fetch(ctx)
		c.mu.Lock()
		c.inflight = nil
		close(done)
		if err == nil {
			c.cur, c.fetched, c.have = cat, time.Now(), true
		}
		cur, have := c.cur, c.have
		c.mu.Unlock()
		switch {
		case err == nil:
			return cat, nil
		case have:
			return cur, nil
		}
		return provider.Catalog{}, err
	}
}

func (c *catalog) fetch(ctx context.Context) (provider.Catalog, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, messages.SubjectModels, nil)
	if err != nil {
		return provider.Catalog{}, fmt.Errorf("%w: %w", ErrCatalogUnavailable, err)
	}
	var cat provider.Catalog
	if err := json.Unmarshal(m.Data, &cat); err != nil {
		return provider.Catalog{}, fmt.Errorf("%w: undecodable answer: %w", ErrCatalogUnavailable, err)
	}
	return cat, nil
}
