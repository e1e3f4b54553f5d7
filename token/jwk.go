package token

import (
	"encoding/json"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/vigil-attest/vigil/ear"
)

// signingJWK is a signing key's JWKS entry.
func signingJWK(k *signingKey) (json.RawMessage, error) {
	j, err := ear.PublicKeyJWK(&k.key.PublicKey)
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
