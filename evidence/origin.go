package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
)

// Origin says whether evidence comes from the holder of an agent's
// enrolled key: whether it carries a signature by that key over
// Binding(nonce, report) for the verifier's nonce. It is the service's
// test of who may write an agent's history, and it is deliberately
// weaker than Verify: evidence whose origin holds but that fails Verify
// (a bad quote, a log that does not replay, a malformed report) is the
// agent's own, recorded at level 0; evidence whose origin does not hold
// is an outsider's, and must change nothing of the agent.
//
//   - kind Software: key is the enrolled report key, and the report
//     signature must verify with it.
//   - kind TPM: key is the enrolled AK, and the quote or the report key's
//     certification must be a TPMS_ATTEST the TPM generated (magic, type)
//     whose extraData is the binding, with a signature the AK verifies.
//     A restricted AK signs only what its TPM generated, so this proves
//     the agent's TPM answered this nonce, even when the rest of the
//     evidence fails.
//
// It returns "" and nil when the origin holds, otherwise the reason
// (enclave-mismatch, malformed, bad-report-signature, bad-quote-signature
// and the like) and what failed.
func Origin(ev *Evidence, nonce []byte, kind enclave.Kind, key crypto.PublicKey) (reason Reason, err error) {
	defer func() {
		if p := recover(); p != nil {
			reason, err = Malformed, fmt.Errorf("internal error: %v", p)
		}
	}()
	switch {
	case ev == nil:
		return Malformed, fmt.Errorf("no evidence")
	case len(nonce) < MinNonce:
		return NonceMismatch, fmt.Errorf("the verifier's nonce has %d bytes, fewer than %d", len(nonce), MinNonce)
	case key == nil:
		return AKUnknown, fmt.Errorf("no enrolled key")
	case enclave.Kind(ev.Enclave) != kind:
		return EnclaveMismatch, fmt.Errorf("%q evidence from an agent enrolled with a %q enclave", clipString(ev.Enclave), kind)
	}
	bind := Binding(nonce, ev.Report)
	switch kind {
	case enclave.Software:
		if err := verifyReportSignature(key, bind, ev.ReportSignature); err != nil {
			return BadReportSignature, fmt.Errorf("with the enrolled report key: %w", err)
		}
		return "", nil
	case enclave.TPM:
		var errs []error
		if q := ev.Quote; q != nil {
			r, err := akAttested(key, bind, q.Attest, q.Signature, tpm2.TPMSTAttestQuote)
			if err == nil {
				return "", nil
			}
			reason, errs = r, append(errs, fmt.Errorf("quote: %w", err))
		}
		k := ev.ReportKey
		if len(k.CertifyInfo) > 0 || len(k.CertifySignature) > 0 {
			r, err := akAttested(key, bind, k.CertifyInfo, k.CertifySignature, tpm2.TPMSTAttestCertify)
			if err == nil {
				return "", nil
			}
			if reason == "" {
				reason = r
			}
			errs = append(errs, fmt.Errorf("certification: %w", err))
		}
		if len(errs) == 0 {
			return EnclaveMismatch, fmt.Errorf("TPM evidence with neither a quote nor a certification")
		}
		return reason, fmt.Errorf("nothing the enrolled AK signed is bound to this nonce and report: %v", errs)
	}
	return EnclaveMismatch, fmt.Errorf("enrolled enclave %q is neither %q nor %q", kind, enclave.TPM, enclave.Software)
}

// akAttested checks that attest is a TPMS_ATTEST of type typ that the TPM
// generated, whose extraData is want and whose signature verifies with ak.
func akAttested(ak crypto.PublicKey, want, attest, signature []byte, typ tpm2.TPMST) (Reason, error) {
	att, err := decodeAttest(attest, typ)
	if err != nil {
		return attestReason(err), err
	}
	sig, err := decodeSignature(signature)
	if err != nil {
		return Malformed, err
	}
	if _, err := verifyTPMSignature(ak, sig, attest); err != nil {
		if typ == tpm2.TPMSTAttestCertify {
			return BadCertifySignature, err
		}
		return BadQuoteSignature, err
	}
	if !bytes.Equal(att.extraData, want) {
		if typ == tpm2.TPMSTAttestCertify {
			return CertifyBindingMismatch, fmt.Errorf("extraData is not the expected binding")
		}
		return QuoteBindingMismatch, fmt.Errorf("extraData is not the expected binding")
	}
	return "", nil
}

// KeyProof is an agent's proof that a request comes from the holder of
// its enrolled key, over KeyProofDigest(purpose, agentID, time): a
// software agent signs the digest with its report key (Signature); a TPM
// agent has its AK certify the report key with the digest as qualifying
// data (CertifyInfo, CertifySignature: TPM2_Certify's TPMS_ATTEST and
// TPMT_SIGNATURE).
type KeyProof struct {
	Time             time.Time `json:"time"`
	Signature        []byte    `json:"signature,omitempty"`
	CertifyInfo      []byte    `json:"certify_info,omitempty"`
	CertifySignature []byte    `json:"certify_signature,omitempty"`
}

// KeyProofDigest is what a KeyProof signs: SHA-256(KeyProofMessage).
func KeyProofDigest(purpose, agentID string, t time.Time) []byte {
	d := sha256.Sum256(KeyProofMessage(purpose, agentID, t))
	return d[:]
}

// KeyProofMessage is a key proof's labelled message:
// enclave.LabelKeyProof ‖ len(purpose) ‖ purpose ‖ len(agentID) ‖
// agentID ‖ unix seconds, the lengths (4 bytes) and the time (8 bytes)
// big endian.
func KeyProofMessage(purpose, agentID string, t time.Time) []byte {
	m := append([]byte(nil), enclave.LabelKeyProof...)
	for _, s := range []string{purpose, agentID} {
		m = binary.BigEndian.AppendUint32(m, uint32(len(s)))
		m = append(m, s...)
	}
	return binary.BigEndian.AppendUint64(m, uint64(t.Unix()))
}

// ProveKey makes a KeyProof for purpose and agentID at t with the
// agent's enclave (its AK for a TPM, its report key otherwise).
func ProveKey(ctx context.Context, e enclave.Enclave, purpose, agentID string, t time.Time) (*KeyProof, error) {
	d := KeyProofDigest(purpose, agentID, t)
	p := &KeyProof{Time: time.Unix(t.Unix(), 0).UTC()}
	if a, ok := e.(enclave.Attester); ok {
		c, err := a.Certify(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("key proof: certify: %w", err)
		}
		p.CertifyInfo, p.CertifySignature = c.Attest, c.Signature
		return p, nil
	}
	sig, err := enclave.SignMessage(ctx, e, KeyProofMessage(purpose, agentID, t))
	if err != nil {
		return nil, fmt.Errorf("key proof: sign: %w", err)
	}
	p.Signature = sig
	return p, nil
}

// CheckKeyProof verifies p for purpose and agentID against the agent's
// enrolled key (kind Software: the report key; TPM: the AK). It does not
// judge p.Time: the caller bounds its age.
func CheckKeyProof(p *KeyProof, purpose, agentID string, kind enclave.Kind, key crypto.PublicKey) (reason Reason, err error) {
	defer func() {
		if r := recover(); r != nil {
			reason, err = Malformed, fmt.Errorf("internal error: %v", r)
		}
	}()
	if p == nil {
		return Malformed, fmt.Errorf("no key proof")
	}
	if key == nil {
		return AKUnknown, fmt.Errorf("no enrolled key")
	}
	d := KeyProofDigest(purpose, agentID, p.Time)
	switch kind {
	case enclave.Software:
		if err := verifyReportSignature(key, d, p.Signature); err != nil {
			return BadReportSignature, fmt.Errorf("with the enrolled report key: %w", err)
		}
		return "", nil
	case enclave.TPM:
		return akAttested(key, d, p.CertifyInfo, p.CertifySignature, tpm2.TPMSTAttestCertify)
	}
	return EnclaveMismatch, fmt.Errorf("enrolled enclave %q is neither %q nor %q", kind, enclave.TPM, enclave.Software)
}

func clipString(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
