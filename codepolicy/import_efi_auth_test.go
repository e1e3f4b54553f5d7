package codepolicy

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// TestImportVerifyUpdate: an authenticated dbx update made by efitools'
// sign-efi-sig-list is imported only when its signature verifies against
// the KEK given, as the firmware checks it before it writes dbx: by the
// KEK itself or a certificate that chains to it, over dbx's name, GUID,
// attributes (with APPEND_WRITE for an append update), TimeStamp and
// payload. Another signer, a changed payload or a file with no signature
// is refused with its reason, and the policy is left as it was.
func TestImportVerifyUpdate(t *testing.T) {
	f := newDBXFixture(t)
	auth := f.signed(t)
	in := filepath.Join(f.dir, "dbx.esl")
	crt, key := f.kek.WriteFiles(t, f.dir, "kek")
	appendOut := filepath.Join(f.dir, "dbx-append.auth")
	testcmd.Run(t, "sign-efi-sig-list", "-a", "-t", "2025-01-02 03:04:05", "-c", crt, "-k", key, "dbx", in, appendOut)
	appended, err := os.ReadFile(appendOut)
	if err != nil {
		t.Fatal(err)
	}
	other := testpki.NewRoot(testpki.Options{CommonName: "another platform's KEK"})
	tampered := bytes.Clone(auth)
	i := bytes.Index(tampered, f.imgHash)
	if i < 0 {
		t.Fatal("image hash not in the update")
	}
	tampered[i] ^= 1
	for _, c := range []struct {
		name string
		data []byte
		kek  []*x509.Certificate
		src  string
		code reason.Code // "" for success
	}{
		{"signed by the KEK", auth, []*x509.Certificate{f.kek.Cert}, "dbx", ""},
		{"an append update", appended, []*x509.Certificate{f.kek.Cert}, "dbx", ""},
		{"signed by a certificate that chains to the trusted key", auth, []*x509.Certificate{f.root.Cert}, "dbx", ""},
		{"another KEK", auth, []*x509.Certificate{other.Cert}, "dbx", reason.UntrustedChain},
		{"a payload changed after signing", tampered, []*x509.Certificate{f.kek.Cert}, "dbx", reason.BadSignature},
		{"no signature at all", f.db, []*x509.Certificate{f.kek.Cert}, "dbx", reason.Unsigned},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := Default()
			st, err := ImportSignatureDatabase(p, c.data, c.src, VerifyUpdate(c.kek...))
			if c.code == "" {
				if err != nil || !st.Verified || len(st.Warnings) != 0 || st.TotalAdded() == 0 {
					t.Fatalf("%v %+v", err, st)
				}
				return
			}
			if reason.Of(err, "") != c.code {
				t.Fatalf("%v (code %q), want %s", err, reason.Of(err, ""), c.code)
			}
			if len(p.Revocations) != 0 || p.Deny.Len() != 0 {
				t.Fatalf("the policy changed: %+v", p.Deny)
			}
		})
	}
	// Without a KEK the import warns that nothing was verified.
	st, err := ImportSignatureDatabase(Default(), auth, "dbx")
	if err != nil || st.Verified || len(st.Warnings) != 1 {
		t.Fatalf("unverified import: %v %+v", err, st)
	}
	// MokListX has no KEK.
	if _, err := ImportSignatureDatabase(Default(), auth, "mokx", VerifyUpdate(f.kek.Cert)); err == nil {
		t.Fatal("a KEK accepted for mokx")
	}
}
