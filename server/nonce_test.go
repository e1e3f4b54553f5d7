package server

import (
	"bytes"
	"encoding/binary"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
)

var testKey = bytes.Repeat([]byte{0x42}, 32)

func TestNonce(t *testing.T) {
	n, err := newNonces(testKey, 2*time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	b, exp, err := n.mint("agent-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != NonceLen || !exp.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("nonce of %d bytes expiring %v", len(b), exp)
	}
	if b2, _, _ := n.mint("agent-1", now); bytes.Equal(b, b2) {
		t.Fatal("two nonces are equal")
	}
	other, _ := newNonces(bytes.Repeat([]byte{0x43}, 32), 2*time.Minute, 0)
	cases := []struct {
		name  string
		nonce []byte
		agent string
		at    time.Time
		n     *nonces
		want  string
	}{
		{"valid", b, "agent-1", now, n, ""},
		{"valid until the last second", b, "agent-1", exp.Add(-time.Nanosecond), n, ""},
		{"expired at expiry", b, "agent-1", exp, n, api.CodeNonceExpired},
		{"expired later", b, "agent-1", exp.Add(time.Hour), n, api.CodeNonceExpired},
		{"another agent", b, "agent-2", now, n, api.CodeNonceWrongAgent},
		{"another key", b, "agent-1", now, other, api.CodeNonceInvalid},
		{"empty", nil, "agent-1", now, n, api.CodeNonceInvalid},
		{"short", b[:NonceLen-1], "agent-1", now, n, api.CodeNonceInvalid},
		{"long", append(bytes.Clone(b), 0), "agent-1", now, n, api.CodeNonceInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, got := c.n.check(c.nonce, c.agent, c.at); got != c.want {
				t.Fatalf("check = %q, want %q", got, c.want)
			}
		})
	}
	// Every single-bit change is refused; a change in the agent tag as
	// another agent's nonce, anything else as invalid.
	for i := range b {
		for bit := range 8 {
			m := bytes.Clone(b)
			m[i] ^= 1 << bit
			_, got := n.check(m, "agent-1", now)
			want := api.CodeNonceInvalid
			if i >= 9 && i < 9+nonceTagLen {
				want = api.CodeNonceWrongAgent
			}
			if got != want {
				t.Fatalf("byte %d bit %d: %q, want %q", i, bit, got, want)
			}
		}
	}
	// A forged later expiry does not pass the MAC.
	m := bytes.Clone(b)
	binary.BigEndian.PutUint64(m[1:9], uint64(exp.Add(time.Hour).Unix()))
	if _, got := n.check(m, "agent-1", exp.Add(time.Minute)); got != api.CodeNonceInvalid {
		t.Fatalf("extended expiry: %q", got)
	}
	if _, err := newNonces(make([]byte, 16), time.Minute, 0); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}

// FuzzNonceCheck: no input crashes the checker, and none but the minted
// nonces passes it.
func FuzzNonceCheck(f *testing.F) {
	n, _ := newNonces(testKey, 2*time.Minute, 0)
	// Deterministic: fuzz workers rebuild the seeds the coordinator made.
	n.random = mrand.NewChaCha8([32]byte{1})
	now := time.Unix(1_800_000_000, 0)
	var minted [][]byte
	for _, id := range []string{"agent-1", "x", "a.b_c-d"} {
		b, _, _ := n.mint(id, now)
		minted = append(minted, b)
		f.Add(b, id)
	}
	f.Add([]byte{}, "agent-1")
	f.Add(bytes.Repeat([]byte{1}, NonceLen), "agent-1")
	f.Fuzz(func(t *testing.T, b []byte, id string) {
		_, code := n.check(b, id, now)
		if code != "" {
			return
		}
		for _, m := range minted {
			if bytes.Equal(m, b) {
				return
			}
		}
		t.Fatalf("forged nonce %x accepted for %q", b, id)
	})
}
