package versioninfo_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
	"unicode/utf16"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/reason"
	"github.com/vigil-attest/vigil/versioninfo"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealResources: MSVC's and windres's version resources read as
// Windows reads them.
func TestRealResources(t *testing.T) {
	for _, c := range []struct {
		file, name, version, table string
	}{
		{"distlib-t32-version.bin", "t32.exe", "1.1.0.14", "080904b0"},
		{"windres-version.bin", "EIO.sys", "1.9.7.0", "040904b0"},
	} {
		in, err := versioninfo.Parse(read(t, c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if !in.Fixed || in.FileVersion.String() != c.version || len(in.Tables) != 1 || in.Tables[0].Key != c.table {
			t.Errorf("%s: %+v", c.file, in)
		}
		if got := in.Values("OriginalFilename"); len(got) != 1 || got[0] != c.name {
			t.Errorf("%s: OriginalFilename %q", c.file, got)
		}
	}
	res, err := versioninfo.Locate(read(t, "distlib-t32-rsrc.bin"))
	if err != nil || len(res) != 1 || res[0].Size != 776 || res[0].Lang != 0 {
		t.Fatalf("distlib resource section: %+v %v", res, err)
	}
}

// TestReadPE: a PE linked with a windres resource object gives its
// version resource through the image's resource directory.
func TestReadPE(t *testing.T) {
	p := testpe.BuildWith(t, testpe.Options{GOARCH: "amd64", Resources: testpe.VersionRC("Vuln.sys", [4]uint16{2, 0, 65535, 7})})
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := authenticode.Parse(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	infos, err := versioninfo.ReadPE(pf, pf.ResourceRVA, pf.ResourceSize)
	if err != nil || len(infos) != 1 {
		t.Fatalf("%v %v", infos, err)
	}
	if v := infos[0].FileVersion; v != (versioninfo.Version{2, 0, 65535, 7}) || infos[0].Values("OriginalFilename")[0] != "Vuln.sys" {
		t.Fatalf("%+v", infos[0])
	}
	// An image without resources has none.
	plain := testpe.Build(t, "amd64")
	f2, _ := os.Open(plain)
	defer f2.Close()
	st2, _ := f2.Stat()
	pf2, err := authenticode.Parse(f2, st2.Size())
	if err != nil {
		t.Fatal(err)
	}
	if infos, err := versioninfo.ReadPE(pf2, pf2.ResourceRVA, pf2.ResourceSize); err != nil || infos != nil {
		t.Fatalf("no resources: %v %v", infos, err)
	}
}

// blk builds a version block: header, key, padding, value, children.
func blk(typ uint16, key string, value []byte, valueLen int, children ...[]byte) []byte {
	var b bytes.Buffer
	b.Write(make([]byte, 6))
	for _, c := range utf16.Encode([]rune(key)) {
		binary.Write(&b, binary.LittleEndian, c)
	}
	b.Write([]byte{0, 0})
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(value)
	for _, c := range children {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(c)
	}
	out := b.Bytes()
	binary.LittleEndian.PutUint16(out, uint16(len(out)))
	binary.LittleEndian.PutUint16(out[2:], uint16(valueLen))
	binary.LittleEndian.PutUint16(out[4:], typ)
	return out
}

func text(s string) []byte {
	var b bytes.Buffer
	for _, c := range utf16.Encode([]rune(s + "\x00")) {
		binary.Write(&b, binary.LittleEndian, c)
	}
	return b.Bytes()
}

func fixed(sig uint32, v versioninfo.Version) []byte {
	b := make([]byte, 52)
	binary.LittleEndian.PutUint32(b, sig)
	binary.LittleEndian.PutUint32(b[8:], uint32(v[0])<<16|uint32(v[1]))
	binary.LittleEndian.PutUint32(b[12:], uint32(v[2])<<16|uint32(v[3]))
	return b
}

func str(key, val string) []byte { return blk(1, key, text(val), len(text(val))/2) }

// TestParseMalformed: each crafted resource breaks one rule and is
// malformed; the well-formed one reads.
func TestParseMalformed(t *testing.T) {
	v := versioninfo.Version{1, 2, 3, 4}
	table := blk(1, "040904b0", nil, 0, str("OriginalFilename", "a.sys"))
	good := blk(0, "VS_VERSION_INFO", fixed(0xFEEF04BD, v), 52, blk(1, "StringFileInfo", nil, 0, table))
	if in, err := versioninfo.Parse(good); err != nil || in.FileVersion != v || in.Values("OriginalFilename")[0] != "a.sys" {
		t.Fatalf("good: %+v %v", in, err)
	}
	overrun := bytes.Clone(good)
	binary.LittleEndian.PutUint16(overrun, uint16(len(good)+4))
	trailing := append(bytes.Clone(good), 1, 2, 3, 4)
	for name, b := range map[string][]byte{
		"empty":                {},
		"truncated header":     good[:4],
		"length overruns":      overrun,
		"bytes after the root": trailing,
		"wrong root key":       blk(0, "VS_VERSIONINFO", fixed(0xFEEF04BD, v), 52),
		"bad fixed signature":  blk(0, "VS_VERSION_INFO", fixed(0xFEEF04BE, v), 52),
		"fixed info of 48":     blk(0, "VS_VERSION_INFO", fixed(0xFEEF04BD, v)[:48], 48),
		"unknown child":        blk(0, "VS_VERSION_INFO", nil, 0, blk(1, "Evil", nil, 0)),
		"table key not hex":    blk(0, "VS_VERSION_INFO", nil, 0, blk(1, "StringFileInfo", nil, 0, blk(1, "0409zzzz", nil, 0))),
		"duplicate string": blk(0, "VS_VERSION_INFO", nil, 0, blk(1, "StringFileInfo", nil, 0,
			blk(1, "040904b0", nil, 0, str("OriginalFilename", "a.sys"), str("OriginalFilename", "b.sys")))),
		"bad type":              blk(7, "VS_VERSION_INFO", nil, 0),
		"key not terminated":    []byte{10, 0, 0, 0, 0, 0, 'V', 0, 'S', 0},
		"value overruns":        blk(0, "VS_VERSION_INFO", fixed(0xFEEF04BD, v)[:8], 52),
		"non-zero padding":      append(blk(0, "VS_VERSION_INFO", nil, 0, blk(1, "StringFileInfo", nil, 0, []byte{1, 2})), 0),
		"larger than the bound": make([]byte, versioninfo.MaxSize+1),
	} {
		if _, err := versioninfo.Parse(b); reason.Of(err, "") != reason.Malformed {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}

// dir builds a resource directory of entries {name, data}.
func dir(entries ...[2]uint32) []byte {
	b := make([]byte, 16+8*len(entries))
	binary.LittleEndian.PutUint16(b[14:], uint16(len(entries)))
	for i, e := range entries {
		binary.LittleEndian.PutUint32(b[16+8*i:], e[0])
		binary.LittleEndian.PutUint32(b[20+8*i:], e[1])
	}
	return b
}

// TestLocateMalformed: resource directories that loop, point outside the
// section or list a type twice are malformed.
func TestLocateMalformed(t *testing.T) {
	const sub = 1 << 31
	// root (16+8) → type 16 dir at 24 (16+8) → name 1 dir at 48 → lang data at 72.
	good := append(append(append(dir([2]uint32{16, sub | 24}), dir([2]uint32{1, sub | 48})...), dir([2]uint32{1033, 72})...),
		make([]byte, 16)...)
	binary.LittleEndian.PutUint32(good[72:], 0x5000)
	binary.LittleEndian.PutUint32(good[76:], 380)
	if res, err := versioninfo.Locate(good); err != nil || len(res) != 1 || res[0].RVA != 0x5000 || res[0].Lang != 1033 {
		t.Fatalf("good: %+v %v", res, err)
	}
	loop := bytes.Clone(good)
	binary.LittleEndian.PutUint32(loop[44:], sub|24) // the name entry points back at the type directory
	twice := append(append(dir([2]uint32{16, sub | 32}, [2]uint32{16, sub | 32}), dir()...), make([]byte, 8)...)
	big := bytes.Clone(good)
	binary.LittleEndian.PutUint32(big[76:], versioninfo.MaxSize+1)
	for name, b := range map[string][]byte{
		"truncated":          good[:10],
		"points back":        loop,
		"type twice":         twice,
		"data entry outside": good[:74],
		"version too large":  big,
		"lang is a directory": func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint32(b[48+20:], sub|72)
			return b
		}(),
	} {
		if _, err := versioninfo.Locate(b); reason.Of(err, "") != reason.Malformed {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]versioninfo.Version{"1.9.7.0": {1, 9, 7, 0}, "10": {10}, "65535.0.1": {65535, 0, 1}} {
		if v, err := versioninfo.ParseVersion(s); err != nil || v != want {
			t.Errorf("%s: %v %v", s, v, err)
		}
	}
	for _, s := range []string{"", "1.2.3.4.5", "65536", "1..2", "-1", "1.a", " 1", "0x10"} {
		if _, err := versioninfo.ParseVersion(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestMain(m *testing.M) { testpe.Main(m) }
