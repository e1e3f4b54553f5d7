package codepolicy

import (
	"bytes"
	"crypto/x509"
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
		len(d.SignerTBSSHA1) + len(d.SignerTBSSHA256) + len(d.SignerTBSSHA384) + len(d.SignerTBSSHA512)
}
