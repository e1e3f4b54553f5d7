package ear

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// PublicJWK encodes a public key (ECDSA, RSA or Ed25519) as a JWK: the
// report key in "cnf", the key in a proof's header. Private keys are
// refused.
func PublicJWK(pub crypto.PublicKey) (json.RawMessage, error) {
	k, err := PublicKeyJWK(pub)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("encoding a JWK: %w", err)
	}
	return b, nil
}

// PublicKeyJWK is pub as a jwx JWK (ECDSA, RSA or Ed25519 public keys
// only).
func PublicKeyJWK(pub crypto.PublicKey) (jwk.Key, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("a %T is not a public key a JWK can hold", pub)
	}
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, fmt.Errorf("making a JWK: %w", err)
	}
	return k, nil
}

// Thumbprint is a public key's RFC 7638 JWK thumbprint (SHA-256,
// base64url): the signing keys' kid, and how a proof's key is compared
// with the report's cnf.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	if t, ok := p256Thumbprint(pub); ok {
		return t, nil
	}
	k, err := PublicKeyJWK(pub)
	if err != nil {
		return "", err
	}
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("JWK thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// privateMembers are the JWK members (RFC 7518 §6) that only a private
// or symmetric key has.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParsePublicJWK decodes a public JWK (ECDSA, RSA or Ed25519); a JWK
// holding a private or symmetric key is refused.
func ParsePublicJWK(b []byte) (crypto.PublicKey, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return nil, err
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("the JWK has the private member %q", m)
		}
	}
	if pub, ok := parseP256JWK(members); ok {
		return pub, nil
	}
	k, err := jwk.ParseKey(b)
	if err != nil {
		return nil, err
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return nil, err
	}
	switch pub := raw.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return pub, nil
	default:
		return nil, fmt.Errorf("a JWK holding a %T, not a public key", raw)
	}
}

// The P-256 fast paths: a proof's key and a report's cnf are P-256 keys
// of exactly kty, crv, x and y, parsed and thumbprinted here without the
// JOSE library's generic machinery (which costs more than the
// signature's check). Anything else takes the general path.

// parseP256JWK is the key of a JWK of exactly the members kty "EC", crv
// "P-256", x and y (32 bytes each, base64url without padding, a point on
// the curve); ok false when it is not that (the caller falls back).
func parseP256JWK(members map[string]json.RawMessage) (*ecdsa.PublicKey, bool) {
	if len(members) != 4 || string(members["kty"]) != `"EC"` || string(members["crv"]) != `"P-256"` {
		return nil, false
	}
	pt := make([]byte, 1, 65)
	pt[0] = 4
	for _, name := range []string{"x", "y"} {
		var s string
		if err := json.Unmarshal(members[name], &s); err != nil || len(s) != 43 {
			return nil, false
		}
		c, err := b64.DecodeString(s)
		if err != nil || len(c) != 32 {
			return nil, false
		}
		pt = append(pt, c...)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		return nil, false
	}
	return pub, true
}

// p256Thumbprint is the RFC 7638 thumbprint of a P-256 public key: the
// SHA-256 of {"crv":"P-256","kty":"EC","x":…,"y":…} (members in
// lexicographic order, no white space, the coordinates full length).
func p256Thumbprint(pub crypto.PublicKey) (string, bool) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return "", false
	}
	pt, err := k.Bytes()
	if err != nil || len(pt) != 65 {
		return "", false
	}
	enc := base64.RawURLEncoding
	b := make([]byte, 0, 128)
	b = append(b, `{"crv":"P-256","kty":"EC","x":"`...)
	b = enc.AppendEncode(b, pt[1:33])
	b = append(b, `","y":"`...)
	b = enc.AppendEncode(b, pt[33:])
	b = append(b, `"}`...)
	h := sha256.Sum256(b)
	return enc.EncodeToString(h[:]), true
}
