package efi_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/kernelkeys"
)

// realCerts returns the certificates Debian's signed shim and GRUB carry
// in their Authenticode signatures (Microsoft's UEFI CAs and signers,
// Debian's signer), found with the repository's authenticode and cms
// packages, and the Debian Secure Boot CA that shim embeds as its vendor
// certificate: what a real db, MokListRT or KEK holds.
func realCerts(tb testing.TB) []*x509.Certificate {
	tb.Helper()
	var out []*x509.Certificate
	seen := map[string]bool{}
	add := func(c *x509.Certificate) {
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			out = append(out, c)
		}
	}
	for _, name := range []string{"shimx64.efi.signed", "grubx64.efi.signed"} {
		path := artifacts.EFI(tb, name)
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		pf, err := authenticode.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		wcs, err := pf.Certificates()
		if err != nil || len(wcs) == 0 {
			tb.Fatalf("%s: %d certificate-table entries, %v", name, len(wcs), err)
		}
		for _, wc := range wcs {
			sd, err := cms.Parse(wc.Data)
			if err != nil {
				tb.Fatalf("%s: %v", name, err)
			}
			for _, c := range sd.Certificates {
				add(c)
			}
		}
		if name == "shimx64.efi.signed" {
			cs, err := kernelkeys.Scan(bytes.NewReader(b))
			if err != nil {
				tb.Fatal(err)
			}
			for _, c := range cs {
				if c.Subject.CommonName == "Debian Secure Boot CA" {
					add(c)
				}
			}
		}
	}
	want := []string{"Microsoft Corporation UEFI CA 2011", "Microsoft UEFI CA 2023", "Debian Secure Boot CA"}
	for _, cn := range want {
		found := false
		for _, c := range out {
			found = found || c.Subject.CommonName == cn
		}
		if !found {
			tb.Fatalf("no %q among the %d certificates of shim and grub", cn, len(out))
		}
	}
	return out
}

// testCerts returns generated certificates of several key types followed
// by the real ones.
func testCerts(tb testing.TB) []*x509.Certificate {
	tb.Helper()
	root := testpki.NewRoot(testpki.Options{CommonName: "Vigil Test PK"})
	kek := root.NewIntermediate(testpki.Options{CommonName: "Vigil Test KEK", Key: testpki.RSA3072})
	db := kek.NewLeaf(testpki.Options{CommonName: "Vigil Test db", Key: testpki.ECDSAP256})
	return append([]*x509.Certificate{root.Cert, kek.Cert, db.Cert}, realCerts(tb)...)
}

// certToESL runs efitools' cert-to-efi-sig-list on c with owner.
func certToESL(tb testing.TB, dir string, c *x509.Certificate, owner efi.GUID) []byte {
	tb.Helper()
	pem := filepath.Join(dir, "cert.pem")
	out := filepath.Join(dir, "cert.esl")
	if err := os.WriteFile(pem, testpki.CertPEMOf(c), 0o644); err != nil {
		tb.Fatal(err)
	}
	testcmd.Run(tb, "cert-to-efi-sig-list", "-g", owner.String(), pem, out)
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// hashableEFI lists the Debian binaries whose Authenticode hash efitools'
// hash-to-efi-sig-list (1.9.2) computes: it fails ("Failed to get hash")
// on shim, GRUB, mm and fb, and then writes an all-zero hash.
func hashableEFI(tb testing.TB) []string {
	return []string{artifacts.EFI(tb, "fwupdx64.efi.signed"), artifacts.Vmlinuz(tb)}
}

// hashToESL runs efitools' hash-to-efi-sig-list on the PE files.
func hashToESL(tb testing.TB, dir string, files ...string) []byte {
	tb.Helper()
	out := filepath.Join(dir, "hash.esl")
	log := testcmd.Run(tb, "hash-to-efi-sig-list", append(files, out)...)
	if strings.Contains(log, "Failed") {
		tb.Fatalf("hash-to-efi-sig-list: %s", log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func authentihash(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	pf, err := authenticode.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatal(err)
	}
	h, err := pf.ImageHash(crypto.SHA256)
	if err != nil {
		tb.Fatal(err)
	}
	return h[crypto.SHA256]
}

// TestEfitoolsCertLists: every list cert-to-efi-sig-list writes parses to
// its certificate and owner, and our encoder writes the same bytes; the
// concatenation (a db) parses to all of them in order.
func TestEfitoolsCertLists(t *testing.T) {
	dir := t.TempDir()
	certs := testCerts(t)
	var db []byte
	for i, c := range certs {
		owner := efi.MustParseGUID(fmt.Sprintf("%08x-2222-3333-4444-555555555555", i))
		b := certToESL(t, dir, c, owner)
		lists, err := efi.ParseSignatureLists(b)
		if err != nil || len(lists) != 1 || lists[0].Type != efi.CertX509 || len(lists[0].Signatures) != 1 {
			t.Fatalf("%s: %+v %v", c.Subject, lists, err)
		}
		if s := lists[0].Signatures[0]; s.Owner != owner || !bytes.Equal(s.Data, c.Raw) {
			t.Fatalf("%s: owner %s, data differs: %v", c.Subject, s.Owner, !bytes.Equal(s.Data, c.Raw))
		}
		if ours := mustEncode(t, efi.X509List(owner, c.Raw)); !bytes.Equal(ours, b) {
			t.Fatalf("%s: our encoding differs from cert-to-efi-sig-list's", c.Subject)
		}
		db = append(db, b...)
	}
	lists, err := efi.ParseSignatureLists(db)
	if err != nil || len(lists) != len(certs) {
		t.Fatalf("db: %d lists, %v", len(lists), err)
	}
	for i, e := range efi.Entries(lists) {
		if e.Err != nil || e.Certificate == nil || !e.Certificate.Equal(certs[i]) || e.List != i {
			t.Fatalf("db entry %d: %+v", i, e)
		}
	}
	t.Logf("%d certificates (%d real) in a %d-byte db", len(certs), len(certs)-3, len(db))
}

// TestEfitoolsHashLists: the Authenticode hashes hash-to-efi-sig-list
// puts in a list are the ones our authenticode package computes, and our
// encoder writes the same list.
func TestEfitoolsHashLists(t *testing.T) {
	files := hashableEFI(t)
	b := hashToESL(t, t.TempDir(), files...)
	lists, err := efi.ParseSignatureLists(b)
	if err != nil || len(lists) != 1 || lists[0].Type != efi.CertSHA256 || len(lists[0].Signatures) != len(files) {
		t.Fatalf("%+v %v", lists, err)
	}
	owner := lists[0].Signatures[0].Owner
	var hashes [][]byte
	for i, e := range efi.Entries(lists) {
		want := authentihash(t, files[i])
		if !bytes.Equal(e.Hash, want) || e.Owner != owner {
			t.Fatalf("%s: efitools %x, ours %x", filepath.Base(files[i]), e.Hash, want)
		}
		hashes = append(hashes, want)
	}
	if ours := mustEncode(t, efi.HashList(efi.CertSHA256, owner, hashes...)); !bytes.Equal(ours, b) {
		t.Fatal("our encoding differs from hash-to-efi-sig-list's")
	}
}

// TestSigListToCerts: efitools' sig-list-to-certs reads a database our
// encoder wrote and writes out every entry: the certificates, hashes and
// opaque data are byte for byte ours, with our owners.
func TestSigListToCerts(t *testing.T) {
	dir := t.TempDir()
	certs := testCerts(t)
	var lists []efi.SignatureList
	type want struct {
		ext   string
		data  []byte
		owner efi.GUID
	}
	var wants []want
	for i, c := range certs {
		owner := efi.MustParseGUID(fmt.Sprintf("a%07x-0000-4000-8000-000000000000", i))
		lists = append(lists, efi.X509List(owner, c.Raw))
		wants = append(wants, want{"der", c.Raw, owner})
	}
	var hashes [][]byte
	for _, f := range hashableEFI(t) {
		h := authentihash(t, f)
		hashes = append(hashes, h)
		wants = append(wants, want{"hash", h, efi.ShimLock})
	}
	lists = append(lists, efi.HashList(efi.CertSHA256, efi.ShimLock, hashes...))
	tbs := efi.CertHashData(bytes.Repeat([]byte{7}, 32), efi.Time{Year: 2024, Month: 1, Day: 2})
	lists = append(lists, efi.HashList(efi.CertX509SHA256, testOwner, tbs))
	wants = append(wants, want{"txt", tbs, testOwner})
	db := mustEncode(t, lists...)
	esl := filepath.Join(dir, "db.esl")
	if err := os.WriteFile(esl, db, 0o644); err != nil {
		t.Fatal(err)
	}
	log := testcmd.Run(t, "sig-list-to-certs", esl, filepath.Join(dir, "out"))
	owners := regexp.MustCompile(`Guid ([0-9a-f-]{36})`).FindAllStringSubmatch(log, -1)
	if len(owners) != len(wants) {
		t.Fatalf("sig-list-to-certs wrote %d entries, want %d:\n%s", len(owners), len(wants), log)
	}
	for i, w := range wants {
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out-%d.%s", i, w.ext)))
		if err != nil {
			t.Fatalf("entry %d: %v\n%s", i, err, log)
		}
		if !bytes.Equal(got, w.data) || owners[i][1] != w.owner.String() {
			t.Fatalf("entry %d (%s): data equal %v, owner %s want %s", i, w.ext, bytes.Equal(got, w.data), owners[i][1], w.owner)
		}
	}
}
