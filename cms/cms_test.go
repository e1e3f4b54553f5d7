package cms_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/kmodsig"
	"github.com/vigil-attest/vigil/reason"
)

// TestSignVerifiedByOpenSSL: our detached and attached signatures pass
// `openssl cms -verify` with the chain to the root.
func TestSignVerifiedByOpenSSL(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  testpki.KeyType
		h    crypto.Hash
		o    cms.SignOptions
	}{
		{"rsa-sha256-attrs-detached", testpki.RSA2048, crypto.SHA256, cms.SignOptions{Detached: true}},
		{"rsa-sha384-attached", testpki.RSA2048, crypto.SHA384, cms.SignOptions{}},
		{"ecdsa-p256-detached-skid", testpki.ECDSAP256, crypto.SHA256, cms.SignOptions{Detached: true, SubjectKeyID: true}},
		{"rsa-noattr-detached", testpki.RSA2048, crypto.SHA256, cms.SignOptions{Detached: true, NoAttributes: true}},
		{"ecdsa-p384-sha512", testpki.ECDSAP384, crypto.SHA512, cms.SignOptions{Detached: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			h := testpki.NewHierarchy(testpki.Options{Key: tc.key})
			content := bytes.Repeat([]byte("vigil content\n"), 1000)
			o := tc.o
			o.Hash = tc.h
			o.Content = content
			o.Chain = []*x509.Certificate{h.Intermediate.Cert}
			der, err := cms.Sign(h.Leaf.Key, h.Leaf.Cert, o)
			if err != nil {
				t.Fatal(err)
			}
			root := testpki.WritePEMs(t, dir, "root.pem", h.Root)
			os.WriteFile(filepath.Join(dir, "sig.der"), der, 0o644)
			os.WriteFile(filepath.Join(dir, "content"), content, 0o644)
			args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", filepath.Join(dir, "sig.der"),
				"-CAfile", root, "-purpose", "any", "-out", filepath.Join(dir, "out")}
			if o.Detached {
				args = append(args, "-content", filepath.Join(dir, "content"))
			}
			testcmd.Run(t, "openssl", args...)
			if !o.Detached {
				got, _ := os.ReadFile(filepath.Join(dir, "out"))
				if !bytes.Equal(got, content) {
					t.Fatal("openssl extracted different content")
				}
			}
			// And we verify our own output.
			sd, err := cms.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			si := sd.Signers[0]
			if c := sd.FindCertificate(si, nil); c == nil || !c.Equal(h.Leaf.Cert) {
				t.Fatal("signer certificate not found")
			}
			if err := si.Verify(h.Leaf.Cert, cms.OIDData, cms.Digest(tc.h, content)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestVerifyOpenSSLSignatures: signatures made by openssl, including the BER
// (indefinite length) output of -stream and RSA-PSS, verify with ours, and
// tampering gives the exact reason.
func TestVerifyOpenSSLSignatures(t *testing.T) {
	dir := t.TempDir()
	h := testpki.NewHierarchy(testpki.Options{})
	leafPEM, leafKey := h.Leaf.WriteFiles(t, dir, "leaf")
	content := bytes.Repeat([]byte{0, 1, 2, 3, 0xff}, 20000)
	cpath := filepath.Join(dir, "content")
	os.WriteFile(cpath, content, 0o644)
	for _, tc := range []struct {
		name  string
		extra []string
		pss   bool
	}{
		{"attrs", nil, false},
		{"noattr-nocerts", []string{"-noattr", "-nocerts"}, false},
		{"skid", []string{"-keyid"}, false},
		{"stream-ber", []string{"-stream"}, false},
		{"pss", []string{"-keyopt", "rsa_padding_mode:pss"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig := filepath.Join(dir, tc.name+".der")
			args := append([]string{"cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER",
				"-signer", leafPEM, "-inkey", leafKey, "-in", cpath, "-out", sig}, tc.extra...)
			testcmd.Run(t, "openssl", args...)
			der, _ := os.ReadFile(sig)
			sd, err := cms.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			si := sd.Signers[0]
			cert := sd.FindCertificate(si, []*x509.Certificate{h.Leaf.Cert})
			if cert == nil {
				t.Fatal("signer not found")
			}
			digest := cms.Digest(crypto.SHA256, content)
			if err := si.Verify(cert, cms.OIDData, digest); err != nil {
				t.Fatalf("verify: %v", err)
			}
			bad := append([]byte(nil), digest...)
			bad[0] ^= 1
			// With signed attributes the messageDigest differs; without
			// them the RSA signature still decodes to a digest, another one.
			want := reason.DigestMismatch
			if tc.pss && si.SignedAttrs == nil {
				want = reason.BadSignature
			}
			if got := reason.Of(si.Verify(cert, cms.OIDData, bad), ""); got != want {
				t.Fatalf("tampered content: got %q want %q", got, want)
			}
			si.Signature[10] ^= 0x40
			if got := reason.Of(si.Verify(cert, cms.OIDData, digest), ""); got != reason.BadSignature {
				t.Fatalf("tampered signature: got %q", got)
			}
			other := testpki.NewHierarchy(testpki.Options{}).Leaf.Cert
			si.Signature[10] ^= 0x40
			if got := reason.Of(si.Verify(other, cms.OIDData, digest), ""); got != reason.BadSignature {
				t.Fatalf("wrong key: got %q", got)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	h := testpki.NewHierarchy(testpki.Options{})
	der, err := cms.Sign(h.Leaf.Key, h.Leaf.Cert, cms.SignOptions{Content: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	deep := []byte{}
	for i := 0; i < 100000; i++ {
		deep = append([]byte{0x30, 0x80}, deep...)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"one byte":  {0x30},
		"deep BER":  deep,
		"wrong oid": mustMarshal(t, struct{ A asn1.ObjectIdentifier }{cms.OIDData}),
		"garbage":   bytes.Repeat([]byte{0xa0, 0x84, 0xff, 0xff, 0xff, 0xff}, 4),
	}
	for i := 1; i < len(der); i += 7 {
		cases["truncated-"+strconv.Itoa(i)] = der[:i]
	}
	for name, b := range cases {
		if _, err := cms.Parse(b); reason.Of(err, "") != reason.Malformed {
			t.Errorf("%s: got %v, want malformed", name, err)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParse(f *testing.F) {
	h := testpki.NewHierarchy(testpki.Options{})
	for _, o := range []cms.SignOptions{{Content: []byte("abc")}, {Detached: true, Content: []byte("abc"), NoAttributes: true}} {
		der, _ := cms.Sign(h.Leaf.Key, h.Leaf.Cert, o)
		f.Add(der)
	}
	// Real signatures: a Debian module's (no certificates, no attributes)
	// and the Authenticode signatures of Debian's EFI binaries, with
	// timestamps, nested signatures and Microsoft's chains.
	for _, m := range artifacts.Modules(f)[:3] {
		mod, err := kmodsig.ParseFile(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mod.PKCS7)
	}
	for _, name := range []string{"shimx64.efi.signed", "fwupdx64.efi.signed"} {
		file, err := os.Open(artifacts.EFI(f, name))
		if err != nil {
			f.Fatal(err)
		}
		st, _ := file.Stat()
		pf, err := authenticode.Parse(file, st.Size())
		if err != nil {
			f.Fatal(err)
		}
		certs, err := pf.Certificates()
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range certs {
			f.Add(c.Data)
		}
		file.Close()
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := cms.Parse(b)
		if err != nil {
			if reason.Of(err, "") != reason.Malformed && reason.Of(err, "") != reason.Unsupported {
				t.Fatalf("error without reason: %v", err)
			}
			return
		}
		for _, si := range sd.Signers {
			c := sd.FindCertificate(si, nil)
			if c != nil {
				_ = si.Verify(c, sd.ContentType, []byte("0123456789abcdef0123456789abcdef"))
			}
			_ = si.Timestamps(sd)
			_, _ = si.Nested()
		}
	})
}
