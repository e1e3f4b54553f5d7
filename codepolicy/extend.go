package codepolicy

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"slices"
)

// AddAnchors adds trust anchors that come from outside the policy file,
// such as vigil's --trust and --kernel flags. They change decisions, so
// Digest covers them (it hashes every anchor certificate); Marshal does not
// write them, and Validate, which reloads the anchors from Trust, drops them.
func (p *Policy) AddAnchors(certs ...*x509.Certificate) {
	p.index()
	for _, c := range certs {
		dup := false
		for _, a := range p.anchors {
			if bytes.Equal(a.Raw, c.Raw) {
				dup = true
				break
			}
		}
		if !dup {
			p.anchors = append(p.anchors, c)
		}
	}
}

// Len returns the number of deny entries of every kind.
func (d Deny) Len() int {
	return len(d.SHA256) + len(d.AuthentihashSHA1) + len(d.AuthentihashSHA256) +
		len(d.SignerTBSSHA1) + len(d.SignerTBSSHA256) + len(d.SignerTBSSHA384) + len(d.SignerTBSSHA512) +
		len(d.SignedContentSHA256) + len(d.SignerFiles)
}

// AddKernelRevocations adds what a kernel's compiled-in lists revoke (vigil's
// --kernel, kernelkeys.Keys): each certificate of its revocation list
// becomes a revocation by SPKI SHA-256 without revoked_at (the kernel's
// is_key_on_revocation_list rejects every signature chaining to the key),
// each "tbs:" hash becomes a signer TBS deny entry of its length (the
// kernel refuses such a certificate as a key), and each "bin:" hash of 32
// bytes both a deny.sha256 entry (Debian's module loader refuses a module
// whose whole file hashes to it, mod_is_hash_blacklisted; a real Debian
// 6.1 guest refused a module so, TestRealRevocation) and a
// deny.signed_content_sha256 entry (IMA refuses a module with an appended
// signature whose signed content hashes to it, ima_check_blacklist).
// Hashes of other lengths are skipped and counted. Like an import, the entries are
// then part of the policy, and Digest covers them.
func (p *Policy) AddKernelRevocations(revoked []*x509.Certificate, tbs, bin [][]byte) ImportStats {
	p.index()
	st := newStats("kernel")
	st.Read = len(revoked) + len(tbs) + len(bin)
	var revs []Revocation
	for _, c := range revoked {
		s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		revs = append(revs, Revocation{SPKISHA256: hex.EncodeToString(s[:]), Comment: "kernel revocation list: " + c.Subject.String()})
	}
	var pending []pendingDeny
	for _, h := range tbs {
		k, ok := tbsKindBySize(len(h))
		if !ok {
			st.skip("unsupported-hash-length")
			continue
		}
		pending = append(pending, pendingDeny{k, hex.EncodeToString(h)})
	}
	for _, h := range bin {
		if len(h) != sha256.Size {
			st.skip("unsupported-hash-length")
			continue
		}
		x := hex.EncodeToString(h)
		pending = append(pending, pendingDeny{dkSHA256, x}, pendingDeny{dkSignedContentSHA256, x})
	}
	p.mergeRevocations(&st, revs)
	p.mergeDeny(&st, pending)
	return st
}

// WithAnchors returns a copy of p whose trust anchors are exactly anchors
// (no trust file is read): the policy as a platform applies it that
// trusts only its own keys, as a running kernel trusts only its keyrings
// for modules. Every other rule is p's; the copy's lists are its own, so
// adding to it (AddKernelRevocations) leaves p as it was. Its Digest
// differs from p's.
func (p *Policy) WithAnchors(anchors ...*x509.Certificate) (*Policy, error) {
	d := p.Deny
	for _, dk := range denyKinds {
		l := dk.field(&d)
		*l = slices.Clone(*l)
	}
	d.SignerFiles = slices.Clone(d.SignerFiles)
	q := &Policy{
		Name: p.Name, Version: p.Version, Description: p.Description,
		RequireEKU: slices.Clone(p.RequireEKU), MinHash: p.MinHash, IgnoreExpiry: p.IgnoreExpiry,
		Revocations: slices.Clone(p.Revocations), Deny: d, AllowSigners: slices.Clone(p.AllowSigners),
		TimestampAuthorities: slices.Clone(p.TimestampAuthorities), SbatLevel: p.SbatLevel,
		Verity:  Verity{DMRootHash: slices.Clone(p.Verity.DMRootHash), FSDigest: slices.Clone(p.Verity.FSDigest)},
		baseDir: p.baseDir,
	}
	if err := q.compile(nil, ""); err != nil {
		return nil, err
	}
	q.AddAnchors(anchors...)
	return q, nil
}
