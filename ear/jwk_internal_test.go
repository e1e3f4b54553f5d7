package ear

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// TestP256FastPaths: the P-256 JWK parser and thumbprint that proofs
// take agree with the JOSE library's general path on random keys; a JWK
// with any other member, a short coordinate or a point off the curve
// takes the general path (ParsePublicJWK's answer is the library's).
func TestP256FastPaths(t *testing.T) {
	for i := 0; i < 64; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jk, err := PublicKeyJWK(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		want, err := jk.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := p256Thumbprint(&k.PublicKey)
		if !ok || got != base64.RawURLEncoding.EncodeToString(want) {
			t.Fatalf("key %d: thumbprint %q (ok %v), the library's %q", i, got, ok, base64.RawURLEncoding.EncodeToString(want))
		}
		j, err := PublicJWK(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(j, &members); err != nil {
			t.Fatal(err)
		}
		pub, ok := parseP256JWK(members)
		if !ok || !pub.Equal(&k.PublicKey) {
			t.Fatalf("key %d: the fast parser of %s: ok %v", i, j, ok)
		}
		members["kid"] = json.RawMessage(`"k1"`)
		if _, ok := parseP256JWK(members); ok {
			t.Fatalf("a JWK with a kid took the fast path")
		}
		b, _ := json.Marshal(members)
		if gen, err := ParsePublicJWK(b); err != nil || !gen.(*ecdsa.PublicKey).Equal(&k.PublicKey) {
			t.Fatalf("the general path of %s: %v", b, err)
		}
	}
	for name, members := range map[string]map[string]json.RawMessage{
		"short x":    {"kty": json.RawMessage(`"EC"`), "crv": json.RawMessage(`"P-256"`), "x": json.RawMessage(`"AAAA"`), "y": json.RawMessage(`"AAAA"`)},
		"off curve":  {"kty": json.RawMessage(`"EC"`), "crv": json.RawMessage(`"P-256"`), "x": json.RawMessage(`"` + zeros(32) + `"`), "y": json.RawMessage(`"` + zeros(32) + `"`)},
		"P-384":      {"kty": json.RawMessage(`"EC"`), "crv": json.RawMessage(`"P-384"`), "x": json.RawMessage(`"` + zeros(48) + `"`), "y": json.RawMessage(`"` + zeros(48) + `"`)},
		"padded b64": {"kty": json.RawMessage(`"EC"`), "crv": json.RawMessage(`"P-256"`), "x": json.RawMessage(`"` + zeros(32) + `="`), "y": json.RawMessage(`"` + zeros(32) + `"`)},
	} {
		if _, ok := parseP256JWK(members); ok {
			t.Errorf("%s: took the fast path", name)
		}
	}
	if _, ok := p256Thumbprint(&ecdsa.PublicKey{}); ok {
		t.Error("a key without a curve took the fast path")
	}
}

func zeros(n int) string { return base64.RawURLEncoding.EncodeToString(make([]byte, n)) }
