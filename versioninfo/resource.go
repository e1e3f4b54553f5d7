package versioninfo

import "encoding/binary"

// Resource is one RT_VERSION resource's data, as the resource directory
// locates it.
type Resource struct {
	// ID and Lang are its name (an ID, or -1 for a string name) and its
	// language ID.
	ID, Lang int
	// RVA and Size locate its data in the image (an RVA, not an offset in
	// the resource section).
	RVA, Size uint32
}

// Locate walks a resource section's directory (IMAGE_RESOURCE_DIRECTORY:
// type, then name, then language) and returns every RT_VERSION resource,
// in directory order. rsrc is the resource data directory's bytes;
// offsets inside it are relative to its start. Every directory and data
// entry must lie inside rsrc, a level's entries must be directories
// (types, names) or data entries (languages) as the format says, and a
// type may appear once. No RT_VERSION type gives no resources and no
// error.
func Locate(rsrc []byte) ([]Resource, error) {
	if len(rsrc) > 64<<20 {
		return nil, malformed("resource section of %d bytes", len(rsrc))
	}
	root, err := dirEntries(rsrc, 0)
	if err != nil {
		return nil, err
	}
	var out []Resource
	seen := map[uint32]bool{}
	for _, t := range root {
		if t.named {
			continue
		}
		if seen[t.id] {
			return nil, malformed("resource type %d listed twice", t.id)
		}
		seen[t.id] = true
		if t.id != RTVersion {
			continue
		}
		if !t.dir {
			return nil, malformed("RT_VERSION entry is not a directory")
		}
		names, err := dirEntries(rsrc, t.off)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !n.dir {
				return nil, malformed("RT_VERSION name entry is not a directory")
			}
			langs, err := dirEntries(rsrc, n.off)
			if err != nil {
				return nil, err
			}
			id := int(n.id)
			if n.named {
				id = -1
			}
			for _, l := range langs {
				if l.dir || l.named {
					return nil, malformed("RT_VERSION language entry is not a data entry")
				}
				if int(l.off)+16 > len(rsrc) {
					return nil, malformed("resource data entry at %d outside the %d-byte section", l.off, len(rsrc))
				}
				d := rsrc[l.off:]
				r := Resource{ID: id, Lang: int(l.id), RVA: binary.LittleEndian.Uint32(d), Size: binary.LittleEndian.Uint32(d[4:])}
				if r.Size > MaxSize {
					return nil, malformed("version resource of %d bytes (at most %d)", r.Size, MaxSize)
				}
				out = append(out, r)
				if len(out) > maxEntries {
					return nil, malformed("more than %d version resources", maxEntries)
				}
			}
		}
	}
	return out, nil
}

type dirEntry struct {
	id    uint32 // ID, or the name string's offset when named
	named bool
	dir   bool   // OffsetToData's high bit: a subdirectory
	off   uint32 // the subdirectory's or data entry's offset in rsrc
}

// dirEntries reads the IMAGE_RESOURCE_DIRECTORY at off and its entries.
func dirEntries(rsrc []byte, off uint32) ([]dirEntry, error) {
	if int64(off)+16 > int64(len(rsrc)) {
		return nil, malformed("resource directory at %d outside the %d-byte section", off, len(rsrc))
	}
	d := rsrc[off:]
	n := int(binary.LittleEndian.Uint16(d[12:])) + int(binary.LittleEndian.Uint16(d[14:]))
	if n > maxEntries || int64(off)+16+8*int64(n) > int64(len(rsrc)) {
		return nil, malformed("resource directory at %d: %d entries outside the %d-byte section", off, n, len(rsrc))
	}
	out := make([]dirEntry, n)
	for i := range out {
		e := d[16+8*i:]
		name, data := binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
		out[i] = dirEntry{id: name &^ (1 << 31), named: name>>31 == 1, dir: data>>31 == 1, off: data &^ (1 << 31)}
		if out[i].dir && out[i].off <= off {
			// Directories only point forward: no cycles.
			return nil, malformed("resource directory at %d: entry %d points back to %d", off, i, out[i].off)
		}
	}
	return out, nil
}

// PE is what ReadPE needs of a parsed image (authenticode.File).
type PE interface {
	ReadRVA(rva, n uint32) ([]byte, error)
}

// maxResourceSection bounds the resource directory ReadPE reads.
const maxResourceSection = 32 << 20

// ReadPE reads every version resource of an image whose resource data
// directory is at rva (size bytes; 0 for none): none without a resource
// directory or an RT_VERSION type.
func ReadPE(f PE, rva, size uint32) ([]*Info, error) {
	if size == 0 {
		return nil, nil
	}
	if size > maxResourceSection {
		return nil, malformed("resource directory of %d bytes (at most %d)", size, maxResourceSection)
	}
	rsrc, err := f.ReadRVA(rva, size)
	if err != nil {
		return nil, err
	}
	res, err := Locate(rsrc)
	if err != nil {
		return nil, err
	}
	var out []*Info
	for _, r := range res {
		b, err := f.ReadRVA(r.RVA, r.Size)
		if err != nil {
			return nil, err
		}
		in, err := Parse(b)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}
