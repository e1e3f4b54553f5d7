package evidence

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/vigil-attest/vigil/eventlog"
)

// Cache keeps the structure check and the boot facts of event logs
// verified before, by the log's SHA-256 and the PCRs it was checked
// against. The facts depend on nothing else, and a fleet booted from one
// image sends the same log: they are derived once. The facts it returns
// are shared: callers must not change them. A nil *Cache caches nothing.
// It is safe for concurrent use.
type Cache struct {
	mu  sync.Mutex
	max int
	m   map[[sha256.Size]byte]cachedBoot
}

type cachedBoot struct {
	why   string
	facts *BootFacts
}

// NewCache returns a cache of at most n logs (n < 1: 1024).
func NewCache(n int) *Cache {
	if n < 1 {
		n = 1024
	}
	return &Cache{max: n}
}

// boot checks log's structure and derives its facts, or finds them.
func (c *Cache) boot(data []byte, l *eventlog.Log, pcrs []int) (string, *BootFacts) {
	derive := func() (string, *BootFacts) {
		s := l.Summarize()
		if why := firmwareStructure(l, s); why != "" {
			return why, nil
		}
		return "", deriveBoot(data, l, s, pcrs)
	}
	if c == nil {
		return derive()
	}
	h := sha256.New()
	h.Write(data)
	var b [4]byte
	for _, p := range pcrs {
		binary.BigEndian.PutUint32(b[:], uint32(p))
		h.Write(b[:])
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return e.why, e.facts
	}
	why, f := derive()
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[[sha256.Size]byte]cachedBoot, 64)
	}
	c.m[key] = cachedBoot{why, f}
	c.mu.Unlock()
	return why, f
}
