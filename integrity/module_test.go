package integrity_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/kmodsig"
	"github.com/vigil-attest/vigil/reason"
)

func kernelCerts(t *testing.T) []*x509.Certificate {
	t.Helper()
	f, err := os.Open(artifacts.Vmlinuz(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	cs, err := kernelkeys.Certificates(f, st.Size())
	if err != nil || len(cs) == 0 {
		t.Fatalf("kernel certificates: %v (%d)", err, len(cs))
	}
	return cs
}

// kernelPolicy trusts the Debian kernel's built-in keys, as the kernel does.
func kernelPolicy(t *testing.T) *codepolicy.Policy {
	p := codepolicy.Default()
	p.AddAnchors(kernelCerts(t)...)
	return p
}

// modinfo returns modinfo's signer, sig_key and sig_hashalgo fields.
func modinfo(t *testing.T, path string) (signer, key, algo string) {
	t.Helper()
	return testcmd.Modinfo(t, "signer", path), testcmd.Modinfo(t, "sig_key", path), testcmd.Modinfo(t, "sig_hashalgo", path)
}

// opensslVerifyModule checks a module's PKCS#7 signature over content with
// openssl cms -verify, given the signer certificate and building the chain
// to the test root.
func (e *env) opensslVerifyModule(t *testing.T, p7, content []byte) {
	t.Helper()
	sig, cpath := filepath.Join(e.dir, "sig.der"), filepath.Join(e.dir, "content")
	if err := os.WriteFile(sig, p7, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cpath, content, 0o644); err != nil {
		t.Fatal(err)
	}
	testcmd.Run(t, "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", cpath,
		"-certfile", e.leafPEM, "-CAfile", testpki.WritePEMs(t, e.dir, "ca.pem", e.h.Root, e.h.Intermediate), "-purpose", "any", "-out", os.DevNull)
}

// colonHex turns "0a1b" into "0A:1B", modinfo's sig_key format.
func colonHex(s string) string {
	s = strings.ToUpper(s)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}

// TestDebianModules: every module of a Debian linux-image package verifies
// against the key built into its kernel, and the signer agrees with modinfo.
func TestDebianModules(t *testing.T) {
	mods := artifacts.Modules(t)
	if len(mods) < 3000 {
		t.Fatalf("only %d modules", len(mods))
	}
	eng := integrity.New(integrity.Options{Policy: kernelPolicy(t)})
	step := 1
	if testing.Short() {
		step = 50
	}
	checked := 0
	for i := 0; i < len(mods); i += step {
		v, err := eng.VerifyFile(context.Background(), mods[i])
		if err != nil {
			t.Fatal(err)
		}
		want(t, v, true)
		checked++
		if i%400 == 0 { // spot-check against modinfo
			signer, key, algo := modinfo(t, mods[i])
			s := v.Signatures[0]
			if !strings.Contains(s.Signer.Issuer, "CN="+signer) || colonHex(s.Signer.Serial) != key || s.DigestAlgorithm != algo {
				t.Fatalf("%s: vigil issuer %q serial %s alg %s; modinfo signer %q sig_key %s alg %s",
					mods[i], s.Signer.Issuer, s.Signer.Serial, s.DigestAlgorithm, signer, key, algo)
			}
		}
	}
	t.Logf("%d Debian modules allowed", checked)
	// Without the kernel's keys no module is trusted.
	v, err := integrity.New(integrity.Options{}).VerifyFile(context.Background(), mods[0])
	if err != nil {
		t.Fatal(err)
	}
	want(t, v, false, reason.UntrustedChain)
}

// moduleFixture signs a copy of a real module's content (signature
// stripped) with vigil and returns its path and the env.
func moduleFixture(t *testing.T, o testpki.Options) (*env, string, []byte) {
	t.Helper()
	e := newEnv(t, o)
	src := artifacts.Modules(t)[100]
	m, err := kmodsig.ParseFile(src)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(src)
	content := raw[:m.ContentLength]
	in := filepath.Join(e.dir, "plain.ko")
	os.WriteFile(in, content, 0o644)
	out := filepath.Join(e.dir, "signed.ko")
	s := &codesign.Signer{Key: e.h.Leaf.Key, Cert: e.h.Leaf.Cert}
	if err := codesign.SignFile(s, codesign.Module, in, out); err != nil {
		t.Fatal(err)
	}
	return e, out, content
}

func verifyKeyring(t *testing.T, p *codepolicy.Policy, keyring []*x509.Certificate, path string) *integrity.Verdict {
	t.Helper()
	v, err := integrity.New(integrity.Options{Policy: p, Keyring: keyring}).VerifyFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestModuleSignVerifiedByPeers: vigil's module signatures show the right
// signer in modinfo, verify with openssl cms, and with vigil.
func TestModuleSignVerifiedByPeers(t *testing.T) {
	e, signed, content := moduleFixture(t, testpki.Options{CommonName: "Vigil Module Signer"})
	signer, key, algo := modinfo(t, signed)
	if signer != e.h.Intermediate.Cert.Subject.CommonName || key != colonHex(e.h.Leaf.Cert.SerialNumber.Text(16)) || algo != "sha256" {
		t.Fatalf("modinfo: signer %q sig_key %s algo %s", signer, key, algo)
	}
	m, err := kmodsig.ParseFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	e.opensslVerifyModule(t, m.PKCS7, content)

	keyring := []*x509.Certificate{e.h.Leaf.Cert, e.h.Intermediate.Cert}
	p := e.policy(t, "")
	want(t, verifyKeyring(t, p, keyring, signed), true)
	// The signer is not in the signature: without a keyring it is unknown.
	want(t, verifyKeyring(t, p, nil, signed), false, reason.UntrustedChain)

	// Compressed like kmod installs them.
	for _, c := range [][]string{{"xz", "--check=crc32", "-k", "-f"}, {"zstd", "-q", "-k", "-f"}, {"gzip", "-k", "-f"}} {
		testcmd.Run(t, c[0], append(c[1:], signed)...)
		ext := map[string]string{"xz": ".xz", "zstd": ".zst", "gzip": ".gz"}[c[0]]
		v := verifyKeyring(t, p, keyring, signed+ext)
		want(t, v, true)
		if v.Format != integrity.FormatKmod || v.SHA256 != fileSHA256(t, signed+ext) {
			t.Fatalf("%s: format %s sha256 %s", ext, v.Format, v.SHA256)
		}
	}
}

// TestModuleTamper: exact reasons for content, signature and trailer
// changes, following the kernel's checks.
func TestModuleTamper(t *testing.T) {
	e, signed, content := moduleFixture(t, testpki.Options{})
	keyring := []*x509.Certificate{e.h.Leaf.Cert, e.h.Intermediate.Cert}
	p := e.policy(t, "")
	m, err := kmodsig.ParseFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(content)) + int64(len(m.PKCS7)) + 12 + int64(len(kmodsig.Magic))
	trailer := int64(len(content)) + int64(len(m.PKCS7))
	raw, _ := os.ReadFile(signed)
	sigValue := int64(bytes.LastIndex(raw, raw[trailer-64:trailer-32]))
	cases := []struct {
		name string
		off  int64
		want reason.Code
	}{
		{"ELF header", 0x18, reason.DigestMismatch},
		{"module body", int64(len(content)) / 2, reason.DigestMismatch},
		{"last content byte", int64(len(content)) - 1, reason.DigestMismatch},
		{"signature value", sigValue + 5, reason.BadSignature},
		{"trailer algo", trailer + 0, reason.Malformed},
		{"trailer hash", trailer + 1, reason.Malformed},
		{"trailer id_type", trailer + 2, reason.Malformed},
		{"trailer signer_len", trailer + 3, reason.Malformed},
		{"trailer key_id_len", trailer + 4, reason.Malformed},
		{"trailer pad", trailer + 6, reason.Malformed},
		{"trailer sig_len", trailer + 11, reason.Malformed},
		{"magic", size - 3, reason.Unsigned},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testpe.Copy(t, signed, t.TempDir(), "x.ko")
			testpe.FlipByte(t, c, tc.off)
			want(t, verifyKeyring(t, p, keyring, c), false, tc.want)
		})
	}
	t.Run("signature from another module", func(t *testing.T) {
		other := artifacts.Modules(t)[200]
		om, err := kmodsig.ParseFile(other)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := kmodsig.Append(&b, bytes.NewReader(content), om.PKCS7); err != nil {
			t.Fatal(err)
		}
		c := filepath.Join(t.TempDir(), "swapped.ko")
		os.WriteFile(c, b.Bytes(), 0o644)
		want(t, verifyKeyring(t, kernelPolicy(t), nil, c), false, reason.DigestMismatch)
	})
	t.Run("revoked signer", func(t *testing.T) {
		y := "revocations:\n  - spki_sha256: " + spkiSHA256(e.h.Leaf) + "\n"
		want(t, verifyKeyring(t, e.policy(t, y), keyring, signed), false, reason.Revoked)
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int64{0, 10, size - 1, size - 30, trailer + 5, int64(len(content)) + 10} {
			c := testpe.Copy(t, signed, t.TempDir(), "x.ko")
			os.Truncate(c, n)
			v := verifyKeyring(t, p, keyring, c)
			if v.Allowed || (len(v.Reasons) != 1) || (v.Reasons[0] != reason.Malformed && v.Reasons[0] != reason.Unsigned) {
				t.Fatalf("truncated to %d: %v", n, v.Reasons)
			}
		}
	})
}

// TestModuleSubjectKeyID: a module signed like `sign-file -k` names its
// signer by subject key identifier; the kernel (and vigil) find it by SKID.
func TestModuleSubjectKeyID(t *testing.T) {
	e := newEnv(t, testpki.Options{Key: testpki.ECDSAP256})
	content := append([]byte("\x7fELF"), bytes.Repeat([]byte{0x90}, 5000)...)
	in := filepath.Join(e.dir, "skid.in.ko")
	os.WriteFile(in, content, 0o644)
	out := filepath.Join(e.dir, "skid.ko")
	s := &codesign.Signer{Key: e.h.Leaf.Key, Cert: e.h.Leaf.Cert, SubjectKeyID: true}
	if err := codesign.SignFile(s, codesign.Module, in, out); err != nil {
		t.Fatal(err)
	}
	m, err := kmodsig.ParseFile(out)
	if err != nil {
		t.Fatal(err)
	}
	e.opensslVerifyModule(t, m.PKCS7, content)
	keyring := []*x509.Certificate{e.h.Leaf.Cert, e.h.Intermediate.Cert}
	v := verifyKeyring(t, e.policy(t, ""), keyring, out)
	want(t, v, true)
	// A different certificate with the same subject but another key does
	// not match the identifier.
	impostor := e.h.Intermediate.NewLeaf(testpki.Options{Key: testpki.ECDSAP256})
	want(t, verifyKeyring(t, e.policy(t, ""), []*x509.Certificate{impostor.Cert}, out), false, reason.UntrustedChain)
}

// TestCache: the verdict cache is keyed by path, size, mtime and inode, so
// a rewritten file is verified again.
func verifyOK(t *testing.T, eng *integrity.Engine, path string) *integrity.Verdict {
	t.Helper()
	v, err := eng.VerifyFile(context.Background(), path)
	if err != nil || !v.Allowed {
		t.Fatalf("%s: %v %+v", path, err, v)
	}
	return v
}

func TestCache(t *testing.T) {
	defer integrity.SetRacyWindow(50 * time.Millisecond)()
	e, signed, _ := moduleFixture(t, testpki.Options{})
	time.Sleep(60 * time.Millisecond)
	eng := integrity.New(integrity.Options{Policy: e.policy(t, ""), Keyring: []*x509.Certificate{e.h.Leaf.Cert, e.h.Intermediate.Cert}, Cache: true})
	v1, err := eng.VerifyFile(context.Background(), signed)
	if err != nil || !v1.Allowed {
		t.Fatalf("first: %v %+v", err, v1)
	}
	v2, _ := eng.VerifyFile(context.Background(), signed)
	if v1 != v2 {
		t.Fatal("second verification was not served from the cache")
	}
	// Rewrite with one byte changed (new inode via rename).
	b := readFile(t, signed)
	b[100] ^= 1
	tmp := signed + ".new"
	os.WriteFile(tmp, b, 0o644)
	os.Rename(tmp, signed)
	v3, _ := eng.VerifyFile(context.Background(), signed)
	want(t, v3, false, reason.DigestMismatch)

	// A rewrite in place (same inode) with size and mtime put back: only
	// ctime tells; the verdict cache must judge it again.
	good := readFile(t, signed)
	good[100] ^= 1 // the signed original
	if err := os.WriteFile(signed, good, 0o644); err != nil {
		t.Fatal(err)
	}
	// A file changed within the racy window (a second; 50 ms here) is
	// judged every time (file times tick coarsely); past it the verdict
	// is cached.
	if a, b := verifyOK(t, eng, signed), verifyOK(t, eng, signed); a == b {
		t.Fatal("the verdict of a file changed just now was cached")
	}
	time.Sleep(60 * time.Millisecond)
	v4 := verifyOK(t, eng, signed)
	if verifyOK(t, eng, signed) != v4 {
		t.Fatal("the verdict was not cached")
	}
	st4, _ := os.Stat(signed)
	f, err := os.OpenFile(signed, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{good[100] ^ 1}, 100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(signed, st4.ModTime(), st4.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(signed); after.Size() != st4.Size() || !after.ModTime().Equal(st4.ModTime()) {
		t.Fatal("the rewrite did not keep size and mtime")
	}
	v5, _ := eng.VerifyFile(context.Background(), signed)
	if v5 == v4 {
		t.Fatal("a module rewritten in place with its size and mtime restored was served from the cache")
	}
	want(t, v5, false, reason.DigestMismatch)
}
