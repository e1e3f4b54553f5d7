// Package appraise judges verified evidence: evidence.Verify checks the
// signatures, bindings and logs; a Rego policy (OPA v1, prepared once per
// policy version) turns the verified claims into a security level (0–4),
// an AR4SI trust vector and the list of failing claims. The service, the
// `vigil policy test` command and the benchmarks call the same code.
package appraise

import (
	"crypto"

	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/verdict"
)

// Levels of the brief (the default policy implements them; a policy may
// redefine what each requires). verdict.Level names them; these are its
// values as the ints Outcome and Failure carry.
const (
	LevelUntrusted = int(verdict.Untrusted)
	LevelSoftware  = int(verdict.Software)
	LevelHardware  = int(verdict.Hardware)
	LevelMeasured  = int(verdict.Measured)
	LevelHardened  = int(verdict.Hardened)
	MaxLevel       = int(verdict.MaxLevel)
)

// Failure is one failing claim: why the level is not higher (verdict.Failure).
type Failure = verdict.Failure

// Agent is what the service knows about the agent whose evidence is
// appraised: its enrolled keys.
type Agent struct {
	ID string
	// Enclave is the enrolled enclave kind ("tpm" or "software").
	Enclave string
	// AK and AKPublic are the enrolled attestation key (TPM).
	AK       crypto.PublicKey
	AKPublic []byte
	// ReportKey is the enrolled report key (software agents).
	ReportKey crypto.PublicKey
}

// Request is one appraisal.
type Request struct {
	Agent Agent
	// Nonce is the challenge the service issued (already checked for
	// MAC, expiry, agent and single use).
	Nonce    []byte
	Evidence *evidence.Evidence
	// State is the agent's replay state from the last valid round (nil
	// the first time).
	State []byte
}

// Outcome is the appraisal's result.
type Outcome struct {
	Level int `json:"level"`
	// Status is the EAR status tier: "affirming" (level ≥ 2),
	// "warning" (level 1), "contraindicated" (level 0).
	Status string `json:"status"`
	// TrustVector is the AR4SI trust vector: claim name (ear JSON names,
	// e.g. "instance-identity") → value (-128…127).
	TrustVector map[string]int `json:"trust_vector"`
	// Failures are every failing claim, sorted by claim then reason.
	Failures []Failure `json:"failures"`
	// Provenance says, for each claim the levels rest on ("secure_boot",
	// "lockdown", "modules"…), who vouches for it: "attested",
	// "corroborated" or "asserted" (docs/threat-model.md).
	Provenance map[string]string `json:"provenance"`
	// PolicyID and PolicyDigest name the policy; ContentVersion the
	// content (policy set) version.
	PolicyID       string `json:"policy_id"`
	PolicyDigest   string `json:"policy_digest"`
	ContentVersion string `json:"content_version"`
	// Revocations says which revocations the host enforces by itself and
	// which are pending until it does (input.revocations).
	Revocations *Revocations `json:"revocations"`
	// Verification is evidence.Verify's result.
	Verification *evidence.Result `json:"verification"`
	// ReportKey is the verified report key (the session report's cnf);
	// nil when the evidence is invalid.
	ReportKey crypto.PublicKey `json:"-"`
	// State is the agent's new replay state; nil means keep the old one
	// (invalid evidence never changes it).
	State []byte `json:"-"`
}
