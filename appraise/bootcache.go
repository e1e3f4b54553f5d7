package appraise

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/vigil-attest/vigil/evidence"
)

// maxBootCache bounds the boot cache: boots, not agents (a fleet booted
// from one image shares an entry).
const maxBootCache = 1024

// bootEntry is one boot's derived facts: decoded, encoded (as the replay
// state keeps them) and as the policy reads them.
type bootEntry struct {
	facts *evidence.BootFacts
	raw   json.RawMessage
	value ast.Value
}

// bootCache keeps the boot facts of recent boots by the SHA-256 of their
// encoding, so that a round reusing an earlier round's event log neither
// decodes them nor converts them for the policy again: boot facts are
// derived once per boot. Entries are read-only.
type bootCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*bootEntry
	// byFacts finds the entry of facts the verifier's cache gave before
	// (the same pointer for the same log) without encoding them again.
	byFacts map[*evidence.BootFacts]*bootEntry
}

func (c *bootCache) get(key [sha256.Size]byte) *bootEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *bootCache) put(key [sha256.Size]byte, e *bootEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxBootCache {
		c.m = make(map[[sha256.Size]byte]*bootEntry, 64)
		c.byFacts = make(map[*evidence.BootFacts]*bootEntry, 64)
	}
	c.m[key] = e
	c.byFacts[e.facts] = e
}

// fromFacts caches newly derived facts and returns their entry.
func (c *bootCache) fromFacts(f *evidence.BootFacts) (*bootEntry, error) {
	c.mu.Lock()
	e := c.byFacts[f]
	c.mu.Unlock()
	if e != nil {
		return e, nil
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("boot facts: %w", err)
	}
	return c.entry(raw, func() (*evidence.BootFacts, error) { return f, nil })
}

// fromState returns the entry of facts a replay state kept.
func (c *bootCache) fromState(raw json.RawMessage) (*bootEntry, error) {
	return c.entry(raw, func() (*evidence.BootFacts, error) {
		f := &evidence.BootFacts{}
		return f, json.Unmarshal(raw, f)
	})
}

// entry finds the entry of raw, or makes it with the decoded facts.
func (c *bootCache) entry(raw json.RawMessage, facts func() (*evidence.BootFacts, error)) (*bootEntry, error) {
	key := sha256.Sum256(raw)
	if e := c.get(key); e != nil {
		return e, nil
	}
	f, err := facts()
	if err != nil {
		return nil, fmt.Errorf("boot facts: %w", err)
	}
	v, err := jsonValue(raw)
	if err != nil {
		return nil, fmt.Errorf("boot facts: %w", err)
	}
	e := &bootEntry{facts: f, raw: raw, value: v}
	c.put(key, e)
	return e, nil
}
