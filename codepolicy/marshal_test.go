package codepolicy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/internal/testpki"
)

func TestMarshalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeAnchors(t, dir)
	p := mustParse(t, fullPolicy, dir)
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q := mustParse(t, string(b), dir)
	b2, err := q.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Errorf("Marshal is not stable:\n%s\n---\n%s", b, b2)
	}
	if p.Digest() != q.Digest() || !strings.HasPrefix(p.Digest(), "sha256:") || len(p.Digest()) != 7+64 {
		t.Errorf("digest %s vs %s", p.Digest(), q.Digest())
	}
	for _, want := range []string{"min_hash: sha384\n", "ignore_expiry: true\n", "reason: keyCompromise\n", "serial: a0bff\n", "revoked_at: 2026-01-01T00:00:00Z\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Marshal output lacks %q:\n%s", want, b)
		}
	}
	// No EKU requirement survives the round trip.
	n := mustParse(t, "require_eku: []", "")
	b, _ = n.Marshal()
	if !strings.Contains(string(b), "require_eku: []\n") || len(mustParse(t, string(b), "").RequiredEKUs()) != 0 {
		t.Errorf("require_eku: [] lost:\n%s", b)
	}
}

func TestMarshalDedupAndDigest(t *testing.T) {
	a := strings.Repeat("ab", 32)
	c := strings.Repeat("cd", 32)
	p := mustParse(t, `
deny:
  sha256: [`+c+`, `+strings.ToUpper(a)+`, `+a+`]
require_eku: [kernelModeCodeSigning, codeSigning, 1.3.6.1.5.5.7.3.3]
revocations:
  - {issuer: "CN=B, O=X", serial: "02"}
  - {issuer: "O=X, CN=B", serial: "0x2"}
  - {issuer: "CN=A", serial: "ff", revoked_at: 2026-01-01T00:00:00Z}
  - {issuer: "CN=A", serial: "10"}
allow_signers:
  - {subject: "CN=S, O=X"}
  - {subject: "O=X,CN=S"}
`, "")
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	if strings.Count(out, a) != 1 || strings.Index(out, a) > strings.Index(out, c) {
		t.Errorf("deny.sha256 not deduplicated and sorted:\n%s", out)
	}
	if strings.Count(out, "- codeSigning\n") != 1 {
		t.Errorf("require_eku not deduplicated:\n%s", out)
	}
	if strings.Count(out, "CN=B") != 1 || strings.Count(out, "subject:") != 1 {
		t.Errorf("equal names not deduplicated:\n%s", out)
	}
	if i, j := strings.Index(out, "serial: \"10\""), strings.Index(out, "serial: ff"); i < 0 || j < 0 || i > j {
		t.Errorf("serials not in numeric order:\n%s", out)
	}

	// Order does not change the digest; content does.
	q := mustParse(t, `
allow_signers: [{subject: "O=X,CN=S"}]
revocations:
  - {issuer: "CN=A", serial: "10"}
  - {issuer: "CN=A", serial: "ff", revoked_at: 2026-01-01T00:00:00Z}
  - {issuer: "CN=B, O=X", serial: "02"}
require_eku: [codeSigning, kernelModeCodeSigning]
deny:
  sha256: [`+a+`, `+c+`]
`, "")
	if p.Digest() != q.Digest() {
		b2, _ := q.Marshal()
		t.Errorf("reordered policy has another digest:\n%s\n---\n%s", b, b2)
	}
	q.IgnoreExpiry = true
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.Digest() == q.Digest() {
		t.Error("ignore_expiry does not change the digest")
	}
}

func TestDigestCoversAnchorsNotPaths(t *testing.T) {
	d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
	root := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	testpki.WritePEMs(t, d1, "a.pem", root)
	testpki.WritePEMs(t, d2, "renamed.pem", root)
	testpki.WritePEMs(t, d3, "a.pem", testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256}))
	p1 := mustParse(t, "trust: [a.pem]", d1)
	p2 := mustParse(t, "trust: [renamed.pem]", d2)
	p3 := mustParse(t, "trust: [a.pem]", d3)
	if p1.Digest() != p2.Digest() {
		t.Error("renaming the anchor file changed the digest")
	}
	if p1.Digest() == p3.Digest() {
		t.Error("another anchor certificate left the digest unchanged")
	}
	// An absolute path works too.
	abs := filepath.Join(d1, "a.pem")
	if mustParse(t, "trust: ["+abs+"]", "/nonexistent").Digest() != p1.Digest() {
		t.Error("absolute trust path")
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatal(err)
	}
}

func TestImportLOLDriversShapes(t *testing.T) {
	good := strings.Repeat("a", 64)
	csv := "\ufeffId,Category,KnownVulnerableSamples_SHA256,KnownVulnerableSamples_Authentihash_SHA256,KnownVulnerableSamples_Authentihash_SHA1\n" +
		"1,vulnerable driver,\"" + good + ", " + strings.ToUpper(good) + ", nothex, " + strings.Repeat("b", 63) + "\",,\n" +
		"2,malicious,,\"" + strings.Repeat("c", 64) + "\"," + strings.Repeat("d", 40) + "\n" +
		"3,something new,,," + strings.Repeat("e", 40) + "\n" +
		"4\n" // a short row
	p := Default()
	st, err := ImportLOLDrivers(p, strings.NewReader(csv), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 4 || st.Added["deny.sha256"] != 1 || st.Duplicates != 1 || st.SkippedReasons["malformed-hash"] != 2 ||
		st.SkippedReasons["category-not-selected"] != 2 || st.Added["deny.authentihash_sha256"] != 1 || st.Added["deny.authentihash_sha1"] != 1 {
		t.Errorf("stats: %+v", st)
	}
	st, err = ImportLOLDrivers(Default(), strings.NewReader(csv), []string{"typo"})
	if err != nil || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "typo") {
		t.Errorf("unknown category: %+v %v", st, err)
	}
	for _, bad := range []string{"", "Id,Category\n1,malicious\n", "a,\"b\n"} {
		if _, err := ImportLOLDrivers(Default(), strings.NewReader(bad), nil); err == nil {
			t.Errorf("ImportLOLDrivers(%q): no error", bad)
		}
	}
	if _, err := ImportLOLDrivers(&Policy{}, strings.NewReader(csv), nil); err == nil {
		t.Error("import into an unvalidated policy")
	}
}
