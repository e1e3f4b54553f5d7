package gatekeeper

import (
	"container/list"
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/vigil-attest/vigil/ear"
)

// DefaultReportCache is how many verified session reports a Gatekeeper
// keeps by default (Options.ReportCache).
const DefaultReportCache = 16384

// reportCache keeps verified session reports by the SHA-256 of their
// compact JWS, so that a host's requests pay the report's signature and
// chain checks once per report rather than once per request. An entry
// serves only while its keys are the ones in use (the epoch: the CA's
// pool, or the JWKS set that verified it) and within its window
// (ear.Verified.Window: its iat, nbf, exp and chain); the checks of each
// request (the proof, the route's level, trust vector and age, the feed)
// run every time. Bounded: the least recently used entry goes first.
// Refusals are not kept.
type reportCache struct {
	mu  sync.Mutex
	max int
	m   map[[sha256.Size]byte]*list.Element
	lru list.List // of *cachedReport, most recent first
}

type cachedReport struct {
	key   [sha256.Size]byte
	v     *ear.Verified
	epoch any
}

func newReportCache(max int) *reportCache {
	return &reportCache{max: max, m: make(map[[sha256.Size]byte]*list.Element)}
}

// verify is keys.Verify through the cache.
func (c *reportCache) verify(ctx context.Context, keys epochKeys, report string, now time.Time) (*ear.Verified, error) {
	epoch, err := keys.epoch(ctx, now)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(report))
	if v := c.get(key, epoch, now); v != nil {
		return v, nil
	}
	v, epoch, err := keys.verifyEpoch(ctx, report, now)
	if err != nil {
		return nil, err
	}
	c.put(key, v, epoch)
	return copyVerified(v), nil
}

// copyVerified is a Verified of its own for each request (its maps and
// slices are shared: read-only, as Admitted says).
func copyVerified(v *ear.Verified) *ear.Verified {
	cp := *v
	return &cp
}

func (c *reportCache) get(key [sha256.Size]byte, epoch any, now time.Time) *ear.Verified {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return nil
	}
	e := el.Value.(*cachedReport)
	from, until := e.v.Window()
	if e.epoch != epoch || now.Before(from) || now.After(until) {
		// Verified again (and refused with its code, or kept anew).
		c.lru.Remove(el)
		delete(c.m, key)
		return nil
	}
	c.lru.MoveToFront(el)
	return copyVerified(e.v)
}

func (c *reportCache) put(key [sha256.Size]byte, v *ear.Verified, epoch any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		el.Value = &cachedReport{key: key, v: v, epoch: epoch}
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*cachedReport).key)
	}
	c.m[key] = c.lru.PushFront(&cachedReport{key: key, v: v, epoch: epoch})
}

// len is the number of reports held.
func (c *reportCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
