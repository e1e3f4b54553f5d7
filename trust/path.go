package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/reason"
)

// RFC 5280 section 6.1 path validation: the checks on the certificates that
// issue others. Build applies them to every path it returns, for every
// chain Vigil builds (Authenticode signers, module and detached CMS signers,
// timestamping authorities).
//
// They match crypto/x509's (*Certificate).isValid, which Vigil cannot call
// (it refuses SHA-1 certificate signatures and intermediate anchors), and
// OpenSSL's check_chain (crypto/x509/x509_vfy.c, under -x509_strict):
//
//   - every intermediate must be a v3 CA: basicConstraints with cA TRUE
//     (Go: NotAuthorizedToSign; OpenSSL: X509_V_ERR_INVALID_CA). A v1
//     certificate has no basicConstraints, so it never issues;
//   - every issuer with a keyUsage extension must assert keyCertSign
//     (RFC 5280 4.2.1.3 and 6.1.4 (n); OpenSSL check_ca's ku_reject; Go's
//     isValid ignores keyUsage, but its CheckSignatureFrom refuses such a
//     parent with ConstraintViolationError);
//   - a pathLenConstraint bounds the non-self-issued intermediates below
//     the CA (RFC 5280 4.2.1.9 and 6.1.4 (l)-(m); Go: TooManyIntermediates;
//     OpenSSL: X509_V_ERR_PATH_LENGTH_EXCEEDED), the anchor's included, as
//     both peers apply it;
//   - no certificate of the path, the leaf and the anchor included, may
//     carry a critical extension Vigil does not process (RFC 5280 4.2;
//     Go: UnhandledCriticalExtension; OpenSSL:
//     X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION).
//
// The anchor is trusted configuration (RFC 5280 6.1.1 (d)), so a legacy
// self-signed root without basicConstraints (a v1 root) may issue, as
// OpenSSL's check_ca allows one (V1_ROOT) without -x509_strict, the mode
// EDK2's Pkcs7Verify uses. Any other anchor without basicConstraints (a v1
// end-entity certificate) may not, nor may an anchor that says it is not a
// CA (cA FALSE, or keyUsage without keyCertSign). An anchor that issues
// nothing (a signer trusted directly, as the kernel trusts its keys) is not
// an issuer and is not checked as one.

var (
	oidKeyUsage          = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidNameConstraints   = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidPolicyConstraints = asn1.ObjectIdentifier{2, 5, 29, 36}
	oidNetscapeCertType  = asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}
)

// checkPath applies the RFC 5280 issuer checks to a complete path (leaf
// first, anchor last).
func checkPath(path Chain) error {
	last := len(path) - 1
	for i, c := range path {
		if err := checkCritical(c); err != nil {
			return err
		}
		if i == 0 {
			continue // the leaf issues nothing
		}
		anchor := i == last
		switch {
		case c.BasicConstraintsValid && !c.IsCA:
			return reason.New(reason.IssuerNotCA, "certificate %q issues %q but its basicConstraints say it is not a CA", c.Subject.String(), path[i-1].Subject.String())
		case !c.BasicConstraintsValid && !(anchor && selfSigned(c)):
			return reason.New(reason.IssuerNotCA, "certificate %q (v%d) issues %q but has no basicConstraints extension with cA TRUE", c.Subject.String(), c.Version, path[i-1].Subject.String())
		}
		if hasExtension(c, oidKeyUsage) && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return reason.New(reason.IssuerNoKeyCertSign, "CA certificate %q issues %q but its keyUsage lacks keyCertSign", c.Subject.String(), path[i-1].Subject.String())
		}
		if c.BasicConstraintsValid && c.MaxPathLen >= 0 {
			// Non-self-issued intermediates between c and the leaf.
			n := 0
			for _, x := range path[1:i] {
				if !bytes.Equal(x.RawSubject, x.RawIssuer) {
					n++
				}
			}
			if n > c.MaxPathLen {
				return reason.New(reason.PathLengthExceeded, "CA certificate %q allows %d intermediate(s) below it (pathLenConstraint), the path has %d", c.Subject.String(), c.MaxPathLen, n)
			}
		}
	}
	return nil
}

// checkCritical refuses a certificate with a critical extension Vigil does
// not process: those crypto/x509's parser leaves unhandled, and two it
// parses that Vigil's builder does not enforce. nameConstraints and
// policyConstraints (requireExplicitPolicy) can only narrow what is valid,
// so ignoring them would accept what the issuer forbade. The policy
// extensions that cannot fail a path without an explicit policy
// (certificatePolicies, policyMappings, inhibitAnyPolicy) are processed in
// the RFC 5280 sense: with initial-explicit-policy unset and
// policyConstraints refused, the valid policy tree never fails the path.
//
// Netscape's certificate type (2.16.840.1.113730.1.1), which crypto/x509
// leaves unhandled, is known: OpenSSL processes it (X509_supported_extension
// in crypto/x509/v3_purp.c), so shim and EDK2 accept it critical, and
// Debian's Secure Boot CA (the vendor certificate built into Debian's shim,
// the anchor of its grub and kernels) carries it critical. It only narrows
// purposes, which Vigil judges by extended key usage.
func checkCritical(c *x509.Certificate) error {
	for _, id := range c.UnhandledCriticalExtensions {
		if id.Equal(oidNetscapeCertType) {
			continue
		}
		return reason.New(reason.UnknownCriticalExtension, "certificate %q has unknown critical extension %v", c.Subject.String(), id)
	}
	for _, e := range c.Extensions {
		if e.Critical && (e.Id.Equal(oidNameConstraints) || e.Id.Equal(oidPolicyConstraints)) {
			return reason.New(reason.UnknownCriticalExtension, "certificate %q has critical extension %v, which Vigil does not enforce", c.Subject.String(), e.Id)
		}
	}
	return nil
}

// selfSigned reports whether c names itself as issuer and its key verifies
// its own signature.
func selfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawSubject, c.RawIssuer) {
		return false
	}
	_, err := cms.CheckCertificateSignature(c, c)
	return err == nil
}

func hasExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}
