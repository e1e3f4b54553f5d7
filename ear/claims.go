// Package ear is what a relying party imports to act on Vigil's session
// reports: the claims a report carries, their offline verification against
// the service's report CA (Verify) or its JWKS (VerifyJWKS), the check of a
// proof of possession signed by the attested host's report key
// (VerifyProof), and the stable reason codes of every refusal (Code).
//
// A session report is an EAR (draft-ietf-rats-ear) attestation result
// built with github.com/veraison/ear, signed ES256 as a JWT whose x5c
// header chains to the service's report CA. A proof of possession is an
// RFC 9449 (DPoP)-shaped JWS of type "vigil-pop+jwt" that the host's
// enclave signs for one audience, nonce and request, binding the session
// report by its hash (ath) and the report key ("cnf") by its JWK.
//
// The package links only the standard library, the JOSE library veraison
// uses and veraison/ear: nothing of the service (internal/layers holds it
// so). Issuing is package token's.
package ear

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"time"

	"github.com/vigil-attest/vigil/verdict"
)

// Claims is what a session report says, beyond EAR's own claims.
type Claims struct {
	// AgentID is the attested agent (JWT "sub").
	AgentID string
	// Nonce is the challenge the evidence answered ("eat_nonce",
	// base64url).
	Nonce []byte
	// Level (0–4), Status (EAR tier name), TrustVector (ear JSON claim
	// name → value) and Failures are the appraisal.
	Level       int
	Status      string
	TrustVector map[string]int
	Failures    []verdict.Failure
	// PolicyID, PolicyDigest and ContentVersion name what it was judged
	// under.
	PolicyID       string
	PolicyDigest   string
	ContentVersion string
	// ReportKey is the enclave's report key ("cnf": {"jwk": …}, RFC
	// 7800); nil when the evidence was invalid.
	ReportKey crypto.PublicKey
	// EKSHA256 is the enrolled EK of a TPM agent ("vigil.ek-sha256"):
	// the SHA-256 of its TPMT_PUBLIC exactly as enrolled, 64 lowercase
	// hex digits (the service's ek_hash), so that relying parties can pin
	// hardware. Empty for software agents.
	EKSHA256 string
	// Provenance says who vouches for each claim the level rests on
	// ("vigil.provenance"): claim ("secure_boot", "lockdown", "modules"…)
	// → "attested", "corroborated" or "asserted" (docs/threat-model.md).
	// It explains the trust vector: a level whose claims are asserted is
	// only as honest as the host's kernel.
	Provenance map[string]string
	// Audience is "aud": the relying parties the report was issued for
	// (the agent asked for them); empty for a report issued for none.
	Audience []string
	// IssuedAt and Expiry are "iat" and "exp".
	IssuedAt time.Time
	Expiry   time.Time
	// Issuer is "iss": the service's name, the same on every replica
	// (by default derived from the report CA's key: IssuerOf).
	Issuer string
}

// Claim names Vigil adds to the EAR claims set.
const (
	ClaimLevel          = "vigil.level"
	ClaimFailures       = "vigil.failures"
	ClaimPolicyDigest   = "vigil.policy-digest"
	ClaimContentVersion = "vigil.content-version"
	ClaimEKSHA256       = "vigil.ek-sha256"
	ClaimProvenance     = "vigil.provenance"
	// SubmodName is the EAR submod holding the appraisal.
	SubmodName = "vigil"
)

// ProvenanceTiers are the values of a vigil.provenance entry.
var provenanceTiers = map[string]bool{"attested": true, "corroborated": true, "asserted": true}

// ValidProvenance reports whether v is a vigil.provenance value:
// "attested", "corroborated" or "asserted".
func ValidProvenance(v string) bool { return provenanceTiers[v] }

// IsSHA256Hex reports whether s is a SHA-256 digest in lowercase hex.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// IssuerOf is the default "iss" of a service whose report CA is ca:
// "urn:vigil:ca:" and the base64url SHA-256 of the CA's
// SubjectPublicKeyInfo. Every replica sharing the CA has it, and a
// relying party holding the CA can compute it.
func IssuerOf(ca *x509.Certificate) string {
	h := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	return "urn:vigil:ca:" + base64.RawURLEncoding.EncodeToString(h[:])
}
