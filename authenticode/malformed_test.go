package authenticode

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"testing"

	"github.com/vigil-attest/vigil/reason"
)

// fullPipeline runs everything a verifier does with a file and returns the
// first error.
func fullPipeline(b []byte) error {
	f, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return err
	}
	if _, err := f.ImageHash(crypto.SHA256, crypto.SHA1); err != nil {
		return err
	}
	if _, err := f.Certificates(); err != nil {
		return err
	}
	return nil
}

// layout gives the offsets of a parsed image's header fields.
type layout struct {
	lfanew, coff, opt, dirStart, secTab int
	f                                   *File
}

func layoutOf(t *testing.T, b []byte) layout {
	f := parseBytes(t, b)
	l := layout{f: f, lfanew: int(f.PEOffset)}
	l.coff = l.lfanew + 4
	l.opt = l.coff + 20
	l.dirStart = 112
	if f.Magic == MagicPE32 {
		l.dirStart = 96
	}
	l.secTab = l.opt + int(binary.LittleEndian.Uint16(b[l.coff+16:]))
	return l
}

func put16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// TestMalformed mutates a real osslsigncode-signed Go PE (PE32+ and PE32)
// and a synthetic one. Every mutation must fail with reason.Malformed and
// never panic.
func TestMalformed(t *testing.T) {
	bases := map[string][]byte{
		"go-amd64-signed": readFile(t, osslSign(t, goPE(t, "amd64"), "-h", "sha256")),
		"go-386-signed":   readFile(t, osslSign(t, goPE(t, "386"), "-h", "sha256")),
		"synthetic":       synthPE(synthOpts{certSize: 301}),
	}
	type mut struct {
		name string
		fn   func(b []byte, l layout) []byte
	}
	muts := []mut{
		{"no MZ", func(b []byte, l layout) []byte { b[0] = 'X'; return b }},
		{"no PE signature", func(b []byte, l layout) []byte { b[l.lfanew+1] = 'X'; return b }},
		{"e_lfanew past EOF", func(b []byte, l layout) []byte { put32(b, 0x3c, 0xfffffff0); return b }},
		{"e_lfanew at EOF-10", func(b []byte, l layout) []byte { put32(b, 0x3c, uint32(len(b)-10)); return b }},
		{"e_lfanew at EOF", func(b []byte, l layout) []byte { put32(b, 0x3c, uint32(len(b))); return b }},
		{"NumberOfSections huge", func(b []byte, l layout) []byte { put16(b, l.coff+2, 0xffff); return b }},
		{"NumberOfSections +1 past SizeOfHeaders", func(b []byte, l layout) []byte {
			n := (int(l.f.SizeOfHeaders)-l.secTab)/40 + 1
			put16(b, l.coff+2, uint16(n))
			return b
		}},
		{"SizeOfOptionalHeader 0", func(b []byte, l layout) []byte { put16(b, l.coff+16, 0); return b }},
		{"SizeOfOptionalHeader 1", func(b []byte, l layout) []byte { put16(b, l.coff+16, 1); return b }},
		{"SizeOfOptionalHeader 10", func(b []byte, l layout) []byte { put16(b, l.coff+16, 10); return b }},
		{"SizeOfOptionalHeader too small for directories", func(b []byte, l layout) []byte {
			put16(b, l.coff+16, uint16(l.dirStart+8*3))
			return b
		}},
		{"SizeOfOptionalHeader 0xffff", func(b []byte, l layout) []byte { put16(b, l.coff+16, 0xffff); return b }},
		{"optional header magic 0x107", func(b []byte, l layout) []byte { put16(b, l.opt, 0x107); return b }},
		{"SizeOfHeaders past EOF", func(b []byte, l layout) []byte { put32(b, l.opt+60, 0xffffffff); return b }},
		{"SizeOfHeaders = len+1", func(b []byte, l layout) []byte { put32(b, l.opt+60, uint32(len(b)+1)); return b }},
		{"SizeOfHeaders inside section table", func(b []byte, l layout) []byte { put32(b, l.opt+60, uint32(l.secTab+20)); return b }},
		{"section size past EOF", func(b []byte, l layout) []byte { put32(b, l.secTab+16, 0x7fffffff); return b }},
		{"section size 0xffffffff", func(b []byte, l layout) []byte { put32(b, l.secTab+16, 0xffffffff); return b }},
		{"section pointer past EOF", func(b []byte, l layout) []byte { put32(b, l.secTab+20, 0xfffff000); return b }},
		{"section pointer at EOF", func(b []byte, l layout) []byte { put32(b, l.secTab+20, uint32(len(b))); return b }},
		{"section overlaps headers", func(b []byte, l layout) []byte { put32(b, l.secTab+20, 0x10); return b }},
		{"section at 0", func(b []byte, l layout) []byte { put32(b, l.secTab+20, 0); return b }},
		{"sections overlapping many times", func(b []byte, l layout) []byte {
			// Every section covers all the section data: the raw data
			// total exceeds the file, and hashing would be quadratic.
			for i := range l.f.Sections {
				put32(b, l.secTab+40*i+16, uint32(l.f.endSec-l.f.SizeOfHeaders))
				put32(b, l.secTab+40*i+20, uint32(l.f.SizeOfHeaders))
			}
			return b
		}},
		{"cert table offset past EOF", func(b []byte, l layout) []byte { put32(b, l.opt+l.dirStart+32, 0xfffffff0); return b }},
		{"cert table size past EOF", func(b []byte, l layout) []byte {
			put32(b, l.opt+l.dirStart+36, uint32(l.f.CertTableSize+8))
			return b
		}},
		{"cert table size 0xffffffff", func(b []byte, l layout) []byte { put32(b, l.opt+l.dirStart+36, 0xffffffff); return b }},
		{"cert table without size", func(b []byte, l layout) []byte { put32(b, l.opt+l.dirStart+36, 0); return b }},
		{"cert table size without offset", func(b []byte, l layout) []byte { put32(b, l.opt+l.dirStart+32, 0); return b }},
		{"cert table overlaps sections", func(b []byte, l layout) []byte {
			put32(b, l.opt+l.dirStart+32, uint32(l.f.CertTableOffset-16))
			return b
		}},
		{"cert table misaligned", func(b []byte, l layout) []byte {
			put32(b, l.opt+l.dirStart+32, uint32(l.f.CertTableOffset+3))
			put32(b, l.opt+l.dirStart+36, uint32(l.f.CertTableSize-3))
			return b
		}},
		{"cert table inside headers", func(b []byte, l layout) []byte { put32(b, l.opt+l.dirStart+32, 0x40); return b }},
		{"dwLength 0", func(b []byte, l layout) []byte { put32(b, int(l.f.CertTableOffset), 0); return b }},
		{"dwLength 7", func(b []byte, l layout) []byte { put32(b, int(l.f.CertTableOffset), 7); return b }},
		{"dwLength 8 then garbage", func(b []byte, l layout) []byte { put32(b, int(l.f.CertTableOffset), 8); return b }},
		{"dwLength huge", func(b []byte, l layout) []byte { put32(b, int(l.f.CertTableOffset), 0xfffffff8); return b }},
		{"dwLength past table", func(b []byte, l layout) []byte {
			put32(b, int(l.f.CertTableOffset), uint32(l.f.CertTableSize+8))
			return b
		}},
		{"dwLength cuts the DER", func(b []byte, l layout) []byte { put32(b, int(l.f.CertTableOffset), 40); return b }},
		{"DER length too long", func(b []byte, l layout) []byte {
			d := int(l.f.CertTableOffset) + 8
			switch b[d+1] {
			case 0x82:
				b[d+2] = 0x7f
			case 0x81:
				b[d+2] = 0xff
			default:
				b[d+1] = 0x7f
			}
			return b
		}},
		{"DER indefinite length", func(b []byte, l layout) []byte { b[int(l.f.CertTableOffset)+9] = 0x80; return b }},
		{"DER empty", func(b []byte, l layout) []byte {
			put32(b, int(l.f.CertTableOffset), 8)
			put32(b, int(l.f.CertTableOffset)+8, 0)
			return b
		}},
		{"table trailer shorter than a header", func(b []byte, l layout) []byte {
			put32(b, l.opt+l.dirStart+36, uint32(l.f.CertTableSize+4))
			return append(b, 0, 0, 0, 0)
		}},
		{"non-zero padding after the DER", func(b []byte, l layout) []byte {
			// Grow the entry by 8 bytes of padding when it has none.
			e := int(l.f.CertTableOffset)
			if n, _ := derElementLen(b[e+8:]); 8+n == int(binary.LittleEndian.Uint32(b[e:])) {
				put32(b, e, uint32(8+n+8))
				put32(b, l.opt+l.dirStart+36, uint32(l.f.CertTableSize+8))
				b = append(b, make([]byte, 8)...)
			}
			b[len(b)-1] = 1
			return b
		}},
	}
	for name, base := range bases {
		l := layoutOf(t, base)
		if _, err := l.f.Certificates(); err != nil || fullPipeline(base) != nil {
			t.Fatalf("%s: base image does not verify: %v", name, err)
		}
		for _, m := range muts {
			t.Run(name+"/"+m.name, func(t *testing.T) {
				b := m.fn(bytes.Clone(base), l)
				if bytes.Equal(b, base) {
					t.Fatal("mutation changed nothing")
				}
				wantCode(t, fullPipeline(b), reason.Malformed)
			})
		}
	}
}

// TestMalformedPadding checks the zero-padding rule on an entry whose DER is
// not a multiple of 8 (so padding exists in the synthetic image).
func TestMalformedPadding(t *testing.T) {
	b := synthPE(synthOpts{certSize: 301})
	f := parseBytes(t, b)
	if f.CertTableSize != (8+301+7)&^7 {
		t.Fatalf("table size %d", f.CertTableSize)
	}
	b[len(b)-2] = 0x55
	wantCode(t, fullPipeline(b), reason.Malformed)
}

// TestTruncated truncates a signed Go PE at many offsets (every header
// boundary and every 997th byte): every prefix must be rejected as
// malformed, because the certificate table runs past the end of each.
func TestTruncated(t *testing.T) {
	for _, arch := range []string{"amd64", "386"} {
		b := readFile(t, osslSign(t, goPE(t, arch), "-h", "sha256"))
		l := layoutOf(t, b)
		cuts := []int{0, 1, 2, 0x3b, 0x3c, 0x3f, 0x40, l.lfanew, l.lfanew + 3, l.coff, l.opt - 1, l.opt, l.opt + 1,
			l.opt + 60, l.opt + l.dirStart, l.secTab, l.secTab + 39, int(l.f.SizeOfHeaders) - 1, int(l.f.SizeOfHeaders),
			int(l.f.endSec) - 1, int(l.f.endSec), int(l.f.CertTableOffset), int(l.f.CertTableOffset) + 7, len(b) - 1}
		for c := 0; c < len(b); c += 997 {
			cuts = append(cuts, c)
		}
		for _, c := range cuts {
			err := fullPipeline(b[:c])
			if err == nil || reason.Of(err, "") != reason.Malformed {
				t.Fatalf("%s truncated at %d: %v", arch, c, err)
			}
		}
	}
}

// TestShortReader checks that a reader smaller than the declared size is
// reported as malformed, not as a panic or a hang.
func TestShortReader(t *testing.T) {
	b := synthPE(synthOpts{certSize: 100})
	f, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	f.r = bytes.NewReader(b[:len(b)/2])
	_, err = f.ImageHash(crypto.SHA256)
	wantCode(t, err, reason.Malformed)
	_, err = f.Certificates()
	wantCode(t, err, reason.Malformed)
	wantCode(t, f.WriteSigned(bytes.NewReader(b[:100]), &bytes.Buffer{}, []byte{0x30, 0}), reason.Malformed)
	if _, err := Parse(bytes.NewReader(b[:200]), int64(len(b))); reason.Of(err, "") != reason.Malformed {
		t.Fatalf("Parse with a short reader: %v", err)
	}
	if _, err := Parse(bytes.NewReader(b), -1); reason.Of(err, "") != reason.Malformed {
		t.Fatalf("Parse with negative size: %v", err)
	}
}
