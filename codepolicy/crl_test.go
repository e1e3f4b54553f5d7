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

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
)

func mustExt(t *testing.T, oid asn1.ObjectIdentifier, v any, params string) pkix.Extension {
	t.Helper()
	b, err := asn1.MarshalWithParams(v, params)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oid, Value: b}
}

func makeCRL(t *testing.T, issuer *testpki.Cert, entries []x509.RevocationListEntry, extra ...pkix.Extension) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(7),
		ThisUpdate:                time.Now().Add(-time.Minute),
		NextUpdate:                time.Now().AddDate(0, 0, 30),
		RevokedCertificateEntries: entries,
		ExtraExtensions:           extra,
	}, issuer.Cert, issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestImportCRL(t *testing.T) {
	root := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	inter := root.NewIntermediate(testpki.Options{Key: testpki.ECDSAP256})
	leafA := inter.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0x1001)})
	leafB := inter.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0x1002)})
	leafC := inter.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0x1003)})

	tA := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	tB := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	early := time.Date(2025, 12, 24, 0, 0, 0, 0, time.UTC)
	der := makeCRL(t, inter, []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(0x1001), RevocationTime: tA, ReasonCode: 1}, // keyCompromise
		{SerialNumber: big.NewInt(0x1002), RevocationTime: tB, ReasonCode: 4, // superseded, with an earlier invalidityDate
			ExtraExtensions: []pkix.Extension{mustExt(t, oidInvalidityDate, early, "generalized")}},
		{SerialNumber: big.NewInt(0x1003), RevocationTime: tB},                // no reason
		{SerialNumber: big.NewInt(0x1004), RevocationTime: tB, ReasonCode: 6}, // certificateHold
		{SerialNumber: big.NewInt(0x1005), RevocationTime: tB, ReasonCode: 8}, // removeFromCRL
	})

	p := Default()
	st, err := ImportCRL(p, der)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 5 || st.Added["revocations"] != 4 || st.SkippedReasons["remove-from-crl"] != 1 || st.Verified {
		t.Errorf("stats: %+v", st)
	}
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "unverified") {
		t.Errorf("no unverified warning: %v", st.Warnings)
	}
	wantIssuer := "CN=Vigil Test Intermediate CA, O=Vigil Test"
	want := []Revocation{
		{Issuer: wantIssuer, Serial: "1001", RevokedAt: &tA, Reason: "keyCompromise"},
		{Issuer: wantIssuer, Serial: "1002", RevokedAt: &early, Reason: "superseded"},
		{Issuer: wantIssuer, Serial: "1003", RevokedAt: &tB},
		{Issuer: wantIssuer, Serial: "1004", RevokedAt: &tB, Reason: "certificateHold"},
	}
	if len(p.Revocations) != len(want) {
		t.Fatalf("revocations: %+v", p.Revocations)
	}
	for i, w := range want {
		g := p.Revocations[i]
		if g.Issuer != w.Issuer || g.Serial != w.Serial || g.Reason != w.Reason || !g.RevokedAt.Equal(*w.RevokedAt) {
			t.Errorf("revocation %d = %+v (revoked_at %v), want %+v (%v)", i, g, g.RevokedAt, w, w.RevokedAt)
		}
	}
	// The entries match the certificates.
	before := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	if r := p.Revocation(leafA.Cert); r == nil || !r.Rejects(&before) {
		t.Errorf("keyCompromise entry: %+v", r)
	}
	if r := p.Revocation(leafB.Cert); r == nil || r.Rejects(&before) || !r.Rejects(&tA) {
		t.Errorf("superseded entry, invalidityDate: %+v", r)
	}
	if p.Revocation(leafC.Cert) == nil || p.Revocation(inter.Cert) != nil {
		t.Error("lookups of imported entries")
	}

	// Again, as PEM: all duplicates.
	st, err = ImportCRL(p, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalAdded() != 0 || st.Duplicates != 4 {
		t.Errorf("second import: %+v", st)
	}

	// The merged policy writes and reads back.
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(b, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if q.Revocation(leafA.Cert) == nil || q.Digest() != p.Digest() {
		t.Errorf("round trip lost revocations:\n%s", b)
	}
}

func TestImportCRLVerify(t *testing.T) {
	dir := t.TempDir()
	root := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	inter := root.NewIntermediate(testpki.Options{Key: testpki.ECDSAP256})
	stranger := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256, CommonName: "Vigil Test Intermediate CA"})
	testpki.WritePEMs(t, dir, "root.pem", root)
	p := mustParse(t, "trust: [root.pem]", dir)
	entry := []x509.RevocationListEntry{{SerialNumber: big.NewInt(9), RevocationTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}

	// Signed by the anchor itself.
	st, err := ImportCRL(p, makeCRL(t, root, entry), VerifyCRL())
	if err != nil || !st.Verified || st.Added["revocations"] != 1 {
		t.Errorf("anchor-signed CRL: %+v %v", st, err)
	}
	// Signed by an intermediate: needs the intermediate.
	interCRL := makeCRL(t, inter, entry)
	if _, err := ImportCRL(p, interCRL, VerifyCRL()); err == nil {
		t.Error("intermediate-signed CRL verified without the intermediate")
	}
	st, err = ImportCRL(p, interCRL, VerifyCRL(inter.Cert))
	if err != nil || !st.Verified || st.Added["revocations"] != 1 {
		t.Errorf("intermediate-signed CRL: %+v %v", st, err)
	}
	// Same issuer name, different key: rejected, policy unchanged.
	n := len(p.Revocations)
	if _, err := ImportCRL(p, makeCRL(t, stranger, entry), VerifyCRL(stranger.Cert)); err == nil {
		t.Error("CRL from an untrusted issuer verified")
	}
	if len(p.Revocations) != n {
		t.Error("a failed import changed the policy")
	}
	if _, err := ImportCRL(Default(), makeCRL(t, root, entry), VerifyCRL()); err == nil || !strings.Contains(err.Error(), "no trust anchors") {
		t.Errorf("verify without anchors: %v", err)
	}
}

func TestImportCRLIndirect(t *testing.T) {
	ca := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256, CommonName: "CRL Issuer"})
	other := rawName(t, []any{oidO, "Other Org"}, []any{oidCN, "Other CA"})
	gn, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: other}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	der := makeCRL(t, ca, []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(1), RevocationTime: at},
		{SerialNumber: big.NewInt(2), RevocationTime: at, ExtraExtensions: []pkix.Extension{{Id: oidCertificateIssuer, Critical: true, Value: gn}}},
		{SerialNumber: big.NewInt(3), RevocationTime: at}, // still Other CA
	})
	p := Default()
	if _, err := ImportCRL(p, der); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s/%s %s/%s %s/%s", p.Revocations[0].Issuer, p.Revocations[0].Serial,
		p.Revocations[1].Issuer, p.Revocations[1].Serial, p.Revocations[2].Issuer, p.Revocations[2].Serial)
	if got != "CN=CRL Issuer, O=Vigil Test/1 CN=Other CA, O=Other Org/2 CN=Other CA, O=Other Org/3" {
		t.Errorf("indirect CRL issuers: %s", got)
	}
}

func TestImportCRLErrors(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("not a crl"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		p := Default()
		if _, err := ImportCRL(p, in); err == nil {
			t.Errorf("ImportCRL(%q): no error", in)
		}
	}
	if _, err := ImportCRL(&Policy{}, nil); err == nil {
		t.Error("import into an unvalidated policy")
	}
}

// TestImportCRLOpenSSL imports a CRL made by `openssl ca -gencrl`, the tool
// many private CAs use.
func TestImportCRLOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required (make deps installs it)")
	}
	dir := t.TempDir()
	root := testpki.NewRoot(testpki.Options{Key: testpki.RSA2048, CommonName: "OpenSSL Test CA"})
	certPath, keyPath := root.WriteFiles(t, dir, "ca")
	leafA := root.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0x51)})
	leafB := root.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0xc0ffee)})
	// index.txt: status, expiry, revocation date[,reason], serial, file, subject.
	index := fmt.Sprintf("R\t361231000000Z\t260115103000Z,keyCompromise\t51\tunknown\t/CN=A\n" +
		"R\t361231000000Z\t260201000000Z,superseded\tC0FFEE\tunknown\t/CN=B\n" +
		"V\t361231000000Z\t\t52\tunknown\t/CN=C\n")
	conf := fmt.Sprintf(`[ca]
default_ca = test
[test]
database = %[1]s/index.txt
certificate = %[2]s
private_key = %[3]s
default_md = sha256
default_crl_days = 30
crlnumber = %[1]s/crlnumber
`, dir, certPath, keyPath)
	for name, content := range map[string]string{"index.txt": index, "crlnumber": "01\n", "openssl.cnf": conf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testcmd.Run(t, "openssl", "ca", "-gencrl", "-config", filepath.Join(dir, "openssl.cnf"), "-out", filepath.Join(dir, "crl.pem"))
	crl, err := os.ReadFile(filepath.Join(dir, "crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, "trust: [ca.pem]", dir)
	st, err := ImportCRL(p, crl, VerifyCRL())
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 2 || st.Added["revocations"] != 2 || !st.Verified {
		t.Fatalf("stats: %+v", st)
	}
	ra, rb := p.Revocation(leafA.Cert), p.Revocation(leafB.Cert)
	if ra == nil || ra.Reason != "keyCompromise" || !ra.RevokedAt.Equal(time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC)) {
		t.Errorf("serial 51: %+v", ra)
	}
	if rb == nil || rb.Reason != "superseded" || !rb.RevokedAt.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) || rb.Serial != "c0ffee" {
		t.Errorf("serial c0ffee: %+v", rb)
	}
	if ra.Issuer != "CN=OpenSSL Test CA, O=Vigil Test" {
		t.Errorf("issuer %q", ra.Issuer)
	}
}

func TestImportCRLWarnings(t *testing.T) {
	ca := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(3),
		ThisUpdate: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NextUpdate: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(5), RevocationTime: time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC), ReasonCode: 7}, // unused code
		},
		ExtraExtensions: []pkix.Extension{mustExt(t, oidDeltaCRLIndicator, big.NewInt(2), "")},
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	p := Default()
	st, err := ImportCRL(p, der)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(st.Warnings, "\n")
	for _, want := range []string{"delta CRL", "past its nextUpdate", "unknown reason code 7", "unverified"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	// An unknown reason still revokes, with no reason: fail closed.
	if len(p.Revocations) != 1 || p.Revocations[0].Reason != "" || p.Revocations[0].RevokedAt == nil {
		t.Errorf("revocations: %+v", p.Revocations)
	}
}
