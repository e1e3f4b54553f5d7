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
// (spki_sha256), which only Vigil enforces. Each entry's targets are
// report.RevocationTargets: deny.authentihash_sha256 and _sha1 are
// image_sha256 and image_sha1; tbs_sha256 revocations and
// deny.signer_tbs_* are cert_tbs_*; deny.signed_content_sha256 is
// signed_content_sha256.
func (p *Policy) HostRevocations() (revs []HostRevocation, vigilOnly int) {
	byKey := map[string]*HostRevocation{}
	add := func(kind, value string, c *x509.Certificate) {
		k := efi.RevocationKey(kind, value)
		h := byKey[k]
		if h == nil {
			h = &HostRevocation{Kind: kind, Value: value}
			byKey[k] = h
		}
		if c != nil && h.Certificate == nil {
			h.Certificate = c
		}
	}
	for _, d := range []struct {
		kind   string
		values []string
	}{
		{efi.RevokeImageSHA256, p.Deny.AuthentihashSHA256},
		{efi.RevokeImageSHA1, p.Deny.AuthentihashSHA1},
		{efi.RevokeCertTBSSHA1, p.Deny.SignerTBSSHA1},
		{efi.RevokeCertTBSSHA256, p.Deny.SignerTBSSHA256},
		{efi.RevokeCertTBSSHA384, p.Deny.SignerTBSSHA384},
		{efi.RevokeCertTBSSHA512, p.Deny.SignerTBSSHA512},
		{efi.RevokeSignedContentSHA256, p.Deny.SignedContentSHA256},
	} {
		for _, v := range d.values {
			add(d.kind, v, nil)
		}
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
		add(efi.RevokeCertTBSSHA256, r.TBSSHA256, c)
	}
	revs = make([]HostRevocation, 0, len(byKey))
	for _, h := range byKey {
		h.Targets = report.RevocationTargets(h.Kind, h.Certificate != nil)
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
