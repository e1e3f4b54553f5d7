package enclave

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Domain separation (docs/evidence.md, "Domain separation"): the report
// key signs SHA-256 digests, and a digest says nothing of what was
// hashed. So that no signature of the key can be taken for another kind,
// every message the report key signs is one of two disjoint forms, and
// SignMessage, the one caller of Enclave.SignReport, signs nothing else:
//
//   - a labelled message: it starts with one of the labels below, which
//     end in a NUL byte (evidence.BindingMessage, evidence.KeyProofMessage);
//   - a proof of possession's JWS signing input: base64url "." base64url,
//     whose protected header is a JSON object with typ ProofType. A JWS
//     signing input never holds a NUL byte, so it is never labelled.
//
// Verifiers hold the same line: the evidence verifier recomputes the
// labelled message from what it checks, and the proof verifier (package
// ear) requires typ ProofType.
const (
	// LabelEvidence starts an evidence binding (the report signature's
	// message; the quote's and certification's qualifying data hash it).
	LabelEvidence = "vigil.evidence.v1 binding\x00"
	// LabelKeyProof starts a key proof (an agent authenticating a request
	// with its enrolled key).
	LabelKeyProof = "vigil.key-proof.v1\x00"
	// ProofType is the typ of a proof of possession's JWS header (ear's
	// ProofType; a test holds them equal).
	ProofType = "vigil-pop+jwt"
)

// labels are the reserved labels.
var labels = []string{LabelEvidence, LabelKeyProof}

// maxProofInput bounds a proof's signing input.
const maxProofInput = 16 << 10

// ErrNotSignable is SignMessage's refusal of a message in neither form.
var ErrNotSignable = errors.New("the report key signs only labelled messages and vigil-pop+jwt signing inputs")

// SignMessage signs SHA-256(message) with e's report key, after checking
// that message is a labelled message or a proof's JWS signing input (see
// above); anything else is ErrNotSignable.
func SignMessage(ctx context.Context, e Enclave, message []byte) ([]byte, error) {
	if err := CheckSignable(message); err != nil {
		return nil, err
	}
	d := sha256.Sum256(message)
	return e.SignReport(ctx, d[:])
}

// CheckSignable reports whether the report key may sign message.
func CheckSignable(message []byte) error {
	for _, l := range labels {
		if bytes.HasPrefix(message, []byte(l)) {
			return nil
		}
	}
	if bytes.IndexByte(message, 0) >= 0 {
		return fmt.Errorf("%w: a NUL-labelled message under no reserved label", ErrNotSignable)
	}
	if len(message) > maxProofInput {
		return fmt.Errorf("%w: %d bytes", ErrNotSignable, len(message))
	}
	h, p, ok := strings.Cut(string(message), ".")
	if !ok || strings.Contains(p, ".") {
		return fmt.Errorf("%w: not a JWS signing input", ErrNotSignable)
	}
	b64 := base64.RawURLEncoding.Strict()
	hb, err := b64.DecodeString(h)
	if err != nil {
		return fmt.Errorf("%w: header: %v", ErrNotSignable, err)
	}
	if _, err := b64.DecodeString(p); err != nil {
		return fmt.Errorf("%w: payload: %v", ErrNotSignable, err)
	}
	var hdr struct {
		Typ *string `json:"typ"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Typ == nil || *hdr.Typ != ProofType {
		return fmt.Errorf("%w: the JWS header's typ is not %q", ErrNotSignable, ProofType)
	}
	return nil
}
