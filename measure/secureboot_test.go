package measure_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/reason"
)

// Attribute words as firmware sets them: the volatile state variables
// (and shim's mirrors), and the authenticated databases.
const (
	attrsRT = efi.BootServiceAccess | efi.RuntimeAccess
	attrsDB = efi.NonVolatile | efi.BootServiceAccess | efi.RuntimeAccess | efi.TimeBasedAuthenticatedWriteAccess
)

// microsoftOwner is the SignatureOwner Microsoft uses in db and dbx.
var microsoftOwner = efi.MustParseGUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")

// sbTree is a host tree with efivars in efivarfs's format and boot files.
type sbTree struct {
	t    testing.TB
	root string
}

func newSBTree(t testing.TB) *sbTree {
	x := &sbTree{t: t, root: t.TempDir()}
	x.mkdir(efi.EfivarsDir)
	return x
}

func (x *sbTree) host(p string) string { return filepath.Join(x.root, filepath.FromSlash(p)) }

func (x *sbTree) mkdir(p string) {
	if err := os.MkdirAll(x.host(p), 0o755); err != nil {
		x.t.Fatal(err)
	}
}

func (x *sbTree) write(p string, b []byte) {
	x.mkdir(path.Dir(p))
	if err := os.WriteFile(x.host(p), b, 0o644); err != nil {
		x.t.Fatal(err)
	}
}

func (x *sbTree) copy(p, from string) {
	b, err := os.ReadFile(from)
	if err != nil {
		x.t.Fatal(err)
	}
	x.write(p, b)
}

// setVar writes an efivarfs file: the attribute word, then data.
func (x *sbTree) setVar(id efi.VarID, attrs efi.Attributes, data []byte) {
	b, _ := efi.Variable{Attributes: attrs, Data: data}.MarshalBinary()
	x.write(id.Path(), b)
}

func (x *sbTree) measure(eng *integrity.Engine) *measure.Report {
	x.t.Helper()
	r, err := measure.New(measure.Options{Engine: eng}).Measure(context.Background(), hostfs.New(x.root))
	if err != nil {
		x.t.Fatal(err)
	}
	return r
}

// Real certificates, read from Debian's shim as the integrity tests do:
// Microsoft's UEFI CAs sign shim, the Debian CA shim embeds signs the rest.
type realPKI struct {
	ca2011, ca2023, debianCA *x509.Certificate
}

func loadRealPKI(t testing.TB) realPKI {
	t.Helper()
	shim := artifacts.EFI(t, "shimx64.efi.signed")
	return realPKI{
		testpki.EmbeddedCert(t, shim, "Microsoft Corporation UEFI CA 2011"),
		testpki.EmbeddedCert(t, shim, "Microsoft UEFI CA 2023"),
		testpki.EmbeddedCert(t, shim, "Debian Secure Boot CA"),
	}
}

// uefiEngine trusts anchors and ignores expiry, as firmware and shim do
// (UEFI signatures carry no timestamp; shim's signers have expired).
func uefiEngine(t testing.TB, anchors ...*x509.Certificate) *integrity.Engine {
	t.Helper()
	p, err := codepolicy.Parse([]byte("ignore_expiry: true\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p.AddAnchors(anchors...)
	return integrity.New(integrity.Options{Policy: p})
}

// efitoolsCertESL runs cert-to-efi-sig-list.
func efitoolsCertESL(t testing.TB, c *x509.Certificate, owner efi.GUID) []byte {
	t.Helper()
	dir := t.TempDir()
	pem, out := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.esl")
	if err := os.WriteFile(pem, testpki.CertPEMOf(c), 0o644); err != nil {
		t.Fatal(err)
	}
	testcmd.Run(t, "cert-to-efi-sig-list", "-g", owner.String(), pem, out)
	return readAll(t, out)
}

// efitoolsHashESL runs hash-to-efi-sig-list on PE files.
func efitoolsHashESL(t testing.TB, files ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "h.esl")
	if log := testcmd.Run(t, "hash-to-efi-sig-list", append(files, out)...); strings.Contains(log, "Failed") {
		t.Fatal(log)
	}
	return readAll(t, out)
}

func readAll(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func encodeESL(t testing.TB, lists ...efi.SignatureList) []byte {
	t.Helper()
	b, err := efi.AppendSignatureLists(nil, lists...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func certSummary(c *x509.Certificate, owner efi.GUID) measure.DBCertificate {
	return measure.DBCertificate{Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		Serial: hex.EncodeToString(c.SerialNumber.Bytes()), SHA256: hexSHA256(c.Raw),
		NotAfter: c.NotAfter.UTC().Format(time.RFC3339), Owner: owner.String()}
}

func authentihash(t testing.TB, b []byte) string {
	t.Helper()
	pf, err := authenticode.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := pf.ImageHash(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h[crypto.SHA256])
}

// debianHost is a Secure Boot host as Debian installs it: Microsoft's CAs
// in db, a dbx, shim's MokListRT with the Debian CA, shim and GRUB on the
// ESP (shim also as the removable-media fallback BOOTX64.EFI), a kernel,
// and a tool signed by a local vendor whose CN needs escaping.
type debianHost struct {
	*sbTree
	pki      realPKI
	vendor   *testpki.Hierarchy
	db, dbx  []byte
	pk, kek  []byte
	mok      []byte
	dbxHash  []string // the SHA-256 entries of dbx, sorted
	vmlinuzH string   // vmlinuz's Authenticode hash, from efitools
	tbs      []byte
}

const vendorCN = `Vigil, "Test"+Signer\`

var vendorPKI = testpki.NewHierarchy(testpki.Options{CommonName: vendorCN})

func newDebianHost(t *testing.T) *debianHost {
	h := &debianHost{sbTree: newSBTree(t), pki: loadRealPKI(t), vendor: vendorPKI}
	h.pk = efitoolsCertESL(t, h.vendor.Root.Cert, efi.MustParseGUID("aaaaaaaa-0000-4000-8000-000000000001"))
	h.kek = encodeESL(t, efi.X509List(microsoftOwner, h.vendor.Intermediate.Cert.Raw))
	// db: efitools' lists of the Microsoft CAs, ours of the vendor root.
	h.db = append(append(efitoolsCertESL(t, h.pki.ca2011, microsoftOwner), efitoolsCertESL(t, h.pki.ca2023, microsoftOwner)...),
		encodeESL(t, efi.X509List(microsoftOwner, h.vendor.Root.Cert.Raw))...)
	// dbx: efitools' hash list of fwupd (revoked here), ours of three more
	// hashes and of a revoked certificate's TBS hash.
	fwupd := artifacts.EFI(t, "fwupdx64.efi.signed")
	h.dbx = efitoolsHashESL(t, fwupd)
	extra := [][]byte{bytes.Repeat([]byte{0xee}, 32), bytes.Repeat([]byte{0x01}, 32), bytes.Repeat([]byte{0x80}, 32)}
	h.tbs = bytes.Repeat([]byte{0x42}, 32)
	h.dbx = append(h.dbx, encodeESL(t, efi.HashList(efi.CertSHA256, microsoftOwner, extra...),
		efi.HashList(efi.CertX509SHA256, microsoftOwner, efi.CertHashData(h.tbs, efi.Time{Year: 2023, Month: 2, Day: 14})))...)
	h.dbxHash = []string{authentihash(t, readAll(t, fwupd))}
	for _, e := range extra {
		h.dbxHash = append(h.dbxHash, hex.EncodeToString(e))
	}
	slices.Sort(h.dbxHash)
	h.mok = efitoolsCertESL(t, h.pki.debianCA, efi.ShimLock)
	hashes, err := efi.ParseSignatureLists(efitoolsHashESL(t, artifacts.Vmlinuz(t)))
	if err != nil {
		t.Fatal(err)
	}
	h.vmlinuzH = hex.EncodeToString(efi.Entries(hashes)[0].Hash)

	h.setVar(efi.SecureBoot, attrsRT, []byte{1})
	h.setVar(efi.SetupMode, attrsRT, []byte{0})
	h.setVar(efi.AuditMode, attrsRT, []byte{0})
	h.setVar(efi.DeployedMode, attrsRT, []byte{0})
	h.setVar(efi.PK, attrsDB, h.pk)
	h.setVar(efi.KEK, attrsDB, h.kek)
	h.setVar(efi.DB, attrsDB, h.db)
	h.setVar(efi.DBX, attrsDB, h.dbx)
	h.setVar(efi.MokListRT, attrsRT, h.mok)
	h.setVar(efi.SbatLevelRT, attrsRT, []byte("sbat,1,2024010900\nshim,4\ngrub,3\ngrub.debian,4\n"))
	// Variables the section does not read.
	h.setVar(efi.VarID{Name: "BootOrder", GUID: efi.GlobalVariable}, 7, []byte{1, 0})
	h.setVar(efi.DBT, attrsDB, nil)

	shim := artifacts.EFI(t, "shimx64.efi.signed")
	h.copy("/boot/efi/EFI/debian/shimx64.efi", shim)
	h.copy("/boot/efi/EFI/BOOT/BOOTX64.EFI", shim)
	h.copy("/boot/efi/EFI/debian/grubx64.efi", artifacts.EFI(t, "grubx64.efi.signed"))
	h.write("/boot/efi/EFI/debian/grub.cfg", []byte("search.fs_uuid 0b9c1a2e root\n"))
	h.copy("/boot/vmlinuz-6.1.0-56-amd64", artifacts.Vmlinuz(t))
	h.write("/boot/config-6.1.0-56-amd64", []byte("CONFIG_MODULE_SIG=y\n"))
	if err := os.Symlink("vmlinuz-6.1.0-56-amd64", h.host("/boot/vmlinuz")); err != nil {
		t.Fatal(err)
	}
	// The vendor tool: fwupd re-signed by the vendor leaf (upper-case .EFI).
	var signed bytes.Buffer
	raw := readAll(t, fwupd)
	s := &codesign.Signer{Key: h.vendor.Leaf.Key, Cert: h.vendor.Leaf.Cert, Chain: []*x509.Certificate{h.vendor.Intermediate.Cert}}
	if err := codesign.SignPE(s, bytes.NewReader(raw), int64(len(raw)), &signed); err != nil {
		t.Fatal(err)
	}
	h.write("/boot/efi/EFI/vigil/Tool.EFI", signed.Bytes())
	return h
}

var bootPaths = []string{
	"/boot/efi/EFI/BOOT/BOOTX64.EFI",
	"/boot/efi/EFI/debian/grubx64.efi",
	"/boot/efi/EFI/debian/shimx64.efi",
	"/boot/efi/EFI/vigil/Tool.EFI",
	"/boot/vmlinuz-6.1.0-56-amd64",
}

// wantVariables is the section a debianHost gives, boot files aside.
func (h *debianHost) wantVariables() measure.SecureBoot {
	f := false
	return measure.SecureBoot{
		Section: measure.Section{Status: measure.StatusOK},
		Enabled: true, SetupMode: false, AuditMode: &f, DeployedMode: &f,
		SbatLevel: "sbat,1,2024010900\nshim,4\ngrub,3\ngrub.debian,4\n",
		PK: &measure.SignatureDB{Attributes: "NV|BS|RT|AT", Lists: 1, Entries: 1, ByType: map[string]int{"x509": 1},
			Certificates: []measure.DBCertificate{certSummary(h.vendor.Root.Cert, efi.MustParseGUID("aaaaaaaa-0000-4000-8000-000000000001"))},
			SHA256:       []string{}, Digest: hexSHA256(h.pk)},
		KEK: &measure.SignatureDB{Attributes: "NV|BS|RT|AT", Lists: 1, Entries: 1, ByType: map[string]int{"x509": 1},
			Certificates: []measure.DBCertificate{certSummary(h.vendor.Intermediate.Cert, microsoftOwner)},
			SHA256:       []string{}, Digest: hexSHA256(h.kek)},
		DB: &measure.SignatureDB{Attributes: "NV|BS|RT|AT", Lists: 3, Entries: 3, ByType: map[string]int{"x509": 3},
			Certificates: []measure.DBCertificate{certSummary(h.pki.ca2011, microsoftOwner), certSummary(h.pki.ca2023, microsoftOwner),
				certSummary(h.vendor.Root.Cert, microsoftOwner)},
			SHA256: []string{}, Digest: hexSHA256(h.db)},
		DBX: &measure.SignatureDB{Attributes: "NV|BS|RT|AT", Lists: 3, Entries: 5, ByType: map[string]int{"sha256": 4, "x509_sha256": 1},
			Certificates: []measure.DBCertificate{}, SHA256: h.dbxHash, Digest: hexSHA256(h.dbx)},
		MOK: &measure.SignatureDB{Attributes: "BS|RT", Lists: 1, Entries: 1, ByType: map[string]int{"x509": 1},
			Certificates: []measure.DBCertificate{certSummary(h.pki.debianCA, efi.ShimLock)},
			SHA256:       []string{}, Digest: hexSHA256(h.mok)},
		BootFiles: []measure.BootFile{},
	}
}

func variablesOnly(sb measure.SecureBoot) measure.SecureBoot {
	sb.BootFiles = []measure.BootFile{}
	return sb
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSecureBootDebian measures a Debian Secure Boot host with an engine
// that trusts what its firmware and shim trust, then with one that does
// not, then with none.
func TestSecureBootDebian(t *testing.T) {
	h := newDebianHost(t)
	trusting := uefiEngine(t, h.pki.ca2011, h.pki.debianCA, h.vendor.Root.Cert)
	r := h.measure(trusting)
	sb := r.SecureBoot
	if want := h.wantVariables(); !reflect.DeepEqual(variablesOnly(sb), want) {
		t.Fatalf("secure_boot:\n%s\nwant:\n%s", mustJSON(t, variablesOnly(sb)), mustJSON(t, want))
	}
	signers := map[string]string{
		bootPaths[0]: "Microsoft Windows UEFI Driver Publisher",
		bootPaths[1]: "Debian Secure Boot Signer 2022 - grub2",
		bootPaths[2]: "Microsoft Windows UEFI Driver Publisher",
		bootPaths[3]: vendorCN,
		bootPaths[4]: "Debian Secure Boot Signer 2022 - linux",
	}
	var got []string
	for _, bf := range sb.BootFiles {
		got = append(got, bf.Path)
		b := readAll(t, h.host(bf.Path))
		if bf.SHA256 != hexSHA256(b) || r.Inputs[bf.Path] != bf.SHA256 || bf.AuthenticodeSHA256 != authentihash(t, b) {
			t.Errorf("%s: sha256 %s (input %s), authenticode %s", bf.Path, bf.SHA256, r.Inputs[bf.Path], bf.AuthenticodeSHA256)
		}
		if bf.Path == bootPaths[3] {
			// fwupd re-signed by the vendor: validly signed and trusted,
			// but its Authenticode hash is in dbx, so firmware refuses it.
			if !bf.Judged || !bf.Signed || bf.Allowed || !bf.InDBX || !slices.Equal(bf.Reasons, []reason.Code{reason.BlocklistedHash}) || bf.Signer != vendorCN {
				t.Errorf("revoked boot file %+v", bf)
			}
			continue
		}
		if !bf.Judged || !bf.Signed || !bf.Allowed || bf.InDBX || len(bf.Reasons) != 0 || bf.Signer != signers[bf.Path] || bf.Error != "" {
			t.Errorf("boot file %+v, want signer %q", bf, signers[bf.Path])
		}
	}
	if !slices.Equal(got, bootPaths) {
		t.Fatalf("boot files %q", got)
	}
	// efitools' Authenticode hash of the kernel is the one reported.
	if sb.BootFiles[4].AuthenticodeSHA256 != h.vmlinuzH {
		t.Errorf("vmlinuz authenticode %s, efitools %s", sb.BootFiles[4].AuthenticodeSHA256, h.vmlinuzH)
	}
	for id, data := range map[efi.VarID][]byte{efi.DB: h.db, efi.DBX: h.dbx, efi.SecureBoot: {1}} {
		file, _ := efi.Variable{Attributes: attrsDB, Data: data}.MarshalBinary()
		if id == efi.SecureBoot {
			file, _ = efi.Variable{Attributes: attrsRT, Data: data}.MarshalBinary()
		}
		if r.Inputs[id.Path()] != hexSHA256(file) {
			t.Errorf("input %s = %q", id.Path(), r.Inputs[id.Path()])
		}
	}
	// The claim names, as policies read them.
	var doc map[string]any
	if err := json.Unmarshal([]byte(mustJSON(t, r)), &doc); err != nil {
		t.Fatal(err)
	}
	claims := doc["secure_boot"].(map[string]any)
	for _, k := range []string{"status", "enabled", "setup_mode", "audit_mode", "deployed_mode", "sbat_level", "pk", "kek", "db", "dbx", "mok", "boot_files"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim secure_boot.%s missing", k)
		}
	}
	for _, k := range []string{"mok_sb_state", "mokx", "error"} {
		if _, ok := claims[k]; ok {
			t.Errorf("claim secure_boot.%s present", k)
		}
	}
	dbx := claims["dbx"].(map[string]any)
	if dbx["by_type"].(map[string]any)["sha256"] != 4.0 || len(dbx["sha256"].([]any)) != 4 || dbx["digest"] != hexSHA256(h.dbx) {
		t.Errorf("dbx claims %v", dbx)
	}
	bf := claims["boot_files"].([]any)[0].(map[string]any)
	for _, k := range []string{"path", "sha256", "authenticode_sha256", "signed", "signer", "allowed", "reasons"} {
		if _, ok := bf[k]; !ok {
			t.Errorf("claim boot_files[].%s missing", k)
		}
	}

	t.Run("untrusted", func(t *testing.T) {
		// Only the vendor is trusted: shim, GRUB and the kernel chain to
		// nothing the policy knows. The platform verdict is the host's:
		// its db holds the Microsoft CAs and the vendor root, MokListRT
		// the Debian CA, dbx fwupd's hash.
		sb := h.measure(uefiEngine(t, h.vendor.Root.Cert)).SecureBoot
		for _, bf := range sb.BootFiles {
			pv := bf.Platform
			if pv == nil {
				t.Fatalf("%s: no platform verdict", bf.Path)
			}
			if bf.Path == bootPaths[3] {
				if pv.Allowed || !slices.Contains(pv.Reasons, reason.BlocklistedHash) {
					t.Errorf("fwupd under the host's dbx: %+v", pv)
				}
				continue
			}
			if !pv.Allowed || pv.Signer == "" {
				t.Errorf("%s under the host's db and MokListRT: %+v", bf.Path, pv)
			}
		}
		if sb.Status != measure.StatusOK || len(sb.BootFiles) != len(bootPaths) {
			t.Fatalf("section %+v, %d boot files", sb.Section, len(sb.BootFiles))
		}
		for _, bf := range sb.BootFiles {
			if bf.Path == bootPaths[3] {
				if bf.Allowed || !bf.InDBX || bf.Signer != vendorCN || !slices.Equal(bf.Reasons, []reason.Code{reason.BlocklistedHash}) {
					t.Errorf("vendor tool %+v", bf)
				}
				continue
			}
			if bf.Allowed || !bf.Signed || !bf.Judged || bf.Signer != "" || !slices.Equal(bf.Reasons, []reason.Code{reason.UntrustedChain}) {
				t.Errorf("untrusted %+v", bf)
			}
		}
	})
	t.Run("tampered", func(t *testing.T) {
		// A byte of GRUB's code changed: the signature no longer matches.
		b := readAll(t, h.host(bootPaths[1]))
		b[len(b)/2] ^= 1
		h.write(bootPaths[1], b)
		defer h.copy(bootPaths[1], artifacts.EFI(t, "grubx64.efi.signed"))
		sb := h.measure(trusting).SecureBoot
		bf := sb.BootFiles[1]
		if bf.Allowed || bf.Signer != "" || !slices.Equal(bf.Reasons, []reason.Code{reason.DigestMismatch}) || bf.SHA256 != hexSHA256(b) {
			t.Errorf("tampered grub %+v", bf)
		}
	})
	t.Run("no engine", func(t *testing.T) {
		r := h.measure(nil)
		if !reflect.DeepEqual(variablesOnly(r.SecureBoot), h.wantVariables()) {
			t.Fatalf("variables differ without an engine")
		}
		for _, bf := range r.SecureBoot.BootFiles {
			b := readAll(t, h.host(bf.Path))
			want := measure.BootFile{Path: bf.Path, SHA256: hexSHA256(b), Reasons: []reason.Code{}}
			if !reflect.DeepEqual(bf, want) || r.Inputs[bf.Path] != want.SHA256 {
				t.Errorf("boot file %+v", bf)
			}
		}
	})
}

// TestSecureBootVariables: each state and each broken variable, on a
// minimal enabled host (SecureBoot=1, SetupMode=0, a db, a dbx).
func TestSecureBootVariables(t *testing.T) {
	root := testpki.NewRoot(testpki.Options{CommonName: "Vigil Test db"})
	db := encodeESL(t, efi.X509List(microsoftOwner, root.Cert.Raw))
	dbx := encodeESL(t, efi.HashList(efi.CertSHA256, microsoftOwner, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)),
		efi.HashList(efi.CertSHA256, microsoftOwner, bytes.Repeat([]byte{3}, 32)))
	okDB := &measure.SignatureDB{Attributes: "NV|BS|RT|AT", Lists: 1, Entries: 1, ByType: map[string]int{"x509": 1},
		Certificates: []measure.DBCertificate{certSummary(root.Cert, microsoftOwner)}, SHA256: []string{}, Digest: hexSHA256(db)}
	hashes := []string{strings.Repeat("01", 32), strings.Repeat("02", 32), strings.Repeat("03", 32)}
	yes, no := true, false
	for _, tc := range []struct {
		name   string
		edit   func(x *sbTree)
		status measure.Status
		errHas string
		check  func(t *testing.T, sb measure.SecureBoot)
	}{
		{"enabled", nil, measure.StatusOK, "", func(t *testing.T, sb measure.SecureBoot) {
			want := measure.SecureBoot{Section: measure.Section{Status: measure.StatusOK}, Enabled: true, DB: okDB,
				DBX: &measure.SignatureDB{Attributes: "NV|BS|RT|AT", Lists: 2, Entries: 3, ByType: map[string]int{"sha256": 3},
					Certificates: []measure.DBCertificate{}, SHA256: hashes, Digest: hexSHA256(dbx)},
				BootFiles: []measure.BootFile{}}
			if !reflect.DeepEqual(sb, want) {
				t.Fatalf("%s\nwant\n%s", mustJSON(t, sb), mustJSON(t, want))
			}
		}},
		{"off and in setup mode", func(x *sbTree) {
			x.setVar(efi.SecureBoot, attrsRT, []byte{0})
			x.setVar(efi.SetupMode, attrsRT, []byte{1})
		}, measure.StatusOK, "", func(t *testing.T, sb measure.SecureBoot) {
			if sb.Enabled || !sb.SetupMode || sb.PK != nil {
				t.Fatalf("%+v", sb)
			}
		}},
		{"audit and deployed mode", func(x *sbTree) {
			x.setVar(efi.AuditMode, attrsRT, []byte{0})
			x.setVar(efi.DeployedMode, attrsRT, []byte{1})
		}, measure.StatusOK, "", func(t *testing.T, sb measure.SecureBoot) {
			if *sb.AuditMode != no || *sb.DeployedMode != yes {
				t.Fatalf("%+v", sb)
			}
		}},
		{"firmware without Secure Boot", func(x *sbTree) {
			os.Remove(x.host(efi.SecureBoot.Path()))
			os.Remove(x.host(efi.SetupMode.Path()))
		}, measure.StatusOK, "", func(t *testing.T, sb measure.SecureBoot) {
			if sb.Enabled || sb.SetupMode {
				t.Fatalf("%+v", sb)
			}
		}},
		{"shim validation disabled", func(x *sbTree) { x.setVar(efi.MokSBStateRT, attrsRT, []byte{1}) }, measure.StatusOK, "",
			func(t *testing.T, sb measure.SecureBoot) {
				if sb.MokSBState == nil || !sb.MokSBState.ValidationDisabled || sb.MokSBState.Value != 1 {
					t.Fatalf("%+v", sb.MokSBState)
				}
			}},
		{"shim validation enabled", func(x *sbTree) { x.setVar(efi.MokSBStateRT, attrsRT, []byte{0}) }, measure.StatusOK, "",
			func(t *testing.T, sb measure.SecureBoot) {
				if sb.MokSBState == nil || sb.MokSBState.ValidationDisabled {
					t.Fatalf("%+v", sb.MokSBState)
				}
			}},
		{"MokSBStateRT empty", func(x *sbTree) { x.setVar(efi.MokSBStateRT, attrsRT, nil) }, measure.StatusError, "MokSBStateRT: empty",
			func(t *testing.T, sb measure.SecureBoot) {
				if !sb.Enabled || sb.MokSBState == nil || !sb.MokSBState.ValidationDisabled {
					t.Fatalf("%+v", sb.MokSBState)
				}
			}},
		{"MOK lists from the config table", func(x *sbTree) {
			x.setVar(efi.MokListRT, attrsRT, db[:50])
			x.write(path.Join(efi.MokVariablesDir, "MokListRT"), db)
			x.setVar(efi.MokListXRT, attrsRT, dbx)
		}, measure.StatusOK, "", func(t *testing.T, sb measure.SecureBoot) {
			want := *okDB
			want.Attributes = ""
			if !reflect.DeepEqual(sb.MOK, &want) || sb.MOKX == nil || sb.MOKX.Entries != 3 || sb.MOKX.Attributes != "BS|RT" {
				t.Fatalf("mok %s mokx %s", mustJSON(t, sb.MOK), mustJSON(t, sb.MOKX))
			}
		}},
		{"SecureBoot of two bytes", func(x *sbTree) { x.setVar(efi.SecureBoot, attrsRT, []byte{1, 0}) }, measure.StatusError,
			"SecureBoot: malformed: value 0100 is not one byte 0 or 1", func(t *testing.T, sb measure.SecureBoot) {
				if sb.Enabled || sb.DB == nil || sb.DBX == nil {
					t.Fatalf("%+v", sb)
				}
			}},
		{"SecureBoot of value 2", func(x *sbTree) { x.setVar(efi.SecureBoot, attrsRT, []byte{2}) }, measure.StatusError,
			"SecureBoot: malformed", func(t *testing.T, sb measure.SecureBoot) {
				if sb.Enabled {
					t.Fatal("enabled")
				}
			}},
		{"SecureBoot without attributes", func(x *sbTree) { x.write(efi.SecureBoot.Path(), []byte{1}) }, measure.StatusError,
			"SecureBoot: efi: efivarfs attribute prefix at offset 0: truncated", nil},
		{"SetupMode absent", func(x *sbTree) { os.Remove(x.host(efi.SetupMode.Path())) }, measure.StatusError,
			"SetupMode: absent while SecureBoot is present", func(t *testing.T, sb measure.SecureBoot) {
				if !sb.Enabled || sb.SetupMode {
					t.Fatalf("%+v", sb)
				}
			}},
		{"truncated dbx", func(x *sbTree) { x.setVar(efi.DBX, attrsDB, dbx[:len(dbx)-1]) }, measure.StatusError,
			"dbx: efi: signature list 1 at offset 124: truncated: SignatureListSize 76 exceeds the 75 bytes left",
			func(t *testing.T, sb measure.SecureBoot) {
				d := sb.DBX
				if !sb.Enabled || d == nil || d.Lists != 1 || d.Entries != 2 || !slices.Equal(d.SHA256, hashes[:2]) ||
					d.Digest != hexSHA256(dbx[:len(dbx)-1]) || !strings.Contains(d.Error, "truncated") || !reflect.DeepEqual(sb.DB, okDB) {
					t.Fatalf("%s", mustJSON(t, sb))
				}
			}},
		{"db with a bad size", func(x *sbTree) {
			b := bytes.Clone(db)
			b[24] = 17 // SignatureSize
			x.setVar(efi.DB, attrsDB, b)
		}, measure.StatusError, "db: efi: signature list 0 at offset 0: malformed: SignatureSize", func(t *testing.T, sb measure.SecureBoot) {
			if sb.DB == nil || sb.DB.Lists != 0 || sb.DB.Error == "" || sb.DBX.Entries != 3 {
				t.Fatalf("%s", mustJSON(t, sb))
			}
		}},
		{"db entry not a certificate", func(x *sbTree) {
			x.setVar(efi.DB, attrsDB, encodeESL(t, efi.X509List(microsoftOwner, []byte("junk"))))
		}, measure.StatusOK, "", func(t *testing.T, sb measure.SecureBoot) {
			c := sb.DB.Certificates
			if len(c) != 1 || c[0].Error == "" || c[0].SHA256 != hexSHA256([]byte("junk")) || c[0].NotAfter != "" || c[0].Owner != microsoftOwner.String() {
				t.Fatalf("%s", mustJSON(t, sb.DB))
			}
		}},
		{"efivarfs not mounted", func(x *sbTree) { os.RemoveAll(x.host(efi.EfivarsDir)) }, measure.StatusUnavailable, "efivarfs not mounted", nil},
		{"not UEFI", func(x *sbTree) {
			os.RemoveAll(x.host("/sys/firmware/efi"))
			x.write("/boot/vmlinuz-6.1.0-56-amd64", []byte("kernel"))
		}, measure.StatusUnavailable, "not booted through UEFI", func(t *testing.T, sb measure.SecureBoot) {
			if sb.Enabled || sb.DB != nil || len(sb.BootFiles) != 1 || sb.BootFiles[0].SHA256 != hexSHA256([]byte("kernel")) {
				t.Fatalf("%s", mustJSON(t, sb))
			}
		}},
		{"ESP too deep", func(x *sbTree) {
			x.write("/boot/efi/EFI/a/b/c/d/e/f/g/h/x.efi", []byte("MZ"))
			x.write("/boot/efi/EFI/ok.efi", []byte("MZ"))
		}, measure.StatusError, "boot files: /boot/efi/EFI/a/b/c/d/e/f/g: deeper than 8 directories", func(t *testing.T, sb measure.SecureBoot) {
			if !sb.Enabled || len(sb.BootFiles) != 1 || sb.BootFiles[0].Path != "/boot/efi/EFI/ok.efi" {
				t.Fatalf("%s", mustJSON(t, sb.BootFiles))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newSBTree(t)
			x.setVar(efi.SecureBoot, attrsRT, []byte{1})
			x.setVar(efi.SetupMode, attrsRT, []byte{0})
			x.setVar(efi.DB, attrsDB, db)
			x.setVar(efi.DBX, attrsDB, dbx)
			if tc.edit != nil {
				tc.edit(x)
			}
			sb := x.measure(nil).SecureBoot
			if sb.Status != tc.status || !strings.Contains(sb.Error, tc.errHas) || (tc.errHas == "" && sb.Error != "") {
				t.Fatalf("status %s error %q, want %s %q", sb.Status, sb.Error, tc.status, tc.errHas)
			}
			if tc.check != nil {
				tc.check(t, sb)
			}
		})
	}
}

// TestSecureBootTruncations cuts every variable the section parses at
// every length: the section reports an error or a smaller database, never
// panics, and Enabled never comes from a broken SecureBoot.
func TestSecureBootTruncations(t *testing.T) {
	root := testpki.NewRoot(testpki.Options{})
	db := append(efitoolsCertESL(t, root.Cert, microsoftOwner), encodeESL(t, efi.HashList(efi.CertSHA256, microsoftOwner, make([]byte, 32)))...)
	full, _ := efi.Variable{Attributes: attrsDB, Data: db}.MarshalBinary()
	x := newSBTree(t)
	x.setVar(efi.SecureBoot, attrsRT, []byte{1})
	x.setVar(efi.SetupMode, attrsRT, []byte{0})
	m := measure.New(measure.Options{})
	for _, id := range []efi.VarID{efi.PK, efi.KEK, efi.DB, efi.DBX, efi.MokListRT, efi.MokListXRT} {
		certEnd := 4 + len(db) - 76 // after the certificate list
		cuts := []int{certEnd - 1, certEnd, certEnd + 1, len(full) - 1}
		for n := 0; n < len(full); n += 1 + n/8 {
			cuts = append(cuts, n)
		}
		for _, n := range cuts {
			x.write(id.Path(), full[:n])
			r, err := m.Measure(context.Background(), hostfs.New(x.root))
			if err != nil {
				t.Fatal(err)
			}
			sb := r.SecureBoot
			clean := n == 4 || n == certEnd // empty, or the certificate list alone
			if (sb.Status == measure.StatusOK) != clean || !sb.Enabled {
				t.Fatalf("%s cut at %d: status %s %q", id.Name, n, sb.Status, sb.Error)
			}
			if !clean && !strings.Contains(sb.Error, id.Name+": ") {
				t.Fatalf("%s cut at %d: error %q does not name it", id.Name, n, sb.Error)
			}
		}
		os.Remove(x.host(id.Path()))
	}
}

// TestBootFilesOnEveryESP: the ESP at /efi or at /boot (systemd-boot) is
// walked as /boot/efi is.
func TestBootFilesOnEveryESP(t *testing.T) {
	shim := artifacts.EFI(t, "shimx64.efi.signed")
	for _, dir := range []string{"/efi/EFI/systemd/", "/boot/EFI/Linux/", "/boot/efi/EFI/debian/"} {
		x := newSBTree(t)
		x.copy(dir+"shimx64.efi", shim)
		r, err := measure.New(measure.Options{}).Measure(context.Background(), hostfs.New(x.root))
		if err != nil {
			t.Fatal(err)
		}
		if bf := r.SecureBoot.BootFiles; len(bf) != 1 || bf[0].Path != dir+"shimx64.efi" || bf[0].SHA256 != hexSHA256(readAll(t, shim)) {
			t.Errorf("%s: boot files %+v", dir, bf)
		}
	}
}
