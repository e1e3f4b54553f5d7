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
	"github.com/vigil-attest/vigil/sbat"
	"github.com/vigil-attest/vigil/versioninfo"
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
		if c.Type != authenticode.WinCertTypePKCSSigned || c.Revision != authenticode.WinCertRevision2 {
			out = append(out, peSig{entry: i, err: reason.New(reason.Unsupported, "certificate table entry %d has revision %#x type %#x, not a revision 2 PKCS#7 SignedData", i, c.Revision, c.Type)})
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
	if v.Mode == "" {
		// Headers that do not parse name no subsystem: the file is
		// judged (malformed) under windows, the general PE rules.
		v.Mode = ModeWindows
	}
	pf, err := authenticode.Parse(f, size)
	if err != nil {
		return unparsable(v, f, size, err)
	}
	switch {
	case e.mode == "" && pf.EFI():
		v.Mode = ModeUEFI
	case e.mode == ModeUEFI && !pf.EFI():
		// EDK2's loader refuses an image whose subsystem is not EFI
		// (MdeModulePkg/Core/Dxe/Image/Image.c, CoreLoadPeImage:
		// IMAGE_ERROR_INVALID_SUBSYSTEM, EFI_UNSUPPORTED).
		return unparsable(v, f, size, reason.New(reason.Unsupported, "uefi mode: PE subsystem %d is not an EFI subsystem (10 to 13); the firmware does not load it", pf.Subsystem))
	}
	certs, certErr := pf.Certificates()
	sigs := collectPESignatures(certs)
	if err := e.checkSBAT(v, pf, f); err != nil {
		return err
	}

	// One read of the file computes the hashes the verdict needs, and no
	// others: the file's SHA-256 (output, deny.sha256), the image hash in
	// SHA-256 (output, deny.authentihash_sha256, and what UEFI dbx entries
	// and the boot-file report match), and each algorithm a signature names.
	// SHA-1 only when a signature uses it, the policy denies by
	// authentihash_sha1, or the caller asked for detail (vigil inspect):
	// hashing it for every file halved throughput.
	algs := []crypto.Hash{crypto.SHA256}
	if e.detail || len(e.policy.Deny.AuthentihashSHA1) > 0 {
		algs = append(algs, crypto.SHA1)
	}
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
	v.Authentihash = &Authentihash{SHA256: hex.EncodeToString(hashes[crypto.SHA256])}
	if h, ok := hashes[crypto.SHA1]; ok {
		v.Authentihash.SHA1 = hex.EncodeToString(h)
	}

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
			e.checkPESignature(pf, f, s.sd, idatas[i], hashes, v.Mode, &sig)
		}
		v.Signatures = append(v.Signatures, sig)
	}
	if err := e.checkSignerFiles(v, pf); err != nil {
		return err
	}
	if certErr != nil {
		return reason.Wrap(reason.Of(certErr, reason.Malformed), certErr)
	}
	return checkCertTable(sigs, idErrs, v.Signatures, len(certs))
}

// checkCertTable denies a file whose certificate table holds anything but
// Authenticode signatures of this image.
//
//   - Every entry must be a revision 2 WIN_CERT_TYPE_PKCS_SIGNED_DATA holding
//     a SignedData of SpcIndirectDataContent with exactly one signer.
//   - When the table has more than one entry, every entry must also be a
//     signature over this image: its image digest matches and its signature
//     verifies with the certificate it names. Whether that signer is trusted
//     is judged per signature, and one valid signature suffices, as in
//     EDK2's DxeImageVerificationLib, which tries every entry: Debian's shim
//     carries one signature per Microsoft UEFI CA.
//
// The table is outside the image hash, so an extra entry, or one Vigil
// cannot read, is bytes an attacker adds to a signed file without breaking
// its signature (the CVE-2013-3900 class). osslsigncode refuses such tables
// (pe.c, pe_verify_header: "Corrupted attribute certificate table"); it
// also refuses any second entry, which Vigil accepts when it is a real
// signature of the image. Windows reads only the first entry, and requires
// revision 2 and type PKCS#7.
func checkCertTable(sigs []peSig, idErrs []error, verdicts []Signature, entries int) error {
	for i, s := range sigs {
		if s.nested {
			continue
		}
		var err error
		switch {
		case s.err != nil:
			err = s.err
		case idErrs[i] != nil:
			err = idErrs[i]
		case len(s.sd.Signers) != 1:
			err = fmt.Errorf("%d signers, want exactly 1", len(s.sd.Signers))
		case entries > 1:
			for _, c := range verdicts[i].Reasons {
				if c == reason.DigestMismatch || c == reason.BadSignature || c == reason.Malformed || c == reason.Unsupported {
					err = fmt.Errorf("one of %d entries, and not a signature of this image (%s)", entries, c)
					break
				}
			}
		}
		if err != nil {
			return reason.New(reason.BadCertTable, "pe: certificate table entry %d is not a supported Authenticode signature: %v", s.entry, err)
		}
	}
	return nil
}

func (e *Engine) checkPESignature(pf *authenticode.File, r io.ReaderAt, sd *cms.SignedData, id *authenticode.IndirectData, hashes map[crypto.Hash][]byte, mode Mode, sig *Signature) {
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
		// Firmware has no trusted clock: EDK2's Pkcs7Verify sets
		// X509_V_FLAG_NO_CHECK_TIME (CryptoPkg/Library/BaseCryptLib/Pk/
		// CryptPkcs7VerifyCommon.c), and shim verifies through it.
		ignoreExpiry: mode == ModeUEFI,
		contentDigest: func(h crypto.Hash) ([]byte, error) {
			return cms.Digest(h, sd.Content), nil
		},
	}, sig)
}

// checkSignerFiles applies the deny.signer_files rules whose signer part
// a signature matched (any signature: a deny rule denies the file
// whatever signature names it) to the file's version resources, read
// only then: a rule whose OriginalFilename and version match denies the
// file blocklisted-signer, as WDAC denies a file its signer rule's
// FileAttrib matches. A version resource that does not parse, in a file
// a rule's signer part matched, makes the file malformed: the rule cannot
// be judged, and Vigil fails closed.
func (e *Engine) checkSignerFiles(v *Verdict, pf *authenticode.File) error {
	var infos []*versioninfo.Info
	read := false
	for i := range v.Signatures {
		sig := &v.Signatures[i]
		for _, r := range sig.signerFiles {
			if !read {
				var err error
				infos, err = versioninfo.ReadPE(pf, pf.ResourceRVA, pf.ResourceSize)
				if err != nil {
					return reason.Wrap(reason.Malformed, fmt.Errorf("version resource, needed by a deny.signer_files rule: %w", err))
				}
				read = true
			}
			if rule, ok := e.policy.MatchSignerFile(r, infos); ok {
				sig.fail(reason.BlocklistedSigner, fmt.Errorf("matches deny rule %s", rule))
			}
		}
	}
	return nil
}

// checkSBAT reads a boot image's .sbat section as shim does (its virtual
// size, at most its raw data; sbat.ParseSection) and denies the image
// when the policy's sbat_level revokes a component generation it names:
// shim would refuse to run it. A .sbat section shim would refuse, or read
// one way where another reader could read it another, is malformed.
func (e *Engine) checkSBAT(v *Verdict, pf *authenticode.File, f io.ReaderAt) error {
	for _, s := range pf.Sections {
		if s.Name != sbat.SectionName {
			continue
		}
		n := min(s.VirtualSize, s.SizeOfRawData)
		if n > sbat.MaxSize {
			return reason.New(reason.Malformed, "pe: %s section of %d bytes (at most %d)", sbat.SectionName, n, sbat.MaxSize)
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, int64(s.PointerToRawData)); err != nil {
			return reason.New(reason.Malformed, "pe: reading the %s section: %v", sbat.SectionName, err)
		}
		entries, err := sbat.ParseSection(b)
		if err != nil {
			return reason.New(reason.Malformed, "pe: %v", err)
		}
		v.SBAT = entries
		for _, r := range e.policy.SbatRevoked(entries) {
			v.Reasons = appendCode(v.Reasons, reason.SbatRevoked)
			v.DenyRules = append(v.DenyRules, fmt.Sprintf("sbat_level:%s,%d", r.Component, r.Generation))
		}
		return nil
	}
	return nil
}
