package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/vigil-attest/vigil/api"
)

// Nonce layout: a stateless, MAC'd challenge that any replica sharing the
// key accepts, bound to one agent and to an expiry. Single use is the
// store's job (Store.UseNonce on the nonce's SHA-256).
//
// Single use must not rest on the replicas' clocks agreeing. The encoded
// expiry E is the minting replica's now + TTL + skew; a replica accepts
// the nonce while its own clock is before E − skew (the TTL the agent
// was told), the store keeps its record until E, and pruning deletes
// records only once E is more than skew before the pruning replica's
// clock. A record therefore outlives every acceptance as long as any two
// replicas' clocks differ by less than 2 × skew (Options.NonceSkew).
//
//	version(1) ‖ expiry unix seconds(8, big endian) ‖ SHA-256(agent ID)[:8]
//	‖ random(16) ‖ HMAC-SHA256(key, all previous ‖ agent ID)[:16]
const (
	nonceVersion = 1
	nonceTagLen  = 8
	nonceRandLen = 16
	nonceMACLen  = 16
	nonceBodyLen = 1 + 8 + nonceTagLen + nonceRandLen
	// NonceLen is the length of a challenge nonce in bytes.
	NonceLen = nonceBodyLen + nonceMACLen
	// minNonceKey is the shortest nonce key accepted.
	minNonceKey = 32
)

// nonces mints and checks challenge nonces.
type nonces struct {
	key []byte
	ttl time.Duration
	// skew is the margin of the expiry check (and, in Server.prune, of
	// the pruning).
	skew time.Duration
	// random is crypto/rand.Reader (tests replace it).
	random io.Reader
}

func newNonces(key []byte, ttl, skew time.Duration) (*nonces, error) {
	if len(key) < minNonceKey {
		return nil, fmt.Errorf("nonce key of %d bytes, want at least %d", len(key), minNonceKey)
	}
	if skew < 0 {
		return nil, fmt.Errorf("negative nonce skew margin %v", skew)
	}
	return &nonces{key: key, ttl: ttl, skew: skew, random: rand.Reader}, nil
}

func agentTag(agentID string) []byte {
	h := sha256.Sum256([]byte(agentID))
	return h[:nonceTagLen]
}

func (n *nonces) mac(body []byte, agentID string) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write(body)
	m.Write([]byte(agentID))
	return m.Sum(nil)[:nonceMACLen]
}

// mint returns a fresh nonce for agentID and when replicas stop
// accepting it (whole seconds): now + TTL.
func (n *nonces) mint(agentID string, now time.Time) ([]byte, time.Time, error) {
	exp := now.Add(n.ttl + n.skew).Unix()
	b := make([]byte, nonceBodyLen, NonceLen)
	b[0] = nonceVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(exp))
	copy(b[9:9+nonceTagLen], agentTag(agentID))
	if _, err := io.ReadFull(n.random, b[9+nonceTagLen:]); err != nil {
		return nil, time.Time{}, fmt.Errorf("reading random nonce bytes: %w", err)
	}
	b = append(b, n.mac(b, agentID)...)
	return b, time.Unix(exp, 0).Add(-n.skew).UTC(), nil
}

// check verifies a nonce presented by agentID at now: its form and MAC
// (nonce-invalid), its agent (nonce-wrong-agent) and its expiry
// (nonce-expired, from skew before the encoded expiry on). It returns
// the encoded expiry, until which the store must keep the nonce's
// record, and "" or the problem code.
// A nonce for another agent is recognised by its agent tag; its MAC
// cannot be checked without that agent's ID, and it is refused anyway.
func (n *nonces) check(b []byte, agentID string, now time.Time) (time.Time, string) {
	if len(b) != NonceLen || b[0] != nonceVersion {
		return time.Time{}, api.CodeNonceInvalid
	}
	if subtle.ConstantTimeCompare(b[9:9+nonceTagLen], agentTag(agentID)) != 1 {
		return time.Time{}, api.CodeNonceWrongAgent
	}
	if !hmac.Equal(b[nonceBodyLen:], n.mac(b[:nonceBodyLen], agentID)) {
		return time.Time{}, api.CodeNonceInvalid
	}
	exp := binary.BigEndian.Uint64(b[1:9])
	if exp > 1<<62 {
		return time.Time{}, api.CodeNonceInvalid
	}
	expires := time.Unix(int64(exp), 0).UTC()
	if !now.Before(expires.Add(-n.skew)) {
		return expires, api.CodeNonceExpired
	}
	return expires, ""
}
