// Package authenticode implements the PE/COFF layer of Authenticode: it parses
// PE images (EXE, DLL, SYS, EFI) read through an io.ReaderAt, computes the
// Authenticode image hash and page hashes exactly as Windows does, extracts
// the WIN_CERTIFICATE entries of the certificate table, parses and builds the
// Authenticode-specific ASN.1 content (SpcIndirectDataContent and friends),
// and embeds signatures into a PE image.
//
// It does not parse or verify the PKCS#7 SignedData itself: Certificates
// returns the raw blobs for a CMS engine, and ParseIndirectData reads the
// encapsulated content that engine hands back.
//
// Every input is untrusted. Parse failures carry reason.Malformed; every size
// and offset is validated against the real file size before it is used, and
// memory use is bounded (hashing streams through a fixed buffer).
package authenticode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/vigil-attest/vigil/reason"
)

// Optional header magic values.
const (
	MagicPE32     = 0x10b // PE32
	MagicPE32Plus = 0x20b // PE32+
)

const (
	dosHeaderSize   = 64
	coffHeaderSize  = 20
	sectionHdrSize  = 40
	certDirIndex    = 4  // IMAGE_DIRECTORY_ENTRY_SECURITY
	rsrcDirIndex    = 2  // IMAGE_DIRECTORY_ENTRY_RESOURCE
	maxDataDirs     = 16 // the loader never looks past 16 directories
	checksumField   = 64 // offset of CheckSum in both optional header kinds
	sizeOfHdrsField = 60 // offset of SizeOfHeaders in both optional header kinds
	subsystemField  = 68 // offset of Subsystem in both optional header kinds
)

// Optional header Subsystem values of UEFI images (PE/COFF specification,
// "Windows Subsystem"; EDK2 MdePkg/Include/IndustryStandard/PeImage.h).
const (
	SubsystemEFIApplication       = 10 // EFI_IMAGE_SUBSYSTEM_EFI_APPLICATION
	SubsystemEFIBootServiceDriver = 11 // EFI_IMAGE_SUBSYSTEM_EFI_BOOT_SERVICE_DRIVER
	SubsystemEFIRuntimeDriver     = 12 // EFI_IMAGE_SUBSYSTEM_EFI_RUNTIME_DRIVER
	SubsystemEFIROM               = 13 // EFI_IMAGE_SUBSYSTEM_SAL_RUNTIME_DRIVER / EFI ROM
)

// Section is one entry of the section table.
type Section struct {
	Name             string // up to 8 bytes, NULs trimmed
	VirtualSize      uint32
	VirtualAddress   uint32
	SizeOfRawData    uint32
	PointerToRawData uint32
}

// File is a parsed PE image read through an io.ReaderAt. Parse reads only
// the headers and the section table; it never loads the whole file.
//
// All offsets are file offsets. A File is safe for concurrent use by several
// goroutines as long as the underlying io.ReaderAt is.
type File struct {
	Size          int64  // file size given to Parse
	Machine       uint16 // COFF Machine
	Magic         uint16 // MagicPE32 or MagicPE32Plus
	PEOffset      int64  // e_lfanew: offset of the "PE\0\0" signature
	SizeOfHeaders int64  // optional header SizeOfHeaders
	Subsystem     uint16 // optional header Subsystem
	Sections      []Section

	// NumberOfRvaAndSizes as stored in the optional header.
	NumberOfRvaAndSizes uint32

	Checksum       uint32 // stored optional header CheckSum
	ChecksumOffset int64  // offset of the CheckSum field

	// CertDirOffset is the offset of the security data directory entry
	// (index 4), or 0 when the optional header has fewer than 5 data
	// directories.
	CertDirOffset int64
	// CertTableOffset and CertTableSize locate the attribute certificate
	// table (the security directory's VirtualAddress is a file offset).
	// Both are 0 when the file carries no certificate table.
	CertTableOffset int64
	CertTableSize   int64

	// ResourceRVA and ResourceSize locate the resource directory (data
	// directory 2, an RVA); both 0 without one.
	ResourceRVA, ResourceSize uint32

	r      io.ReaderAt
	sorted []Section // sections with raw data, ordered by PointerToRawData
	endSec int64     // end of the last section's raw data (at least SizeOfHeaders)
}

// EFI reports whether the optional header names a UEFI subsystem (10 to
// 13): an image the firmware loads.
func (f *File) EFI() bool {
	return f.Subsystem >= SubsystemEFIApplication && f.Subsystem <= SubsystemEFIROM
}

// Signed reports whether the file has a certificate table.
func (f *File) Signed() bool { return f.CertTableSize > 0 }

func malformed(format string, args ...any) error {
	return reason.New(reason.Malformed, "pe: "+format, args...)
}

// readFull reads exactly len(p) bytes at off. A short read means the file is
// smaller than the size it was parsed with; it is reported as malformed.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return reason.Wrap(reason.Malformed, fmt.Errorf("pe: short read of %d bytes at offset %d: %w", len(p), off, io.ErrUnexpectedEOF))
	}
	return fmt.Errorf("pe: read at offset %d: %w", off, err)
}

// Parse parses the headers and section table of the PE image of the given
// size read through r. It rejects, as reason.Malformed, any image whose
// headers, section data or certificate table do not fit in the file, whose
// section data overlaps the headers, whose sections hold more raw data in
// total than the file size (heavily overlapping sections, which would make
// hashing quadratic), or whose certificate table is not 8-byte aligned or
// overlaps section data.
func Parse(r io.ReaderAt, size int64) (*File, error) {
	if r == nil {
		return nil, errors.New("pe: nil reader")
	}
	if size < dosHeaderSize {
		return nil, malformed("file too short (%d bytes) for a DOS header", size)
	}
	var dos [dosHeaderSize]byte
	if err := readFull(r, dos[:], 0); err != nil {
		return nil, err
	}
	if dos[0] != 'M' || dos[1] != 'Z' {
		return nil, malformed("no MZ signature")
	}
	f := &File{Size: size, r: r}
	f.PEOffset = int64(binary.LittleEndian.Uint32(dos[0x3c:]))
	if f.PEOffset+4+coffHeaderSize > size {
		return nil, malformed("e_lfanew 0x%x points past the end of the file", f.PEOffset)
	}
	var hdr [4 + coffHeaderSize]byte
	if err := readFull(r, hdr[:], f.PEOffset); err != nil {
		return nil, err
	}
	if string(hdr[:4]) != "PE\x00\x00" {
		return nil, malformed("no PE signature at offset 0x%x", f.PEOffset)
	}
	coff := hdr[4:]
	f.Machine = binary.LittleEndian.Uint16(coff[0:])
	nsec := int64(binary.LittleEndian.Uint16(coff[2:]))
	optSize := int64(binary.LittleEndian.Uint16(coff[16:]))
	optOff := f.PEOffset + 4 + coffHeaderSize
	if optOff+optSize > size {
		return nil, malformed("optional header (%d bytes) runs past the end of the file", optSize)
	}
	if optSize < 2 {
		return nil, malformed("no optional header")
	}
	opt := make([]byte, optSize) // at most 64 KiB, and within the file
	if err := readFull(r, opt, optOff); err != nil {
		return nil, err
	}
	f.Magic = binary.LittleEndian.Uint16(opt)
	var dirStart int64
	switch f.Magic {
	case MagicPE32:
		dirStart = 96
	case MagicPE32Plus:
		dirStart = 112
	default:
		return nil, malformed("unknown optional header magic 0x%x", f.Magic)
	}
	if optSize < dirStart {
		return nil, malformed("optional header size %d too small for magic 0x%x", optSize, f.Magic)
	}
	f.NumberOfRvaAndSizes = binary.LittleEndian.Uint32(opt[dirStart-4:])
	ndirs := int64(f.NumberOfRvaAndSizes)
	if ndirs > maxDataDirs {
		ndirs = maxDataDirs
	}
	if dirStart+8*ndirs > optSize {
		return nil, malformed("optional header size %d too small for %d data directories", optSize, ndirs)
	}
	f.SizeOfHeaders = int64(binary.LittleEndian.Uint32(opt[sizeOfHdrsField:]))
	f.Checksum = binary.LittleEndian.Uint32(opt[checksumField:])
	f.Subsystem = binary.LittleEndian.Uint16(opt[subsystemField:])
	f.ChecksumOffset = optOff + checksumField

	secOff := optOff + optSize
	secEnd := secOff + nsec*sectionHdrSize
	if f.SizeOfHeaders > size {
		return nil, malformed("SizeOfHeaders 0x%x larger than the file", f.SizeOfHeaders)
	}
	if secEnd > f.SizeOfHeaders {
		return nil, malformed("headers and section table (ending at 0x%x) overrun SizeOfHeaders 0x%x", secEnd, f.SizeOfHeaders)
	}

	if ndirs > rsrcDirIndex {
		d := opt[dirStart+8*rsrcDirIndex:]
		f.ResourceRVA, f.ResourceSize = binary.LittleEndian.Uint32(d), binary.LittleEndian.Uint32(d[4:])
	}
	if ndirs > certDirIndex {
		f.CertDirOffset = optOff + dirStart + 8*certDirIndex
		d := opt[dirStart+8*certDirIndex:]
		f.CertTableOffset = int64(binary.LittleEndian.Uint32(d))
		f.CertTableSize = int64(binary.LittleEndian.Uint32(d[4:]))
		if (f.CertTableOffset == 0) != (f.CertTableSize == 0) {
			return nil, malformed("security directory has offset 0x%x but size %d", f.CertTableOffset, f.CertTableSize)
		}
		if f.CertTableOffset+f.CertTableSize > size {
			return nil, malformed("certificate table [0x%x,+%d) runs past the end of the file (%d bytes)", f.CertTableOffset, f.CertTableSize, size)
		}
		// Its entries are quadword aligned (PE/COFF specification, and every
		// signing tool pads the image so): a misaligned table would also
		// make the image hash of a re-signed copy differ, since the copy is
		// padded before its table.
		if f.CertTableOffset%8 != 0 {
			return nil, malformed("certificate table at 0x%x is not 8-byte aligned", f.CertTableOffset)
		}
	}

	tab := make([]byte, nsec*sectionHdrSize) // within SizeOfHeaders <= size
	if err := readFull(r, tab, secOff); err != nil {
		return nil, err
	}
	f.Sections = make([]Section, nsec)
	f.endSec = f.SizeOfHeaders
	var rawTotal int64
	for i := range f.Sections {
		b := tab[i*sectionHdrSize:]
		s := Section{
			Name:             cString(b[:8]),
			VirtualSize:      binary.LittleEndian.Uint32(b[8:]),
			VirtualAddress:   binary.LittleEndian.Uint32(b[12:]),
			SizeOfRawData:    binary.LittleEndian.Uint32(b[16:]),
			PointerToRawData: binary.LittleEndian.Uint32(b[20:]),
		}
		f.Sections[i] = s
		if s.SizeOfRawData == 0 {
			continue
		}
		start, end := int64(s.PointerToRawData), int64(s.PointerToRawData)+int64(s.SizeOfRawData)
		if start < f.SizeOfHeaders {
			return nil, malformed("section %d (%q) data at 0x%x overlaps the headers (SizeOfHeaders 0x%x)", i, s.Name, start, f.SizeOfHeaders)
		}
		if end > size {
			return nil, malformed("section %d (%q) data [0x%x,0x%x) runs past the end of the file (%d bytes)", i, s.Name, start, end, size)
		}
		if end > f.endSec {
			f.endSec = end
		}
		// Overlapping section data is hashed once per section, as Windows
		// hashes it; bound the total so that hashing stays linear in the
		// file size.
		rawTotal += int64(s.SizeOfRawData)
		if rawTotal > size {
			return nil, malformed("sections hold %d or more bytes of raw data, more than the %d-byte file (overlapping sections)", rawTotal, size)
		}
		f.sorted = append(f.sorted, s)
	}
	sort.SliceStable(f.sorted, func(i, j int) bool { return f.sorted[i].PointerToRawData < f.sorted[j].PointerToRawData })
	if f.CertTableSize > 0 && f.CertTableOffset < f.endSec {
		return nil, malformed("certificate table at 0x%x overlaps the headers or section data (ending at 0x%x)", f.CertTableOffset, f.endSec)
	}
	return f, nil
}

// ReadRVA reads n bytes at an RVA: from the raw data of the section
// that holds all of them. Bytes a section holds only virtually (past its
// raw data) or that no section holds are malformed.
func (f *File) ReadRVA(rva, n uint32) ([]byte, error) {
	end := uint64(rva) + uint64(n)
	for _, s := range f.Sections {
		if s.SizeOfRawData == 0 || rva < s.VirtualAddress {
			continue
		}
		if end <= uint64(s.VirtualAddress)+uint64(s.SizeOfRawData) {
			b := make([]byte, n)
			if err := readFull(f.r, b, int64(s.PointerToRawData)+int64(rva-s.VirtualAddress)); err != nil {
				return nil, err
			}
			return b, nil
		}
	}
	return nil, malformed("RVA range [0x%x,0x%x) is in no section's raw data", rva, end)
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
