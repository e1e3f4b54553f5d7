package codepolicy

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/csv"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
)

// checkPolicyInvariants is what every successful parse or import must give:
// a policy that validates, marshals, and parses back to the same digest.
func checkPolicyInvariants(t *testing.T, p *Policy) {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("policy does not validate after parse or import: %v", err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	q, err := Parse(b, p.baseDir)
	if err != nil {
		t.Fatalf("Marshal output does not parse: %v\n%s", err, b)
	}
	if q.Digest() != p.Digest() {
		t.Fatalf("digest changed across Marshal/Parse:\n%s", b)
	}
	b2, err := q.Marshal()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("Marshal not idempotent:\n%s\n---\n%s", b, b2)
	}
}

var trustLineRE = regexp.MustCompile(`(?m)^trust:.*$`)

func FuzzParse(f *testing.F) {
	f.Add([]byte(trustLineRE.ReplaceAllString(fullPolicy, "")))
	f.Add([]byte(defaultYAML))
	f.Add([]byte(""))
	f.Add([]byte("require_eku: []\nmin_hash: sha1\nignore_expiry: true\n"))
	f.Add([]byte("revocations:\n  - {issuer: 'O=\"Foo, Inc.\" + CN=A\\2C B', serial: '00:ff', revoked_at: 2026-01-01}\n"))
	f.Add([]byte("allow_signers: [{subject: '/C=US/O=X/CN=Y', issuer: '1.2.3.4=#020105'}]\n"))
	f.Add([]byte("deny: &d {sha256: [" + strings.Repeat("ab", 32) + "]}\nname: *d\n"))
	if md, err := os.ReadFile("../docs/policy.md"); err == nil {
		for _, b := range regexp.MustCompile("(?ms)^```yaml\\n(.*?)^```").FindAllSubmatch(md, -1) {
			f.Add([]byte(trustLineRE.ReplaceAllString(string(b[1]), "")))
		}
	}
	cert := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0xff)}).Cert
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, dir)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			return
		}
		// Lookups never panic.
		p.Revocation(cert)
		p.DenySigner(cert)
		p.SignerAllowed(cert)
		p.DenyHash(make([]byte, 32), make([]byte, 20), make([]byte, 32))
		p.Revocation(cert).Rejects(nil)
		checkPolicyInvariants(t, p)
	})
}

// realSlice returns the start of a real file, cut at the last newline
// before n bytes.
func realSlice(f *testing.F, rel string, n int) []byte {
	b, err := os.ReadFile(sharedData(f, rel))
	if err != nil {
		f.Fatal(err)
	}
	if len(b) > n {
		b = b[:bytes.LastIndexByte(b[:n], '\n')+1]
	}
	return b
}

func FuzzImportLOLDrivers(f *testing.F) {
	// The header and a few real rows, re-encoded so that each seed is whole.
	r := csv.NewReader(bytes.NewReader(realSlice(f, "loldrivers/drivers.csv", 64<<10)))
	r.FieldsPerRecord = -1
	rows, _ := r.ReadAll()
	for _, pick := range [][]int{{1}, {2, 3}, {4, 5, 6}} {
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		w.Write(rows[0])
		for _, i := range pick {
			if i < len(rows) {
				w.Write(rows[i])
			}
		}
		w.Flush()
		f.Add(buf.Bytes())
	}
	f.Add([]byte("Category,KnownVulnerableSamples_SHA256,KnownVulnerableSamples_Authentihash_SHA256,KnownVulnerableSamples_Authentihash_SHA1\nmalicious,\"" +
		strings.Repeat("a", 64) + ", " + strings.Repeat("b", 64) + "\",,\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := Default()
		st, err := ImportLOLDrivers(p, bytes.NewReader(data), nil)
		if err != nil {
			if len(p.Deny.SHA256)+len(p.Deny.AuthentihashSHA1)+len(p.Deny.AuthentihashSHA256) != 0 {
				t.Fatal("a failed import changed the policy")
			}
			return
		}
		if st.TotalAdded() != len(p.Deny.SHA256)+len(p.Deny.AuthentihashSHA1)+len(p.Deny.AuthentihashSHA256) {
			t.Fatalf("Added %v does not match the lists", st.Added)
		}
		checkPolicyInvariants(t, p)
		st2, err := ImportLOLDrivers(p, bytes.NewReader(data), nil)
		if err != nil || st2.TotalAdded() != 0 || st2.Duplicates != st.Duplicates+st.TotalAdded() {
			t.Fatalf("second import: %+v %v (first %+v)", st2, err, st)
		}
	})
}

func FuzzImportWDAC(f *testing.F) {
	f.Add([]byte(wdacSample))
	// Real rules: the head of the file (rules, no signers), closed by hand,
	// plus a real signer and scenario lines.
	head := string(realSlice(f, "loldrivers/wdac-DenyPolicy.xml", 6<<10))
	f.Add([]byte(head + "</FileRules></SiPolicy>"))
	f.Add([]byte(head + `</FileRules><Signers><Signer ID="ID_SIGNER_F_1_1" Name="DigiCert EV Code Signing CA (SHA2)">
      <CertRoot Type="TBS" Value="EEC58131DC11CD7F512501B15FDBC6074C603B68CA91F7162D5A042054EDB0CF" />
    </Signer></Signers><SigningScenarios><SigningScenario Value="131" ID="S"><ProductSigners>
    <DeniedSigners><DeniedSigner SignerId="ID_SIGNER_F_1_1" /></DeniedSigners>
    <FileRulesRef><FileRuleRef RuleID="ID_DENY_D_1_1" /><FileRuleRef RuleID="ID_DENY_D_2_1" /></FileRulesRef>
    </ProductSigners></SigningScenario></SigningScenarios></SiPolicy>`))
	f.Add(utf16Bytes(wdacSample, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := Default()
		st, err := ImportWDAC(p, bytes.NewReader(data))
		if err != nil {
			if p.Deny.AuthentihashSHA1 != nil || p.Deny.AuthentihashSHA256 != nil || p.Deny.SignerTBSSHA256 != nil {
				t.Fatal("a failed import changed the policy")
			}
			return
		}
		checkPolicyInvariants(t, p)
		st2, err := ImportWDAC(p, bytes.NewReader(data))
		if err != nil || st2.TotalAdded() != 0 || st2.Read != st.Read || st2.Skipped != st.Skipped {
			t.Fatalf("second import: %+v %v (first %+v)", st2, err, st)
		}
	})
}

func FuzzImportCRL(f *testing.F) {
	ca := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(1), RevocationTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ReasonCode: 1},
			{SerialNumber: big.NewInt(0x7fffffff), RevocationTime: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
		},
	}, ca.Cert, ca.Key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := Default()
		st, err := ImportCRL(p, data)
		if err != nil {
			if len(p.Revocations) != 0 {
				t.Fatal("a failed import changed the policy")
			}
			return
		}
		if st.Added["revocations"] != len(p.Revocations) {
			t.Fatalf("Added %v, %d revocations", st.Added, len(p.Revocations))
		}
		checkPolicyInvariants(t, p)
		st2, err := ImportCRL(p, data)
		if err != nil || st2.TotalAdded() != 0 {
			t.Fatalf("second import: %+v %v", st2, err)
		}
	})
}

// FuzzVerifyUpdate: an authenticated dbx update checked against a KEK is
// imported only when it verifies; any input gives a verified import or an
// error with a reason code, never a panic, and a failed check leaves the
// policy unchanged. Seeded with sign-efi-sig-list's output for a one-entry
// dbx signed by a P-256 KEK: a small seed, since the fuzzer's minimizer is
// quadratic in the input's length and each run verifies a signature.
func FuzzVerifyUpdate(f *testing.F) {
	dir := f.TempDir()
	kek := testpki.NewRoot(testpki.Options{CommonName: "K", Key: testpki.ECDSAP256})
	crt, key := kek.WriteFiles(f, dir, "kek")
	esl, err := efi.AppendSignatureLists(nil, efi.HashList(efi.CertSHA256, efi.GUID{}, bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	in, out := filepath.Join(dir, "in.esl"), filepath.Join(dir, "out.auth")
	if err := os.WriteFile(in, esl, 0o644); err != nil {
		f.Fatal(err)
	}
	testcmd.Run(f, "sign-efi-sig-list", "-t", "2025-01-02 03:04:05", "-c", crt, "-k", key, "dbx", in, out)
	signed, err := os.ReadFile(out)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := ImportSignatureDatabase(Default(), signed, "dbx", VerifyUpdate(kek.Cert)); err != nil {
		f.Fatalf("the seed does not verify: %v", err)
	}
	f.Add(signed)
	f.Add(esl)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := Default()
		st, err := ImportSignatureDatabase(p, data, "dbx", VerifyUpdate(kek.Cert))
		if err != nil {
			if p.Deny.Len() != 0 || len(p.Revocations) != 0 {
				t.Fatalf("the policy changed on error %v", err)
			}
			return
		}
		if !st.Verified {
			t.Fatal("imported without verifying")
		}
		checkPolicyInvariants(t, p)
	})
}
