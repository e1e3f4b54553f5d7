package codepolicy

import (
	"crypto"
	"encoding/asn1"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testpki"
)

func TestDefault(t *testing.T) {
	p := Default()
	if got := p.RequiredEKUs(); len(got) != 1 || !got[0].Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}) {
		t.Errorf("RequiredEKUs = %v, want [codeSigning]", got)
	}
	if p.MinimumHash() != crypto.SHA256 {
		t.Errorf("MinimumHash = %v", p.MinimumHash())
	}
	if len(p.Anchors()) != 0 || p.IgnoreExpiry {
		t.Errorf("default has anchors or ignores expiry")
	}
	if p.HashAllowed(crypto.SHA1) || !p.HashAllowed(crypto.SHA256) || !p.HashAllowed(crypto.SHA512) || p.HashAllowed(crypto.MD5) {
		t.Errorf("HashAllowed wrong for the default sha256 minimum")
	}
	// An empty file is the same policy (bar the name).
	e := mustParse(t, "", "")
	if e.MinHash != "sha256" || len(e.RequiredEKUs()) != 1 {
		t.Errorf("empty policy: %+v", e)
	}
	if e.Digest() != p.Digest() {
		t.Errorf("empty policy digest differs from the default")
	}
}

func TestDocumentMarkers(t *testing.T) {
	for _, y := range []string{"---\nname: a\n", "name: a\n---\n", "name: a\n...\n", "---\nname: a\n---\n---\n"} {
		if p, err := Parse([]byte(y), ""); err != nil || p.Name != "a" {
			t.Errorf("%q: %v", y, err)
		}
	}
}

func TestRequireEKUForms(t *testing.T) {
	for _, c := range []struct {
		yml  string
		want []string
	}{
		{"require_eku: []", nil},
		{"require_eku: [any]", nil},
		{"require_eku: [ANY]", nil},
		{"require_eku:", []string{"1.3.6.1.5.5.7.3.3"}}, // null: the default
		{"name: x", []string{"1.3.6.1.5.5.7.3.3"}},
		{"require_eku: [kernelModeCodeSigning, 1.3.6.1.5.5.7.3.3]", []string{"1.3.6.1.4.1.311.61.1.1", "1.3.6.1.5.5.7.3.3"}},
		{"require_eku: [windowsHardwareDriverVerification, whqlcrypto]", []string{"1.3.6.1.4.1.311.10.3.5"}},
		{"require_eku: [earlyLaunchAntimalware, windowsSystemComponent, timeStamping]", []string{"1.3.6.1.4.1.311.61.4.1", "1.3.6.1.4.1.311.10.3.6", "1.3.6.1.5.5.7.3.8"}},
		{"require_eku: [1.2.3.4]", []string{"1.2.3.4"}},
	} {
		p := mustParse(t, c.yml, "")
		var got []string
		for _, o := range p.RequiredEKUs() {
			got = append(got, o.String())
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s: RequiredEKUs = %v, want %v", c.yml, got, c.want)
		}
	}
	p := mustParse(t, "require_eku: [1.3.6.1.4.1.311.61.1.1, CODESIGNING]", "")
	if strings.Join(p.RequireEKU, ",") != "kernelModeCodeSigning,codeSigning" {
		t.Errorf("EKU names not canonicalised: %v", p.RequireEKU)
	}
	if m := EKUNames(); m["kernelModeCodeSigning"] != "1.3.6.1.4.1.311.61.1.1" || m["whqlCrypto"] != "1.3.6.1.4.1.311.10.3.5" {
		t.Errorf("EKUNames: %v", m)
	}
}

func writeAnchors(t *testing.T, dir string) (root, inter *testpki.Cert) {
	t.Helper()
	h := testpki.NewHierarchy(testpki.Options{})
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	testpki.WritePEMs(t, filepath.Join(dir, "certs"), "chain.pem", h.Root, h.Intermediate)
	// A DER file, as Microsoft publishes its CA certificates.
	if err := os.WriteFile(filepath.Join(dir, "certs", "root.cer"), h.Root.Cert.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return h.Root, h.Intermediate
}

const fullPolicy = `
name: fleet-drivers
version: "2026.07"
description: |
  Everything at once.
trust: [certs/chain.pem, certs/root.cer]
require_eku: [codeSigning, kernelModeCodeSigning]
min_hash: SHA-384
ignore_expiry: true
revocations:
  - issuer: "CN=Vigil Test Intermediate CA, O=Vigil Test"
    serial: "0A:0b:FF"
    revoked_at: 2026-01-01T00:00:00Z
    reason: KeyCompromise
    comment: incident 42
  - tbs_sha256: AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99
  - spki_sha256: "0000000000000000000000000000000000000000000000000000000000000001"
    revoked_at: 2025-06-30
deny:
  sha256: [9368E51EC98E2AD20893A5FC21E6A8B20C5BEE158D5C49CA58649CFF84DB9D68]
  authentihash_sha1: [0cb5fc2ee1ba75e5b8ed06f92d4edaf08b136333]
  authentihash_sha256: [4ae065383a4ef5564a515d12adf18427f8d74cc15140edb95e5e2a51ca44fe42]
  signer_tbs_sha1: [589A7D4DF869395601BA7538A65AFAE8C4616385]
  signer_tbs_sha256: [EEC58131DC11CD7F512501B15FDBC6074C603B68CA91F7162D5A042054EDB0CF]
  signer_tbs_sha384: [20ADC5B59CB532E215F01BA09A9C745898C206555613512FEA7C295CCFD17CED4FE2C5BC3274CA8A270FC68799B8343C]
  signer_tbs_sha512: ["00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"]
allow_signers:
  - subject: "CN=Vigil Test Code Signer, O=Vigil Test"
  - {issuer: "O=Vigil Test, CN=Vigil Test Intermediate CA", comment: any leaf of our CA}
  - tbs_sha256: "1111111111111111111111111111111111111111111111111111111111111111"
    spki_sha256: "2222222222222222222222222222222222222222222222222222222222222222"
`

func TestParseFull(t *testing.T) {
	dir := t.TempDir()
	root, inter := writeAnchors(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(fullPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := p.Anchors()
	if len(a) != 2 || !a[0].Equal(root.Cert) || !a[1].Equal(inter.Cert) {
		t.Errorf("anchors: got %d, want root and intermediate once each (root.cer repeats the root)", len(a))
	}
	if p.MinHash != "sha384" || p.MinimumHash() != crypto.SHA384 || p.HashAllowed(crypto.SHA256) || !p.HashAllowed(crypto.SHA512) {
		t.Errorf("min_hash: %q %v", p.MinHash, p.MinimumHash())
	}
	if !p.IgnoreExpiry || p.Name != "fleet-drivers" || p.Version != "2026.07" || p.Description != "Everything at once.\n" {
		t.Errorf("scalars: %+v", p)
	}
	r := p.Revocations[0]
	if r.Serial != "a0bff" || r.Reason != "keyCompromise" || !r.RevokedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || r.Comment != "incident 42" {
		t.Errorf("revocation 0 not normalised: %+v", r)
	}
	if p.Revocations[1].TBSSHA256 != "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899" || p.Revocations[1].RevokedAt != nil {
		t.Errorf("revocation 1: %+v", p.Revocations[1])
	}
	if !p.Revocations[2].RevokedAt.Equal(time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date-only revoked_at: %v", p.Revocations[2].RevokedAt)
	}
	if p.Deny.SHA256[0] != "9368e51ec98e2ad20893a5fc21e6a8b20c5bee158d5c49ca58649cff84db9d68" {
		t.Errorf("deny hex not lower-cased: %v", p.Deny.SHA256)
	}
	if len(p.AllowSigners) != 3 || p.AllowSigners[1].Comment != "any leaf of our CA" {
		t.Errorf("allow_signers: %+v", p.AllowSigners)
	}
	// Parse with a base directory gives the same policy.
	q, err := Parse([]byte(fullPolicy), dir)
	if err != nil {
		t.Fatal(err)
	}
	if q.Digest() != p.Digest() {
		t.Errorf("Parse and Load digests differ")
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	writeAnchors(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, yml string
		want      []string // substrings of the error
	}{
		{"syntax", "a: b\nc: d: e\n", []string{"line 2: YAML syntax"}},
		{"not a mapping", "- a\n- b\n", []string{"line 1:", "mapping"}},
		{"unknown top key", "name: x\nrequire_ekus: [codeSigning]\n", []string{"line 2: ", "require_ekus", "unknown key"}},
		{"unknown nested key", "deny:\n  sah256: []\n", []string{"line 2: ", "deny.sah256", `unknown key "sah256" in deny`}},
		{"unknown entry key", "revocations:\n  - issuer: CN=A\n    serial: 01\n    revoked: 2026-01-01\n", []string{"line 4: ", "revocations[0].revoked"}},
		{"repeated key", "name: a\nname: b\n", []string{"line 2: ", "repeated"}},
		{"bad hex", "deny:\n  sha256:\n    - 9368e51e\n", []string{"line 3: ", "deny.sha256[0]", "64 hex digits"}},
		{"bad hex chars", "deny:\n  authentihash_sha1: [zz5fc2ee1ba75e5b8ed06f92d4edaf08b136333z]\n", []string{"line 2: ", "deny.authentihash_sha1[0]", "40 hex digits"}},
		{"sha256 in sha1 list", "deny:\n  signer_tbs_sha1: [EEC58131DC11CD7F512501B15FDBC6074C603B68CA91F7162D5A042054EDB0CF]\n", []string{"deny.signer_tbs_sha1[0]", "SHA-1"}},
		{"bad date", "revocations:\n  - tbs_sha256: " + strings.Repeat("a", 64) + "\n    revoked_at: last tuesday\n", []string{"line 3: ", "revocations[0].revoked_at", "RFC 3339"}},
		{"bad serial", "revocations:\n  - {issuer: CN=A, serial: xyz}\n", []string{"line 2: ", "revocations[0].serial", "hex serial"}},
		{"issuer without serial", "revocations:\n  - {issuer: CN=A}\n", []string{"revocations[0].serial", "needs serial"}},
		{"two forms", "revocations:\n  - {issuer: CN=A, serial: '01', tbs_sha256: " + strings.Repeat("a", 64) + "}\n", []string{"revocations[0]", "exactly one"}},
		{"no form", "revocations:\n  - {reason: keyCompromise}\n", []string{"revocations[0]", "exactly one"}},
		{"bad reason", "revocations:\n  - {spki_sha256: " + strings.Repeat("a", 64) + ", reason: stolen}\n", []string{"revocations[0].reason", "keyCompromise"}},
		{"removeFromCRL reason", "revocations:\n  - {spki_sha256: " + strings.Repeat("a", 64) + ", reason: removeFromCRL}\n", []string{"revocations[0].reason"}},
		{"bad issuer", "revocations:\n  - {issuer: 'XX=Foo', serial: '01'}\n", []string{"revocations[0].issuer", "unknown attribute type"}},
		{"unknown EKU", "require_eku: [codeSigning, kernelCodeSigning]\n", []string{"line 1: ", "require_eku[1]", "unknown EKU name", "kernelModeCodeSigning"}},
		{"any mixed", "require_eku: [any, codeSigning]\n", []string{"require_eku[0]", "cannot be combined"}},
		{"bad min_hash", "min_hash: md5\n", []string{"line 1: ", "min_hash", "sha256"}},
		{"bool", "ignore_expiry: yes\n", []string{"ignore_expiry", "true or false"}},
		{"list expected", "trust: certs/chain.pem\n", []string{"line 1: ", "trust", "expected a list"}},
		{"string expected", "name: [a]\n", []string{"name", "expected a string"}},
		{"missing trust file", "trust:\n  - certs/chain.pem\n  - certs/nope.pem\n", []string{"line 3: ", "trust[1]", "nope.pem", "no such file"}},
		{"trust file without certs", "trust: [key.pem]\n", []string{"trust[0]", "no certificate"}},
		{"trust is a directory", "trust: [certs]\n", []string{"trust[0]", "not a regular file"}},
		{"trust is a device", "trust: [/dev/zero]\n", []string{"trust[0]", "not a regular file"}},
		{"allow_signers empty entry", "allow_signers:\n  - comment: nothing\n", []string{"line 2: ", "allow_signers[0]", "at least one"}},
		{"two documents", "name: a\n---\nname: b\n", []string{"more than one YAML document"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yml), dir)
			if err == nil {
				t.Fatalf("no error for:\n%s", c.yml)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseReportsSeveralErrors(t *testing.T) {
	_, err := Parse([]byte("min_hash: md4\ndeny:\n  sha256: [abc, def]\n"), "")
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"line 1: min_hash", "line 3: deny.sha256[0]", "line 3: deny.sha256[1]"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

func TestLoadErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte("deny:\n  sha256: [nothex]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: deny.sha256[0]: ") {
		t.Errorf("error = %v", err)
	}
	var pe *ParseError
	if !asParseError(err, &pe) || pe.File != path || pe.Line != 2 || pe.Key != "deny.sha256[0]" {
		t.Errorf("ParseError fields: %+v", pe)
	}
	if _, err := Load(filepath.Join(dir, "absent.yaml")); err == nil {
		t.Error("no error for a missing file")
	}
}

func TestValidateAfterEdit(t *testing.T) {
	p := Default()
	p.Deny.SHA256 = append(p.Deny.SHA256, strings.Repeat("AB", 32))
	if _, denied := p.DenyHash(mustHex(strings.Repeat("ab", 32)), nil, nil); denied {
		t.Error("index changed before Validate")
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, denied := p.DenyHash(mustHex(strings.Repeat("ab", 32)), nil, nil); !denied {
		t.Error("Validate did not rebuild the index")
	}
	p.MinHash = "md5"
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "min_hash") {
		t.Errorf("Validate error = %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("using an unvalidated Policy did not panic")
		}
	}()
	(&Policy{}).DenyHash(nil, nil, nil)
}
