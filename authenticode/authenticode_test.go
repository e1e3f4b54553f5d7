package authenticode

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/reason"
)

var hashFlags = []struct {
	h    crypto.Hash
	flag string
}{{crypto.SHA1, "sha1"}, {crypto.SHA256, "sha256"}, {crypto.SHA384, "sha384"}, {crypto.SHA512, "sha512"}}

// TestImageHashMatchesOsslsigncode signs Go-built PE32+ and PE32 images (and
// one whose size is not a multiple of 8) with osslsigncode for every hash,
// and checks that ImageHash of the unsigned input and of the signed output
// both equal osslsigncode's current and calculated digests and the digest
// embedded in SpcIndirectDataContent.
func TestImageHashMatchesOsslsigncode(t *testing.T) {
	p := testPKI(t)
	inputs := []struct{ name, path string }{
		{"pe32plus", goPE(t, "amd64")},
		{"pe32", goPE(t, "386")},
		{"unaligned", goPEOdd(t)},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			unsigned := parsePath(t, in.path)
			if unsigned.Signed() {
				t.Fatal("Go-built PE is signed")
			}
			wantMagic := uint16(MagicPE32Plus)
			if in.name == "pe32" {
				wantMagic = MagicPE32
			}
			if unsigned.Magic != wantMagic {
				t.Fatalf("magic 0x%x, want 0x%x", unsigned.Magic, wantMagic)
			}
			if in.name == "unaligned" && unsigned.Size%8 == 0 {
				t.Fatal("unaligned input is 8-aligned")
			}
			all, err := unsigned.ImageHash(crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512)
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range hashFlags {
				if single := imageHash(t, unsigned, hf.h); !bytes.Equal(single, all[hf.h]) {
					t.Fatalf("%v: single-hash pass differs from the multi-hash pass", hf.h)
				}
				out := osslSign(t, in.path, "-h", hf.flag)
				vout, ok := osslVerify(t, out, "-CAfile", p.Root)
				if !ok {
					t.Fatalf("osslsigncode verify failed:\n%s", vout)
				}
				cur, calc := osslDigests(t, vout)
				if !bytes.Equal(cur, all[hf.h]) || !bytes.Equal(calc, all[hf.h]) {
					t.Fatalf("%v: unsigned ImageHash %x, osslsigncode current %x calculated %x", hf.h, all[hf.h], cur, calc)
				}
				signed := parsePath(t, out)
				if !signed.Signed() || signed.CertTableOffset%8 != 0 {
					t.Fatalf("signed output: table at 0x%x size %d", signed.CertTableOffset, signed.CertTableSize)
				}
				if got := imageHash(t, signed, hf.h); !bytes.Equal(got, cur) {
					t.Fatalf("%v: signed ImageHash %x, osslsigncode %x", hf.h, got, cur)
				}
				sigs := signatures(t, signed)
				if len(sigs) != 1 {
					t.Fatalf("%d signatures, want 1", len(sigs))
				}
				if !sigs[0].ContentType.Equal(OIDSpcIndirectData) {
					t.Fatalf("content type %v", sigs[0].ContentType)
				}
				id, err := ParseIndirectData(sigs[0].Content)
				if err != nil {
					t.Fatal(err)
				}
				if id.DigestAlgorithm != hf.h || !bytes.Equal(id.Digest, cur) || id.PageHashes != nil || !id.DataType.Equal(OIDSpcPEImageData) {
					t.Fatalf("IndirectData %+v", id)
				}
			}
		})
	}
}

// TestMarshalIndirectDataMatchesOsslsigncode checks that MarshalIndirectData
// produces byte for byte the SpcIndirectDataContent osslsigncode signs.
func TestMarshalIndirectDataMatchesOsslsigncode(t *testing.T) {
	in := goPE(t, "amd64")
	for _, hf := range hashFlags {
		f := parsePath(t, osslSign(t, in, "-h", hf.flag))
		content := signatures(t, f)[0].Content
		der, err := MarshalIndirectData(hf.h, imageHash(t, f, hf.h))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(der, content) {
			t.Fatalf("%v: MarshalIndirectData\n %x\nosslsigncode\n %x", hf.h, der, content)
		}
		id, err := ParseIndirectData(der)
		if err != nil || id.DigestAlgorithm != hf.h || id.PageHashes != nil {
			t.Fatalf("round trip: %+v, %v", id, err)
		}
	}
	if _, err := MarshalIndirectData(crypto.SHA256, make([]byte, 20)); err == nil {
		t.Fatal("wrong digest length accepted")
	}
	if _, err := MarshalIndirectData(crypto.SHA3_256, make([]byte, 32)); err == nil {
		t.Fatal("unsupported hash accepted")
	}
}

// TestAttributeHelpersMatchOsslsigncode compares MarshalSpOpusInfo and
// MarshalStatementType with the signed attributes osslsigncode writes.
func TestAttributeHelpersMatchOsslsigncode(t *testing.T) {
	in := goPE(t, "amd64")
	out := osslSign(t, in, "-h", "sha256", "-n", "Vigil Test Program", "-i", "https://example.com/vigil")
	sig := signatures(t, parsePath(t, out))[0]
	opus, err := MarshalSpOpusInfo("Vigil Test Program", "https://example.com/vigil")
	if err != nil {
		t.Fatal(err)
	}
	if got := attrValue(t, sig.AuthAttrs, OIDSpcSpOpusInfo); !bytes.Equal(got, opus) {
		t.Fatalf("SpOpusInfo\n %x\nosslsigncode\n %x", opus, got)
	}
	st, err := MarshalStatementType()
	if err != nil {
		t.Fatal(err)
	}
	if got := attrValue(t, sig.AuthAttrs, OIDSpcStatementType); !bytes.Equal(got, st) {
		t.Fatalf("StatementType\n %x\nosslsigncode\n %x", st, got)
	}
	// A non-ASCII program name is a BMPString.
	uni, err := MarshalSpOpusInfo("Vigil Prüfprogramm", "")
	if err != nil || !bytes.Contains(uni, bmpString("Vigil Prüfprogramm")) || uni[4] != 0x80 {
		t.Fatalf("unicode opus info %x, %v", uni, err)
	}
	empty, err := MarshalSpOpusInfo("", "")
	if err != nil || !bytes.Equal(empty, []byte{0x30, 0x00}) {
		t.Fatalf("empty opus info %x, %v", empty, err)
	}
	if _, err := MarshalSpOpusInfo("", "https://exämple.com"); err == nil {
		t.Fatal("non-ASCII URL accepted")
	}
}

// TestPageHashes checks page hashes osslsigncode -ph embeds: they parse,
// VerifyPageHashes accepts them, PageHashes recomputes the same table from
// the signed and the unsigned file, MarshalIndirectDataWithPageHashes
// reproduces the signed content, and one flipped byte in a section or in the
// headers is a digest mismatch.
func TestPageHashes(t *testing.T) {
	p := testPKI(t)
	cases := []struct {
		arch string
		h    crypto.Hash
		flag string
	}{{"amd64", crypto.SHA256, "sha256"}, {"amd64", crypto.SHA1, "sha1"}, {"386", crypto.SHA256, "sha256"}}
	for _, c := range cases {
		t.Run(c.arch+"-"+c.flag, func(t *testing.T) {
			in := goPE(t, c.arch)
			out := osslSign(t, in, "-h", c.flag, "-ph")
			if vout, ok := osslVerify(t, out, "-CAfile", p.Root); !ok || !strings.Contains(vout, "Page hash algorithm") {
				t.Fatalf("osslsigncode verify:\n%s", vout)
			}
			signedBytes := readFile(t, out)
			signed := parseBytes(t, signedBytes)
			content := signatures(t, signed)[0].Content
			id, err := ParseIndirectData(content)
			if err != nil {
				t.Fatal(err)
			}
			if id.PageHashes == nil || id.PageHashes.Hash != c.h {
				t.Fatalf("page hashes %+v", id.PageHashes)
			}
			ph := id.PageHashes
			es := 4 + c.h.Size()
			if n := len(ph.Table) / es; n < 10 {
				t.Fatalf("only %d page hash entries", n)
			}
			if err := signed.VerifyPageHashes(ph); err != nil {
				t.Fatalf("VerifyPageHashes: %v", err)
			}
			for _, f := range []*File{signed, parsePath(t, in)} {
				got, err := f.PageHashes(c.h)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Table, ph.Table) {
					t.Fatalf("recomputed page hash table differs (%d vs %d bytes)", len(got.Table), len(ph.Table))
				}
			}
			der, err := MarshalIndirectDataWithPageHashes(id.DigestAlgorithm, id.Digest, ph)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(der, content) {
				t.Fatalf("MarshalIndirectDataWithPageHashes differs from osslsigncode's content")
			}

			// One flipped byte inside a section.
			sec := signed.Sections[0]
			tampered := bytes.Clone(signedBytes)
			tampered[int(sec.PointerToRawData)+int(sec.SizeOfRawData)/2] ^= 0x01
			tf := parseBytes(t, tampered)
			wantCode(t, tf.VerifyPageHashes(ph), reason.DigestMismatch)
			if bytes.Equal(imageHash(t, tf, c.h), id.Digest) {
				t.Fatal("image hash unchanged by a flipped section byte")
			}
			tp := filepath.Join(t.TempDir(), "tampered.exe")
			os.WriteFile(tp, tampered, 0o644)
			if vout, ok := osslVerify(t, tp, "-CAfile", p.Root); ok {
				t.Fatalf("osslsigncode accepted the tampered file:\n%s", vout)
			}

			// One flipped byte in the DOS stub (first page).
			hdr := bytes.Clone(signedBytes)
			hdr[0x50] ^= 0x01
			wantCode(t, parseBytes(t, hdr).VerifyPageHashes(ph), reason.DigestMismatch)

			// A table that is short, long, misaligned or empty.
			wantCode(t, signed.VerifyPageHashes(&PageHashes{Hash: c.h, Table: ph.Table[:len(ph.Table)-es]}), reason.DigestMismatch)
			wantCode(t, signed.VerifyPageHashes(&PageHashes{Hash: c.h, Table: append(bytes.Clone(ph.Table), ph.Table[:es]...)}), reason.DigestMismatch)
			wantCode(t, signed.VerifyPageHashes(&PageHashes{Hash: c.h, Table: ph.Table[:len(ph.Table)-1]}), reason.Malformed)
			wantCode(t, signed.VerifyPageHashes(&PageHashes{Hash: c.h}), reason.Malformed)
			// A wrong offset with the right digest.
			off := bytes.Clone(ph.Table)
			off[es] ^= 0x10
			wantCode(t, signed.VerifyPageHashes(&PageHashes{Hash: c.h, Table: off}), reason.DigestMismatch)
			wantCode(t, signed.VerifyPageHashes(&PageHashes{Hash: crypto.SHA512, Table: ph.Table}), reason.Unsupported)
		})
	}
}

// TestNestedSignature adds a SHA-1 signature nested in a SHA-256 one with
// osslsigncode -nest and checks that the single certificate table entry
// carries the nested signature attribute whose content hashes the image too.
func TestNestedSignature(t *testing.T) {
	p := testPKI(t)
	in := goPE(t, "amd64")
	out := osslSign(t, osslSign(t, in, "-h", "sha256"), "-nest", "-h", "sha1")
	if vout, ok := osslVerify(t, out, "-CAfile", p.Root); !ok || !strings.Contains(vout, "Number of verified signatures: 2") {
		t.Fatalf("osslsigncode verify:\n%s", vout)
	}
	f := parsePath(t, out)
	sigs := signatures(t, f)
	if len(sigs) != 1 {
		t.Fatalf("%d certificate entries, want 1", len(sigs))
	}
	hashes, err := f.ImageHash(crypto.SHA256, crypto.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIndirectData(sigs[0].Content)
	if err != nil || id.DigestAlgorithm != crypto.SHA256 || !bytes.Equal(id.Digest, hashes[crypto.SHA256]) {
		t.Fatalf("primary: %+v, %v", id, err)
	}
	nested := parseP7(t, attrValue(t, sigs[0].UnauthAttrs, cms.OIDNestedSignature))
	nid, err := ParseIndirectData(nested.Content)
	if err != nil || nid.DigestAlgorithm != crypto.SHA1 || !bytes.Equal(nid.Digest, hashes[crypto.SHA1]) {
		t.Fatalf("nested: %+v, %v", nid, err)
	}
}

// TestSbsign signs with sbsigntool and checks the hash and the table.
func TestSbsign(t *testing.T) {
	p := testPKI(t)
	in := goPE(t, "amd64")
	out := filepath.Join(t.TempDir(), "sbsigned.efi")
	testcmd.Run(t, "sbsign", "--key", p.RSALeafKey, "--cert", p.Leaf, "--output", out, in)
	testcmd.Run(t, "sbverify", "--cert", p.Leaf, out)
	f := parsePath(t, out)
	sigs := signatures(t, f)
	if len(sigs) != 1 {
		t.Fatalf("%d signatures", len(sigs))
	}
	id, err := ParseIndirectData(sigs[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	want := imageHash(t, parsePath(t, in), crypto.SHA256)
	if id.DigestAlgorithm != crypto.SHA256 || !bytes.Equal(id.Digest, want) || !bytes.Equal(imageHash(t, f, crypto.SHA256), want) {
		t.Fatalf("sbsign digest %x, ImageHash %x", id.Digest, want)
	}
}

var reSbverifySig = regexp.MustCompile(`(?m)^signature \d+$`)

func vmlinuzPath(t testing.TB) string {
	p := artifacts.Vmlinuz(t)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	// The fetch script copies the image from the unpacked package; use
	// that copy when kernel/vmlinuz itself is missing.
	m, _ := filepath.Glob(filepath.Join(artifacts.Dir(t), "x", "linux-image-*", "boot", "vmlinuz-*"))
	if len(m) == 0 {
		t.Fatalf("no signed kernel image in %s", artifacts.Dir(t))
	}
	return m[0]
}

// TestDebianSignedBinaries checks every real signed EFI binary from Debian
// and the signed kernel: each certificate table entry's signed digest equals
// ImageHash, the entry count equals sbverify --list's, and shim has two.
func TestDebianSignedBinaries(t *testing.T) {
	names := []string{"fbx64", "fwupdx64", "gcdx64", "grubnetx64-installer", "grubnetx64", "grubx64", "mmx64", "shimx64"}
	paths := map[string]string{}
	for _, n := range names {
		paths[n] = artifacts.EFI(t, n+".efi.signed")
	}
	paths["vmlinuz"] = vmlinuzPath(t)
	for name, path := range paths {
		t.Run(name, func(t *testing.T) {
			f := parsePath(t, path)
			sigs := signatures(t, f)
			list := testcmd.Run(t, "sbverify", "--list", path)
			if n := len(reSbverifySig.FindAllString(list, -1)); n != len(sigs) {
				t.Fatalf("%d certificate entries, sbverify --list shows %d", len(sigs), n)
			}
			if name == "shimx64" && len(sigs) != 2 {
				t.Fatalf("shim has %d entries, want 2", len(sigs))
			}
			for i, s := range sigs {
				id, err := ParseIndirectData(s.Content)
				if err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				if got := imageHash(t, f, id.DigestAlgorithm); !bytes.Equal(got, id.Digest) {
					t.Fatalf("entry %d: ImageHash %x, signed %x", i, got, id.Digest)
				}
				if id.PageHashes != nil {
					if err := f.VerifyPageHashes(id.PageHashes); err != nil {
						t.Fatalf("entry %d: %v", i, err)
					}
				}
			}
			if name != "shimx64" { // osslsigncode cannot read shim's two-entry table
				vout, _ := osslVerify(t, path)
				cur, _ := osslDigests(t, vout)
				if got := imageHash(t, f, crypto.SHA256); !bytes.Equal(got, cur) {
					t.Fatalf("ImageHash %x, osslsigncode %x", got, cur)
				}
			}
		})
	}
}

// TestWriteSigned embeds the PKCS#7 blob of an osslsigncode-signed file into
// the unsigned original and checks that the result is byte for byte
// osslsigncode's output, that osslsigncode (with the chain) and sbverify
// accept it, and that its checksum is the one osslsigncode computes.
func TestWriteSigned(t *testing.T) {
	p := testPKI(t)
	for _, in := range []struct{ name, path string }{
		{"pe32plus", goPE(t, "amd64")},
		{"pe32", goPE(t, "386")},
		{"unaligned", goPEOdd(t)},
	} {
		t.Run(in.name, func(t *testing.T) {
			ref := osslSign(t, in.path, "-h", "sha256")
			refBytes := readFile(t, ref)
			certs, err := parseBytes(t, refBytes).Certificates()
			if err != nil || len(certs) != 1 {
				t.Fatalf("%d certs, %v", len(certs), err)
			}
			src := readFile(t, in.path)
			f := parseBytes(t, src)
			var buf bytes.Buffer
			if err := f.WriteSigned(bytes.NewReader(src), &buf, certs[0].Data); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), refBytes) {
				t.Fatalf("WriteSigned output (%d bytes) differs from osslsigncode's (%d bytes)", buf.Len(), len(refBytes))
			}
			out := filepath.Join(t.TempDir(), "embedded.exe")
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			vout, ok := osslVerify(t, out, "-CAfile", p.Root)
			if !ok || !strings.Contains(vout, "Signature verification: ok") {
				t.Fatalf("osslsigncode verify:\n%s", vout)
			}
			testcmd.Run(t, "sbverify", "--cert", p.Leaf, out)
			cur, calc := osslChecksums(t, vout)
			g := parseBytes(t, buf.Bytes())
			sum, err := Checksum(bytes.NewReader(buf.Bytes()), g.Size, g.ChecksumOffset)
			if err != nil {
				t.Fatal(err)
			}
			if g.Checksum != sum || sum != cur || sum != calc || sum == 0 {
				t.Fatalf("checksum stored %08x computed %08x, osslsigncode current %08x calculated %08x", g.Checksum, sum, cur, calc)
			}
			if !bytes.Equal(imageHash(t, g, crypto.SHA256), imageHash(t, f, crypto.SHA256)) {
				t.Fatal("image hash changed by embedding")
			}
		})
	}
}

// TestWriteSignedReplaceAndRemove replaces an existing table with two
// signatures (sbverify --list sees both) and removes it again (byte for byte
// osslsigncode remove-signature's output).
func TestWriteSignedReplaceAndRemove(t *testing.T) {
	p := testPKI(t)
	in := goPE(t, "amd64")
	s256 := osslSign(t, in, "-h", "sha256")
	s1 := osslSign(t, in, "-h", "sha1")
	sigA := signaturesRaw(t, s256)[0]
	sigB := signaturesRaw(t, s1)[0]

	signedBytes := readFile(t, s256)
	f := parseBytes(t, signedBytes)
	var two bytes.Buffer
	if err := f.WriteSigned(bytes.NewReader(signedBytes), &two, sigA, sigB); err != nil {
		t.Fatal(err)
	}
	g := parseBytes(t, two.Bytes())
	certs, err := g.Certificates()
	if err != nil || len(certs) != 2 || !bytes.Equal(certs[0].Data, sigA) || !bytes.Equal(certs[1].Data, sigB) {
		t.Fatalf("%d certs, %v", len(certs), err)
	}
	if certs[0].Offset%8 != 0 || certs[1].Offset%8 != 0 || g.CertTableOffset != f.CertTableOffset {
		t.Fatalf("entries at 0x%x, 0x%x; table at 0x%x", certs[0].Offset, certs[1].Offset, g.CertTableOffset)
	}
	if !bytes.Equal(imageHash(t, g, crypto.SHA256), imageHash(t, f, crypto.SHA256)) {
		t.Fatal("image hash changed by replacing the table")
	}
	out := filepath.Join(t.TempDir(), "two.exe")
	os.WriteFile(out, two.Bytes(), 0o644)
	if n := len(reSbverifySig.FindAllString(testcmd.Run(t, "sbverify", "--list", out), -1)); n != 2 {
		t.Fatalf("sbverify --list sees %d signatures", n)
	}
	testcmd.Run(t, "sbverify", "--cert", p.Leaf, out) // checks the first (SHA-256) signature
	sum, _ := Checksum(bytes.NewReader(two.Bytes()), g.Size, g.ChecksumOffset)
	if sum != g.Checksum {
		t.Fatalf("checksum %08x, stored %08x", sum, g.Checksum)
	}

	var none bytes.Buffer
	if err := f.WriteSigned(bytes.NewReader(signedBytes), &none); err != nil {
		t.Fatal(err)
	}
	removed := filepath.Join(t.TempDir(), "removed.exe")
	testcmd.Run(t, "osslsigncode", "remove-signature", "-in", s256, "-out", removed)
	if !bytes.Equal(none.Bytes(), readFile(t, removed)) {
		t.Fatal("WriteSigned without signatures differs from osslsigncode remove-signature")
	}
	if u := parseBytes(t, none.Bytes()); u.Signed() || u.CertDirOffset == 0 {
		t.Fatal("table not removed")
	}

	// Images WriteSigned refuses.
	noDir := synthPE(synthOpts{nrva: 4})
	wantCode(t, parseBytes(t, noDir).WriteSigned(bytes.NewReader(noDir), &bytes.Buffer{}, sigA), reason.Unsupported)
	mid := synthPE(synthOpts{certSize: 100})
	mid = append(mid, 1, 2, 3) // data after the table
	wantCode(t, parseBytes(t, mid).WriteSigned(bytes.NewReader(mid), &bytes.Buffer{}, sigA), reason.Unsupported)
	if err := f.WriteSigned(bytes.NewReader(signedBytes), &bytes.Buffer{}, nil); err == nil {
		t.Fatal("empty signature accepted")
	}
}

func signaturesRaw(t *testing.T, path string) [][]byte {
	certs, err := parsePath(t, path).Certificates()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, c := range certs {
		out = append(out, c.Data)
	}
	return out
}

// TestChecksum compares Checksum with osslsigncode on real files and with a
// literal transcription of Windows' 16-bit folding loop on random data.
func TestChecksum(t *testing.T) {
	in := goPE(t, "amd64")
	vout, _ := osslVerify(t, in)
	_, calc := osslChecksums(t, vout)
	f := parsePath(t, in)
	fh, _ := os.Open(in)
	defer fh.Close()
	if got, err := Checksum(fh, f.Size, f.ChecksumOffset); err != nil || got != calc {
		t.Fatalf("Checksum %08x (%v), osslsigncode %08x", got, err, calc)
	}
	// Debian's signed EFI binaries carry checksums written by their tools.
	for _, n := range []string{"shimx64", "grubx64", "mmx64", "fbx64"} {
		p := artifacts.EFI(t, n+".efi.signed")
		f := parsePath(t, p)
		fh, _ := os.Open(p)
		got, err := Checksum(fh, f.Size, f.ChecksumOffset)
		fh.Close()
		if err != nil || got != f.Checksum {
			t.Fatalf("%s: Checksum %08x (%v), stored %08x", n, got, err, f.Checksum)
		}
	}

	naive := func(b []byte, csOff int) uint32 {
		var sum uint32
		for i := 0; i < len(b); i += 2 {
			var w uint32
			if i+1 < len(b) {
				w = uint32(binary.LittleEndian.Uint16(b[i:]))
			} else {
				w = uint32(b[i])
			}
			if i >= csOff && i < csOff+4 {
				w = 0
			}
			sum += w
			sum = (sum & 0xffff) + (sum >> 16)
		}
		return (sum & 0xffff) + uint32(len(b))
	}
	rnd := synthPE(synthOpts{textSize: 300000})
	for _, n := range []int{4, 5, 8, 9, 63, 64, 65, 1000, 4097, 65536 + 3, len(rnd)} {
		for _, fill := range []byte{0, 0xff, 1} {
			b := bytes.Clone(rnd[:n])
			if fill != 1 {
				for i := range b {
					b[i] = fill
				}
			}
			got, err := Checksum(bytes.NewReader(b), int64(n), 0)
			if want := naive(b, 0); err != nil || got != want {
				t.Fatalf("n=%d fill=%x: Checksum %08x (%v), naive %08x", n, fill, got, err, want)
			}
		}
	}
	// Chunk boundaries that split words.
	var c checksummer
	for i, k := 0, 1; i < len(rnd); i, k = i+k, k%13+1 {
		c.Write(rnd[i:min(i+k, len(rnd))])
	}
	if got, want := c.Sum(), naive(rnd, -10); got != want {
		t.Fatalf("chunked %08x, naive %08x", got, want)
	}
	if _, err := Checksum(bytes.NewReader(rnd), int64(len(rnd)), int64(len(rnd))-2); err == nil {
		t.Fatal("checksum field past the end accepted")
	}
}

// TestSyntheticLayouts checks layouts the toolchains do not produce against
// a naive reference hash: PE32 and PE32+, fewer than 5 data directories, a
// gap between sections, trailing data and a certificate table.
func TestSyntheticLayouts(t *testing.T) {
	for _, o := range []synthOpts{{}, {pe32: true}, {nrva: 4}, {nrva: 5, pe32: true}, {trailer: 13}, {certSize: 333}, {certSize: 64, trailer: 5}} {
		b := synthPE(o)
		f := parseBytes(t, b)
		certDir := int(f.CertDirOffset)
		if (o.nrva == 4) != (certDir == 0) {
			t.Fatalf("%+v: CertDirOffset %d", o, certDir)
		}
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			want := refImageHash(b, h, int(f.ChecksumOffset), certDir, int(f.CertTableOffset), int(f.CertTableSize))
			if got := imageHash(t, f, h); !bytes.Equal(got, want) {
				t.Fatalf("%+v %v: ImageHash %x, reference %x", o, h, got, want)
			}
		}
		certs, err := f.Certificates()
		if err != nil || (o.certSize > 0) != (len(certs) == 1) {
			t.Fatalf("%+v: %d certs, %v", o, len(certs), err)
		}
		if o.certSize > 0 && len(certs[0].Data) != o.certSize {
			t.Fatalf("%+v: cert data %d bytes", o, len(certs[0].Data))
		}
		if _, err := f.PageHashes(crypto.SHA256); err != nil {
			t.Fatalf("%+v: PageHashes: %v", o, err)
		}
	}

	// Bytes in a gap between sections are not hashed, as on Windows; bytes
	// in sections, headers and trailing data are.
	b := synthPE(synthOpts{gap: 0x200, trailer: 16})
	f := parseBytes(t, b)
	base := imageHash(t, f, crypto.SHA256)
	gapAt := int(f.Sections[0].PointerToRawData + f.Sections[0].SizeOfRawData)
	for _, c := range []struct {
		at      int
		changes bool
	}{{gapAt + 5, false}, {gapAt - 1, true}, {int(f.Sections[1].PointerToRawData), true}, {len(b) - 1, true}, {0x40, true}, {int(f.ChecksumOffset), false}} {
		m := bytes.Clone(b)
		m[c.at] ^= 0xff
		if changed := !bytes.Equal(imageHash(t, parseBytes(t, m), crypto.SHA256), base); changed != c.changes {
			t.Fatalf("flip at 0x%x: hash changed=%v, want %v", c.at, changed, c.changes)
		}
	}

	// Partly overlapping sections are accepted and hashed once each, in
	// PointerToRawData order, as Windows hashes them.
	ov := synthPE(synthOpts{trailer: 8})
	of := parseBytes(t, ov)
	s1, s2 := of.Sections[0], of.Sections[1]
	put32(ov, int(of.PEOffset)+24+int(binary.LittleEndian.Uint16(ov[of.PEOffset+20:]))+40+20, s1.PointerToRawData+0x100)
	of = parseBytes(t, ov)
	w := crypto.SHA256.New()
	cs, cd := int(of.ChecksumOffset), int(of.CertDirOffset)
	w.Write(ov[:cs])
	w.Write(ov[cs+4 : cd])
	w.Write(ov[cd+8 : of.SizeOfHeaders])
	w.Write(ov[s1.PointerToRawData : s1.PointerToRawData+s1.SizeOfRawData])
	w.Write(ov[s1.PointerToRawData+0x100 : s1.PointerToRawData+0x100+s2.SizeOfRawData])
	w.Write(ov[s1.PointerToRawData+s1.SizeOfRawData:])
	w.Write(make([]byte, (8-len(ov)%8)%8))
	if got := imageHash(t, of, crypto.SHA256); !bytes.Equal(got, w.Sum(nil)) {
		t.Fatal("overlapping sections: unexpected image hash")
	}

	if _, err := f.ImageHash(); err == nil {
		t.Fatal("ImageHash with no hash accepted")
	}
	if _, err := f.ImageHash(crypto.Hash(999)); err == nil {
		t.Fatal("ImageHash with an unknown hash accepted")
	}
}

// TestParseIndirectDataErrors checks error codes of malformed content.
func TestParseIndirectDataErrors(t *testing.T) {
	good, err := MarshalIndirectData(crypto.SHA256, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(good); i++ {
		_, err := ParseIndirectData(good[:i])
		wantCode(t, err, reason.Malformed)
	}
	_, err = ParseIndirectData(append(bytes.Clone(good), 0))
	wantCode(t, err, reason.Malformed)

	// Unknown digest algorithm: unsupported.
	type algo struct {
		Algorithm asn1.ObjectIdentifier
	}
	type di struct {
		A algo
		D []byte
	}
	type attr struct{ Type asn1.ObjectIdentifier }
	unk, _ := asn1.Marshal(struct {
		Data attr
		D    di
	}{attr{asn1.ObjectIdentifier{1, 2, 3}}, di{algo{asn1.ObjectIdentifier{1, 2, 3, 4}}, make([]byte, 32)}})
	_, err = ParseIndirectData(unk)
	wantCode(t, err, reason.Unsupported)
	// Wrong digest length: malformed.
	short, _ := asn1.Marshal(struct {
		Data attr
		D    di
	}{attr{asn1.ObjectIdentifier{1, 2, 3}}, di{algo{cms.OIDSHA256}, make([]byte, 31)}})
	_, err = ParseIndirectData(short)
	wantCode(t, err, reason.Malformed)
	// SpcPeImageData type without a value: malformed.
	noVal, _ := asn1.Marshal(struct {
		Data attr
		D    di
	}{attr{OIDSpcPEImageData}, di{algo{cms.OIDSHA256}, make([]byte, 32)}})
	_, err = ParseIndirectData(noVal)
	wantCode(t, err, reason.Malformed)
	// Another data type is accepted and carries its value.
	other, _ := asn1.Marshal(struct {
		Data attr
		D    di
	}{attr{asn1.ObjectIdentifier{1, 2, 3}}, di{algo{cms.OIDSHA1}, make([]byte, 20)}})
	if id, err := ParseIndirectData(other); err != nil || id.PageHashes != nil || id.DigestAlgorithm != crypto.SHA1 {
		t.Fatalf("%+v, %v", id, err)
	}
}
