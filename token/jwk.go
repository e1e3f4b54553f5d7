package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// PublicJWK encodes a public key (ECDSA, RSA or Ed25519) as a JWK: the
// report key in "cnf". Private keys are refused.
func PublicJWK(pub crypto.PublicKey) (json.RawMessage, error) {
	k, err := publicKeyJWK(pub)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("encoding a JWK: %w", err)
	}
	return b, nil
}

func publicKeyJWK(pub crypto.PublicKey) (jwk.Key, error) {
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
// base64url): the signing keys' kid.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	k, err := publicKeyJWK(pub)
	if err != nil {
		return "", err
	}
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("JWK thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// signingJWK is a signing key's JWKS entry.
func signingJWK(k *signingKey) (json.RawMessage, error) {
	j, err := publicKeyJWK(&k.key.PublicKey)
	if err != nil {
		return nil, err
	}
	for name, v := range map[string]any{
		jwk.KeyIDKey:         k.kid,
		jwk.AlgorithmKey:     jwa.ES256,
		jwk.KeyUsageKey:      jwk.ForSignature,
		jwk.X509CertChainKey: k.x5c,
	} {
		if err := j.Set(name, v); err != nil {
			return nil, fmt.Errorf("JWK %s: %w", name, err)
		}
	}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("encoding a JWK: %w", err)
	}
	return b, nil
}

// parsePublicJWK decodes a public JWK (ECDSA, RSA or Ed25519); a JWK
// holding a private key is refused.
func parsePublicJWK(b []byte) (crypto.PublicKey, error) {
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
