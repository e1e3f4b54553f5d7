package authenticode

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"

	"github.com/vigil-attest/vigil/reason"
)

// checksummer accumulates the PE checksum: the ones' complement sum of the
// file's little-endian 16-bit words (the CheckSum field counted as zero),
// folded to 16 bits, plus the file length. Summing 64-bit words with
// end-around carry gives the same value modulo 0xffff, and the final fold
// maps it to the same representative Windows' running 16-bit fold yields.
type checksummer struct {
	sum  uint64
	n    int64
	tail [8]byte
	tl   int
}

func (c *checksummer) add(w uint64) {
	var carry uint64
	c.sum, carry = bits.Add64(c.sum, w, 0)
	c.sum += carry
}

func (c *checksummer) Write(p []byte) {
	c.n += int64(len(p))
	if c.tl > 0 {
		k := copy(c.tail[c.tl:], p)
		c.tl += k
		p = p[k:]
		if c.tl < 8 {
			return
		}
		c.add(binary.LittleEndian.Uint64(c.tail[:]))
		c.tl = 0
	}
	for len(p) >= 8 {
		c.add(binary.LittleEndian.Uint64(p))
		p = p[8:]
	}
	c.tl = copy(c.tail[:], p)
}

func (c *checksummer) Sum() uint32 {
	s := c.sum
	if c.tl > 0 {
		// A trailing odd byte counts as the low byte of a word, as
		// Windows' CheckSumMappedFile counts it.
		var t [8]byte
		copy(t[:], c.tail[:c.tl])
		var carry uint64
		s, carry = bits.Add64(s, binary.LittleEndian.Uint64(t[:]), 0)
		s += carry
	}
	s = s&0xffffffff + s>>32
	s = s&0xffffffff + s>>32
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint32(s) + uint32(c.n)
}

// Checksum computes the PE image checksum of the size bytes read through r
// as Windows' CheckSumMappedFile does: the 16-bit ones' complement sum of the
// file with the 4-byte CheckSum field at checksumOffset taken as zero, plus
// the file size. A trailing odd byte counts as a word with a zero high byte
// (osslsigncode ignores it; the results agree for files of even size, which
// every signed file is).
func Checksum(r io.ReaderAt, size, checksumOffset int64) (uint32, error) {
	if size < 0 || checksumOffset < 0 || checksumOffset+4 > size {
		return 0, reason.New(reason.Malformed, "pe: checksum field at %d outside a %d-byte file", checksumOffset, size)
	}
	var c checksummer
	err := copyRange(r, 0, size, func(off int64, p []byte) error {
		zeroField(p, off, checksumOffset, 4)
		c.Write(p)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return c.Sum(), nil
}

// patchField overwrites the bytes of [at, at+len(val)) that fall in p, which
// holds the file bytes starting at off.
func patchField(p []byte, off, at int64, val []byte) {
	for i := range val {
		if j := at + int64(i) - off; j >= 0 && j < int64(len(p)) {
			p[j] = val[i]
		}
	}
}

// zeroField clears the bytes of [at, at+n) that fall in p.
func zeroField(p []byte, off, at, n int64) {
	var z [8]byte
	patchField(p, off, at, z[:n])
}

// WriteSigned writes to w a copy of the PE image f (read again through r,
// which must read the same bytes f was parsed from) carrying the given
// signatures, each the DER of a PKCS#7 SignedData ContentInfo, as
// WIN_CERTIFICATE entries of revision 2.0 and type PKCS_SIGNED_DATA. Any
// existing certificate table is replaced. The image is padded with zeros to
// a multiple of 8 bytes before the table, each entry is padded to a multiple
// of 8 bytes (dwLength includes the padding, as osslsigncode writes it), the
// security directory entry is updated and the PE checksum recomputed.
//
// With no signatures it removes the certificate table and clears the
// security directory. It fails with reason.Unsupported when the image has no
// security directory entry, when an existing certificate table is not at the
// end of the file, or when the result would exceed 4 GiB.
func (f *File) WriteSigned(r io.ReaderAt, w io.Writer, signatures ...[]byte) error {
	if f.CertDirOffset == 0 {
		return reason.New(reason.Unsupported, "pe: image has no security data directory (NumberOfRvaAndSizes %d)", f.NumberOfRvaAndSizes)
	}
	body := f.Size
	if f.CertTableSize > 0 {
		if f.CertTableOffset+f.CertTableSize != f.Size {
			return reason.New(reason.Unsupported, "pe: existing certificate table [0x%x,+%d) is not at the end of the file", f.CertTableOffset, f.CertTableSize)
		}
		body = f.CertTableOffset
	}
	var pad, tableOff, tableSize int64
	var table []byte
	if len(signatures) > 0 {
		pad = (8 - body%8) % 8
		tableOff = body + pad
		for i, sig := range signatures {
			if len(sig) == 0 {
				return fmt.Errorf("pe: signature %d is empty", i)
			}
			l := (int64(len(sig)) + 8 + 7) &^ 7
			if l > math.MaxUint32 {
				return reason.New(reason.Unsupported, "pe: signature %d too large", i)
			}
			var h [8]byte
			binary.LittleEndian.PutUint32(h[:], uint32(l))
			binary.LittleEndian.PutUint16(h[4:], WinCertRevision2)
			binary.LittleEndian.PutUint16(h[6:], WinCertTypePKCSSigned)
			table = append(table, h[:]...)
			table = append(table, sig...)
			table = append(table, make([]byte, l-8-int64(len(sig)))...)
		}
		tableSize = int64(len(table))
		if tableOff+tableSize > math.MaxUint32 {
			return reason.New(reason.Unsupported, "pe: signed image would exceed 4 GiB")
		}
	}
	var dir [8]byte
	binary.LittleEndian.PutUint32(dir[:], uint32(tableOff))
	binary.LittleEndian.PutUint32(dir[4:], uint32(tableSize))
	zeros := make([]byte, pad)

	// emit produces the output with the given checksum field value.
	emit := func(checksum uint32, sink func([]byte) error) error {
		var cs [4]byte
		binary.LittleEndian.PutUint32(cs[:], checksum)
		err := copyRange(r, 0, body, func(off int64, p []byte) error {
			patchField(p, off, f.ChecksumOffset, cs[:])
			patchField(p, off, f.CertDirOffset, dir[:])
			return sink(p)
		})
		if err != nil {
			return err
		}
		if err := sink(zeros); err != nil {
			return err
		}
		return sink(table)
	}
	var c checksummer
	if err := emit(0, func(p []byte) error { c.Write(p); return nil }); err != nil {
		return err
	}
	return emit(c.Sum(), func(p []byte) error {
		if len(p) == 0 {
			return nil
		}
		_, err := w.Write(p)
		if err != nil {
			return fmt.Errorf("pe: write: %w", err)
		}
		return nil
	})
}
