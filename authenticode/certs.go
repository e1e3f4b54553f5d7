package authenticode

import (
	"encoding/binary"
)

// WIN_CERTIFICATE revisions and types.
const (
	WinCertRevision1      = 0x0100
	WinCertRevision2      = 0x0200
	WinCertTypeX509       = 0x0001
	WinCertTypePKCSSigned = 0x0002 // PKCS#7 SignedData (Authenticode)
	WinCertTypeEFIGUID    = 0x0EF1 // UEFI WIN_CERTIFICATE_UEFI_GUID
)

// Limits that bound the work done on a certificate table.
const (
	// MaxCertTableSize is the largest certificate table Certificates reads.
	MaxCertTableSize = 16 << 20
	// MaxCertificates is the largest number of entries Certificates accepts.
	MaxCertificates = 256
)

// WinCertificate is one WIN_CERTIFICATE entry of the attribute certificate
// table.
type WinCertificate struct {
	Revision uint16
	Type     uint16
	// Data is the entry's payload. For WinCertTypePKCSSigned it is exactly
	// the DER of the PKCS#7 ContentInfo (SignedData): the alignment padding
	// after the DER element is removed, and it must be zeros.
	Data []byte
	// Offset is the file offset of the entry's 8-byte header.
	Offset int64
}

// Certificates returns every WIN_CERTIFICATE entry of the certificate table,
// in file order. It returns nil and no error for a file without a table.
//
// Each entry is dwLength (including the 8-byte header), wRevision,
// wCertificateType and the data; entries start on 8-byte boundaries. An entry
// shorter than its header or running past the table, a PKCS#7 entry whose DER
// does not fit its entry or is followed by non-zero bytes, non-zero alignment
// padding between entries, a table larger
// than MaxCertTableSize or with more than MaxCertificates entries, are
// reported as reason.Malformed.
func (f *File) Certificates() ([]WinCertificate, error) {
	if f.CertTableSize == 0 {
		return nil, nil
	}
	if f.CertTableSize > MaxCertTableSize {
		return nil, malformed("certificate table of %d bytes exceeds the %d-byte limit", f.CertTableSize, MaxCertTableSize)
	}
	// Parse checked that the table lies inside the file, so this allocation
	// is bounded by the real file size and by MaxCertTableSize.
	tab := make([]byte, f.CertTableSize)
	if err := readFull(f.r, tab, f.CertTableOffset); err != nil {
		return nil, err
	}
	var out []WinCertificate
	for pos := int64(0); pos < int64(len(tab)); {
		if len(out) == MaxCertificates {
			return nil, malformed("certificate table has more than %d entries", MaxCertificates)
		}
		if int64(len(tab))-pos < 8 {
			return nil, malformed("certificate table: %d trailing bytes at 0x%x too short for an entry header", int64(len(tab))-pos, f.CertTableOffset+pos)
		}
		l := int64(binary.LittleEndian.Uint32(tab[pos:]))
		if l < 8 {
			return nil, malformed("certificate table: entry at 0x%x has dwLength %d < 8", f.CertTableOffset+pos, l)
		}
		if pos+l > int64(len(tab)) {
			return nil, malformed("certificate table: entry at 0x%x with dwLength %d runs past the table (%d bytes)", f.CertTableOffset+pos, l, len(tab))
		}
		c := WinCertificate{
			Revision: binary.LittleEndian.Uint16(tab[pos+4:]),
			Type:     binary.LittleEndian.Uint16(tab[pos+6:]),
			Offset:   f.CertTableOffset + pos,
		}
		data := tab[pos+8 : pos+l]
		if c.Type == WinCertTypePKCSSigned {
			n, err := derElementLen(data)
			if err != nil {
				return nil, malformed("certificate table: entry at 0x%x: %v", c.Offset, err)
			}
			for _, b := range data[n:] {
				if b != 0 {
					return nil, malformed("certificate table: entry at 0x%x has non-zero bytes after its PKCS#7 data", c.Offset)
				}
			}
			data = data[:n]
		}
		c.Data = append([]byte(nil), data...)
		out = append(out, c)
		// The quadword alignment padding after the entry is outside every
		// signature and outside the image hash: it must be zeros, or it
		// would carry attacker bytes in a signed file (the CVE-2013-3900
		// class).
		next := min(pos+((l+7)&^7), int64(len(tab)))
		for _, b := range tab[pos+l : next] {
			if b != 0 {
				return nil, malformed("certificate table: non-zero alignment padding after the entry at 0x%x", c.Offset)
			}
		}
		pos = next
	}
	return out, nil
}

// derElementLen returns the length of the DER element (tag, length and
// content) at the start of b, or an error when it does not fit in b. Only
// definite lengths are accepted.
func derElementLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, errShortDER
	}
	if b[0]&0x1f == 0x1f {
		return 0, errDER("multi-byte tags not supported")
	}
	hl, l := 2, int(b[1])
	if l&0x80 != 0 {
		nb := l & 0x7f
		if nb == 0 {
			return 0, errDER("indefinite length")
		}
		if nb > 4 {
			return 0, errDER("length too large")
		}
		if len(b) < 2+nb {
			return 0, errShortDER
		}
		l = 0
		for _, c := range b[2 : 2+nb] {
			l = l<<8 | int(c)
		}
		hl += nb
	}
	if l > len(b)-hl {
		return 0, errShortDER
	}
	return hl + l, nil
}

type errDER string

func (e errDER) Error() string { return "DER: " + string(e) }

const errShortDER = errDER("element runs past its container")
