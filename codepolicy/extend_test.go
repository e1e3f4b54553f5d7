package codepolicy_test

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/internal/testpki"
)

// TestWithAnchors: the copy trusts exactly the anchors given, keeps every
// other rule, and is independent of the original.
func TestWithAnchors(t *testing.T) {
	for _, y := range []string{
		"require_eku: []\nmin_hash: sha1\nignore_expiry: true\n",
		"require_eku: [codeSigning, linuxModuleSigning]\n",
		"",
	} {
		root := testpki.NewRoot(testpki.Options{CommonName: "file anchor"})
		live := testpki.NewRoot(testpki.Options{CommonName: "live kernel key"})
		p, err := codepolicy.Parse([]byte(y+"deny:\n  signed_content_sha256: ["+hexOf(0x11, 32)+"]\n"), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		p.AddAnchors(root.Cert)
		q, err := p.WithAnchors(live.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if a := q.Anchors(); len(a) != 1 || !a[0].Equal(live.Cert) {
			t.Fatalf("%q: anchors %v", y, a)
		}
		if fmt.Sprint(p.RequiredEKUs()) != fmt.Sprint(q.RequiredEKUs()) ||
			p.MinimumHash() != q.MinimumHash() || p.IgnoreExpiry != q.IgnoreExpiry {
			t.Fatalf("%q: rules differ: %v %v", y, p.RequiredEKUs(), q.RequiredEKUs())
		}
		if _, denied := q.DenySignedContent(hexBytes(hexOf(0x11, 32))); !denied {
			t.Fatalf("%q: deny rule lost", y)
		}
		q.AddKernelRevocations(nil, nil, [][]byte{hexBytes(hexOf(0x22, 32))})
		if _, denied := p.DenySignedContent(hexBytes(hexOf(0x22, 32))); denied {
			t.Fatalf("%q: the original gained the copy's rule", y)
		}
		if len(p.Anchors()) != 1 || !p.Anchors()[0].Equal(root.Cert) {
			t.Fatalf("%q: the original's anchors changed", y)
		}
	}
}

func hexOf(b byte, n int) string { return strings.Repeat(fmt.Sprintf("%02x", b), n) }

func hexBytes(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// TestKernelBinHashBothChecks: a kernel "bin:" hash denies a module by its
// whole file (Debian's module loader, mod_is_hash_blacklisted, which a
// real guest showed refusing a module so) and by its signed content
// (IMA's appended-signature check), never only one of the two.
func TestKernelBinHashBothChecks(t *testing.T) {
	p := codepolicy.Default()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	h := hexOf(0x33, 32)
	p.AddKernelRevocations(nil, nil, [][]byte{hexBytes(h)})
	if _, denied := p.DenySignedContent(hexBytes(h)); !denied {
		t.Error("a bin: hash does not deny the signed content")
	}
	if !slices.Contains(p.Deny.SHA256, h) || !slices.Contains(p.Deny.SignedContentSHA256, h) {
		t.Errorf("deny.sha256 %v, deny.signed_content_sha256 %v: want the bin: hash in both", p.Deny.SHA256, p.Deny.SignedContentSHA256)
	}
}
