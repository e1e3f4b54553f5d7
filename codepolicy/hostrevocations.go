package codepolicy

import (
	"crypto/x509"
	"sort"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/report"
)

// HostRevocation is one of the policy's revocations that a host's own
// stores can hold: the firmware's dbx, shim's MokListX, the kernel's
// .blacklist keyring. Vigil denies it at once wherever it judges; the
// host enforces it only once a store holds it (for dbx and MokListX,
// from the next boot).
type HostRevocation struct {
	// Kind (efi.RevocationKinds) and Value (lower-case hex) name it.
	Kind, Value string
	// Targets are the stores that can hold it (report.StoreDBX,
	// StoreMokX, StoreBlacklist), in that order.
	Targets []string
	// Certificate is the revoked certificate when the policy holds it (a
	// revocation's certificate): MokListX can hold it only as the
	// certificate, and the kernel holds a revocation key by the key's
	// description.
	Certificate *x509.Certificate
}

// Key is the revocation's "kind:value" (efi.RevocationKey).
func (h HostRevocation) Key() string { return efi.RevocationKey(h.Kind, h.Value) }

// HostRevocations lists the policy's entries a host store can hold, each
// once (sorted by kind, then value), and counts those none can: file
// hashes (deny.sha256) and revocations by issuer and serial or by key
// (spki_sha256), which only Vigil enforces. The mapping is the one
// `vigil policy export` writes (dbx, mokx, blacklist-hashes):
//
//   - deny.authentihash_sha256: dbx and MokListX EFI_CERT_SHA256, a
//     .blacklist "bin:" entry (the kernel's check of PE images);
//   - deny.authentihash_sha1: dbx EFI_CERT_SHA1;
//   - tbs_sha256 revocations and deny.signer_tbs_sha256: dbx (X.509 or
//     EFI_CERT_X509_SHA256), a .blacklist "tbs:" entry, and MokListX
//     when the policy holds the certificate;
//   - deny.signer_tbs_sha384/512: dbx EFI_CERT_X509_SHA384/512 and
//     .blacklist; deny.signer_tbs_sha1: .blacklist only;
//   - deny.signed_content_sha256: .blacklist "bin:" only.
func (p *Policy) HostRevocations() (revs []HostRevocation, vigilOnly int) {
	byKey := map[string]*HostRevocation{}
	add := func(kind, value string, c *x509.Certificate, targets ...string) {
		k := efi.RevocationKey(kind, value)
		h := byKey[k]
		if h == nil {
			h = &HostRevocation{Kind: kind, Value: value}
			byKey[k] = h
		}
		if c != nil && h.Certificate == nil {
			h.Certificate = c
		}
		for _, t := range targets {
			if !containsString(h.Targets, t) {
				h.Targets = append(h.Targets, t)
			}
		}
	}
	dbx, mokx, bl := report.StoreDBX, report.StoreMokX, report.StoreBlacklist
	for _, v := range p.Deny.AuthentihashSHA256 {
		add(efi.RevokeImageSHA256, v, nil, dbx, mokx, bl)
	}
	for _, v := range p.Deny.AuthentihashSHA1 {
		add(efi.RevokeImageSHA1, v, nil, dbx)
	}
	for _, v := range p.Deny.SignerTBSSHA1 {
		add(efi.RevokeCertTBSSHA1, v, nil, bl)
	}
	for _, v := range p.Deny.SignerTBSSHA256 {
		add(efi.RevokeCertTBSSHA256, v, nil, dbx, bl)
	}
	for _, v := range p.Deny.SignerTBSSHA384 {
		add(efi.RevokeCertTBSSHA384, v, nil, dbx, bl)
	}
	for _, v := range p.Deny.SignerTBSSHA512 {
		add(efi.RevokeCertTBSSHA512, v, nil, dbx, bl)
	}
	for _, v := range p.Deny.SignedContentSHA256 {
		add(efi.RevokeSignedContentSHA256, v, nil, bl)
	}
	vigilOnly += len(p.Deny.SHA256)
	for i := range p.Revocations {
		r := &p.Revocations[i]
		if r.TBSSHA256 == "" {
			vigilOnly++
			continue
		}
		var c *x509.Certificate
		if r.Certificate != "" {
			c, _ = parseOnePEMCertificate(r.Certificate)
		}
		if c != nil {
			add(efi.RevokeCertTBSSHA256, r.TBSSHA256, c, dbx, mokx, bl)
		} else {
			add(efi.RevokeCertTBSSHA256, r.TBSSHA256, nil, dbx, bl)
		}
	}
	order := map[string]int{dbx: 0, mokx: 1, bl: 2}
	revs = make([]HostRevocation, 0, len(byKey))
	for _, h := range byKey {
		sort.Slice(h.Targets, func(i, j int) bool { return order[h.Targets[i]] < order[h.Targets[j]] })
		revs = append(revs, *h)
	}
	sort.Slice(revs, func(i, j int) bool {
		if revs[i].Kind != revs[j].Kind {
			return revs[i].Kind < revs[j].Kind
		}
		return revs[i].Value < revs[j].Value
	})
	return revs, vigilOnly
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
