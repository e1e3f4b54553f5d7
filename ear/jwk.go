package ear

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
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
