// Package evidence is the agent's evidence: the canonical runtime report,
// signed by an enclave's report key and, for a TPM, bound to the platform
// by a quote and a certification of the report key by the attestation key
// (AK). Verify checks it offline, with no network: the service and the
// CLI use the same code.
package evidence

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/vigil-attest/vigil/enclave"
)

// Version is the evidence format version.
const Version = "vigil.evidence.v1"

// MediaType is the evidence's media type.
const MediaType = "application/vnd.vigil.evidence.v1+json"

// Evidence is the document the agent sends. Byte fields are base64 in
// JSON; TPM structures travel exactly as the TPM emitted them.
type Evidence struct {
	Version string `json:"version"`
	// Enclave is "tpm" or "software".
	Enclave string `json:"enclave"`
	// Nonce is the verifier's challenge, hex.
	Nonce string `json:"nonce"`
	// Report is the canonical runtime report (report.Report.Canonical).
	Report []byte `json:"report"`
	// ReportSignature is the report key's signature over Binding(nonce,
	// report): ASN.1 ECDSA, or RSASSA-PKCS1-v1_5 with SHA-256.
	ReportSignature []byte    `json:"report_signature"`
	ReportKey       ReportKey `json:"report_key"`
	// Quote, AK and EK are present for a TPM.
	Quote *Quote `json:"quote,omitempty"`
	AK    *AK    `json:"ak,omitempty"`
	EK    *EK    `json:"ek,omitempty"`
	// EKCert is the EK certificate (DER) from the TPM's NV, when enrolling.
	EKCert []byte `json:"ek_cert,omitempty"`
	// EventLog is the TCG firmware event log, whole (offset 0).
	EventLog *Log `json:"event_log,omitempty"`
	// IMALog is the binary IMA list, whole or from Offset.
	IMALog *Log `json:"ima_log,omitempty"`
}

// ReportKey is the key that signs the report.
type ReportKey struct {
	// Public is the public key, PEM (SubjectPublicKeyInfo).
	Public string `json:"public"`
	// TPMPublic is the report key's TPMT_PUBLIC (TPM only): its name is
	// what CertifyInfo certifies.
	TPMPublic []byte `json:"tpm_public,omitempty"`
	// CertifyInfo is TPM2_Certify's TPMS_ATTEST, CertifySignature its
	// TPMT_SIGNATURE by the AK (TPM only).
	CertifyInfo      []byte `json:"certify_info,omitempty"`
	CertifySignature []byte `json:"certify_signature,omitempty"`
}

// Quote is TPM2_Quote's output and the PCR values it covers.
type Quote struct {
	// Attest is the TPMS_ATTEST exactly as the TPM emitted it.
	Attest []byte `json:"attest"`
	// Signature is the TPMT_SIGNATURE.
	Signature []byte `json:"signature"`
	// PCRSelection is bank → PCR indexes, ascending.
	PCRSelection map[string][]int `json:"pcr_selection"`
	// PCRs are bank → PCR index → lowercase hex.
	PCRs map[string]map[string]string `json:"pcrs"`
}

// AK is the attestation key.
type AK struct {
	// Public is the TPMT_PUBLIC bytes (a TPM2B_PUBLIC's contents).
	Public []byte `json:"public"`
	// PEM is the same key as SubjectPublicKeyInfo PEM.
	PEM string `json:"pem"`
}

// EK is the endorsement key, sent when enrolling.
type EK struct {
	Public []byte `json:"public"`
	PEM    string `json:"pem"`
}

// Log is a log, whole or from an offset.
type Log struct {
	// Offset is where Data starts in the log, in bytes.
	Offset int64  `json:"offset"`
	Data   []byte `json:"data"`
}

// Binding is what the quote's and the certification's qualifying data
// commit to: SHA-256(BindingMessage(nonce, report)), the digest the report
// signature signs. It ties the verifier's fresh nonce to exactly this
// report.
func Binding(nonce, report []byte) []byte {
	d := sha256.Sum256(BindingMessage(nonce, report))
	return d[:]
}

// BindingMessage is the labelled message the report key signs in
// evidence: enclave.LabelEvidence ‖ len(nonce) ‖ nonce ‖ SHA-256(report),
// the length 4 bytes big endian (docs/evidence.md, "Domain separation").
func BindingMessage(nonce, report []byte) []byte {
	rd := sha256.Sum256(report)
	m := make([]byte, 0, len(enclave.LabelEvidence)+4+len(nonce)+len(rd))
	m = append(m, enclave.LabelEvidence...)
	m = binary.BigEndian.AppendUint32(m, uint32(len(nonce)))
	m = append(m, nonce...)
	return append(m, rd[:]...)
}
