package server

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// limiter is a per-key token bucket (key: agent ID) with bounded memory:
// idle buckets (refilled to the burst) are swept, and when a shard is
// full a new key shares its budget with every other overflowing key.
type limiter struct {
	rate   float64 // tokens per second
	burst  float64
	shards [limiterShards]limiterShard
	seed   maphash.Seed
	max    int // buckets per shard
}

const (
	limiterShards = 64
	// maxBuckets bounds the limiter's memory (about 100 bytes a bucket).
	maxBuckets = 1 << 20
	// overflowKey holds the shared budget of keys that found their shard
	// full.
	overflowKey = "\x00overflow"
)

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	l := &limiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed(), max: maxBuckets / limiterShards}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
	}
	return l
}

// allow takes a token for key at now. When none is left it returns false
// and how long until one is.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	sh := &l.shards[maphash.String(l.seed, key)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[key]
	if !ok {
		if len(sh.buckets) >= l.max {
			l.sweepLocked(sh, now)
		}
		if len(sh.buckets) >= l.max {
			key = overflowKey
			b = sh.buckets[key]
		}
		if b == nil {
			b = &bucket{tokens: l.burst, last: now}
			sh.buckets[key] = b
		}
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// sweep forgets buckets that have refilled: they behave like new ones.
func (l *limiter) sweep(now time.Time) {
	if l == nil {
		return
	}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		l.sweepLocked(sh, now)
		sh.mu.Unlock()
	}
}

func (l *limiter) sweepLocked(sh *limiterShard, now time.Time) {
	for k, b := range sh.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(sh.buckets, k)
		}
	}
}

// size is how many buckets the limiter holds.
func (l *limiter) size() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].buckets)
		l.shards[i].mu.Unlock()
	}
	return n
}
