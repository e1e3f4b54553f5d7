// Package appraise judges verified evidence: evidence.Verify checks the
// signatures, bindings and logs; a Rego policy (OPA v1, prepared once per
// policy version) turns the verified claims into a security level (0–4),
// an AR4SI trust vector and the list of failing claims. The service, the
// `vigil policy test` command and the benchmarks call the same code.
package appraise

import (
	"crypto"

	"github.com/vigil-attest/vigil/evidence"
)

// Levels of the brief (the default policy implements them; a policy may
// redefine what each requires).
const (
	LevelUntrusted      = 0
	LevelSoftware       = 1
	LevelHardware       = 2
	LevelMeasured       = 3
	LevelHardened       = 4
	MaxLevel            = LevelHardened
	statusAffirming     = "affirming"
	statusWarning       = "warning"
	statusContraindicat = "contraindicated"
)

// Failure is one failing claim: why the level is not higher.
type Failure struct {
	// Claim is the claim's path in the policy input, e.g.
	// "report.modules.hidden" or "evidence.signature".
	Claim string `json:"claim"`
	// Reason is a stable, machine-readable code, e.g. "hidden-module" or
	// an evidence.Reason such as "nonce-mismatch".
	Reason string `json:"reason"`
	// Level is the level this failure caps the result below (the result
	// is at most Level-1); 1 for contraindications.
	Level int `json:"level"`
	// Detail says what, for people (module name, PCR, …).
	Detail string `json:"detail,omitempty"`
	// Provenance says who vouches for the failing claim: "attested"
	// (the verifier derived it from TPM-signed data), "corroborated" (a
	// host claim an attested fact confirms) or "asserted" (the host's
	// word). Empty when the policy does not say.
	Provenance string `json:"provenance,omitempty"`
}

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
	// Verification is evidence.Verify's result.
	Verification *evidence.Result `json:"verification"`
	// ReportKey is the verified report key (the session report's cnf);
	// nil when the evidence is invalid.
	ReportKey crypto.PublicKey `json:"-"`
	// State is the agent's new replay state; nil means keep the old one
	// (invalid evidence never changes it).
	State []byte `json:"-"`
}
