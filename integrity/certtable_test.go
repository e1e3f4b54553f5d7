package integrity_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// winCert encodes one WIN_CERTIFICATE entry with dwLength 8+len(data),
// followed by pad alignment bytes.
func winCert(rev, typ uint16, data, pad []byte) []byte {
	b := make([]byte, 8, 8+len(data)+len(pad))
	binary.LittleEndian.PutUint32(b, uint32(8+len(data)))
	binary.LittleEndian.PutUint16(b[4:], rev)
	binary.LittleEndian.PutUint16(b[6:], typ)
	return append(append(b, data...), pad...)
}

// appendCertTable writes a copy of the signed PE src whose certificate
// table (the end of the file, as osslsigncode writes it) gets extra bytes,
// the security directory's size grown to match: what an attacker does to a
// signed file, since the table is outside the image hash.
func appendCertTable(t *testing.T, src, name string, extra []byte) string {
	t.Helper()
	b := readFile(t, src)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := authenticode.Parse(f, int64(len(b)))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if pf.CertTableOffset+pf.CertTableSize != int64(len(b)) {
		t.Fatal("certificate table is not at the end of the file")
	}
	b = append(b, extra...)
	binary.LittleEndian.PutUint32(b[pf.CertDirOffset+4:], uint32(pf.CertTableSize)+uint32(len(extra)))
	out := filepath.Join(filepath.Dir(src), name)
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// firstEntry returns the raw PKCS#7 of the file's first table entry.
func firstEntry(t *testing.T, path string) []byte {
	t.Helper()
	return peSignature(t, path).Raw
}

// TestPECertTableEntries: bytes added to the certificate table of a signed
// file deny it, unless they are another signature of the same image.
func TestPECertTableEntries(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	p := e.policy(t, "")
	signed := e.osslSign(t, "table", "-h", "sha256")
	testcmd.Run(t, "osslsigncode", "verify", "-CAfile", e.rootPEM, "-in", signed)
	want(t, verify(t, p, signed), true)
	p7 := firstEntry(t, signed)
	pad8 := func(n int) []byte { return make([]byte, (8-n%8)%8) }
	payload := []byte("attacker payload: anything at all, outside every signature and the image hash")
	// A DER element that is not a ContentInfo: a PKCS#7 entry Vigil cannot read.
	octets := append([]byte{0x04, byte(len(payload))}, payload...)

	// A second signature of the same image by another publisher, under no
	// anchor of the policy: a real signature, as on Debian's shim.
	other := newEnv(t, testpki.Options{})
	otherSigned := other.osslSign(t, "table-other", "-h", "sha256")
	otherP7 := firstEntry(t, otherSigned)
	// A signature of another image, moved into this file's table.
	foreign := testpe.OsslSign(t, testpe.Copy(t, testpe.Build(t, "386"), other.dir, "foreign.in.exe"), filepath.Join(other.dir, "foreign.exe"),
		"-certs", other.chainPEM, "-key", other.leafKey, "-h", "sha256")
	foreignP7 := firstEntry(t, foreign)

	cases := []struct {
		name    string
		extra   []byte
		allowed bool
		reasons []reason.Code
		// peer: osslsigncode verify's outcome on the file, when checked.
		peerOK bool
	}{
		{"x509 entry", winCert(0x0200, authenticode.WinCertTypeX509, payload, pad8(len(payload))), false, []reason.Code{reason.BadCertTable}, false},
		{"efi guid entry", winCert(0x0200, authenticode.WinCertTypeEFIGUID, payload, pad8(len(payload))), false, []reason.Code{reason.BadCertTable}, false},
		{"revision 1 pkcs7 entry", winCert(0x0100, authenticode.WinCertTypePKCSSigned, p7, pad8(len(p7))), false, []reason.Code{reason.BadCertTable}, false},
		{"pkcs7 entry that is no SignedData", winCert(0x0200, authenticode.WinCertTypePKCSSigned, octets, pad8(len(octets))), false, []reason.Code{reason.BadCertTable}, false},
		{"pkcs7 entry that is not DER", winCert(0x0200, authenticode.WinCertTypePKCSSigned, payload, pad8(len(payload))), false, []reason.Code{reason.Malformed}, false},
		{"signature of another image", winCert(0x0200, authenticode.WinCertTypePKCSSigned, foreignP7, pad8(len(foreignP7))), false, []reason.Code{reason.BadCertTable}, false},
		{"non-zero alignment padding", winCert(0x0200, authenticode.WinCertTypePKCSSigned, otherP7, append(pad8(len(otherP7))[:0:0], nonZeroPad(len(otherP7))...)), false, []reason.Code{reason.Malformed}, false},
		{"trailing bytes too short for an entry", []byte{1, 2, 3, 4, 5, 6, 7}, false, []reason.Code{reason.Malformed}, false},
		// Allowed, as under the right anchor shim is; osslsigncode refuses
		// any second entry.
		{"second signature of the image", winCert(0x0200, authenticode.WinCertTypePKCSSigned, otherP7, pad8(len(otherP7))), true, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := appendCertTable(t, signed, "x.exe", tc.extra)
			want(t, verify(t, p, f), tc.allowed, tc.reasons...)
			_, err := testcmd.Output("osslsigncode", "verify", "-CAfile", e.rootPEM, "-in", f)
			if (err == nil) != tc.peerOK {
				t.Fatalf("osslsigncode verify: err=%v, want ok=%v", err, tc.peerOK)
			}
		})
	}
	if len(nonZeroPad(len(otherP7))) == 0 {
		t.Fatal("the padding case needs an entry whose length is not a multiple of 8")
	}

	// CVE-2013-3900 proper: bytes appended inside the signature's own
	// entry, its dwLength grown to cover them.
	t.Run("bytes after the pkcs7 in its entry", func(t *testing.T) {
		b := readFile(t, signed)
		f, _ := os.Open(signed)
		pf, err := authenticode.Parse(f, int64(len(b)))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		body := append(append([]byte(nil), p7...), payload...)
		entry := winCert(0x0200, authenticode.WinCertTypePKCSSigned, body, pad8(len(body)))
		b = append(b[:pf.CertTableOffset], entry...)
		binary.LittleEndian.PutUint32(b[pf.CertDirOffset+4:], uint32(len(entry)))
		out := filepath.Join(e.dir, "cve-2013-3900.exe")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want(t, verify(t, p, out), false, reason.Malformed)
	})
}

// nonZeroPad is alignment padding for an n-byte payload, all 0xAA.
func nonZeroPad(n int) []byte {
	p := make([]byte, (8-(8+n)%8)%8)
	for i := range p {
		p[i] = 0xAA
	}
	return p
}
