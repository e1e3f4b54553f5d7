// Package token issues and verifies Vigil's session reports: EAR
// (draft-ietf-rats-ear) attestation results built with
// github.com/veraison/ear, signed ES256 as a JWT whose x5c header chains
// to the service CA. Relying parties verify a token offline with Verify
// and the CA certificate alone; the JWKS serves those who prefer keys.
package token

import (
	"crypto"
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
	// IssuedAt and Expiry are "iat" and "exp".
	IssuedAt time.Time
	Expiry   time.Time
	// Issuer is "iss" (the service's URL or name).
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
