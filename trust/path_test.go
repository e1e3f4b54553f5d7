package trust_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
	"github.com/vigil-attest/vigil/trust"
)

// TestPathValidation builds chains through issuers RFC 5280 forbids to
// issue, as an attacker holding an end-entity key (or a CA key restricted by
// keyUsage, pathLen or a critical extension) would, and compares Vigil's
// verdict with crypto/x509's Verify and with `openssl verify -x509_strict
// -partial_chain` on the same certificates. Every certificate is minted from
// a fixed clock, and both verifiers check at that time.
func TestPathValidation(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required (the peer verifier)")
	}
	at := time.Date(2031, 3, 14, 12, 0, 0, 0, time.UTC)
	o := func(cn string) testpki.Options {
		return testpki.Options{CommonName: cn, NotBefore: at.Add(-24 * time.Hour), NotAfter: at.AddDate(1, 0, 0)}
	}
	root := testpki.NewRoot(o("Vigil Path Root"))
	inter := root.NewIntermediate(o("Vigil Path Intermediate"))
	leaf := inter.NewLeaf(o("Vigil Path Signer"))

	// A v1 end-entity certificate issued by the root, used as an issuer.
	v1 := root.NewV1(o("Vigil v1 End Entity"))
	v1Leaf := v1.NewLeafWith(o("Signer under v1"), func(c *x509.Certificate) { c.AuthorityKeyId = testpki.SubjectKeyID(v1.Cert.PublicKey) })
	// A v3 end-entity certificate (cA FALSE) used as an issuer.
	ee := root.NewCA(o("Vigil v3 End Entity"), func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })
	eeLeaf := ee.NewLeaf(o("Signer under end entity"))
	// A CA whose keyUsage lacks keyCertSign.
	noCertSign := root.NewCA(o("Vigil CA without keyCertSign"), func(c *x509.Certificate) {
		c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign
	})
	noCertSignLeaf := noCertSign.NewLeaf(o("Signer under no keyCertSign"))
	// pathLenConstraint 0 on an intermediate that has another CA below it.
	pl0 := root.NewCA(o("Vigil CA pathLen 0"), func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
	pl0Sub := pl0.NewIntermediate(o("Vigil CA under pathLen 0"))
	pl0Leaf := pl0Sub.NewLeaf(o("Signer under pathLen 0"))
	// pathLenConstraint 0 on the root, with one intermediate below it.
	rootPL0 := testpki.NewRootWith(o("Vigil Root pathLen 0"), func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
	rootPL0Inter := rootPL0.NewIntermediate(o("Vigil Intermediate under pathLen 0 root"))
	rootPL0Leaf := rootPL0Inter.NewLeaf(o("Signer under pathLen 0 root"))
	// pathLenConstraint 1 with exactly one intermediate below it: allowed.
	pl1 := root.NewCA(o("Vigil CA pathLen 1"), func(c *x509.Certificate) { c.MaxPathLen = 1 })
	pl1Sub := pl1.NewIntermediate(o("Vigil CA under pathLen 1"))
	pl1Leaf := pl1Sub.NewLeaf(o("Signer under pathLen 1"))
	// Unknown critical extensions, on an intermediate and on the leaf.
	crit := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{0x05, 0x00}}
	critCA := root.NewCA(o("Vigil CA with unknown critical extension"), func(c *x509.Certificate) { c.ExtraExtensions = append(c.ExtraExtensions, crit) })
	critCALeaf := critCA.NewLeaf(o("Signer under critical CA"))
	// Netscape's certificate type, critical, as on Debian's Secure Boot CA.
	nsType := pkix.Extension{Id: asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}, Critical: true, Value: []byte{0x03, 0x02, 0x00, 0x07}}
	nsCA := root.NewCA(o("Vigil CA with critical nsCertType"), func(c *x509.Certificate) { c.ExtraExtensions = append(c.ExtraExtensions, nsType) })
	nsLeaf := nsCA.NewLeaf(o("Signer under nsCertType CA"))
	critLeaf := inter.NewLeafWith(o("Signer with unknown critical extension"), func(c *x509.Certificate) { c.ExtraExtensions = append(c.ExtraExtensions, crit) })

	type peer struct{ goRejects, opensslRejects bool }
	cases := []struct {
		name    string
		leaf    *testpki.Cert
		anchor  *testpki.Cert
		inter   []*testpki.Cert
		want    reason.Code
		peers   peer
		sslText string // part of OpenSSL's error
	}{
		{"good chain", leaf, root, []*testpki.Cert{inter}, "", peer{false, false}, ""},
		{"good chain, intermediate anchor", leaf, inter, nil, "", peer{false, false}, ""},
		{"v1 end entity issues", v1Leaf, root, []*testpki.Cert{v1}, reason.IssuerNotCA, peer{true, true}, "invalid CA certificate"},
		{"v1 end entity anchor issues", v1Leaf, v1, nil, reason.IssuerNotCA, peer{false, true}, "invalid CA certificate"},
		{"cA FALSE issues", eeLeaf, root, []*testpki.Cert{ee}, reason.IssuerNotCA, peer{true, true}, "invalid CA certificate"},
		// crypto/x509 ignores keyUsage in isValid but refuses the signature
		// in CheckSignatureFrom (ConstraintViolationError), for anchors too.
		{"no keyCertSign", noCertSignLeaf, root, []*testpki.Cert{noCertSign}, reason.IssuerNoKeyCertSign, peer{true, true}, "invalid CA certificate"},
		{"no keyCertSign anchor", noCertSignLeaf, noCertSign, nil, reason.IssuerNoKeyCertSign, peer{true, true}, "invalid CA certificate"},
		{"pathLen 0 intermediate", pl0Leaf, root, []*testpki.Cert{pl0, pl0Sub}, reason.PathLengthExceeded, peer{true, true}, "path length constraint exceeded"},
		{"pathLen 0 root", rootPL0Leaf, rootPL0, []*testpki.Cert{rootPL0Inter}, reason.PathLengthExceeded, peer{true, true}, "path length constraint exceeded"},
		{"pathLen 1 met", pl1Leaf, root, []*testpki.Cert{pl1, pl1Sub}, "", peer{false, false}, ""},
		{"unknown critical extension on CA", critCALeaf, root, []*testpki.Cert{critCA}, reason.UnknownCriticalExtension, peer{true, true}, "unhandled critical extension"},
		// crypto/x509 leaves nsCertType unhandled; OpenSSL (and so shim and EDK2) process it.
		{"critical nsCertType on CA", nsLeaf, root, []*testpki.Cert{nsCA}, "", peer{true, false}, ""},
		{"critical nsCertType on anchor", nsLeaf, nsCA, nil, "", peer{true, false}, ""},
		{"unknown critical extension on leaf", critLeaf, root, []*testpki.Cert{inter}, reason.UnknownCriticalExtension, peer{true, true}, "unhandled critical extension"},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var inters []*x509.Certificate
			for _, c := range tc.inter {
				inters = append(inters, c.Cert)
			}
			_, err := trust.Build(tc.leaf.Cert, trust.Options{
				Anchors: []*x509.Certificate{tc.anchor.Cert}, Intermediates: inters, At: at,
				RequireEKU: []asn1.ObjectIdentifier{trust.EKUCodeSigning},
			})
			if got := reason.Of(err, ""); got != tc.want {
				t.Errorf("Vigil: got %q (%v), want %q", got, err, tc.want)
			}

			// crypto/x509, as a reference for the checks it makes.
			roots, pool := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(tc.anchor.Cert)
			for _, c := range inters {
				pool.AddCert(c)
			}
			_, gerr := tc.leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: at,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
			if (gerr != nil) != tc.peers.goRejects {
				t.Errorf("crypto/x509 Verify: err %v, want rejected=%v", gerr, tc.peers.goRejects)
			}

			// OpenSSL, the peer: it must reject every chain Vigil rejects.
			caFile := testpki.WritePEMs(t, dir, fmt.Sprintf("ca%d.pem", i), tc.anchor)
			leafFile := testpki.WritePEMs(t, dir, fmt.Sprintf("leaf%d.pem", i), tc.leaf)
			args := []string{"verify", "-x509_strict", "-partial_chain", "-attime", fmt.Sprint(at.Unix()), "-CAfile", caFile}
			if len(tc.inter) > 0 {
				args = append(args, "-untrusted", testpki.WritePEMs(t, dir, fmt.Sprintf("untrusted%d.pem", i), tc.inter...))
			}
			out, oerr := exec.Command("openssl", append(args, leafFile)...).CombinedOutput()
			if (oerr != nil) != tc.peers.opensslRejects {
				t.Errorf("openssl verify: %v\n%s\nwant rejected=%v", oerr, out, tc.peers.opensslRejects)
			}
			if tc.sslText != "" && !strings.Contains(string(out), tc.sslText) {
				t.Errorf("openssl verify rejects for another reason than %q:\n%s", tc.sslText, out)
			}
			if (tc.want != "") != tc.peers.opensslRejects {
				t.Errorf("Vigil (%q) and openssl (rejected=%v) disagree", tc.want, tc.peers.opensslRejects)
			}
		})
	}
}
