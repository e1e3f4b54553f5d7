package codepolicy

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/internal/testcmd"
)

// realDBX returns the dbx a real machine measured into PCR 7 (the
// keylime_binary_bios_measurements event log of shared/data), the event's
// digest checked.
func realDBX(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(sharedData(t, "eventlogs/keylime_binary_bios_measurements"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range l.Summarize().SecureBootVariables {
		if v.Name == "dbx" && v.Verified {
			return v.Data
		}
	}
	t.Fatal("no verified dbx event")
	return nil
}

// TestImportRealDBX: a production dbx (Microsoft's revocations: image
// hashes, with repeats, and revoked certificates) imports completely, and
// exports to a database efitools reads that imports back to the same
// entries.
func TestImportRealDBX(t *testing.T) {
	db := realDBX(t)
	p := Default()
	st, err := ImportSignatureDatabase(p, db, "dbx")
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 460 || st.Skipped != 0 || st.Duplicates != 33 ||
		!mapsEqual(st.Added, map[string]int{"deny.authentihash_sha256": 425, "revocations": 2}) {
		t.Fatalf("stats %+v", st)
	}
	for _, r := range p.Revocations {
		if r.Certificate == "" || r.RevokedAt != nil {
			t.Errorf("revocation %+v", r)
		}
		t.Logf("revoked: %s", r.Comment)
	}
	out, est, err := ExportSignatureDatabase(p, "dbx", efi.GUID{})
	if err != nil || !mapsEqual(est.Written, map[string]int{"sha256": 425, "x509": 2}) {
		t.Fatalf("export %v %+v", err, est)
	}
	dir := t.TempDir()
	esl := filepath.Join(dir, "dbx.esl")
	os.WriteFile(esl, out, 0o644)
	testcmd.Run(t, "sig-list-to-certs", esl, filepath.Join(dir, "c"))
	ders, _ := filepath.Glob(filepath.Join(dir, "c-*.der"))
	if len(ders) != 2 {
		t.Fatalf("sig-list-to-certs wrote %d certificates", len(ders))
	}
	q := Default()
	if st2, err := ImportSignatureDatabase(q, out, "dbx"); err != nil || st2.Read != 427 || st2.Duplicates != 0 {
		t.Fatalf("re-import %v %+v", err, st2)
	}
	if !slices.Equal(sortedUnique(p.Deny.AuthentihashSHA256), sortedUnique(q.Deny.AuthentihashSHA256)) {
		t.Error("image hashes differ after the round trip")
	}
	for i := range p.Revocations {
		if q.Revocation(mustCert(t, p.Revocations[i].Certificate)) == nil {
			t.Errorf("certificate %s lost", p.Revocations[i].Comment)
		}
	}
	// MokListX keeps the same (hashes and certificates only).
	if _, est, err := ExportSignatureDatabase(p, "mokx", efi.GUID{}); err != nil || est.Written["x509"] != 2 {
		t.Fatalf("mokx %v %+v", err, est)
	}
}

func mustCert(t *testing.T, pemText string) *x509.Certificate {
	t.Helper()
	c, err := parseOnePEMCertificate(pemText)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
