package codepolicy

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testpki"
)

// TestCRLIssuerNameCase is the attack of issue 12: a CRL whose issuer name
// differs from the issuing CA's subject only in letter case (and white
// space) must still revoke, as RFC 5280 7.1 compares names, and as
// `openssl verify -crl_check` (X509_NAME_cmp on the canonical encoding)
// applies the same CRL to the same certificate. Everything is minted from a
// fixed clock.
func TestCRLIssuerNameCase(t *testing.T) {
	at := time.Date(2031, 3, 14, 12, 0, 0, 0, time.UTC)
	o := func(cn string, serial int64) testpki.Options {
		op := testpki.Options{CommonName: cn, Key: testpki.ECDSAP256, NotBefore: at.Add(-48 * time.Hour), NotAfter: at.AddDate(1, 0, 0)}
		if serial != 0 {
			op.Serial = big.NewInt(serial)
		}
		return op
	}
	root := testpki.NewRoot(o("Vigil CRL Root", 0))
	inter := root.NewIntermediate(o("Vigil CRL Intermediate", 0))
	leaf := inter.NewLeaf(o("Vigil CRL Signer", 0x5151))

	// The CRL names its issuer in other letter case, with a doubled space.
	lower, err := asn1.Marshal(pkix.Name{CommonName: "vigil crl  INTERMEDIATE", Organization: []string{"VIGIL TEST"}}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	if string(lower) == string(inter.Cert.RawSubject) {
		t.Fatal("the crafted issuer name is the same bytes")
	}
	issuer := *inter.Cert
	issuer.RawSubject = lower
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: at.Add(-time.Hour), NextUpdate: at.AddDate(0, 0, 30),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(0x5151), RevocationTime: at.Add(-2 * time.Hour), ReasonCode: 1}},
	}, &issuer, inter.Key)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	rootPath, _ := root.WriteFiles(t, dir, "root")
	p := mustParse(t, "trust: [root.pem]", dir)
	st, err := ImportCRL(p, crlDER, VerifyCRL(inter.Cert), func(c *crlOptions) { c.now = func() time.Time { return at } })
	if err != nil {
		t.Fatalf("ImportCRL of a CRL whose issuer differs in case: %v", err)
	}
	if st.TotalAdded() != 1 {
		t.Fatalf("imported %+v, want one revocation", st)
	}
	r := p.Revocation(leaf.Cert)
	if r == nil || !r.Rejects(nil) {
		t.Fatalf("the CRL's entry does not revoke the certificate: %+v (revocations %+v)", r, p.Revocations)
	}
	// The same serial under another issuer stays valid.
	if other := root.NewLeaf(o("Other", 0x5151)); p.Revocation(other.Cert) != nil {
		t.Error("the entry revokes the same serial under another issuer")
	}

	// The peer: OpenSSL applies the same CRL to the same certificate.
	crlPath := filepath.Join(dir, "crl.pem")
	if err := os.WriteFile(crlPath, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "verify", "-crl_check", "-attime", fmt.Sprint(at.Unix()),
		"-CAfile", rootPath, "-untrusted", testpki.WritePEMs(t, dir, "inter.pem", inter),
		"-CRLfile", crlPath, testpki.WritePEMs(t, dir, "leaf.pem", leaf)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate revoked") {
		t.Errorf("openssl verify -crl_check: %v\n%s\nwant certificate revoked", err, out)
	}
}
