package evidence

import "sort"

// Reason is a stable, machine-readable code that says why evidence was
// rejected. The codes are part of Vigil's public contract (JSON output,
// attestation results): never rename one, add new ones instead.
type Reason string

// The reason codes of Verify. Each failed check adds exactly one code;
// independent checks all run, so one tampered field may give several
// codes (a changed report breaks the report signature and both bindings).
const (
	// Malformed: the evidence does not decode, a required field is
	// missing, or a field does not parse (nonce hex, a PEM key, a TPM
	// structure that is not exactly one TPMS_ATTEST, TPMT_SIGNATURE or
	// TPMT_PUBLIC, a key that is not ECDSA or RSA, a PCR value that is
	// not hex of the bank's size).
	Malformed Reason = "malformed"
	// UnsupportedVersion: the version is not Version.
	UnsupportedVersion Reason = "unsupported-version"
	// NonceMismatch: the evidence's nonce is not the verifier's (a replay,
	// or evidence made for another challenge), or the verifier gave no
	// nonce of at least 8 bytes.
	NonceMismatch Reason = "nonce-mismatch"
	// BadReportSignature: the report signature does not verify with the
	// report key over Binding(nonce, report).
	BadReportSignature Reason = "bad-report-signature"
	// EnclaveMismatch: the enclave is not "tpm" or "software", or the
	// evidence's contents do not fit it: software evidence carrying a
	// quote, an AK, an EK or a certification (a software key claiming to
	// be a TPM), TPM evidence lacking one of them, or an enclave other
	// than Options.Enclave requires.
	EnclaveMismatch Reason = "enclave-mismatch"
	// AKUnknown: TPM evidence, and the verifier gave no enrolled AK.
	AKUnknown Reason = "ak-unknown"
	// AKMismatch: the AK's TPMT_PUBLIC and PEM are not the same key, or
	// not the enrolled AK (Options.AK, Options.AKPublic).
	AKMismatch Reason = "ak-mismatch"
	// AKAttributes: the AK is not a restricted, TPM-generated,
	// non-duplicable signing key (restricted, sign, fixedTPM, fixedParent,
	// sensitiveDataOrigin set; decrypt clear) of at least RSA-2048 or a
	// NIST P-256/384/521 curve.
	AKAttributes Reason = "ak-attributes"
	// BadMagic: a TPMS_ATTEST (quote or certification) does not start
	// with TPM_GENERATED_VALUE: the TPM did not produce it.
	BadMagic Reason = "bad-magic"
	// BadAttestType: a TPMS_ATTEST is not of the expected type
	// (TPM_ST_ATTEST_QUOTE for the quote, TPM_ST_ATTEST_CERTIFY for the
	// certification).
	BadAttestType Reason = "bad-attest-type"
	// QuoteBindingMismatch: the quote's extraData is not
	// Binding(nonce, report).
	QuoteBindingMismatch Reason = "quote-binding-mismatch"
	// BadQuoteSignature: the quote's signature does not verify with the AK
	// (another AK signed it, it was altered, or it uses SHA-1 or a scheme
	// that does not fit the AK).
	BadQuoteSignature Reason = "bad-quote-signature"
	// PCRSelectionMismatch: the quote's PCR selection is not the
	// evidence's pcr_selection, or pcrs does not hold exactly the selected
	// PCRs.
	PCRSelectionMismatch Reason = "pcr-selection-mismatch"
	// PCRSelectionInsufficient: the quote does not select a SHA-256 PCR
	// the verifier requires (Options.Quote): the boot PCRs 0–9, PCR 10
	// with IMA, PCR 14 when the event log holds shim's MOK measurements.
	// An agent choosing its own selection could otherwise leave out the
	// PCRs that would show what it booted.
	PCRSelectionInsufficient Reason = "pcr-selection-insufficient"
	// PCRDigestMismatch: the quote's PCR digest is not the hash of the
	// given PCR values in selection order: a PCR value was changed.
	PCRDigestMismatch Reason = "pcr-digest-mismatch"
	// CertifyNameMismatch: the certification certifies another object
	// than report_key.tpm_public (its Name differs), or that Name uses
	// SHA-1.
	CertifyNameMismatch Reason = "certify-name-mismatch"
	// CertifyBindingMismatch: the certification's extraData is not
	// Binding(nonce, report).
	CertifyBindingMismatch Reason = "certify-binding-mismatch"
	// BadCertifySignature: the certification's signature does not verify
	// with the AK.
	BadCertifySignature Reason = "bad-certify-signature"
	// ReportKeyMismatch: report_key.tpm_public and report_key.public are
	// not the same key.
	ReportKeyMismatch Reason = "report-key-mismatch"
	// ReportKeyAttributes: the report key is weaker than RSA-2048 or not
	// on a NIST P-256/384/521 curve, or (TPM) the certified report key is
	// not an unrestricted, TPM-generated, non-duplicable signing key
	// (fixedTPM, fixedParent, sensitiveDataOrigin, sign set; restricted,
	// decrypt clear).
	ReportKeyAttributes Reason = "report-key-attributes"
	// EventLogMalformed: the firmware event log does not parse.
	EventLogMalformed Reason = "event-log-malformed"
	// EventLogMismatch: the event log does not replay to the quoted PCRs:
	// a quoted PCR the log extends, or a quoted boot PCR (0–9) it leaves
	// at its initial value, differs (a truncated, extended, reordered or
	// altered log).
	EventLogMismatch Reason = "event-log-mismatch"
	// IMAMalformed: an entry of the IMA list does not parse before the
	// replay reached the quoted PCR 10.
	IMAMalformed Reason = "ima-malformed"
	// IMAMismatch: no prefix of the IMA list, replayed from the saved
	// state, gives the quoted PCR 10 (entries removed, altered or
	// reordered, or a list of another boot).
	IMAMismatch Reason = "ima-mismatch"
	// IMAOffsetMismatch: ima_log.offset is not where the verifier's saved
	// state ends (0 without a state), or the saved state is not one a
	// replay could have produced.
	IMAOffsetMismatch Reason = "ima-offset-mismatch"
	// ReportMalformed: the report is not canonical JSON (RFC 8785), or not
	// a runtime report of report.Version with only known claims.
	ReportMalformed Reason = "report-malformed"
	// Canceled: the context ended before verification finished.
	Canceled Reason = "canceled"
)

// AllReasons returns every reason code, sorted.
func AllReasons() []Reason {
	r := []Reason{Malformed, UnsupportedVersion, NonceMismatch, BadReportSignature, EnclaveMismatch,
		AKUnknown, AKMismatch, AKAttributes, BadMagic, BadAttestType, QuoteBindingMismatch,
		BadQuoteSignature, PCRSelectionMismatch, PCRSelectionInsufficient, PCRDigestMismatch, CertifyNameMismatch,
		CertifyBindingMismatch, BadCertifySignature, ReportKeyMismatch, ReportKeyAttributes,
		EventLogMalformed, EventLogMismatch, IMAMalformed, IMAMismatch, IMAOffsetMismatch,
		ReportMalformed, Canceled}
	sort.Slice(r, func(i, j int) bool { return r[i] < r[j] })
	return r
}
