package integrity_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testkmod"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/kmodsig"
	"github.com/vigil-attest/vigil/reason"
)

// TestModuleKernelPKCS7Rules: signed attributes and a second signer whose
// signature is bad are refused, as pkcs7_verify refuses them.
func TestModuleKernelPKCS7Rules(t *testing.T) {
	e, _, content := moduleFixture(t, testpki.Options{})
	second := e.h.Intermediate.NewLeaf(testpki.Options{CommonName: "Second Module Signer"})
	secPEM, secKey := second.WriteFiles(t, e.dir, "second")
	keyring := []*x509.Certificate{e.h.Leaf.Cert, second.Cert, e.h.Intermediate.Cert}
	p := e.policy(t, "")
	one := []string{"-signer", e.leafPEM, "-inkey", e.leafKey}
	two := append(slices.Clone(one), "-signer", secPEM, "-inkey", secKey)

	good := testkmod.OpensslSigned(t, e.dir, "good.ko", content, 0, append([]string{"-noattr", "-nocerts"}, one...)...)
	want(t, verifyKeyring(t, p, keyring, good), true)

	// openssl's default: contentType, signingTime, messageDigest and
	// S/MIME capabilities as signed attributes. The signature is sound;
	// the kernel refuses it.
	attrs := testkmod.OpensslSigned(t, e.dir, "attrs.ko", content, 0, append([]string{"-nocerts"}, one...)...)
	v := verifyKeyring(t, p, keyring, attrs)
	want(t, v, false, reason.Malformed)
	if !strings.Contains(v.Error, kmodsig.ErrSignedAttributes.Error()) {
		t.Fatalf("error %q does not name the signed attributes", v.Error)
	}

	both := testkmod.OpensslSigned(t, e.dir, "two.ko", content, 0, append([]string{"-noattr", "-nocerts"}, two...)...)
	v = verifyKeyring(t, p, keyring, both)
	want(t, v, true)
	if len(v.Signatures) != 2 {
		t.Fatalf("%d signatures", len(v.Signatures))
	}

	// The second SignerInfo's signature value ends the DER (-noattr: no
	// unsigned attributes): flip its last byte.
	raw, _ := os.ReadFile(both)
	m, err := kmodsig.Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(m.PKCS7)
	bad[len(bad)-1] ^= 1
	v = verifyKeyring(t, p, keyring, testkmod.Write(t, e.dir, "secondbad.ko", content, bad))
	want(t, v, false, reason.BadSignature)
	if v.Signatures[0].Valid || v.Signatures[0].Reasons[0] != reason.BadSignature {
		t.Fatalf("first signer: %v", v.Signatures[0].Reasons)
	}

	// A second signer the keyring does not know is passed over, as
	// pkcs7_validate_trust passes over -ENOKEY.
	v = verifyKeyring(t, p, []*x509.Certificate{e.h.Leaf.Cert, e.h.Intermediate.Cert}, both)
	if !v.Allowed {
		t.Fatalf("unknown second signer: %v", v.Reasons)
	}
}

// TestModuleSignedContentDeny: one deny.signed_content_sha256 rule blocks
// the module however it is stored: plain, gzip, xz, zstd, with a
// zero-padded PKCS#7, with extra certificates, re-signed.
func TestModuleSignedContentDeny(t *testing.T) {
	e, signed, content := moduleFixture(t, testpki.Options{})
	keyring := []*x509.Certificate{e.h.Leaf.Cert, e.h.Intermediate.Cert}
	sum := sha256.Sum256(content)
	rule := "deny.signed_content_sha256:" + hex.EncodeToString(sum[:])
	deny := e.policy(t, "deny:\n  signed_content_sha256: ["+hex.EncodeToString(sum[:])+"]\n")
	allow := e.policy(t, "")

	one := []string{"-noattr", "-nocerts", "-signer", e.leafPEM, "-inkey", e.leafKey}
	files := map[string]string{"plain": signed}
	for _, c := range [][]string{{"xz", "--check=crc32", "-k", "-f"}, {"zstd", "-q", "-k", "-f"}, {"gzip", "-k", "-f"}} {
		testcmd.Run(t, c[0], append(c[1:], signed)...)
		files[c[0]] = signed + map[string]string{"xz": ".xz", "zstd": ".zst", "gzip": ".gz"}[c[0]]
	}
	files["zero-padded PKCS#7"] = testkmod.OpensslSigned(t, e.dir, "padded.ko", content, 64, one...)
	files["extra certificates"] = testkmod.OpensslSigned(t, e.dir, "certs.ko", content, 0,
		"-noattr", "-signer", e.leafPEM, "-inkey", e.leafKey, "-certfile", e.interPEM)
	files["re-signed"] = testkmod.OpensslSigned(t, e.dir, "resigned.ko", content, 0, one...)
	for name, path := range files {
		// Without the rule, each variant other than the padded one
		// verifies: the rule is what denies it.
		if name != "zero-padded PKCS#7" {
			if v := verifyKeyring(t, allow, keyring, path); !v.Allowed {
				t.Fatalf("%s: not allowed without the rule: %v", name, v.Reasons)
			}
		}
		v := verifyKeyring(t, deny, keyring, path)
		if v.Allowed || !slices.Contains(v.Reasons, reason.BlocklistedHash) || !slices.Equal(v.DenyRules, []string{rule}) {
			t.Fatalf("%s: allowed=%v reasons=%v rules=%v", name, v.Allowed, v.Reasons, v.DenyRules)
		}
	}
	// Different content is not matched.
	other := testkmod.OpensslSigned(t, e.dir, "other.ko", append(bytes.Clone(content), 0), 0, one...)
	want(t, verifyKeyring(t, deny, keyring, other), true)
}
