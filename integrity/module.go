package integrity

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/kmodsig"
	"github.com/vigil-attest/vigil/reason"
)

// verifyModule checks a Linux kernel module's appended signature with the
// kernel's rules (kernel/module_signing.c, crypto/asymmetric_keys/pkcs7_*):
// the trailer passes mod_check_sig, the PKCS#7 holds id-data with detached
// content, and the signer is found by issuer and serial or subject key
// identifier among the keyring and anchors.
func (e *Engine) verifyModule(ctx context.Context, v *Verdict, f io.ReaderAt, size int64) error {
	r, err := kmodsig.NewReader(f, size, kmodsig.Options{})
	if err != nil {
		return unparsable(v, f, size, err)
	}
	defer r.Close()
	m, merr := r.Parse()
	var sd *cms.SignedData
	var perr error
	algs := []crypto.Hash{}
	if merr == nil {
		if sd, perr = cms.Parse(m.PKCS7); perr == nil {
			for _, si := range sd.Signers {
				if h, err := si.Hash(); err == nil && h.Available() {
					algs = append(algs, h)
				}
			}
		}
	}
	// One pass: the stored file's SHA-256 and the signed content's digests.
	// For an uncompressed module both read the same bytes.
	sums := map[crypto.Hash][]byte{}
	if r.Size() == size && merr == nil {
		// The signed content is a prefix of the file, so one SHA-256 pass
		// serves both: snapshot the state at the end of the content (the
		// content digest) and go on over the signature (the file digest).
		fileHash := sha256.New()
		others := []crypto.Hash{}
		for _, h := range algs {
			if h != crypto.SHA256 {
				others = append(others, h)
			}
		}
		hs, mh := newHashes(others...)
		both := append(multiHash{fileHash}, mh...)
		if _, err := io.Copy(both, io.NewSectionReader(f, 0, m.ContentLength)); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		sums[crypto.SHA256] = fileHash.Sum(nil) // Sum does not change the state
		if _, err := io.Copy(fileHash, io.NewSectionReader(f, m.ContentLength, size-m.ContentLength)); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		v.SHA256 = hex.EncodeToString(fileHash.Sum(nil))
		for h, x := range hs {
			sums[h] = x.Sum(nil)
		}
	} else {
		sum, err := hashFile(f, size)
		if err != nil {
			return err
		}
		v.SHA256 = sum
		if merr == nil {
			// SHA-256 of the content always: deny.signed_content_sha256.
			hs, mh := newHashes(append(slices.DeleteFunc(slices.Clone(algs), func(h crypto.Hash) bool { return h == crypto.SHA256 }), crypto.SHA256)...)
			if _, err := io.Copy(mh, m.Content(r)); err != nil {
				return fmt.Errorf("read decompressed module: %w", err)
			}
			for h, x := range hs {
				sums[h] = x.Sum(nil)
			}
		}
	}
	if merr != nil {
		if reason.Of(merr, "") == reason.Unsigned {
			return nil // no signatures: decide() says unsigned
		}
		return reason.Wrap(reason.Of(merr, reason.Malformed), merr)
	}
	// The kernel's blacklist "bin:" hash: the signed content, whatever the
	// compression or the PKCS#7 around it (certs/blacklist.c).
	if rule, denied := e.policy.DenySignedContent(sums[crypto.SHA256]); denied {
		v.DenyRules = append(v.DenyRules, rule)
		v.Reasons = appendCode(v.Reasons, reason.BlocklistedHash)
	}
	if perr != nil {
		v.Signatures = append(v.Signatures, Signature{Reasons: []reason.Code{reason.Of(perr, reason.Malformed)}, Messages: []string{perr.Error()}})
		return nil
	}
	if !sd.ContentType.Equal(cms.OIDData) {
		v.Signatures = append(v.Signatures, Signature{Reasons: []reason.Code{reason.Malformed}, Messages: []string{fmt.Sprintf("module signature content type %v is not id-data", sd.ContentType)}})
		return nil
	}
	if sd.Content != nil {
		v.Signatures = append(v.Signatures, Signature{Reasons: []reason.Code{reason.Malformed}, Messages: []string{"module signature is not detached"}})
		return nil
	}
	// pkcs7_verify (VERIFYING_MODULE_SIGNATURE): "Invalid module sig (has
	// authattrs)" -EKEYREJECTED, for the whole message.
	for i, si := range sd.Signers {
		if si.RawSignedAttrs != nil || si.SignedAttrs != nil {
			return reason.New(reason.Malformed, "kmodsig: signer %d: %w", i, kmodsig.ErrSignedAttributes)
		}
	}
	for i, si := range sd.Signers {
		if err := ctx.Err(); err != nil {
			return err
		}
		sig := Signature{Index: i}
		e.checkSigner(signerCheck{
			sd: sd, si: si, contentType: cms.OIDData, contentDigest: lookupDigest(sums),
		}, &sig)
		v.Signatures = append(v.Signatures, sig)
	}
	// pkcs7_verify verifies every signer and fails the message on the
	// first that does not verify; verify_pkcs7_message_sig refuses it when
	// any signer is on the revocation list. Only a signer whose key is not
	// found (-ENOKEY in pkcs7_validate_trust) is passed over. So a failing
	// signer invalidates the signatures that did verify.
	for i, s := range v.Signatures {
		for _, c := range s.Reasons {
			if !kernelFatal(c) {
				continue
			}
			for j := range v.Signatures {
				if j != i && len(v.Signatures[j].Reasons) == 0 {
					v.Signatures[j].Reasons = []reason.Code{c}
					v.Signatures[j].Messages = append(v.Signatures[j].Messages,
						fmt.Sprintf("signer %d fails (%s): %v, the kernel requires every signer to verify", i, c, kmodsig.ErrSignerFailed))
				}
			}
			break
		}
	}
	return nil
}

// kernelFatal reports whether a signer failing with c makes the kernel
// refuse the whole module (pkcs7_verify, verify_pkcs7_message_sig).
func kernelFatal(c reason.Code) bool {
	switch c {
	case reason.BadSignature, reason.DigestMismatch, reason.Malformed, reason.Unsupported, reason.Revoked:
		return true
	}
	return false
}
