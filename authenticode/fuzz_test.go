package authenticode

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-attest/vigil/reason"
)

// fuzzSeedFiles returns real images for seeding: the Go-built PEs, their
// osslsigncode-signed variants (plain, nested, page hashes) and, when the
// artifacts directory exists, Debian's signed EFI binaries.
func fuzzSeedFiles(f *testing.F) [][]byte {
	amd64, i386 := goPE(f, "amd64"), goPE(f, "386")
	paths := []string{
		amd64, i386, goPEOdd(f),
		osslSign(f, amd64, "-h", "sha256"),
		osslSign(f, i386, "-h", "sha1", "-ph"),
		osslSign(f, amd64, "-h", "sha256", "-ph"),
		osslSign(f, osslSign(f, amd64, "-h", "sha256"), "-nest", "-h", "sha1"),
	}
	dir := os.Getenv("VIGIL_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", ".cache", "artifacts")
	}
	efi, _ := filepath.Glob(filepath.Join(dir, "efi", "*.efi.signed"))
	paths = append(paths, efi...)
	var out [][]byte
	for _, p := range paths {
		out = append(out, readFile(f, p))
	}
	return out
}

// p7Content extracts the encapsulated content of a PKCS#7 SignedData without
// failing (fuzz inputs are mostly garbage).
func p7Content(der []byte) ([]byte, bool) {
	var ci p7ContentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, false
	}
	var sd p7SignedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, false
	}
	return sd.Encap.Content.Bytes, len(sd.Encap.Content.Bytes) > 0
}

func isCode(err error, codes ...reason.Code) bool {
	c := reason.Of(err, "")
	for _, x := range codes {
		if c == x {
			return true
		}
	}
	return false
}

// FuzzParse runs everything the package does with a PE file on arbitrary
// bytes: no panic, no error without a reason code, and signature embedding
// must keep the image hash.
func FuzzParse(f *testing.F) {
	f.Add(synthPE(synthOpts{}))
	f.Add(synthPE(synthOpts{pe32: true, certSize: 77}))
	f.Add(synthPE(synthOpts{nrva: 4, gap: 16, trailer: 3}))
	for _, b := range fuzzSeedFiles(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pf, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !isCode(err, reason.Malformed) {
				t.Fatalf("Parse: %v", err)
			}
			return
		}
		hashes, err := pf.ImageHash(crypto.SHA256, crypto.SHA1)
		if err != nil {
			t.Fatalf("ImageHash of a parsed file: %v", err)
		}
		if _, err := Checksum(bytes.NewReader(b), pf.Size, pf.ChecksumOffset); err != nil {
			t.Fatalf("Checksum: %v", err)
		}
		if _, err := pf.PageHashes(crypto.SHA256); err != nil && !isCode(err, reason.Unsupported) {
			t.Fatalf("PageHashes: %v", err)
		}
		certs, err := pf.Certificates()
		if err != nil && !isCode(err, reason.Malformed) {
			t.Fatalf("Certificates: %v", err)
		}
		for _, c := range certs {
			content, ok := p7Content(c.Data)
			if !ok {
				continue
			}
			id, err := ParseIndirectData(content)
			if err != nil {
				if !isCode(err, reason.Malformed, reason.Unsupported) {
					t.Fatalf("ParseIndirectData: %v", err)
				}
				continue
			}
			if id.PageHashes != nil {
				if err := pf.VerifyPageHashes(id.PageHashes); err != nil && !isCode(err, reason.Malformed, reason.Unsupported, reason.DigestMismatch) {
					t.Fatalf("VerifyPageHashes: %v", err)
				}
			}
		}
		// Embedding a signature keeps the image hash and yields exactly
		// that one entry.
		sig := []byte{0x30, 0x03, 0x02, 0x01, 0x07}
		var out bytes.Buffer
		if err := pf.WriteSigned(bytes.NewReader(b), &out, sig); err != nil {
			if !isCode(err, reason.Unsupported) {
				t.Fatalf("WriteSigned: %v", err)
			}
			return
		}
		g, err := Parse(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("Parse of WriteSigned output: %v", err)
		}
		h2, err := g.ImageHash(crypto.SHA256, crypto.SHA1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(h2[crypto.SHA256], hashes[crypto.SHA256]) || !bytes.Equal(h2[crypto.SHA1], hashes[crypto.SHA1]) {
			t.Fatal("WriteSigned changed the image hash")
		}
		got, err := g.Certificates()
		if err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, sig) {
			t.Fatalf("certificates after WriteSigned: %v, %v", got, err)
		}
		sum, err := Checksum(bytes.NewReader(out.Bytes()), g.Size, g.ChecksumOffset)
		if err != nil || sum != g.Checksum {
			t.Fatalf("checksum after WriteSigned: %08x vs stored %08x (%v)", sum, g.Checksum, err)
		}
	})
}

// FuzzIndirectData parses arbitrary SpcIndirectDataContent DER: no panic,
// only Malformed or Unsupported errors, and consistent results.
func FuzzIndirectData(f *testing.F) {
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		der, err := MarshalIndirectData(h, make([]byte, h.Size()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	syn := parseBytes(f, synthPE(synthOpts{}))
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		ph, err := syn.PageHashes(h)
		if err != nil {
			f.Fatal(err)
		}
		der, err := MarshalIndirectDataWithPageHashes(h, make([]byte, h.Size()), ph)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	for _, b := range fuzzSeedFiles(f) {
		pf, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			f.Fatal(err)
		}
		certs, err := pf.Certificates()
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range certs {
			if content, ok := p7Content(c.Data); ok {
				f.Add(content)
			}
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		id, err := ParseIndirectData(der)
		if err != nil {
			if !isCode(err, reason.Malformed, reason.Unsupported) {
				t.Fatalf("ParseIndirectData: %v", err)
			}
			return
		}
		if id.DigestAlgorithm == 0 || len(id.Digest) != id.DigestAlgorithm.Size() {
			t.Fatalf("digest %v of %d bytes", id.DigestAlgorithm, len(id.Digest))
		}
		if ph := id.PageHashes; ph != nil {
			if ph.Hash != crypto.SHA1 && ph.Hash != crypto.SHA256 {
				t.Fatalf("page hash algorithm %v", ph.Hash)
			}
			// Re-marshalling the parsed values parses back to the same.
			der2, err := MarshalIndirectDataWithPageHashes(id.DigestAlgorithm, id.Digest, ph)
			if err != nil {
				t.Fatal(err)
			}
			id2, err := ParseIndirectData(der2)
			if err != nil || !bytes.Equal(id2.Digest, id.Digest) || !bytes.Equal(id2.PageHashes.Table, ph.Table) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}
