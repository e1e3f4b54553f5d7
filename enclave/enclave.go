// Package enclave defines the isolated signers the agent's evidence is
// rooted in: a component whose private key never leaves its boundary,
// together with the proofs that it is so. A TPM 2.0 (package tpm) is the
// hardware-rooted enclave; a software key (package enclave/soft) is the
// honest low-assurance fallback, labelled as such in every result.
package enclave

import (
	"context"
	"crypto"
)

// Kind names an enclave type in evidence and results.
type Kind string

const (
	// TPM is a TPM 2.0: report key certified by a TPM attestation key,
	// quotes over PCRs.
	TPM Kind = "tpm"
	// Software is a key held by the agent process. Evidence from it can
	// never reach level 2 or above.
	Software Kind = "software"
)

// Enclave signs runtime reports with a key that does not leave it.
type Enclave interface {
	Kind() Kind
	// ReportPublic is the report key's public key.
	ReportPublic() crypto.PublicKey
	// SignReport signs a SHA-256 digest with the report key: an ASN.1
	// ECDSA signature for EC keys, RSASSA-PKCS1-v1_5 for RSA keys.
	SignReport(ctx context.Context, digest []byte) ([]byte, error)
	// Close releases the enclave (flushes transient TPM objects).
	Close() error
}

// Quote is what a TPM emitted for TPM2_Quote, exactly as emitted.
type Quote struct {
	// Attest is the TPMS_ATTEST structure (the TPM2B_ATTEST's contents).
	Attest []byte
	// Signature is the TPMT_SIGNATURE.
	Signature []byte
	// PCRs are the values read for the selection: bank name ("sha256")
	// → PCR index → value.
	PCRs map[string]map[int][]byte
}

// Certification is TPM2_Certify of the report key by the AK.
type Certification struct {
	Attest    []byte // TPMS_ATTEST
	Signature []byte // TPMT_SIGNATURE
}

// Attester is the capability of a hardware enclave: an attestation key
// (AK) that quotes PCRs and certifies the report key, and an endorsement
// key (EK) that proves the AK lives in a genuine TPM.
type Attester interface {
	Enclave
	// AKPublic is the AK's TPM2B_PUBLIC contents (TPMT_PUBLIC bytes) and
	// its public key.
	AKPublic() ([]byte, crypto.PublicKey)
	// ReportKeyPublic is the report key's TPMT_PUBLIC bytes.
	ReportKeyPublic() []byte
	// EK returns the endorsement key's TPMT_PUBLIC bytes, its public key,
	// and its certificate (DER) when the TPM holds one in NV.
	EK(ctx context.Context) (tpmPublic []byte, pub crypto.PublicKey, certDER []byte, err error)
	// Certify certifies the report key with the AK, binding qualifying.
	Certify(ctx context.Context, qualifying []byte) (*Certification, error)
	// Quote quotes the PCRs of banks (bank name → indexes) with the AK,
	// binding qualifying.
	Quote(ctx context.Context, banks map[string][]int, qualifying []byte) (*Quote, error)
}
