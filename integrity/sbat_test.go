package integrity_test

import (
	"bytes"
	"debug/pe"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/reason"
)

// TestSBAT: Debian's signed grub, judged against SbatLevels as shim
// applies them: allowed at Debian's level, denied sbat-revoked one
// generation above its own; a .sbat section shim would read one way and
// others another is malformed.
func TestSBAT(t *testing.T) {
	dir := t.TempDir()
	grub := artifacts.EFI(t, "grubx64.efi.signed")
	debianCA := shimVendorCA(t)
	policy := func(level string) *codepolicy.Policy {
		y := "ignore_expiry: true\n"
		if level != "" {
			y += "sbat_level: " + strconv.Quote(level) + "\n"
		}
		p, err := codepolicy.Parse([]byte(y), dir)
		if err != nil {
			t.Fatal(err)
		}
		p.AddAnchors(debianCA)
		return p
	}
	v := verify(t, policy("sbat,1,2022052400\ngrub,2\n"), grub)
	want(t, v, true)
	gen := -1
	for _, e := range v.SBAT {
		if e.Component == "grub" {
			gen = int(e.Generation)
		}
	}
	if gen < 2 {
		t.Fatalf("grub's .sbat: %+v", v.SBAT)
	}
	v = verify(t, policy("sbat,1,2024010900\ngrub,"+strconv.Itoa(gen+1)+"\n"), grub)
	want(t, v, false, reason.SbatRevoked)
	if len(v.DenyRules) != 1 || v.DenyRules[0] != "sbat_level:grub,"+strconv.Itoa(gen) {
		t.Fatalf("deny rules %v", v.DenyRules)
	}
	// A malformed sbat_level is a policy error.
	if _, err := codepolicy.Parse([]byte("sbat_level: \"sbat,1\\ngrub,x\\n\"\n"), dir); err == nil {
		t.Fatal("a malformed sbat_level loads")
	}
	// A .sbat section whose grub generation shim's atoi reads as 3 and a
	// person as "3a": malformed, whatever the signature says.
	b, err := os.ReadFile(grub)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(".sbat")
	i := bytes.Index(b[s.Offset:s.Offset+s.Size], []byte("\ngrub,"))
	if i < 0 {
		t.Fatal("no grub row")
	}
	off := int(s.Offset) + i + len("\ngrub,") + 1 // after the generation's first digit
	tampered := bytes.Clone(b)
	tampered[off] = 'a'
	p := filepath.Join(dir, "grub-tampered.efi")
	if err := os.WriteFile(p, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, verify(t, policy(""), p), false, reason.Malformed)
}
