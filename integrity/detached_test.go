package integrity_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// TestDetachedCMS: openssl's detached signatures (DER and PEM, with and
// without attributes) verify; vigil's verify with openssl; tampering and
// swapping give exact reasons.
func TestDetachedCMS(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	p := e.policy(t, "")
	blob := make([]byte, 300_000)
	rand.Read(blob)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"der", []string{"-outform", "DER"}},
		{"pem", []string{"-outform", "PEM"}},
		{"noattr", []string{"-outform", "DER", "-noattr"}},
		{"attached-stream-ber", []string{"-outform", "DER", "-stream"}},
	} {
		t.Run("openssl "+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "firmware.bin")
			os.WriteFile(f, blob, 0o644)
			args := append([]string{"cms", "-sign", "-binary", "-md", "sha256", "-signer", e.leafPEM, "-inkey", e.leafKey,
				"-certfile", e.interPEM, "-in", f, "-out", f + ".p7s"}, tc.args...)
			testcmd.Run(t, "openssl", args...)
			v := verify(t, p, f)
			want(t, v, true)
			if v.Format != integrity.FormatCMS {
				t.Fatalf("format %s", v.Format)
			}
			testpe.FlipByte(t, f, 1000)
			want(t, verify(t, p, f), false, reason.DigestMismatch)
		})
	}
	t.Run("vigil signs, openssl verifies", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "data.tar")
		os.WriteFile(f, blob, 0o644)
		s := &codesign.Signer{Key: e.h.Leaf.Key, Cert: e.h.Leaf.Cert, Chain: []*x509.Certificate{e.h.Intermediate.Cert}}
		if err := codesign.SignFile(s, codesign.Detached, f, f+".p7s"); err != nil {
			t.Fatal(err)
		}
		testcmd.Run(t, "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", f+".p7s", "-content", f,
			"-CAfile", e.rootPEM, "-purpose", "any", "-out", "/dev/null")
		want(t, verify(t, p, f), true)
		// The signature of one file does not fit another.
		g := filepath.Join(dir, "other.tar")
		os.WriteFile(g, blob[:1000], 0o644)
		os.Link(f+".p7s", g+".p7s")
		want(t, verify(t, p, g), false, reason.DigestMismatch)
		// Explicit --signature path, and a garbage signature.
		eng := integrity.New(integrity.Options{Policy: p})
		v, err := eng.VerifyFileWith(context.Background(), f, f+".p7s")
		if err != nil || !v.Allowed {
			t.Fatalf("explicit signature: %v %+v", err, v)
		}
		bad := filepath.Join(dir, "bad.p7s")
		os.WriteFile(bad, []byte("-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n"), 0o644)
		v, err = eng.VerifyFileWith(context.Background(), f, bad)
		if err != nil {
			t.Fatal(err)
		}
		want(t, v, false, reason.Malformed)
	})
	t.Run("no signature", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "plain.txt")
		os.WriteFile(f, []byte("hello"), 0o644)
		v := verify(t, p, f)
		want(t, v, false, reason.Unsigned)
		if v.Format != integrity.FormatUnknown {
			t.Fatalf("format %s", v.Format)
		}
	})
}

// shimVendorCA returns the Debian Secure Boot CA that Debian's shim embeds
// as its vendor certificate: the anchor for everything Debian signs for
// Secure Boot.
func shimVendorCA(t *testing.T) *x509.Certificate {
	t.Helper()
	return testpki.EmbeddedCert(t, artifacts.EFI(t, "shimx64.efi.signed"), "Debian Secure Boot CA")
}

// TestDebianSecureBoot verifies Debian's signed boot chain like UEFI
// firmware and shim do (expiry ignored), with sbverify as the peer:
// shim against Microsoft's UEFI CAs, everything else against the Debian
// CA found in shim.
func TestDebianSecureBoot(t *testing.T) {
	dir := t.TempDir()
	uefi := func(anchors ...*x509.Certificate) *codepolicy.Policy {
		p, err := codepolicy.Parse([]byte("ignore_expiry: true\n"), dir)
		if err != nil {
			t.Fatal(err)
		}
		p.AddAnchors(anchors...)
		return p
	}
	debianCA := shimVendorCA(t)
	caPEM := filepath.Join(dir, "debian-ca.pem")
	writeCertPEM(t, caPEM, debianCA)
	files := []string{"grubx64.efi.signed", "grubnetx64.efi.signed", "gcdx64.efi.signed", "mmx64.efi.signed", "fbx64.efi.signed", "fwupdx64.efi.signed"}
	paths := []string{artifacts.Vmlinuz(t)}
	for _, f := range files {
		paths = append(paths, artifacts.EFI(t, f))
	}
	for _, path := range paths {
		v := verify(t, uefi(debianCA), path)
		want(t, v, true)
		if !strings.HasPrefix(v.Signatures[0].Signer.Subject, "CN=Debian Secure Boot Signer") {
			t.Fatalf("%s: signer %s", path, v.Signatures[0].Signer.Subject)
		}
		testcmd.Run(t, "sbverify", "--cert", caPEM, path)
		// Real time and the default EKU rules: expiry no longer ignored.
		p := codepolicy.Default()
		p.AddAnchors(debianCA)
		if v := verify(t, p, path); v.Allowed && len(v.Signatures[0].Chain) == 0 {
			t.Fatalf("%s: allowed without a chain", path)
		}
	}
	// shim: two certificate-table entries, one per Microsoft UEFI CA.
	shim := artifacts.EFI(t, "shimx64.efi.signed")
	ca2011 := testpki.EmbeddedCert(t, shim, "Microsoft Corporation UEFI CA 2011")
	ca2023 := testpki.EmbeddedCert(t, shim, "Microsoft UEFI CA 2023")
	for _, ca := range []*x509.Certificate{ca2011, ca2023} {
		v := verify(t, uefi(ca), shim)
		want(t, v, true)
		if len(v.Signatures) != 2 {
			t.Fatalf("shim: %d signatures", len(v.Signatures))
		}
		valid := 0
		for _, s := range v.Signatures {
			if s.Valid {
				valid++
				if s.Chain[len(s.Chain)-1] != ca.Subject.String() {
					t.Fatalf("chain ends at %s", s.Chain[len(s.Chain)-1])
				}
			} else if !slices.Equal(s.Reasons, []reason.Code{reason.UntrustedChain}) {
				t.Fatalf("other signature: %v", s.Reasons)
			}
		}
		if valid != 1 {
			t.Fatalf("shim with %s: %d valid signatures", ca.Subject.CommonName, valid)
		}
		p := filepath.Join(dir, "ms.pem")
		writeCertPEM(t, p, ca)
		testcmd.Run(t, "sbverify", "--cert", p, shim)
	}
	// A day after the 2011 signer certificate expired, in uefi mode (shim
	// is an EFI application, so by default): the firmware has no trusted
	// clock and ignores validity periods, so shim stays allowed.
	pub := testpki.EmbeddedCert(t, shim, "Microsoft Windows UEFI Driver Publisher")
	later := func() time.Time { return pub.NotAfter.Add(24 * time.Hour) }
	p := codepolicy.Default()
	p.AddAnchors(ca2011)
	v, err := integrity.New(integrity.Options{Policy: p, Now: later}).VerifyFile(context.Background(), shim)
	if err != nil {
		t.Fatal(err)
	}
	want(t, v, true)
	if v.Mode != integrity.ModeUEFI {
		t.Fatalf("shim judged in mode %q, want uefi", v.Mode)
	}
	// In windows mode validity periods count: that signature is expired
	// (its Microsoft timestamp is not trusted: the TSA's CA is no anchor)
	// and the other does not chain to this CA (and is not read: Windows
	// reads the first entry only).
	v, err = integrity.New(integrity.Options{Policy: p, Now: later, Mode: integrity.ModeWindows}).VerifyFile(context.Background(), shim)
	if err != nil {
		t.Fatal(err)
	}
	want(t, v, false, reason.Expired, reason.BadTimestamp)
	// Trusting Microsoft's timestamping CA, the RFC 3161 timestamp inside
	// the validity period keeps the expired signature valid.
	p.AddAnchors(testpki.EmbeddedCert(t, shim, "Microsoft Time-Stamp PCA 2010"))
	v, err = integrity.New(integrity.Options{Policy: p, Now: later, Mode: integrity.ModeWindows}).VerifyFile(context.Background(), shim)
	if err != nil {
		t.Fatal(err)
	}
	want(t, v, true)
	ts := v.Signatures[0].Timestamp
	if ts == nil || v.Signatures[0].TimestampKind != "rfc3161" || ts.After(pub.NotAfter) || ts.Before(pub.NotBefore) {
		t.Fatalf("shim timestamp %v (%s)", ts, v.Signatures[0].TimestampKind)
	}
}

func writeCertPEM(t *testing.T, path string, c *x509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, testpki.CertPEMOf(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNotRegular: a FIFO or a directory is an I/O error, never a hang.
func TestNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.ko")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	eng := integrity.New(integrity.Options{})
	for _, p := range []string{fifo, dir} {
		v, err := eng.VerifyFile(context.Background(), p)
		if err == nil || v.Allowed || v.Error == "" {
			t.Fatalf("%s: err %v verdict %+v", p, err, v)
		}
	}
}
