package authenticode

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"testing"
)

// TestHashesOnePass: the single-read Hashes equals ImageHash plus a plain
// hash of the file, on every layout: synthetic ones (gaps, trailers,
// certificate tables, overlapping sections, which take the fallback) and
// Go-built images, unsigned, odd-sized and signed.
func TestHashesOnePass(t *testing.T) {
	var inputs [][]byte
	for _, o := range []synthOpts{{}, {pe32: true}, {nrva: 4}, {trailer: 13}, {certSize: 333}, {certSize: 64, trailer: 5}, {gap: 0x200, trailer: 16}} {
		inputs = append(inputs, synthPE(o))
	}
	ov := synthPE(synthOpts{trailer: 8})
	of := parseBytes(t, ov)
	put32(ov, int(of.PEOffset)+24+int(binary.LittleEndian.Uint16(ov[of.PEOffset+20:]))+40+20, of.Sections[0].PointerToRawData+0x100)
	inputs = append(inputs, ov)
	for _, p := range []string{goPE(t, "amd64"), goPEOdd(t), osslSign(t, goPE(t, "386"), "-h", "sha256")} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	image := []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA512}
	for i, b := range inputs {
		f := parseBytes(t, b)
		want, err := f.ImageHash(image...)
		if err != nil {
			t.Fatal(err)
		}
		is, fs, err := f.Hashes(image, []crypto.Hash{crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range image {
			if !bytes.Equal(is[h], want[h]) {
				t.Fatalf("input %d %v: one-pass image hash %x, ImageHash %x", i, h, is[h], want[h])
			}
		}
		if s := sha256.Sum256(b); !bytes.Equal(fs[crypto.SHA256], s[:]) {
			t.Fatalf("input %d: file hash differs", i)
		}
	}
}
