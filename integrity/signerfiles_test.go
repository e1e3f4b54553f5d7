package integrity_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// signVersioned builds a PE whose version resource names file at version
// v (windres), optionally breaks its VS_FIXEDFILEINFO signature before
// signing, and signs it with the env's leaf.
func (e *env) signVersioned(t *testing.T, name, file string, v [4]uint16, breakFixed bool) string {
	t.Helper()
	src := testpe.BuildWith(t, testpe.Options{GOARCH: "amd64", Resources: testpe.VersionRC(file, v)})
	in := testpe.Copy(t, src, e.dir, name+".in.exe")
	if breakFixed {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		sig := binary.LittleEndian.AppendUint32(nil, 0xFEEF04BD)
		i := bytes.Index(b, sig)
		if i < 0 || bytes.Contains(b[i+1:], sig) {
			t.Fatal("want exactly one VS_FIXEDFILEINFO signature")
		}
		b[i] ^= 0xff
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(e.dir, name+".exe")
	return testpe.OsslSign(t, in, out, "-certs", e.chainPEM, "-key", e.leafKey, "-h", "sha256")
}

// TestSignerFiles: WDAC's signer rules with file attributes, as Microsoft's
// vulnerable-driver list writes them (the issuing CA's TBS hash, the
// publisher's CN, the OriginalFilename and a minimum version), deny exactly
// the files they name: the vulnerable driver at or above the version, in
// any letter case, and nothing else the publisher signs. A version
// resource that does not parse, in a file whose signer a rule names, is
// malformed.
func TestSignerFiles(t *testing.T) {
	e := newEnv(t, testpki.Options{CommonName: "ASUSTEK COMPUTER INC."})
	tbs := tbsSHA256(e.h.Intermediate)
	s1 := sha1.Sum(e.h.Intermediate.Cert.RawTBSCertificate)
	rule := func(fields string) string {
		return "deny:\n  signer_files:\n    - tbs: " + tbs + "\n" + fields
	}
	wdac := rule("      publisher: ASUSTEK COMPUTER INC.\n      file_name: EIO.sys\n      min_version: 1.9.7.0\n")
	vuln := e.signVersioned(t, "eio-197", "EIO.sys", [4]uint16{1, 9, 7, 0}, false)
	newer := e.signVersioned(t, "eio-2", "eio.SYS", [4]uint16{2, 0, 0, 0}, false)
	older := e.signVersioned(t, "eio-196", "EIO.sys", [4]uint16{1, 9, 6, 65535}, false)
	other := e.signVersioned(t, "atk", "AsIO3.sys", [4]uint16{1, 9, 7, 0}, false)
	broken := e.signVersioned(t, "eio-broken", "EIO.sys", [4]uint16{1, 9, 7, 0}, true)
	plain := e.osslSign(t, "plain", "-h", "sha256")
	for _, c := range []struct {
		name    string
		policy  string
		file    string
		allowed bool
		reasons []reason.Code
	}{
		{"the vulnerable version", wdac, vuln, false, []reason.Code{reason.BlocklistedSigner}},
		{"a later version, the name in another case", wdac, newer, false, []reason.Code{reason.BlocklistedSigner}},
		{"an earlier version", wdac, older, true, nil},
		{"another file of the publisher", wdac, other, true, nil},
		{"no version resource (WDAC matches no file attribute)", wdac, plain, true, nil},
		{"another publisher", rule("      publisher: Other Corp\n      file_name: EIO.sys\n"), vuln, true, nil},
		{"the CA by its SHA-1 TBS hash", "deny:\n  signer_files:\n    - tbs: " + hex.EncodeToString(s1[:]) + "\n      file_name: EIO.sys\n", vuln, false, []reason.Code{reason.BlocklistedSigner}},
		{"a version range, above it", rule("      max_version: 1.9.7.0\n"), newer, true, nil},
		{"a version range, at its top", rule("      max_version: 1.9.7.0\n"), vuln, false, []reason.Code{reason.BlocklistedSigner}},
		{"the leaf's TBS names the signer too", "deny:\n  signer_files:\n    - tbs: " + tbsSHA256(e.h.Leaf) + "\n      file_name: EIO.sys\n", vuln, false, []reason.Code{reason.BlocklistedSigner}},
		{"another CA's TBS", "deny:\n  signer_files:\n    - tbs: " + tbsSHA256(e.tsaRoot) + "\n      file_name: EIO.sys\n", vuln, true, nil},
		{"a broken version resource, the signer named", wdac, broken, false, []reason.Code{reason.Malformed}},
		{"a broken version resource, no rule for the signer", "", broken, true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			want(t, verify(t, e.policy(t, c.policy), c.file), c.allowed, c.reasons...)
		})
	}
}
