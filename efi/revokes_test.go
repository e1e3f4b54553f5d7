package efi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/report"
)

// TestRevocationKindsMatchReport: the report's vocabulary of revocation
// kinds is efi's.
func TestRevocationKindsMatchReport(t *testing.T) {
	if got, want := report.RevocationKinds, efi.RevocationKinds(); !slices.Equal(got, want) {
		t.Fatalf("report.RevocationKinds = %v, efi.RevocationKinds() = %v", got, want)
	}
}

// TestRevokes: every entry type a forbidden database holds, read as the
// firmware reads dbx and as shim reads MokListX (SHA-256 and X.509 only).
func TestRevokes(t *testing.T) {
	cert := testpki.NewRoot(testpki.Options{CommonName: "Revoked Boot Signer"})
	tbs := sha256.Sum256(cert.Cert.RawTBSCertificate)
	h256 := bytes.Repeat([]byte{0xa1}, 32)
	h1 := bytes.Repeat([]byte{0xb2}, 20)
	t256 := bytes.Repeat([]byte{0xc3}, 32)
	t384 := bytes.Repeat([]byte{0xd4}, 48)
	t512 := bytes.Repeat([]byte{0xe5}, 64)
	var owner efi.GUID
	db, err := efi.AppendSignatureLists(nil,
		efi.HashList(efi.CertSHA256, owner, h256, h256),
		efi.HashList(efi.CertSHA1, owner, h1),
		efi.X509List(owner, cert.Cert.Raw),
		efi.X509List(owner, []byte("not a certificate")),
		efi.HashList(efi.CertX509SHA256, owner, efi.CertHashData(t256, efi.Time{Year: 2024, Month: 1, Day: 2})),
		efi.HashList(efi.CertX509SHA384, owner, efi.CertHashData(t384, efi.Time{})),
		efi.HashList(efi.CertX509SHA512, owner, efi.CertHashData(t512, efi.Time{})),
	)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := efi.ParseSignatureLists(db)
	if err != nil {
		t.Fatal(err)
	}
	x := hex.EncodeToString
	dbx := []string{
		"cert_tbs_sha256:" + x(tbs[:]), "cert_tbs_sha256:" + x(t256), "cert_tbs_sha384:" + x(t384),
		"cert_tbs_sha512:" + x(t512), "image_sha1:" + x(h1), "image_sha256:" + x(h256),
	}
	slices.Sort(dbx)
	if got := efi.Revokes(efi.Entries(lists), false); !slices.Equal(got, dbx) {
		t.Errorf("dbx revokes\n got %v\nwant %v", got, dbx)
	}
	mokx := []string{"cert_tbs_sha256:" + x(tbs[:]), "image_sha256:" + x(h256)}
	slices.Sort(mokx)
	if got := efi.Revokes(efi.Entries(lists), true); !slices.Equal(got, mokx) {
		t.Errorf("mokx revokes\n got %v\nwant %v", got, mokx)
	}
}
