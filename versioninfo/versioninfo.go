// Package versioninfo reads a PE image's version resource
// (VS_VERSIONINFO, resource type RT_VERSION): the fixed file version and
// the StringFileInfo strings (OriginalFilename...), which Windows and WDAC
// file-attribute rules read. The input is untrusted: every length is
// checked against its parent, nesting and counts are bounded, and
// anything outside the format is reason.Malformed.
package versioninfo

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/vigil-attest/vigil/reason"
)

// Bounds on untrusted input.
const (
	// MaxSize bounds a version resource (real ones are 1–4 KiB).
	MaxSize = 64 << 10
	// maxStrings bounds the strings of all tables.
	maxStrings = 4096
	// maxEntries bounds the entries of one resource directory.
	maxEntries = 4096
)

// RTVersion is the resource type of version resources.
const RTVersion = 16

// fixedSignature is VS_FIXEDFILEINFO's dwSignature.
const fixedSignature = 0xFEEF04BD

// Version is a four-part file version: major, minor, build, revision.
type Version [4]uint16

// String is "major.minor.build.revision".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d.%d", v[0], v[1], v[2], v[3]) }

// Compare returns -1, 0 or 1 as v is before, equal to or after w.
func (v Version) Compare(w Version) int {
	for i := range v {
		switch {
		case v[i] < w[i]:
			return -1
		case v[i] > w[i]:
			return 1
		}
	}
	return 0
}

// ParseVersion reads "a.b.c.d" (WDAC's MinimumFileVersion form): one to
// four decimal parts of 0–65535, missing ones 0.
func ParseVersion(s string) (Version, error) {
	var v Version
	parts := strings.Split(s, ".")
	if len(parts) > 4 || s == "" {
		return v, fmt.Errorf("version %q: want 1 to 4 dot-separated numbers", s)
	}
	for i, p := range parts {
		if p == "" || len(p) > 5 || strings.TrimLeft(p, "0123456789") != "" {
			return v, fmt.Errorf("version %q: part %q is not a number", s, p)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return v, fmt.Errorf("version %q: part %q is not 0 to 65535", s, p)
		}
		v[i] = uint16(n)
	}
	return v, nil
}

// Info is one VS_VERSIONINFO resource.
type Info struct {
	// FileVersion is VS_FIXEDFILEINFO's dwFileVersionMS and LS; Fixed
	// is false when the resource has no fixed info (then it is zero).
	FileVersion Version
	Fixed       bool
	// Tables are the StringFileInfo string tables in order, each with
	// its key (language and code page, "040904b0") and strings.
	Tables []StringTable
}

// StringTable is one StringFileInfo table.
type StringTable struct {
	Key     string
	Strings map[string]string
}

// Values returns the value of key in every table that has it, in order.
func (in *Info) Values(key string) []string {
	var out []string
	for _, t := range in.Tables {
		if v, ok := t.Strings[key]; ok {
			out = append(out, v)
		}
	}
	return out
}

func malformed(format string, args ...any) error {
	return reason.New(reason.Malformed, "versioninfo: "+format, args...)
}

// block is one node of the version resource tree.
type block struct {
	key      string
	typ      uint16
	value    []byte // wValueLength bytes (binary) or words (text)
	children []byte
	off      int // offset of the block in the resource
	childAt  int // offset of its children in the resource
}

// readBlock reads the block at b[0:], which starts 4-aligned at offset
// off of the resource; it returns the block and its length (wLength).
func readBlock(b []byte, off int) (block, int, error) {
	if len(b) < 6 {
		return block{}, 0, malformed("block at %d: %d bytes, want at least 6", off, len(b))
	}
	wLength := int(binary.LittleEndian.Uint16(b))
	wValueLength := int(binary.LittleEndian.Uint16(b[2:]))
	typ := binary.LittleEndian.Uint16(b[4:])
	if wLength < 6 || wLength > len(b) {
		return block{}, 0, malformed("block at %d: length %d outside its parent (%d bytes left)", off, wLength, len(b))
	}
	if typ > 1 {
		return block{}, 0, malformed("block at %d: type %d (want 0 binary or 1 text)", off, typ)
	}
	b = b[:wLength]
	// The key: UTF-16LE, NUL-terminated, inside the block.
	i := 6
	var key []uint16
	for {
		if i+2 > len(b) {
			return block{}, 0, malformed("block at %d: key not terminated within its %d bytes", off, wLength)
		}
		c := binary.LittleEndian.Uint16(b[i:])
		i += 2
		if c == 0 {
			break
		}
		key = append(key, c)
	}
	i = align4(off, i)
	vlen := wValueLength
	if typ == 1 {
		vlen *= 2
	}
	blk := block{key: string(utf16.Decode(key)), typ: typ, off: off}
	if vlen > 0 {
		if i+vlen > len(b) {
			return block{}, 0, malformed("block %q at %d: value of %d bytes overruns its %d-byte block", blk.key, off, vlen, wLength)
		}
		blk.value = b[i : i+vlen]
		i = align4(off, i+vlen)
	}
	if i < len(b) {
		blk.children = b[i:]
	}
	blk.childAt = off + i
	return blk, wLength, nil
}

// align4 rounds the block-relative offset i up so that off+i is 4-aligned.
func align4(off, i int) int { return (off+i+3)&^3 - off }

// eachChild calls f for every child block of children (at resource
// offset off), skipping the zero padding that aligns each to 4 bytes.
func eachChild(children []byte, off int, f func(block) error) error {
	i := 0
	for i < len(children) {
		if j := align4(off, i); j != i {
			if j > len(children) {
				j = len(children)
			}
			for _, c := range children[i:j] {
				if c != 0 {
					return malformed("non-zero padding at %d", off+i)
				}
			}
			i = j
			continue
		}
		if len(children)-i < 6 && allZero(children[i:]) {
			return nil // trailing padding
		}
		blk, n, err := readBlock(children[i:], off+i)
		if err != nil {
			return err
		}
		if err := f(blk); err != nil {
			return err
		}
		i += n
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Parse reads one VS_VERSIONINFO resource (the data of an RT_VERSION
// resource). The root's key must be "VS_VERSION_INFO"; its value, when
// present, a 52-byte VS_FIXEDFILEINFO with its signature; its children
// StringFileInfo (string tables of text strings) and VarFileInfo blocks,
// nothing else.
func Parse(b []byte) (*Info, error) {
	if len(b) > MaxSize {
		return nil, malformed("resource of %d bytes (at most %d)", len(b), MaxSize)
	}
	root, n, err := readBlock(b, 0)
	if err != nil {
		return nil, err
	}
	if root.key != "VS_VERSION_INFO" || root.typ != 0 {
		return nil, malformed("root key %q type %d, want VS_VERSION_INFO binary", root.key, root.typ)
	}
	if !allZero(b[n:]) {
		return nil, malformed("%d bytes after the root block", len(b)-n)
	}
	in := &Info{}
	switch len(root.value) {
	case 0:
	case 52:
		if binary.LittleEndian.Uint32(root.value) != fixedSignature {
			return nil, malformed("VS_FIXEDFILEINFO signature 0x%08x, want 0x%08x", binary.LittleEndian.Uint32(root.value), fixedSignature)
		}
		ms, ls := binary.LittleEndian.Uint32(root.value[8:]), binary.LittleEndian.Uint32(root.value[12:])
		in.FileVersion = Version{uint16(ms >> 16), uint16(ms), uint16(ls >> 16), uint16(ls)}
		in.Fixed = true
	default:
		return nil, malformed("VS_FIXEDFILEINFO of %d bytes, want 52", len(root.value))
	}
	strs := 0
	err = eachChild(root.children, root.childAt, func(c block) error {
		switch c.key {
		case "VarFileInfo":
			return nil
		case "StringFileInfo":
		default:
			return malformed("block %q at %d: not StringFileInfo or VarFileInfo", c.key, c.off)
		}
		if len(c.value) != 0 {
			return malformed("StringFileInfo at %d has a value", c.off)
		}
		return eachChild(c.children, c.childAt, func(t block) error {
			if len(t.value) != 0 || len(t.key) != 8 || !isHex(t.key) {
				return malformed("string table %q at %d: want an 8-hex-digit key and no value", t.key, t.off)
			}
			st := StringTable{Key: t.key, Strings: map[string]string{}}
			err := eachChild(t.children, t.childAt, func(s block) error {
				strs++
				if strs > maxStrings {
					return malformed("more than %d strings", maxStrings)
				}
				if s.typ != 1 && len(s.value) != 0 {
					return malformed("string %q at %d is not text", s.key, s.off)
				}
				if s.children != nil && !allZero(s.children) {
					return malformed("string %q at %d has children", s.key, s.off)
				}
				if _, dup := st.Strings[s.key]; dup {
					return malformed("string %q twice in table %s", s.key, t.key)
				}
				st.Strings[s.key] = utf16String(s.value)
				return nil
			})
			if err != nil {
				return err
			}
			in.Tables = append(in.Tables, st)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// utf16String decodes a text value, up to its first NUL.
func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+2 <= len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
