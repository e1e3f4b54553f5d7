package integrity_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

var tsEKU = []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}

// osslSign signs a copy of the Go-built PE with osslsigncode.
func (e *env) osslSign(t *testing.T, name string, args ...string) string {
	t.Helper()
	in := testpe.Copy(t, testpe.Build(t, "amd64"), e.dir, name+".in.exe")
	out := filepath.Join(e.dir, name+".exe")
	base := []string{"-certs", e.chainPEM, "-key", e.leafKey}
	return testpe.OsslSign(t, in, out, append(base, args...)...)
}

// tsArgs are osslsigncode's offline RFC 3161 timestamp options at time at.
func (e *env) tsArgs(at time.Time) []string {
	return []string{"-TSA-certs", e.tsaChain, "-TSA-key", e.tsaKey, "-TSA-time", strconv.FormatInt(at.Unix(), 10)}
}

func TestPEOsslsigncode(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	p := e.policy(t, "")
	s256 := e.osslSign(t, "s256", "-h", "sha256")
	v := verify(t, p, s256)
	want(t, v, true)
	if len(v.Signatures) != 1 || v.Signatures[0].Signer == nil || v.Signatures[0].Signer.Subject != e.h.Leaf.Cert.Subject.String() {
		t.Fatalf("signer: %+v", v.Signatures)
	}
	if v.Signatures[0].DigestAlgorithm != "sha256" || v.Signatures[0].Digest != v.Authentihash.SHA256 {
		t.Fatalf("digest %s %s vs authentihash %s", v.Signatures[0].DigestAlgorithm, v.Signatures[0].Digest, v.Authentihash.SHA256)
	}
	if v.SHA256 != fileSHA256(t, s256) || v.Format != "pe" {
		t.Fatalf("sha256/format: %s %s", v.SHA256, v.Format)
	}
	if len(v.Signatures[0].Chain) != 3 {
		t.Fatalf("chain %v", v.Signatures[0].Chain)
	}

	t.Run("sha1 is weak by default", func(t *testing.T) {
		s1 := e.osslSign(t, "s1", "-h", "sha1")
		want(t, verify(t, p, s1), false, reason.WeakAlgorithm)
		want(t, verify(t, e.policy(t, "min_hash: sha1\n"), s1), true)
	})
	t.Run("nested sha256 under sha1 is allowed", func(t *testing.T) {
		s1 := e.osslSign(t, "nest-base", "-h", "sha1")
		nested := testpe.OsslSign(t, s1, filepath.Join(e.dir, "nested.exe"), "-nest", "-h", "sha256", "-certs", e.chainPEM, "-key", e.leafKey)
		v := verify(t, p, nested)
		want(t, v, true)
		if len(v.Signatures) != 2 || v.Signatures[0].Nested || !v.Signatures[1].Nested ||
			v.Signatures[0].Valid || !v.Signatures[1].Valid || v.Signatures[1].DigestAlgorithm != "sha256" {
			t.Fatalf("signatures:\n%s", describe(v))
		}
	})
	t.Run("page hashes", func(t *testing.T) {
		ph := e.osslSign(t, "ph", "-h", "sha256", "-ph")
		v := verify(t, p, ph)
		want(t, v, true)
		if !v.Signatures[0].PageHashes {
			t.Fatal("page hashes not seen")
		}
	})
	t.Run("untrusted root", func(t *testing.T) {
		other := testpki.NewRoot(testpki.Options{CommonName: "Other Root"})
		testpki.WritePEMs(t, e.dir, "other.pem", other)
		po, err := parsePolicy(e.dir, "trust: [other.pem]\n")
		if err != nil {
			t.Fatal(err)
		}
		want(t, verify(t, po, s256), false, reason.UntrustedChain)
	})
	t.Run("unsigned", func(t *testing.T) {
		u := testpe.Copy(t, testpe.Build(t, "amd64"), e.dir, "unsigned.exe")
		v := verify(t, p, u)
		want(t, v, false, reason.Unsigned)
		if v.Authentihash == nil || v.Authentihash.SHA256 == "" {
			t.Fatal("unsigned PE has no authentihash")
		}
	})
	t.Run("deny lists", func(t *testing.T) {
		v := verify(t, p, s256)
		want(t, verify(t, e.policy(t, "deny:\n  authentihash_sha256: ["+v.Authentihash.SHA256+"]\n"), s256), false, reason.BlocklistedHash)
		// SHA-1 is computed only when needed: not for this SHA-256 file
		// under p, but for a policy that denies by it, and with Detail.
		if v.Authentihash.SHA1 != "" {
			t.Fatalf("SHA-1 image hash computed without need: %s", v.Authentihash.SHA1)
		}
		dv, err := integrity.New(integrity.Options{Policy: p, Detail: true}).VerifyFile(context.Background(), s256)
		if err != nil || len(dv.Authentihash.SHA1) != 40 {
			t.Fatalf("detail: %v %+v", err, dv.Authentihash)
		}
		deny1 := e.policy(t, "deny:\n  authentihash_sha1: ["+dv.Authentihash.SHA1+"]\n")
		want(t, verify(t, deny1, s256), false, reason.BlocklistedHash)
		if got := verify(t, deny1, s256).Authentihash.SHA1; got != dv.Authentihash.SHA1 {
			t.Fatalf("SHA-1 image hash %q under a policy denying by it, want %s", got, dv.Authentihash.SHA1)
		}
		want(t, verify(t, e.policy(t, "deny:\n  sha256: ["+v.SHA256+"]\n"), s256), false, reason.BlocklistedHash)
		want(t, verify(t, e.policy(t, "deny:\n  signer_tbs_sha256: ["+tbsSHA256(e.h.Intermediate)+"]\n"), s256), false, reason.BlocklistedSigner)
		want(t, verify(t, e.policy(t, "deny:\n  signer_tbs_sha256: ["+tbsSHA256(e.h.Leaf)+"]\n"), s256), false, reason.BlocklistedSigner)
	})
	t.Run("allow signers", func(t *testing.T) {
		want(t, verify(t, e.policy(t, "allow_signers:\n  - subject: \"CN=Someone Else\"\n"), s256), false, reason.SignerNotAllowed)
		want(t, verify(t, e.policy(t, "allow_signers:\n  - tbs_sha256: "+tbsSHA256(e.h.Leaf)+"\n"), s256), true)
	})
	t.Run("revoked without date", func(t *testing.T) {
		y := fmt.Sprintf("revocations:\n  - issuer: %q\n    serial: %q\n", e.h.Intermediate.Cert.Subject.String(), e.h.Leaf.Cert.SerialNumber.Text(16))
		want(t, verify(t, e.policy(t, y), s256), false, reason.Revoked)
	})
}

func TestPEWrongEKU(t *testing.T) {
	e := newEnv(t, testpki.Options{EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	s := e.osslSign(t, "eku", "-h", "sha256")
	want(t, verify(t, e.policy(t, ""), s), false, reason.WrongEKU)
	want(t, verify(t, e.policy(t, "require_eku: []\n"), s), true)
}

// TestPETimestampsExpiryRevocation covers the revocation and expiry rules
// with RFC 3161 timestamps made by osslsigncode's offline TSA.
func TestPETimestampsExpiryRevocation(t *testing.T) {
	now := time.Now()
	// The signer was valid from 2 years ago to 1 year ago.
	e := newEnv(t, testpki.Options{NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})
	tsTime := now.AddDate(-1, -6, 0) // inside the validity period
	stamped := e.osslSign(t, "stamped", append([]string{"-h", "sha256"}, e.tsArgs(tsTime)...)...)
	bare := e.osslSign(t, "bare", "-h", "sha256")
	p := e.policy(t, "")

	testcmd.Run(t, "osslsigncode", "verify", "-CAfile", e.rootPEM, "-TSA-CAfile", e.tsaRootPEM, "-in", stamped)
	v := verify(t, p, stamped)
	want(t, v, true)
	ts := v.Signatures[0].Timestamp
	if ts == nil || ts.Unix() != tsTime.Unix() || v.Signatures[0].TimestampKind != "rfc3161" {
		t.Fatalf("timestamp %v kind %q, want %v rfc3161", ts, v.Signatures[0].TimestampKind, tsTime)
	}
	want(t, verify(t, p, bare), false, reason.Expired)
	want(t, verify(t, e.policy(t, "ignore_expiry: true\n"), bare), true)

	// A timestamp outside the validity period does not rescue the signature.
	late := e.osslSign(t, "late", append([]string{"-h", "sha256"}, e.tsArgs(now.AddDate(0, -6, 0))...)...)
	want(t, verify(t, p, late), false, reason.Expired)

	// The TSA must be trusted: without its root, the timestamp is ignored.
	noTSA, err := parsePolicy(e.dir, "trust: [root.pem]\n")
	if err != nil {
		t.Fatal(err)
	}
	want(t, verify(t, noTSA, stamped), false, reason.Expired, reason.BadTimestamp)

	rev := func(extra string) string {
		return fmt.Sprintf("revocations:\n  - issuer: %q\n    serial: %q\n%s", e.h.Intermediate.Cert.Subject.String(), e.h.Leaf.Cert.SerialNumber.Text(16), extra)
	}
	after := tsTime.Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	before := tsTime.Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		name    string
		policy  string
		file    string
		allowed bool
		reasons []reason.Code
	}{
		{"revoked after the timestamp", rev("    revoked_at: " + after + "\n    reason: superseded\n"), stamped, true, nil},
		{"revoked before the timestamp", rev("    revoked_at: " + before + "\n    reason: superseded\n"), stamped, false, []reason.Code{reason.Revoked}},
		{"key compromise after the timestamp", rev("    revoked_at: " + after + "\n    reason: keyCompromise\n"), stamped, false, []reason.Code{reason.Revoked}},
		{"revoked without date", rev(""), stamped, false, []reason.Code{reason.Revoked}},
		{"revoked, no timestamp, ignore expiry", "ignore_expiry: true\n" + rev("    revoked_at: "+after+"\n"), bare, false, []reason.Code{reason.Revoked}},
		{"tsa revoked", fmt.Sprintf("revocations:\n  - tbs_sha256: %s\n", tbsSHA256(e.tsa)), stamped, false, []reason.Code{reason.Expired, reason.BadTimestamp}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want(t, verify(t, e.policy(t, tc.policy), tc.file), tc.allowed, tc.reasons...)
		})
	}
}

// TestPETamper flips one byte in each section, in the headers, in the
// signature, and moves a signature to another file.
func TestPETamper(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	p := e.policy(t, "")
	signed := e.osslSign(t, "tamper", "-h", "sha256")
	f, err := os.Open(signed)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	pf, err := authenticode.Parse(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pf.Certificates()
	f.Close()
	if err != nil || len(certs) != 1 {
		t.Fatalf("certificates: %v %d", err, len(certs))
	}
	for _, s := range pf.Sections {
		if s.SizeOfRawData == 0 {
			continue
		}
		t.Run("section "+s.Name, func(t *testing.T) {
			c := testpe.Copy(t, signed, t.TempDir(), "x.exe")
			testpe.FlipByte(t, c, int64(s.PointerToRawData)+int64(s.SizeOfRawData)/2)
			want(t, verify(t, p, c), false, reason.DigestMismatch)
		})
	}
	t.Run("header", func(t *testing.T) {
		c := testpe.Copy(t, signed, t.TempDir(), "x.exe")
		testpe.FlipByte(t, c, 0x4e) // DOS stub message
		want(t, verify(t, p, c), false, reason.DigestMismatch)
	})
	t.Run("checksum is excluded", func(t *testing.T) {
		c := testpe.Copy(t, signed, t.TempDir(), "x.exe")
		testpe.FlipByte(t, c, pf.ChecksumOffset)
		want(t, verify(t, p, c), true)
	})
	sd, err := cms.Parse(certs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(signed)
	locate := func(t *testing.T, b []byte) int64 {
		i := bytes.Index(raw, b)
		if i < 0 || bytes.Contains(raw[i+1:], b) {
			t.Fatalf("cannot locate bytes uniquely")
		}
		return int64(i)
	}
	t.Run("signature value", func(t *testing.T) {
		c := testpe.Copy(t, signed, t.TempDir(), "x.exe")
		testpe.FlipByte(t, c, locate(t, sd.Signers[0].Signature)+7)
		want(t, verify(t, p, c), false, reason.BadSignature)
	})
	t.Run("signed digest", func(t *testing.T) {
		c := testpe.Copy(t, signed, t.TempDir(), "x.exe")
		v := verify(t, p, signed)
		digest := mustHex(t, v.Signatures[0].Digest)
		testpe.FlipByte(t, c, locate(t, digest)+3)
		// The SpcIndirectData digest no longer matches the image.
		want(t, verify(t, p, c), false, reason.DigestMismatch)
	})
	t.Run("signed attributes", func(t *testing.T) {
		c := testpe.Copy(t, signed, t.TempDir(), "x.exe")
		// Change the SpcStatementType (individual code signing, .21) to
		// commercial (.22): the attributes still parse, their signature breaks.
		stmt, _ := asn1.Marshal(authenticode.OIDIndividualCodeSigning)
		attrs := sd.Signers[0].RawSignedAttrs
		i := bytes.Index(attrs, stmt)
		if i < 0 {
			t.Fatal("statement type not in signed attributes")
		}
		testpe.FlipByte(t, c, locate(t, attrs[i:i+len(stmt)+4])+int64(len(stmt))-1)
		want(t, verify(t, p, c), false, reason.BadSignature)
	})
	t.Run("truncated signature", func(t *testing.T) {
		c := testpe.Copy(t, signed, t.TempDir(), "x.exe")
		if err := os.Truncate(c, st.Size()-100); err != nil {
			t.Fatal(err)
		}
		want(t, verify(t, p, c), false, reason.Malformed)
	})
	t.Run("signature moved to another file", func(t *testing.T) {
		other := testpe.Build(t, "386")
		in, err := os.Open(other)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		ist, _ := in.Stat()
		opf, err := authenticode.Parse(in, ist.Size())
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "moved.exe")
		w, _ := os.Create(out)
		if err := opf.WriteSigned(in, w, certs[0].Data); err != nil {
			t.Fatal(err)
		}
		w.Close()
		want(t, verify(t, p, out), false, reason.DigestMismatch)
	})
}

// TestPESignVerifiedByPeers: vigil's PE signatures pass osslsigncode and
// sbverify, and vigil's own verification.
func TestPESignVerifiedByPeers(t *testing.T) {
	for _, key := range []testpki.KeyType{testpki.RSA2048, testpki.ECDSAP256} {
		e := newEnv(t, testpki.Options{Key: key})
		for _, arch := range []string{"amd64", "386"} {
			in := testpe.Copy(t, testpe.Build(t, arch), e.dir, "in-"+arch+".exe")
			out := filepath.Join(e.dir, "vigil-"+arch+".exe")
			s := &codesign.Signer{Key: e.h.Leaf.Key, Cert: e.h.Leaf.Cert, Chain: []*x509.Certificate{e.h.Intermediate.Cert}, ProgramName: "Vigil test"}
			if err := codesign.SignFile(s, codesign.PE, in, out); err != nil {
				t.Fatal(err)
			}
			testcmd.Run(t, "osslsigncode", "verify", "-CAfile", e.rootPEM, "-in", out)
			testcmd.Run(t, "sbverify", "--cert", e.leafPEM, out)
			want(t, verify(t, e.policy(t, ""), out), true)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		b[i] = byte(v)
	}
	return b
}

// TestPEDenySignerOverridesOtherSignature: a denied signer on one signature
// denies the file even though a nested signature by another signer is valid.
// A revoked primary signer loses its own signature, and in windows mode (a
// Windows PE, by default) the primary decides: the valid nested signature
// does not rescue the file (issue 12: "Windows judges the primary").
func TestPEDenySignerOverridesOtherSignature(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	other := e.h.Intermediate.NewLeaf(testpki.Options{CommonName: "Second Publisher"})
	_, otherKey := other.WriteFiles(t, e.dir, "other")
	chain2 := testpki.WritePEMs(t, e.dir, "chain2.pem", other, e.h.Intermediate)
	first := e.osslSign(t, "dual-base", "-h", "sha256")
	dual := testpe.OsslSign(t, first, filepath.Join(e.dir, "dual.exe"), "-nest", "-h", "sha256", "-certs", chain2, "-key", otherKey)
	want(t, verify(t, e.policy(t, ""), dual), true)
	want(t, verify(t, e.policy(t, "deny:\n  signer_tbs_sha256: ["+tbsSHA256(e.h.Leaf)+"]\n"), dual), false, reason.BlocklistedSigner)
	y := fmt.Sprintf("revocations:\n  - tbs_sha256: %s\n", tbsSHA256(e.h.Leaf))
	v := verify(t, e.policy(t, y), dual)
	want(t, v, false, reason.Revoked)
	if v.Mode != integrity.ModeWindows || v.Signatures[0].Valid || !v.Signatures[1].Valid || !v.Signatures[1].Ignored {
		t.Fatalf("revoked first signer:\n%s", describe(v))
	}
}
