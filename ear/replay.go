package ear

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultReplayEntries is MemoryReplayCache's default bound: a minute's
// proofs at 16,000 a second.
const DefaultReplayEntries = 1 << 20

// ErrReplayCacheFull is MemoryReplayCache's refusal when every entry is
// still unexpired.
var ErrReplayCacheFull = errors.New("the replay cache is full of unexpired entries")

// MemoryReplayCache is a ReplayCache in memory, bounded: an entry lives
// until its expiry, and when the cache holds its maximum of unexpired
// entries it refuses to record (ErrReplayCacheFull) rather than forget
// one early. It serves one process: replicas of a relying party need a
// shared ReplayCache, or proofs bound to one replica's nonce.
type MemoryReplayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
	exp  expiryHeap
}

// NewMemoryReplayCache makes a cache of at most max entries
// (DefaultReplayEntries when max ≤ 0).
func NewMemoryReplayCache(max int) *MemoryReplayCache {
	if max <= 0 {
		max = DefaultReplayEntries
	}
	return &MemoryReplayCache{max: max, seen: map[string]time.Time{}}
}

// Record implements ReplayCache.
func (m *MemoryReplayCache) Record(_ context.Context, id string, now, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Forget what expired: the oldest expiries first.
	for len(m.exp) > 0 && !m.exp[0].until.After(now) {
		e := heap.Pop(&m.exp).(entry)
		if t, ok := m.seen[e.id]; ok && t.Equal(e.until) {
			delete(m.seen, e.id)
		}
	}
	if t, ok := m.seen[id]; ok && t.After(now) {
		return false, nil
	}
	if !until.After(now) {
		// Already out of the window: nothing to remember.
		return true, nil
	}
	if len(m.seen) >= m.max {
		return false, fmt.Errorf("%w (%d)", ErrReplayCacheFull, m.max)
	}
	m.seen[id] = until
	heap.Push(&m.exp, entry{id: id, until: until})
	return true, nil
}

// Len is the number of entries held.
func (m *MemoryReplayCache) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seen)
}

type entry struct {
	id    string
	until time.Time
}

// expiryHeap is a min-heap of entries by expiry.
type expiryHeap []entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
