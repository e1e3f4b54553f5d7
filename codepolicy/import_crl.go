package codepolicy

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// CRLOption configures ImportCRL.
type CRLOption func(*crlOptions)

type crlOptions struct {
	verify        bool
	intermediates []*x509.Certificate
	now           func() time.Time
}

// VerifyCRL makes ImportCRL check each CRL's signature: it must be made by
// one of the policy's trust anchors, or by one of intermediates whose chain
// leads to an anchor. A CRL that fails the check is an error and nothing is
// imported.
func VerifyCRL(intermediates ...*x509.Certificate) CRLOption {
	return func(o *crlOptions) {
		o.verify = true
		o.intermediates = append(o.intermediates, intermediates...)
	}
}

var (
	oidReasonCode        = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate    = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidCertificateIssuer = asn1.ObjectIdentifier{2, 5, 29, 29}
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
)

// ImportCRL merges the revoked certificates of one or more CRLs (DER, or PEM
// with "X509 CRL" blocks) into p.Revocations: each entry becomes
// {issuer, serial, revoked_at, reason}. issuer is the CRL's issuer (or, in
// an indirect CRL, the entry's certificateIssuer); revoked_at is the
// revocation date, or the invalidityDate when that is earlier; reason comes
// from the reasonCode extension. removeFromCRL entries (delta CRLs) are
// skipped and counted: an import never removes a revocation.
//
// Without VerifyCRL the CRL's signature is not checked and the stats carry
// a warning saying so. On error the policy is unchanged.
func ImportCRL(p *Policy, data []byte, opts ...CRLOption) (ImportStats, error) {
	st := newStats("crl")
	if p == nil || p.ix == nil {
		return st, errNotValidated
	}
	o := crlOptions{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	ders, err := crlBlocks(data)
	if err != nil {
		return st, err
	}
	var revs []Revocation
	for n, der := range ders {
		where := "crl"
		if len(ders) > 1 {
			where = fmt.Sprintf("crl %d", n+1)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return st, fmt.Errorf("%s: %w", where, err)
		}
		issuer, err := formatRawDN(crl.RawIssuer)
		if err != nil {
			return st, fmt.Errorf("%s: issuer: %w", where, err)
		}
		if o.verify {
			if err := verifyCRL(crl, p.anchors, o.intermediates); err != nil {
				return st, fmt.Errorf("%s (%s): %w", where, issuer, err)
			}
		}
		for _, e := range crl.Extensions {
			if e.Id.Equal(oidDeltaCRLIndicator) {
				st.Warnings = append(st.Warnings, fmt.Sprintf("%s (%s) is a delta CRL: import the base CRL too", where, issuer))
			}
		}
		if !crl.NextUpdate.IsZero() && o.now().After(crl.NextUpdate) {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s (%s) is past its nextUpdate (%s): a newer CRL should exist",
				where, issuer, crl.NextUpdate.UTC().Format(time.RFC3339)))
		}
		entryIssuer := issuer
		for _, e := range crl.RevokedCertificateEntries {
			st.Read++
			reasonCode, hasReason := -1, false
			revokedAt := e.RevocationTime.UTC()
			bad := ""
			for _, ext := range e.Extensions {
				switch {
				case ext.Id.Equal(oidReasonCode):
					hasReason, reasonCode = true, e.ReasonCode
				case ext.Id.Equal(oidInvalidityDate):
					var t time.Time
					if rest, err := asn1.UnmarshalWithParams(ext.Value, &t, "generalized"); err != nil || len(rest) != 0 {
						bad = "malformed-invalidity-date"
					} else if t.Before(revokedAt) {
						revokedAt = t.UTC()
					}
				case ext.Id.Equal(oidCertificateIssuer):
					// Indirect CRL: this and the following entries belong to
					// another issuer.
					entryIssuer = ""
					if name, err := directoryName(ext.Value); err == nil {
						entryIssuer = name
					}
				}
			}
			switch {
			case bad != "":
				st.skip(bad)
				continue
			case entryIssuer == "":
				st.skip("unreadable-certificate-issuer")
				continue
			case e.SerialNumber == nil || e.SerialNumber.Sign() < 0:
				st.skip("malformed-serial")
				continue
			case hasReason && reasonCode == 8:
				st.skip("remove-from-crl")
				continue
			}
			r := Revocation{Issuer: entryIssuer, Serial: e.SerialNumber.Text(16), RevokedAt: &revokedAt}
			if hasReason {
				if name, ok := revocationReasons[reasonCode]; ok {
					r.Reason = name
				} else {
					st.Warnings = append(st.Warnings, fmt.Sprintf("serial %s: unknown reason code %d, imported without a reason", r.Serial, reasonCode))
				}
			}
			revs = append(revs, r)
		}
	}
	st.Verified = o.verify
	if !o.verify {
		st.Warnings = append(st.Warnings, "unverified: the CRL signature was not checked (use VerifyCRL)")
	}
	p.mergeRevocations(&st, revs)
	return st, nil
}

// crlBlocks returns the DER of each CRL in data.
func crlBlocks(data []byte) ([][]byte, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		if len(data) == 0 {
			return nil, errors.New("crl: empty input")
		}
		return [][]byte{data}, nil
	}
	var out [][]byte
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "X509 CRL" {
			out = append(out, b.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("crl: PEM input without an X509 CRL block")
	}
	return out, nil
}

// directoryName returns the first directoryName of a GeneralNames value as
// text.
func directoryName(der []byte) (string, error) {
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &names)
	if err != nil || len(rest) != 0 {
		return "", errors.New("malformed GeneralNames")
	}
	for _, n := range names {
		if n.Class == asn1.ClassContextSpecific && n.Tag == 4 && n.IsCompound {
			return formatRawDN(n.Bytes)
		}
	}
	return "", errors.New("no directoryName")
}

// verifyCRL checks that crl is signed by an anchor, or by an intermediate
// that chains to one.
func verifyCRL(crl *x509.RevocationList, anchors, intermediates []*x509.Certificate) error {
	if len(anchors) == 0 {
		return errors.New("cannot verify the CRL: the policy has no trust anchors")
	}
	// RFC 5280 6.3.3 (f): the CRL issuer is the certificate whose subject
	// matches the CRL's issuer name, compared as section 7.1 says.
	crlIssuer, err := foldedKeyOfRawDN(crl.RawIssuer)
	if err != nil {
		return err
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	var lastErr error
	try := func(c *x509.Certificate, isAnchor bool) bool {
		if k, err := foldedKeyOfRawDN(c.RawSubject); err != nil || k != crlIssuer {
			return false
		}
		if err := crl.CheckSignatureFrom(c); err != nil {
			lastErr = err
			return false
		}
		if isAnchor {
			return true
		}
		at := crl.ThisUpdate
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			lastErr = fmt.Errorf("CRL issuer %q does not chain to a trust anchor: %w", c.Subject.String(), err)
			return false
		}
		return true
	}
	for _, a := range anchors {
		if try(a, true) {
			return nil
		}
	}
	for _, c := range intermediates {
		if try(c, false) {
			return nil
		}
	}
	if lastErr != nil {
		return fmt.Errorf("CRL signature does not verify: %w", lastErr)
	}
	return errors.New("CRL signature does not verify: no trust anchor or given intermediate has the CRL's issuer name")
}
