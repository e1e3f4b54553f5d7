package authenticode

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/vigil-attest/vigil/reason"
)

// PageSize is the page size of Authenticode page hashes.
const PageSize = 4096

// walkPageHashes produces the page hash entries of f in order: the headers
// as one page (hashed with the same exclusions as the image hash and
// zero-padded so that the hashed length is PageSize minus the excluded
// bytes), then every PageSize page of each section's raw data in
// PointerToRawData order (the last page of a section zero-padded to
// PageSize), then the end offset of the section data with a zero digest.
func (f *File) walkPageHashes(h crypto.Hash, emit func(off int64, digest []byte) error) error {
	if h != crypto.SHA1 && h != crypto.SHA256 {
		return reason.New(reason.Unsupported, "pe: page hashes with %v are not defined", h)
	}
	if f.SizeOfHeaders > PageSize {
		return reason.New(reason.Unsupported, "pe: page hashes for headers larger than one page (SizeOfHeaders 0x%x)", f.SizeOfHeaders)
	}
	if f.endSec > math.MaxUint32 {
		return reason.New(reason.Unsupported, "pe: page hash offsets beyond 4 GiB")
	}
	w := h.New()
	page := make([]byte, PageSize)
	var sum []byte

	// Header page.
	hashed := int64(0)
	for _, s := range f.headerSpans() {
		if err := readFull(f.r, page[:s.n], s.off); err != nil {
			return err
		}
		w.Write(page[:s.n])
		hashed += s.n
	}
	excluded := f.SizeOfHeaders - hashed
	clear(page)
	w.Write(page[:PageSize-excluded-hashed])
	sum = w.Sum(sum[:0])
	if err := emit(0, sum); err != nil {
		return err
	}

	for _, s := range f.sorted {
		start, size := int64(s.PointerToRawData), int64(s.SizeOfRawData)
		for off := int64(0); off < size; off += PageSize {
			n := min(size-off, PageSize)
			if err := readFull(f.r, page[:n], start+off); err != nil {
				return err
			}
			clear(page[n:])
			w.Reset()
			w.Write(page)
			sum = w.Sum(sum[:0])
			if err := emit(start+off, sum); err != nil {
				return err
			}
		}
	}
	clear(sum)
	return emit(f.endSec, sum)
}

// PageHashes computes the page hash table of f with h (crypto.SHA1 or
// crypto.SHA256), as signtool /ph and osslsigncode -ph embed it.
func (f *File) PageHashes(h crypto.Hash) (*PageHashes, error) {
	var table []byte
	err := f.walkPageHashes(h, func(off int64, d []byte) error {
		table = binary.LittleEndian.AppendUint32(table, uint32(off))
		table = append(table, d...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &PageHashes{Hash: h, Table: table}, nil
}

var errPageMismatch = errors.New("page hash mismatch")

// VerifyPageHashes checks a signed page hash table against f. Each entry must
// match the page computed from the file, and the table must have exactly the
// computed number of entries; any difference is reason.DigestMismatch. A
// table whose length is not a whole number of entries is reason.Malformed.
// It streams the file one page at a time.
func (f *File) VerifyPageHashes(ph *PageHashes) error {
	if ph == nil {
		return errors.New("pe: VerifyPageHashes: nil page hashes")
	}
	if ph.Hash != crypto.SHA1 && ph.Hash != crypto.SHA256 {
		return reason.New(reason.Unsupported, "pe: page hashes with %v are not defined", ph.Hash)
	}
	es := 4 + ph.Hash.Size()
	if len(ph.Table) == 0 || len(ph.Table)%es != 0 {
		return reason.New(reason.Malformed, "pe: page hash table of %d bytes is not a whole number of %d-byte entries", len(ph.Table), es)
	}
	tab := ph.Table
	i := 0
	err := f.walkPageHashes(ph.Hash, func(off int64, d []byte) error {
		if len(tab) == 0 {
			return reason.Wrap(reason.DigestMismatch, fmt.Errorf("pe: signed page hash table ends at entry %d, the file has more pages", i))
		}
		gotOff := binary.LittleEndian.Uint32(tab)
		if int64(gotOff) != off || !bytes.Equal(tab[4:es], d) {
			return reason.Wrap(reason.DigestMismatch, fmt.Errorf("pe: %w at entry %d (file offset 0x%x, signed offset 0x%x)", errPageMismatch, i, off, gotOff))
		}
		tab = tab[es:]
		i++
		return nil
	})
	if err != nil {
		return err
	}
	if len(tab) != 0 {
		return reason.New(reason.DigestMismatch, "pe: signed page hash table has %d entries more than the file has pages", len(tab)/es)
	}
	return nil
}
