package integrity

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/reason"
	"github.com/vigil-attest/vigil/trust"
)

// signerCheck is what the format-specific code hands to checkSigner.
type signerCheck struct {
	sd *cms.SignedData
	si *cms.SignerInfo
	// contentType is the eContentType the signed attributes must name.
	contentType asn1.ObjectIdentifier
	// contentDigest returns the digest of the signed content under h.
	contentDigest func(h crypto.Hash) ([]byte, error)
	// ignoreExpiry skips validity periods whatever the policy says (uefi
	// mode).
	ignoreExpiry bool
}

// lookupDigest serves content digests computed in advance, in the pass
// that also hashed the whole file.
func lookupDigest(sums map[crypto.Hash][]byte) func(crypto.Hash) ([]byte, error) {
	return func(h crypto.Hash) ([]byte, error) {
		if d, ok := sums[h]; ok {
			return d, nil
		}
		return nil, reason.New(reason.Unsupported, "digest %v unavailable", h)
	}
}

// checkSigner verifies one SignerInfo against the policy and fills sig. It
// appends reasons; sig.Valid is set by the caller once format checks ran.
func (e *Engine) checkSigner(c signerCheck, sig *Signature) {
	p := e.policy
	si := c.si
	h, err := si.Hash()
	if err != nil {
		sig.fail(reason.Of(err, reason.Unsupported), err)
		return
	}
	if sig.DigestAlgorithm == "" {
		sig.DigestAlgorithm = cms.HashName(h)
	}
	if cms.Strength(h) < cms.Strength(p.MinimumHash()) {
		sig.fail(reason.WeakAlgorithm, fmt.Errorf("signature digest %s is below the policy minimum %s", cms.HashName(h), cms.HashName(p.MinimumHash())))
	}
	if e.detail {
		for _, x := range c.sd.Certificates {
			sig.Certificates = append(sig.Certificates, describeCert(x))
		}
	}
	// Deny rules apply to every certificate the signature carries, whether
	// or not a chain builds (issue 12: a denied intermediate in a signature
	// whose chain fails is still denied). The chain's certificates from the
	// keyring and the anchors are checked once the chain is known.
	denied := map[string]bool{}
	e.denyCerts(sig, c.sd.Certificates, denied)
	cert := c.sd.FindCertificate(si, e.keyring)
	if cert != nil {
		e.denyCerts(sig, []*x509.Certificate{cert}, denied)
	}
	e.signerFileCandidates(sig, cert, c.sd.Certificates, []*x509.Certificate{cert})
	if cert == nil {
		sig.Signer = signerFromInfo(si)
		sig.fail(reason.UntrustedChain, fmt.Errorf("signer certificate (%s) is neither in the signature nor in the keyring", describeSID(si)))
		return
	}
	sig.Signer = signerFromCert(cert)
	digest, err := c.contentDigest(h)
	if err != nil {
		sig.fail(reason.Of(err, reason.Malformed), err)
		return
	}
	if sig.Digest == "" {
		sig.Digest = hex.EncodeToString(digest)
	}
	if err := si.Verify(cert, c.contentType, digest); err != nil {
		sig.fail(reason.Of(err, reason.BadSignature), err)
		return
	}

	// Timestamps: the first one whose TSA chains to an anchor with the
	// timeStamping EKU, at the time it asserts, is trusted; see checkTSA
	// for the rules.
	var tsTime *time.Time
	var tsErrs []error
	own := signerKeys(cert, c.sd.Certificates, e.keyring)
	for _, ts := range si.Timestamps(c.sd) {
		if ts.Err != nil {
			tsErrs = append(tsErrs, fmt.Errorf("%s timestamp: %w", ts.Kind, ts.Err))
			continue
		}
		if err := e.checkTSA(ts, own); err != nil {
			tsErrs = append(tsErrs, fmt.Errorf("%s timestamp at %s: %w", ts.Kind, ts.Time.Format(time.RFC3339), err))
			continue
		}
		t := ts.Time
		tsTime = &t
		sig.TimestampKind = string(ts.Kind)
		break
	}
	sig.Timestamp = tsTime

	at := e.now()
	if tsTime != nil {
		at = *tsTime
	}
	intermediates := append(append([]*x509.Certificate(nil), c.sd.Certificates...), e.keyring...)
	chain, err := trust.Build(cert, trust.Options{
		Anchors:       e.anchors,
		Intermediates: intermediates,
		At:            at,
		IgnoreExpiry:  p.IgnoreExpiry || c.ignoreExpiry,
		RequireEKU:    e.ekus,
		MinHash:       p.MinimumHash(),
	})
	// A refused timestamp is reported when the signature needed one: its
	// chain is outside its validity now, or a dated revocation applies.
	needTS := false
	if err != nil {
		code := reason.Of(err, reason.UntrustedChain)
		sig.fail(code, err)
		needTS = code == reason.Expired || code == reason.NotYetValid
		// Revocation and deny lists still apply to the signer we know.
		chain = trust.Chain{cert}
	} else {
		for _, x := range chain {
			sig.Chain = append(sig.Chain, x.Subject.String())
		}
	}

	for _, x := range chain {
		if r := p.Revocation(x); r != nil && r.Rejects(tsTime) {
			sig.fail(reason.Revoked, fmt.Errorf("certificate %q (serial %s) is revoked%s", x.Subject.String(), hexSerial(x), describeRevocation(r)))
			needTS = needTS || r.RevokedAt != nil
		}
	}
	e.denyCerts(sig, chain, denied)
	e.signerFileCandidates(sig, cert, chain)
	if needTS && tsTime == nil {
		for _, te := range tsErrs {
			sig.fail(reason.BadTimestamp, te)
			if c := reason.Of(te, ""); c == reason.SelfTimestamp || c == reason.FutureTimestamp {
				sig.fail(c, nil)
			}
		}
	}
	if len(p.AllowSigners) > 0 {
		allowed := false
		for _, x := range chain {
			if p.SignerAllowed(x) {
				allowed = true
				break
			}
		}
		if !allowed {
			sig.fail(reason.SignerNotAllowed, fmt.Errorf("signer %q is not in allow_signers", cert.Subject.String()))
		}
	}
}

// denyCerts applies the deny.signer_tbs_* rules to certs, skipping those
// already checked (seen, keyed by DER).
func (e *Engine) denyCerts(sig *Signature, certs []*x509.Certificate, seen map[string]bool) {
	for _, x := range certs {
		if x == nil || seen[string(x.Raw)] {
			continue
		}
		seen[string(x.Raw)] = true
		if rule, denied := e.policy.DenySigner(x); denied {
			sig.fail(reason.BlocklistedSigner, fmt.Errorf("certificate %q matches deny rule %s", x.Subject.String(), rule))
		}
	}
}

// signerFileCandidates notes the deny.signer_files rules whose signer
// part matches certs (the signature's, its signer's, its chain's) and
// leaf, the signer; like denyCerts, whether or not the chain builds.
func (e *Engine) signerFileCandidates(sig *Signature, leaf *x509.Certificate, certs ...[]*x509.Certificate) {
	if len(e.policy.Deny.SignerFiles) == 0 {
		return
	}
	var all []*x509.Certificate
	for _, l := range certs {
		all = append(all, l...)
	}
	for _, i := range e.policy.SignerFileCandidates(leaf, all) {
		if !slices.Contains(sig.signerFiles, i) {
			sig.signerFiles = append(sig.signerFiles, i)
		}
	}
}

// checkTSA decides whether a timestamp's authority is trusted. own holds
// the public keys of the code signer and of its issuers (signerKeys).
//
// The rules, each with the attack it stops:
//   - The time must not be later than the check time: a future-dated
//     timestamp would make a not-yet-valid certificate, or one revoked with
//     a date, pass today (reason.FutureTimestamp).
//   - The TSA must not be the code signer's own key, nor a key of its
//     chain: a publisher whose certificate was revoked or expired keeps its
//     key, signs new code and countersigns it with a backdated time (the
//     Atsiv case; reason.SelfTimestamp).
//   - A legacy PKCS#9 countersigner must name timeStamping in an EKU
//     extension. A certificate without one is valid for any purpose under
//     RFC 5280 4.2.1.12, which would let any end-entity certificate under a
//     trusted anchor act as a TSA. An RFC 3161 TSA needs the critical
//     timeStamping-only EKU that RFC 3161 2.3 requires (reason.WrongEKU).
//   - The TSA chains to an anchor with the timeStamping EKU, at the time it
//     asserts, and is not revoked at that time.
//
// Every failure is reported on the signature as bad-timestamp (plus
// self-timestamp or future-timestamp) when the signature needed the time.
func (e *Engine) checkTSA(ts cms.Timestamp, own [][]byte) error {
	if now := e.now(); ts.Time.After(now) {
		return reason.New(reason.FutureTimestamp, "timestamp time %s is later than the check time %s", ts.Time.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	// A TSA the policy names is trusted for what it is, whatever key
	// signed the code and whatever its EKU: it must still chain to an
	// anchor and not be revoked.
	named := e.policy.NamedTSA(ts.Signer)
	eku := []asn1.ObjectIdentifier{trust.EKUTimeStamping}
	if named {
		eku = nil
	}
	for _, k := range own {
		if !named && bytes.Equal(k, ts.Signer.RawSubjectPublicKeyInfo) {
			return reason.New(reason.SelfTimestamp, "timestamp by %q, whose key is the code signer's or one of its issuers': a signer cannot vouch for its own signing time (unless policy names it in timestamp_authorities)", ts.Signer.Subject.String())
		}
	}
	switch {
	case named && (ts.Kind == cms.TimestampRFC3161 || ts.Kind == cms.TimestampCounterSignature):
	case ts.Kind == cms.TimestampRFC3161:
		if !criticalTimeStampingOnly(ts.Signer) {
			return reason.New(reason.WrongEKU, "TSA certificate %q lacks a critical timeStamping-only extended key usage (RFC 3161 2.3)", ts.Signer.Subject.String())
		}
	case ts.Kind == cms.TimestampCounterSignature:
		if !namesEKU(ts.Signer, trust.EKUTimeStamping) {
			return reason.New(reason.WrongEKU, "countersigner certificate %q does not name the timeStamping extended key usage", ts.Signer.Subject.String())
		}
	default:
		return reason.New(reason.Unsupported, "timestamp kind %q", ts.Kind)
	}
	_, err := trust.Build(ts.Signer, trust.Options{
		Anchors:       e.anchors,
		Intermediates: append(append([]*x509.Certificate(nil), ts.Certificates...), e.keyring...),
		At:            ts.Time,
		RequireEKU:    eku,
		MinHash:       e.policy.MinimumHash(),
	})
	if err == nil {
		if r := e.policy.Revocation(ts.Signer); r != nil && r.Rejects(&ts.Time) {
			return reason.New(reason.Revoked, "TSA certificate %q is revoked", ts.Signer.Subject.String())
		}
	}
	return err
}

var oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}

// namesEKU reports whether c has an EKU extension that lists usage
// explicitly (neither a missing extension nor anyExtendedKeyUsage counts).
func namesEKU(c *x509.Certificate, usage asn1.ObjectIdentifier) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageTimeStamping && usage.Equal(trust.EKUTimeStamping) {
			return true
		}
	}
	for _, u := range c.UnknownExtKeyUsage {
		if u.Equal(usage) {
			return true
		}
	}
	return false
}

// signerKeys returns the DER SubjectPublicKeyInfo of the code signer and of
// every certificate that may issue it, found by name in the signature's
// certificates and the keyring (anchors included), up to 8 levels. A
// timestamp by any of these keys is the signer vouching for itself.
func signerKeys(cert *x509.Certificate, pools ...[]*x509.Certificate) [][]byte {
	keys := [][]byte{cert.RawSubjectPublicKeyInfo}
	seen := map[*x509.Certificate]bool{cert: true}
	level := []*x509.Certificate{cert}
	for depth := 0; depth < 8 && len(level) > 0; depth++ {
		var next []*x509.Certificate
		for _, c := range level {
			for _, pool := range pools {
				for _, p := range pool {
					if seen[p] || !bytes.Equal(p.RawSubject, c.RawIssuer) {
						continue
					}
					seen[p] = true
					keys = append(keys, p.RawSubjectPublicKeyInfo)
					next = append(next, p)
				}
			}
		}
		level = next
	}
	return keys
}

func criticalTimeStampingOnly(c *x509.Certificate) bool {
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidExtKeyUsage) {
			if !ext.Critical {
				return false
			}
			var oids []asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(ext.Value, &oids); err != nil || len(rest) > 0 {
				return false
			}
			return len(oids) == 1 && oids[0].Equal(trust.EKUTimeStamping)
		}
	}
	return false
}

func signerFromCert(c *x509.Certificate) *Signer {
	tbs := sha256.Sum256(c.RawTBSCertificate)
	return &Signer{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    hexSerial(c),
		TBSSHA256: hex.EncodeToString(tbs[:]),
	}
}

func signerFromInfo(si *cms.SignerInfo) *Signer {
	s := &Signer{}
	if si.SerialNumber != nil {
		s.Serial = hex.EncodeToString(si.SerialNumber.Bytes())
		var rdn pkix.RDNSequence
		if _, err := asn1.Unmarshal(si.Issuer, &rdn); err == nil {
			var n pkix.Name
			n.FillFromRDNSequence(&rdn)
			s.Issuer = n.String()
		}
	}
	return s
}

func describeSID(si *cms.SignerInfo) string {
	if si.SerialNumber != nil {
		s := signerFromInfo(si)
		return fmt.Sprintf("issuer %q serial %s", s.Issuer, s.Serial)
	}
	return fmt.Sprintf("subject key id %x", si.SubjectKeyID)
}

func hexSerial(c *x509.Certificate) string {
	return hex.EncodeToString(c.SerialNumber.Bytes())
}

func describeCert(c *x509.Certificate) Certificate {
	sum := sha256.Sum256(c.Raw)
	tbs := sha256.Sum256(c.RawTBSCertificate)
	d := Certificate{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: hexSerial(c),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		SHA256:             hex.EncodeToString(sum[:]), TBSSHA256: hex.EncodeToString(tbs[:]),
	}
	for _, u := range c.ExtKeyUsage {
		if oid, ok := ekuOIDName(u); ok {
			d.EKU = append(d.EKU, oid)
		}
	}
	for _, u := range c.UnknownExtKeyUsage {
		d.EKU = append(d.EKU, u.String())
	}
	return d
}

func ekuOIDName(u x509.ExtKeyUsage) (string, bool) {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
		x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
		x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
		x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "kernelModeCodeSigning",
		x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "commercialCodeSigning",
	}
	n, ok := names[u]
	return n, ok
}

func describeRevocation(r *codepolicy.Revocation) string {
	s := ""
	if r.RevokedAt != nil {
		s += " since " + r.RevokedAt.UTC().Format(time.RFC3339)
	}
	if r.Reason != "" {
		s += " (" + r.Reason + ")"
	}
	return s
}
