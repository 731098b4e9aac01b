package tokens

import (
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/agentbus/agentbus/messages"
)

// DefaultCacheSize is the default size of Cached.
const DefaultCacheSize = 16384

// Cached wraps c with a bounded LRU cache of Count results keyed by text
// (size entries; DefaultCacheSize if size <= 0). BPE counting costs ~0.4 ms
// per KB; a conversation re-pruned on every turn hits the cache for all
// but its new messages.
func Cached(c Counter, size int) Counter {
	if size <= 0 {
		size = DefaultCacheSize
	}
	if _, ok := c.(Estimator); ok {
		return c // cheaper than a lookup
	}
	cache, err := lru.New[string, int](size)
	if err != nil { // only for size <= 0, excluded above
		return c
	}
	return &cached{c: c, cache: cache}
}

type cached struct {
	c     Counter
	cache *lru.Cache[string, int]
}

func (k *cached) Count(text string) int {
	if text == "" {
		return 0
	}
	if n, ok := k.cache.Get(text); ok {
		return n
	}
	n := k.c.Count(text)
	k.cache.Add(text, n)
	return n
}

func (k *cached) CountMessages(msgs []messages.Message) int { return countMessages(k, msgs) }

// Encoding returns the wrapped counter's encoding name.
func (k *cached) Encoding() string {
	if e, ok := k.c.(interface{ Encoding() string }); ok {
		return e.Encoding()
	}
	return ""
}
