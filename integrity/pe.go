package integrity

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/reason"
)

// maxNesting bounds nested Authenticode signatures (signatures inside
// signatures). Real files nest one level.
const maxNesting = 4

type peSig struct {
	entry  int
	nested bool
	sd     *cms.SignedData
	err    error
}

// collectPESignatures parses every certificate-table entry and, depth first,
// every nested signature.
func collectPESignatures(certs []authenticode.WinCertificate) []peSig {
	var out []peSig
	var walk func(sd *cms.SignedData, entry, depth int)
	walk = func(sd *cms.SignedData, entry, depth int) {
		for _, si := range sd.Signers {
			nested, err := si.Nested()
			for _, n := range nested {
				if depth >= maxNesting {
					out = append(out, peSig{entry: entry, nested: true, err: reason.New(reason.Malformed, "signatures nested deeper than %d", maxNesting)})
					return
				}
				out = append(out, peSig{entry: entry, nested: true, sd: n})
				walk(n, entry, depth+1)
			}
			if err != nil {
				out = append(out, peSig{entry: entry, nested: true, err: err})
			}
		}
	}
	for i, c := range certs {
		if c.Type != authenticode.WinCertTypePKCSSigned {
			out = append(out, peSig{entry: i, err: reason.New(reason.Unsupported, "certificate table entry %d has type %#x, not PKCS#7", i, c.Type)})
			continue
		}
		sd, err := cms.Parse(c.Data)
		out = append(out, peSig{entry: i, sd: sd, err: err})
		if err == nil {
			walk(sd, i, 1)
		}
	}
	return out
}

func (e *Engine) verifyPE(ctx context.Context, v *Verdict, f io.ReaderAt, size int64) error {
	pf, err := authenticode.Parse(f, size)
	if err != nil {
		return unparsable(v, f, size, err)
	}
	certs, certErr := pf.Certificates()
	sigs := collectPESignatures(certs)

	// One read of the file computes every hash needed: the file's SHA-256,
	// the image hash in SHA-1 and SHA-256 for block lists and output, and
	// whatever the signatures use.
	algs := []crypto.Hash{crypto.SHA1, crypto.SHA256}
	idatas := make([]*authenticode.IndirectData, len(sigs))
	idErrs := make([]error, len(sigs))
	for i, s := range sigs {
		if s.err != nil {
			continue
		}
		if !s.sd.ContentType.Equal(authenticode.OIDSpcIndirectData) {
			idErrs[i] = reason.New(reason.Malformed, "signed content type %v is not SpcIndirectDataContent", s.sd.ContentType)
			continue
		}
		idatas[i], idErrs[i] = authenticode.ParseIndirectData(s.sd.ContentTLV)
		if idErrs[i] == nil && idatas[i].DigestAlgorithm.Available() {
			algs = append(algs, idatas[i].DigestAlgorithm)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	hashes, fileSums, err := pf.Hashes(algs, []crypto.Hash{crypto.SHA256})
	if err != nil {
		return reason.Wrap(reason.Of(err, reason.Malformed), err)
	}
	v.SHA256 = hex.EncodeToString(fileSums[crypto.SHA256])
	v.Authentihash = &Authentihash{SHA1: hex.EncodeToString(hashes[crypto.SHA1]), SHA256: hex.EncodeToString(hashes[crypto.SHA256])}

	for i, s := range sigs {
		sig := Signature{Index: i, Nested: s.nested, Entry: s.entry}
		switch {
		case s.err != nil:
			sig.fail(reason.Of(s.err, reason.Malformed), s.err)
		case idErrs[i] != nil:
			sig.fail(reason.Of(idErrs[i], reason.Malformed), idErrs[i])
		case len(s.sd.Signers) != 1:
			sig.fail(reason.Malformed, fmt.Errorf("authenticode signature has %d signers, want exactly 1", len(s.sd.Signers)))
		default:
			e.checkPESignature(pf, f, s.sd, idatas[i], hashes, &sig)
		}
		v.Signatures = append(v.Signatures, sig)
	}
	if certErr != nil {
		return reason.Wrap(reason.Of(certErr, reason.Malformed), certErr)
	}
	return nil
}

func (e *Engine) checkPESignature(pf *authenticode.File, r io.ReaderAt, sd *cms.SignedData, id *authenticode.IndirectData, hashes map[crypto.Hash][]byte, sig *Signature) {
	sig.DigestAlgorithm = cms.HashName(id.DigestAlgorithm)
	sig.Digest = hex.EncodeToString(id.Digest)
	computed, ok := hashes[id.DigestAlgorithm]
	switch {
	case !ok:
		sig.fail(reason.Unsupported, fmt.Errorf("image hash algorithm %v unsupported", id.DigestAlgorithm))
	case !bytes.Equal(computed, id.Digest):
		sig.fail(reason.DigestMismatch, fmt.Errorf("signed image hash %x differs from the file's %x", id.Digest, computed))
	}
	if cms.Strength(id.DigestAlgorithm) < cms.Strength(e.policy.MinimumHash()) {
		sig.fail(reason.WeakAlgorithm, fmt.Errorf("image hash %s is below the policy minimum %s", cms.HashName(id.DigestAlgorithm), cms.HashName(e.policy.MinimumHash())))
	}
	if id.PageHashes != nil {
		sig.PageHashes = true
		if err := pf.VerifyPageHashes(id.PageHashes); err != nil {
			sig.fail(reason.Of(err, reason.DigestMismatch), err)
		}
	}
	e.checkSigner(signerCheck{
		sd:          sd,
		si:          sd.Signers[0],
		contentType: authenticode.OIDSpcIndirectData,
		contentDigest: func(h crypto.Hash) ([]byte, error) {
			return cms.Digest(h, sd.Content), nil
		},
	}, sig)
}
