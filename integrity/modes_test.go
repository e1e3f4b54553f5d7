package integrity_test

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// efiImage copies the Go-built PE and sets its optional header Subsystem
// (10: EFI_APPLICATION), before any signature, as a UEFI linker would.
func efiImage(t *testing.T, dir, name string, subsystem uint16) string {
	t.Helper()
	p := testpe.Copy(t, testpe.Build(t, "amd64"), dir, name)
	b := readFile(t, p)
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 4 + 20 + 68
	binary.LittleEndian.PutUint16(b[off:], subsystem)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func verifyMode(t *testing.T, o integrity.Options, path string) *integrity.Verdict {
	t.Helper()
	v, err := integrity.New(o).VerifyFile(context.Background(), path)
	if err != nil {
		t.Fatalf("verify %s: %v", path, err)
	}
	return v
}

func wantMode(t *testing.T, v *integrity.Verdict, m integrity.Mode) {
	t.Helper()
	if v.Mode != m {
		t.Fatalf("%s: mode %q, want %q", filepath.Base(v.Path), v.Mode, m)
	}
}

// dualSigned signs in with a SHA-1 primary by the env's leaf (or by
// primaryChain/primaryKey when given) and nests a SHA-256 signature by the
// env's leaf.
func (e *env) dualSigned(t *testing.T, in, name, primaryHash string, primary ...string) string {
	t.Helper()
	args := []string{"-h", primaryHash, "-certs", e.chainPEM, "-key", e.leafKey}
	if len(primary) == 2 {
		args = []string{"-h", primaryHash, "-certs", primary[0], "-key", primary[1]}
	}
	first := testpe.OsslSign(t, in, filepath.Join(e.dir, name+".primary"), args...)
	return testpe.OsslSign(t, first, filepath.Join(e.dir, name), "-nest", "-h", "sha256", "-certs", e.chainPEM, "-key", e.leafKey)
}

// TestModeUEFINestedIgnored: EDK2 and shim read only the certificate
// table's entries, never a nested signature. An attacker holding a file
// whose nested signature is the only valid one (a SHA-1 primary below
// min_hash, or a primary by a signer the firmware does not trust) gains
// nothing in uefi mode; the same file in windows mode follows Windows'
// dual-signing rule.
func TestModeUEFINestedIgnored(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	p := e.policy(t, "")

	// SHA-1 primary, SHA-256 nested: only the nested one is valid.
	weak := e.dualSigned(t, efiImage(t, e.dir, "weak.in.efi", 10), "weak.efi", "sha1")
	v := verify(t, p, weak)
	wantMode(t, v, integrity.ModeUEFI)
	want(t, v, false, reason.WeakAlgorithm)
	if len(v.Signatures) != 2 || v.Signatures[0].Ignored || !v.Signatures[1].Nested || !v.Signatures[1].Valid || !v.Signatures[1].Ignored {
		t.Fatalf("signatures:\n%s", describe(v))
	}
	// Windows takes the nested SHA-256 signature of a dual-signed file.
	v = verifyMode(t, integrity.Options{Policy: p, Mode: integrity.ModeWindows}, weak)
	wantMode(t, v, integrity.ModeWindows)
	want(t, v, true)

	// A primary by an untrusted signer, a valid nested signature.
	other := testpki.NewRoot(testpki.Options{CommonName: "Untrusted Root"})
	leaf := other.NewLeaf(testpki.Options{CommonName: "Untrusted Signer"})
	chain := testpki.WritePEMs(t, e.dir, "untrusted-chain.pem", leaf, other)
	_, key := leaf.WriteFiles(t, e.dir, "untrusted")
	foreign := e.dualSigned(t, efiImage(t, e.dir, "foreign.in.efi", 11), "foreign.efi", "sha256", chain, key)
	v = verify(t, p, foreign)
	wantMode(t, v, integrity.ModeUEFI)
	want(t, v, false, reason.UntrustedChain)
	// And Windows judges the primary: the same reasons.
	v = verifyMode(t, integrity.Options{Policy: p, Mode: integrity.ModeWindows}, foreign)
	want(t, v, false, reason.UntrustedChain)
	if !v.Signatures[1].Valid || !v.Signatures[1].Ignored {
		t.Fatalf("nested signature not ignored:\n%s", describe(v))
	}

	// Subsystems 12 and 13 are EFI too; 3 (console) is not.
	for _, sub := range []uint16{12, 13} {
		n := fmt.Sprintf("sub%d", sub)
		f := testpe.OsslSign(t, efiImage(t, e.dir, n+".in.efi", sub), filepath.Join(e.dir, n+".efi"), "-h", "sha256", "-certs", e.chainPEM, "-key", e.leafKey)
		v := verify(t, p, f)
		wantMode(t, v, integrity.ModeUEFI)
		want(t, v, true)
	}
}

// TestModeUEFIIgnoresExpiry: firmware has no trusted clock, so in uefi
// mode a signature by a certificate that expired, with no timestamp, is
// allowed whatever the policy's ignore_expiry; in windows mode it is
// expired. A Windows PE forced into uefi mode is not a boot image: the
// firmware would not load it.
func TestModeUEFIIgnoresExpiry(t *testing.T) {
	now := time.Now()
	e := newEnv(t, testpki.Options{NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})
	p := e.policy(t, "")
	efi := testpe.OsslSign(t, efiImage(t, e.dir, "old.in.efi", 10), filepath.Join(e.dir, "old.efi"), "-h", "sha256", "-certs", e.chainPEM, "-key", e.leafKey)
	v := verify(t, p, efi)
	wantMode(t, v, integrity.ModeUEFI)
	want(t, v, true)
	want(t, verifyMode(t, integrity.Options{Policy: p, Mode: integrity.ModeWindows}, efi), false, reason.Expired)

	exe := e.osslSign(t, "old", "-h", "sha256")
	v = verify(t, p, exe)
	wantMode(t, v, integrity.ModeWindows)
	want(t, v, false, reason.Expired)
	v = verifyMode(t, integrity.Options{Policy: p, Mode: integrity.ModeUEFI}, exe)
	wantMode(t, v, integrity.ModeUEFI)
	want(t, v, false, reason.Unsupported)
	if v.SHA256 != fileSHA256(t, exe) {
		t.Fatal("unsupported verdict without the file hash")
	}
}

// TestModeWindowsPrimaryDecides: in windows mode the first entry's primary
// signature decides. A nested signature stands in only for a primary whose
// one fault is a weak digest; it never rescues a primary that fails
// otherwise, and a nested SHA-1 signature rescues nothing.
func TestModeWindowsPrimaryDecides(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	p := e.policy(t, "")
	base := testpe.Copy(t, testpe.Build(t, "amd64"), e.dir, "base.exe")

	dual := e.dualSigned(t, base, "dual.exe", "sha1")
	v := verify(t, p, dual)
	wantMode(t, v, integrity.ModeWindows)
	want(t, v, true)
	if v.Signatures[0].Valid || v.Signatures[1].Ignored || !v.Signatures[1].Valid {
		t.Fatalf("signatures:\n%s", describe(v))
	}

	// SHA-1 nested under SHA-1: both weak.
	s1 := testpe.OsslSign(t, base, filepath.Join(e.dir, "s1.exe"), "-h", "sha1", "-certs", e.chainPEM, "-key", e.leafKey)
	s1s1 := testpe.OsslSign(t, s1, filepath.Join(e.dir, "s1s1.exe"), "-nest", "-h", "sha1", "-certs", e.chainPEM, "-key", e.leafKey)
	want(t, verify(t, p, s1s1), false, reason.WeakAlgorithm)

	// A SHA-1 primary that is also revoked is not rescued.
	other := e.h.Intermediate.NewLeaf(testpki.Options{CommonName: "Revoked Publisher"})
	chain := testpki.WritePEMs(t, e.dir, "revoked-chain.pem", other, e.h.Intermediate)
	_, key := other.WriteFiles(t, e.dir, "revoked")
	rev := e.dualSigned(t, base, "rev.exe", "sha1", chain, key)
	y := "revocations:\n  - tbs_sha256: " + tbsSHA256(other) + "\n"
	v = verify(t, e.policy(t, y), rev)
	want(t, v, false, reason.WeakAlgorithm, reason.Revoked)
	if !v.Signatures[1].Valid || !v.Signatures[1].Ignored {
		t.Fatalf("signatures:\n%s", describe(v))
	}
	// A deny rule on the nested signer denies the file in every mode.
	want(t, verify(t, e.policy(t, "deny:\n  signer_tbs_sha256: ["+tbsSHA256(e.h.Leaf)+"]\n"), rev), false,
		reason.WeakAlgorithm, reason.BlocklistedSigner)
}

// TestModeMismatch: a mode whose platform does not load the file's kind
// gives an unsupported verdict under that mode; by default modules are
// judged in kernel mode and detached signatures in cms mode.
func TestModeMismatch(t *testing.T) {
	e, mod, _ := moduleFixture(t, testpki.Options{})
	p := e.policy(t, "")
	keyring := []*x509.Certificate{e.h.Leaf.Cert, e.h.Intermediate.Cert}
	v := verifyKeyring(t, p, keyring, mod)
	wantMode(t, v, integrity.ModeKernel)
	want(t, v, true)
	want(t, verifyMode(t, integrity.Options{Policy: p, Keyring: keyring, Mode: integrity.ModeKernel}, mod), true)
	for _, m := range []integrity.Mode{integrity.ModeUEFI, integrity.ModeWindows, integrity.ModeCMS, "bogus"} {
		v := verifyMode(t, integrity.Options{Policy: p, Keyring: keyring, Mode: m}, mod)
		wantMode(t, v, m)
		want(t, v, false, reason.Unsupported)
	}
	exe := e.osslSign(t, "plain", "-h", "sha256")
	for _, m := range []integrity.Mode{integrity.ModeKernel, integrity.ModeCMS} {
		want(t, verifyMode(t, integrity.Options{Policy: p, Mode: m}, exe), false, reason.Unsupported)
	}

	// Detached CMS: cms by default; --mode cms also judges a PE by its
	// .p7s rather than its Authenticode signature.
	f := filepath.Join(e.dir, "data.bin")
	os.WriteFile(f, []byte("some data"), 0o644)
	s := &codesign.Signer{Key: e.h.Leaf.Key, Cert: e.h.Leaf.Cert, Chain: []*x509.Certificate{e.h.Intermediate.Cert}}
	if err := codesign.SignFile(s, codesign.Detached, f, f+".p7s"); err != nil {
		t.Fatal(err)
	}
	v = verify(t, p, f)
	wantMode(t, v, integrity.ModeCMS)
	want(t, v, true)
	want(t, verifyMode(t, integrity.Options{Policy: p, Mode: integrity.ModeKernel}, f), false, reason.Unsupported)
	if err := codesign.SignFile(s, codesign.Detached, exe, exe+".p7s"); err != nil {
		t.Fatal(err)
	}
	v = verifyMode(t, integrity.Options{Policy: p, Mode: integrity.ModeCMS}, exe)
	want(t, v, true)
	if v.Format != integrity.FormatCMS || v.Mode != integrity.ModeCMS {
		t.Fatalf("pe in cms mode: format %s mode %s", v.Format, v.Mode)
	}
	// A file in no format: cms mode, unsigned.
	g := filepath.Join(e.dir, "other.bin")
	os.WriteFile(g, []byte("x"), 0o644)
	v = verify(t, p, g)
	wantMode(t, v, integrity.ModeCMS)
	want(t, v, false, reason.Unsigned)
}
