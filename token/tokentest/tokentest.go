// Package tokentest holds test helpers for session reports: an in-memory
// token.KeyStore, a fake of the store's key methods with an injectable
// outage, for tests that need no database (real-store tests use
// store/storetest).
package tokentest

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/vigil-attest/vigil/store"
)

// KeyStore is an in-memory token.KeyStore with the store's semantics:
// Secret creates once, SigningKeys returns unexpired keys newest first.
// SetFail injects a database outage.
type KeyStore struct {
	mu      sync.Mutex
	secrets map[string][]byte
	keys    []*store.SigningKey
	loads   int
	fail    error
}

// NewKeyStore returns an empty KeyStore.
func NewKeyStore() *KeyStore { return &KeyStore{secrets: map[string][]byte{}} }

// Secret returns the named secret, creating it on first use.
func (m *KeyStore) Secret(_ context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	if b, ok := m.secrets[name]; ok {
		return bytes.Clone(b), nil
	}
	b, err := create()
	if err != nil {
		return nil, err
	}
	m.secrets[name] = bytes.Clone(b)
	return b, nil
}

// AddSigningKey stores a copy of k.
func (m *KeyStore) AddSigningKey(_ context.Context, k *store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, o := range m.keys {
		if o.KID == k.KID {
			return fmt.Errorf("signing key %s: %w", k.KID, store.ErrExists)
		}
	}
	c := *k
	m.keys = append(m.keys, &c)
	return nil
}

// SigningKeys returns copies of the keys whose certificate has not expired
// at now, newest first.
func (m *KeyStore) SigningKeys(_ context.Context, now time.Time) ([]*store.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	if m.fail != nil {
		return nil, m.fail
	}
	var out []*store.SigningKey
	for _, k := range m.keys {
		if now.Before(k.NotAfter) {
			c := *k
			out = append(out, &c)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].CreatedAt.After(out[b].CreatedAt) })
	return out, nil
}

// SetFail makes every call fail with err (nil: succeed again).
func (m *KeyStore) SetFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// Loads is how many times SigningKeys was called.
func (m *KeyStore) Loads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loads
}

// Keys returns copies of every stored signing key, expired or not.
func (m *KeyStore) Keys() []store.SigningKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.SigningKey, len(m.keys))
	for i, k := range m.keys {
		out[i] = *k
	}
	return out
}
