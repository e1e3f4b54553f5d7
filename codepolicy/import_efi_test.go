package codepolicy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
)

var efiOwner = efi.MustParseGUID("11111111-2222-3333-4444-555555555555")

// efitoolsDBX builds a dbx with efitools: cert-to-efi-sig-list for an
// X.509 entry, hash-to-efi-sig-list is replaced by raw hashes written with
// our encoder only for the types efitools has no tool for (X509_SHA*, and
// the skipped kinds). It returns the database and what each entry is.
type dbxFixture struct {
	db                   []byte
	cert                 *testpki.Cert
	imgHash, sha1Hash    []byte
	tbsTimed, tbsForever []byte
	tbs384               []byte
	revokedAt            time.Time
	kek, root            *testpki.Cert
	dir                  string
}

func newDBXFixture(t *testing.T) *dbxFixture {
	t.Helper()
	f := &dbxFixture{dir: t.TempDir(), revokedAt: time.Date(2024, 3, 5, 6, 7, 8, 0, time.UTC)}
	root := testpki.NewRoot(testpki.Options{CommonName: "dbx test root"})
	f.cert = root.NewLeaf(testpki.Options{CommonName: "revoked signer"})
	f.kek = root.NewLeaf(testpki.Options{CommonName: "dbx test KEK"})
	f.root = root
	pemPath, _ := f.cert.WriteFiles(t, f.dir, "revoked")
	x509ESL := filepath.Join(f.dir, "x509.esl")
	testcmd.Run(t, "cert-to-efi-sig-list", "-g", efiOwner.String(), pemPath, x509ESL)
	x509List, err := os.ReadFile(x509ESL)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("an image"))
	f.imgHash = h[:]
	f.sha1Hash = bytes.Repeat([]byte{0xa1}, 20)
	f.tbsTimed = bytes.Repeat([]byte{0xb2}, 32)
	f.tbsForever = bytes.Repeat([]byte{0xc3}, 32)
	f.tbs384 = bytes.Repeat([]byte{0xd4}, 48)
	rest, err := efi.AppendSignatureLists(nil,
		efi.HashList(efi.CertSHA256, efiOwner, f.imgHash),
		efi.HashList(efi.CertSHA1, efiOwner, f.sha1Hash),
		efi.HashList(efi.CertX509SHA256, efiOwner,
			efi.CertHashData(f.tbsTimed, efi.Time{Year: 2024, Month: 3, Day: 5, Hour: 6, Minute: 7, Second: 8}),
			efi.CertHashData(f.tbsForever, efi.Time{})),
		efi.HashList(efi.CertX509SHA384, efiOwner,
			efi.CertHashData(f.tbs384, efi.Time{}),
			efi.CertHashData(bytes.Repeat([]byte{0xe5}, 48), efi.Time{Year: 2020, Month: 1, Day: 1})),
		efi.HashList(efi.CertSHA384, efiOwner, make([]byte, 48)),
		efi.HashList(efi.CertRSA2048, efiOwner, make([]byte, 256)),
		efi.SignatureList{Type: efi.ShimLock, SignatureSize: 17, Signatures: []efi.SignatureData{{Data: []byte{9}}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	f.db = append(x509List, rest...)
	return f
}

// signed wraps the database in an authenticated update made by efitools'
// sign-efi-sig-list, at a fixed timestamp.
func (f *dbxFixture) signed(t *testing.T) []byte {
	t.Helper()
	in := filepath.Join(f.dir, "dbx.esl")
	out := filepath.Join(f.dir, "dbx.auth")
	if err := os.WriteFile(in, f.db, 0o644); err != nil {
		t.Fatal(err)
	}
	crt, key := f.kek.WriteFiles(t, f.dir, "kek")
	testcmd.Run(t, "sign-efi-sig-list", "-t", "2025-01-02 03:04:05", "-c", crt, "-k", key, "dbx", in, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImportSignatureDatabaseForms(t *testing.T) {
	f := newDBXFixture(t)
	auth := f.signed(t)
	efivar, _ := efi.Variable{Attributes: efi.NonVolatile | efi.BootServiceAccess | efi.RuntimeAccess | efi.TimeBasedAuthenticatedWriteAccess, Data: f.db}.MarshalBinary()
	for _, c := range []struct {
		name string
		data []byte
		form efi.DatabaseForm
	}{{"raw", f.db, efi.FormRaw}, {"efivarfs", efivar, efi.FormEfivarfs}, {"authenticated", auth, efi.FormAuthenticated}} {
		t.Run(c.name, func(t *testing.T) {
			if _, form, err := efi.ReadDatabase(c.data); err != nil || form != c.form {
				t.Fatalf("form %q err %v, want %q", form, err, c.form)
			}
			p := Default()
			st, err := ImportSignatureDatabase(p, c.data, "dbx")
			if err != nil {
				t.Fatal(err)
			}
			f.checkMapping(t, p, st)
			if c.form == efi.FormAuthenticated != slices.ContainsFunc(st.Warnings, func(s string) bool { return strings.Contains(s, "not verified") }) {
				t.Errorf("warnings %q", st.Warnings)
			}
			// Twice: all duplicates.
			st2, err := ImportSignatureDatabase(p, c.data, "dbx")
			if err != nil || st2.TotalAdded() != 0 || st2.Duplicates != 6 || st2.Skipped != 4 {
				t.Fatalf("second import: %v %+v", err, st2)
			}
		})
	}
}

func (f *dbxFixture) checkMapping(t *testing.T, p *Policy, st ImportStats) {
	t.Helper()
	wantAdded := map[string]int{"deny.authentihash_sha256": 1, "deny.authentihash_sha1": 1, "deny.signer_tbs_sha384": 1, "revocations": 3}
	wantSkip := map[string]int{"x509-sha384-revocation-time": 1, "image-hash-sha384": 1, "type-rsa2048": 1, "unknown-type": 1}
	if st.Source != "dbx" || st.Read != 10 || st.Skipped != 4 || st.Duplicates != 0 ||
		!mapsEqual(st.Added, wantAdded) || !mapsEqual(st.SkippedReasons, wantSkip) {
		t.Fatalf("stats %+v", st)
	}
	if rule, ok := p.DenyHash(nil, nil, f.imgHash); !ok || rule != "deny.authentihash_sha256:"+hex.EncodeToString(f.imgHash) {
		t.Errorf("image hash: %q %v", rule, ok)
	}
	if _, ok := p.DenyHash(f.imgHash, nil, nil); ok {
		t.Error("a dbx image hash landed in deny.sha256 (whole-file)")
	}
	if _, ok := p.DenyHash(nil, f.sha1Hash, nil); !ok {
		t.Error("sha1 image hash not denied")
	}
	if !slices.Equal(p.Deny.SignerTBSSHA384, []string{hex.EncodeToString(f.tbs384)}) {
		t.Errorf("signer_tbs_sha384 %v", p.Deny.SignerTBSSHA384)
	}
	// The X.509 entry: revoked by its TBS hash, for all time, certificate kept.
	r := p.Revocation(f.cert.Cert)
	if r == nil || r.RevokedAt != nil || !r.Rejects(&f.revokedAt) || r.Certificate == "" {
		t.Fatalf("x509 entry revocation %+v", r)
	}
	tbs := sha256.Sum256(f.cert.Cert.RawTBSCertificate)
	if r.TBSSHA256 != hex.EncodeToString(tbs[:]) {
		t.Errorf("tbs %s", r.TBSSHA256)
	}
	var timed, forever *Revocation
	for i := range p.Revocations {
		switch p.Revocations[i].TBSSHA256 {
		case hex.EncodeToString(f.tbsTimed):
			timed = &p.Revocations[i]
		case hex.EncodeToString(f.tbsForever):
			forever = &p.Revocations[i]
		}
	}
	if timed == nil || timed.RevokedAt == nil || !timed.RevokedAt.Equal(f.revokedAt) {
		t.Fatalf("timed X509_SHA256 %+v", timed)
	}
	before, at := f.revokedAt.Add(-time.Second), f.revokedAt
	if timed.Rejects(&before) || !timed.Rejects(&at) || !timed.Rejects(nil) {
		t.Error("TimeOfRevocation semantics: a signature timestamped before it stays valid, at or after it does not")
	}
	if forever == nil || forever.RevokedAt != nil {
		t.Fatalf("zero-time X509_SHA256 %+v", forever)
	}
	// The merged policy survives a write and a re-read.
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(out, ""); err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Hostile inputs: every one is an error, none changes the policy.
func TestImportSignatureDatabaseRejects(t *testing.T) {
	f := newDBXFixture(t)
	auth := f.signed(t)
	tamper := func(b []byte, off int, v ...byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[off:], v)
		return c
	}
	le32 := func(v uint32) []byte { b := make([]byte, 4); binary.LittleEndian.PutUint32(b, v); return b }
	dw := binary.LittleEndian.Uint32(auth[16:])
	for name, data := range map[string][]byte{
		"truncated list":             f.db[:len(f.db)-3],
		"not a database":             []byte("this is not a signature database at all"),
		"efivarfs without RT":        append(le32(uint32(efi.NonVolatile|efi.BootServiceAccess)), f.db...),
		"auth dwLength too long":     tamper(auth, 16, le32(uint32(len(auth)))...),
		"auth dwLength under header": tamper(auth, 16, le32(23)...),
		"auth nonzero TimeZone":      tamper(auth, 12, 1),
		"auth nonzero Nanosecond":    tamper(auth, 8, 1),
		"auth wrong cert type GUID":  tamper(auth, 24, 0xff),
		"auth dwLength shifted":      tamper(auth, 16, le32(dw-1)...), // payload no longer starts at a list
	} {
		t.Run(name, func(t *testing.T) {
			p := Default()
			before, _ := p.Marshal()
			_, err := ImportSignatureDatabase(p, data, "dbx")
			if !errors.Is(err, efi.ErrMalformed) && !errors.Is(err, efi.ErrTruncated) {
				t.Fatalf("err %v, want a located efi parse error", err)
			}
			after, _ := p.Marshal()
			if !bytes.Equal(before, after) {
				t.Fatal("a failed import changed the policy")
			}
		})
	}
}

func TestExportSignatureDatabaseRoundTrip(t *testing.T) {
	f := newDBXFixture(t)
	p := Default()
	if _, err := ImportSignatureDatabase(p, f.db, "dbx"); err != nil {
		t.Fatal(err)
	}
	// Entries dbx cannot hold, to be counted.
	extra := mustParse(t, "deny:\n  sha256: ["+strings.Repeat("ab", 32)+"]\n  signer_tbs_sha1: ["+strings.Repeat("cd", 20)+"]\nrevocations:\n  - spki_sha256: "+strings.Repeat("ef", 32)+"\n", "")
	p.Deny.SHA256, p.Deny.SignerTBSSHA1 = extra.Deny.SHA256, extra.Deny.SignerTBSSHA1
	p.Revocations = append(p.Revocations, extra.Revocations...)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	out, st, err := ExportSignatureDatabase(p, "dbx", efiOwner)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"sha256": 1, "sha1": 1, "x509": 1, "x509_sha256": 2, "x509_sha384": 1}
	if !mapsEqual(st.Written, want) || len(st.NotExported) != 3 {
		t.Fatalf("stats %+v", st)
	}
	// efitools reads it back: sig-list-to-certs writes the certificate
	// (and the hashes) out; the DER is the revoked certificate's.
	dir := t.TempDir()
	esl := filepath.Join(dir, "out.esl")
	os.WriteFile(esl, out, 0o644)
	log := testcmd.Run(t, "sig-list-to-certs", esl, filepath.Join(dir, "e"))
	der, err := os.ReadFile(filepath.Join(dir, "e-2.der"))
	if err != nil {
		t.Fatalf("sig-list-to-certs wrote no certificate: %v\n%s", err, log)
	}
	if !bytes.Equal(der, f.cert.Cert.Raw) {
		t.Fatal("sig-list-to-certs certificate differs")
	}
	if !strings.Contains(log, "sha256") && !strings.Contains(strings.ToLower(log), "hash") {
		t.Logf("sig-list-to-certs: %s", log)
	}
	// And back through the importer: the same policy entries.
	q := Default()
	st2, err := ImportSignatureDatabase(q, out, "dbx")
	if err != nil || st2.Skipped != 0 {
		t.Fatalf("re-import %v %+v", err, st2)
	}
	for _, c := range []struct{ a, b []string }{
		{p.Deny.AuthentihashSHA256, q.Deny.AuthentihashSHA256}, {p.Deny.AuthentihashSHA1, q.Deny.AuthentihashSHA1},
		{p.Deny.SignerTBSSHA384, q.Deny.SignerTBSSHA384},
	} {
		if !slices.Equal(sortedUnique(c.a), sortedUnique(c.b)) {
			t.Errorf("deny %v vs %v", c.a, c.b)
		}
	}
	for _, r := range p.Revocations {
		if r.TBSSHA256 == "" {
			continue
		}
		raw, _ := hex.DecodeString(r.TBSSHA256)
		got := q.index().revByTBS[string(raw)]
		if got == nil || (got.RevokedAt == nil) != (r.RevokedAt == nil) || (got.RevokedAt != nil && !got.RevokedAt.Equal(*r.RevokedAt)) || got.Certificate != r.Certificate {
			t.Errorf("revocation %s: %+v vs %+v", r.TBSSHA256, got, r)
		}
	}

	// mokx keeps SHA-256 hashes and certificates only: the image hash
	// and, for the kernel, the whole-file hash of deny.sha256.
	mokx, st, err := ExportSignatureDatabase(p, "mokx", efiOwner)
	if err != nil || !mapsEqual(st.Written, map[string]int{"sha256": 2, "x509": 1}) {
		t.Fatalf("mokx %v %+v", err, st)
	}
	ml, err := efi.ParseSignatureLists(mokx)
	if err != nil {
		t.Fatal(err)
	}
	var sums []string
	for _, e := range efi.Entries(ml) {
		if e.Type == efi.CertSHA256 {
			sums = append(sums, hex.EncodeToString(e.Data))
		}
	}
	if !slices.Contains(sums, strings.Repeat("ab", 32)) || !slices.Contains(sums, hex.EncodeToString(f.imgHash)) {
		t.Fatalf("mokx SHA-256 entries %v", sums)
	}
	if _, _, err := ExportSignatureDatabase(Default(), "dbx", efiOwner); !errors.Is(err, ErrNothingToExport) {
		t.Fatalf("empty policy: %v", err)
	}
}

// The kernel's build checks the blacklist file with
// certs/check-blacklist-hashes.awk and includes it followed by ", NULL".
// blacklistAWK is that script's rule set (torvalds/linux
// certs/check-blacklist-hashes.awk), run with gawk.
const blacklistAWK = `BEGIN { RS = "," }
{
	if (!match($0, "^[ \t\n\r]*\"([^\"]*)\"[ \t\n\r]*$", part1)) { print "Not a string (item " NR "):", $0; exit 1 }
	if (!match(part1[1], "^(tbs|bin):(.*)$", part2)) { print "Unknown prefix (item " NR "):", part1[1]; exit 1 }
	if (!match(part2[2], "^([0-9a-f]+)$", part3)) { print "Not a lowercase hexadecimal string (item " NR "):", part2[2]; exit 1 }
	if (length(part3[1]) > 128) { print "Hash string too long (item " NR "):", part3[1]; exit 1 }
	if (length(part3[1]) % 2 == 1) { print "Odd number of hex digits (item " NR "):", part3[1]; exit 1 }
}`

func TestExportBlacklistHashes(t *testing.T) {
	f := newDBXFixture(t)
	p := Default()
	if _, err := ImportSignatureDatabase(p, f.db, "dbx"); err != nil {
		t.Fatal(err)
	}
	bin := strings.Repeat("9a", 32)
	p.Deny.SignedContentSHA256 = []string{bin}
	// A whole-file hash is a "bin:" entry too: Debian's module loader
	// matches the module's whole-file SHA-256 (TestRealRevocation).
	file := strings.Repeat("0b", 32)
	p.Deny.SHA256 = []string{file}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	out, st, err := ExportBlacklistHashes(p)
	if err != nil {
		t.Fatal(err)
	}
	// The certificate's TBS is hashed with its signature digest (SHA-256
	// for testpki's RSA leaf), like the kernel's x509_get_sig_params.
	certTBS := sha256.Sum256(f.cert.Cert.RawTBSCertificate)
	want := []string{hex.EncodeToString(certTBS[:]), hex.EncodeToString(f.tbsTimed), hex.EncodeToString(f.tbsForever), hex.EncodeToString(f.tbs384)}
	slices.Sort(want)
	var lines []string
	for _, h := range want {
		lines = append(lines, `"tbs:`+h+`"`)
	}
	lines = append(lines, `"bin:`+file+`"`, `"bin:`+bin+`"`)
	if string(out) != strings.Join(lines, ",\n")+"\n" || st.Written["tbs"] != 4 || st.Written["bin"] != 2 {
		t.Fatalf("got %+v\n%s", st, out)
	}
	dir := t.TempDir()
	list := filepath.Join(dir, "list")
	awk := filepath.Join(dir, "check.awk")
	os.WriteFile(list, out, 0o644)
	os.WriteFile(awk, []byte(blacklistAWK), 0o644)
	testcmd.Run(t, "gawk", "-f", awk, list)
	// certs/Makefile then writes the list followed by ", NULL" and
	// certs/blacklist_hashes.c includes it into an array: compile that.
	gen := filepath.Join(dir, "blacklist_hash_list")
	os.WriteFile(gen, append(append([]byte(nil), out...), ", NULL\n"...), 0o644)
	src := filepath.Join(dir, "blacklist_hashes.c")
	os.WriteFile(src, []byte("#include <stddef.h>\nconst char *const blacklist_hashes[] = {\n#include \"blacklist_hash_list\"\n};\n"), 0o644)
	testcmd.Run(t, "gcc", "-fsyntax-only", "-Wall", "-Werror", "-I", dir, src)
	// A trailing comma (the form "one entry per line, each with a comma")
	// does not compile: the test can tell.
	os.WriteFile(gen, append(append([]byte(nil), out...), ",\n, NULL\n"...), 0o644)
	if _, err := testcmd.Output("gcc", "-fsyntax-only", "-I", dir, src); err == nil {
		t.Fatal("a trailing comma compiled; the check proves nothing")
	}
	if _, _, err := ExportBlacklistHashes(Default()); !errors.Is(err, ErrNothingToExport) {
		t.Fatalf("empty: %v", err)
	}
}

func TestExportRevocationKeysAndModprobe(t *testing.T) {
	f := newDBXFixture(t)
	p := Default()
	if _, err := ImportSignatureDatabase(p, f.db, "dbx"); err != nil {
		t.Fatal(err)
	}
	out, st, err := ExportRevocationKeys(p)
	if err != nil || string(out) != string(f.cert.CertPEM()) || st.Written["certificate"] != 1 || st.NotExported["revocations without the certificate"] != 2 {
		t.Fatalf("%v %+v\n%s", err, st, out)
	}
	testcmd.Run(t, "openssl", "x509", "-noout", "-in", writeTemp(t, out))
	m, st, err := ExportModprobe(p)
	if err != nil || st.TotalWritten() != 0 || slices.ContainsFunc(strings.Split(string(m), "\n"), func(l string) bool { return strings.HasPrefix(l, "blacklist ") || strings.HasPrefix(l, "install ") }) || len(st.Warnings) != 1 {
		t.Fatalf("modprobe %v %+v\n%s", err, st, m)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
