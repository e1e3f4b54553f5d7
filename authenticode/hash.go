package authenticode

import (
	"crypto"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/vigil-attest/vigil/reason"
)

// bufSize is the size of the streaming buffer used for hashing, checksums
// and copying.
const bufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// span is a byte range [off, off+n) of the file.
type span struct{ off, n int64 }

// headerSpans returns the parts of the headers [0, SizeOfHeaders) that the
// image hash covers: everything but the CheckSum field and, when present,
// the security directory entry.
func (f *File) headerSpans() []span {
	cs := f.ChecksumOffset
	if f.CertDirOffset == 0 {
		return []span{{0, cs}, {cs + 4, f.SizeOfHeaders - cs - 4}}
	}
	cd := f.CertDirOffset
	return []span{{0, cs}, {cs + 4, cd - cs - 4}, {cd + 8, f.SizeOfHeaders - cd - 8}}
}

// hashSpans returns the byte ranges of the image hash in order, and the
// number of zero bytes to append.
func (f *File) hashSpans() (spans []span, pad int64) {
	spans = f.headerSpans()
	for _, s := range f.sorted {
		spans = append(spans, span{int64(s.PointerToRawData), int64(s.SizeOfRawData)})
	}
	// Data after the last section up to the end of the file, without the
	// certificate table (Parse guarantees it starts at or after endSec).
	if f.CertTableSize > 0 {
		spans = append(spans, span{f.endSec, f.CertTableOffset - f.endSec})
		tail := f.CertTableOffset + f.CertTableSize
		spans = append(spans, span{tail, f.Size - tail})
	} else {
		spans = append(spans, span{f.endSec, f.Size - f.endSec})
		// An unsigned file is padded to a multiple of 8 when it is signed,
		// and the signed hash covers that padding.
		pad = (8 - f.Size%8) % 8
	}
	return spans, pad
}

// ImageHash computes the Authenticode image hash of f for each requested
// hash function, in one streaming pass over the file.
//
// The hash covers, as Windows computes it: the headers up to SizeOfHeaders
// except the CheckSum field and the security directory entry; the raw data
// of every section with SizeOfRawData > 0 in PointerToRawData order; and all
// data after the last section to the end of the file, except the certificate
// table. Bytes between sections are not covered (Windows does not cover them
// either). For an unsigned file whose size is not a multiple of 8 the hash
// includes the zero padding up to the next multiple of 8, so that it equals
// the hash embedded once the file is signed (osslsigncode and signtool pad it
// so).
//
// Memory is bounded: two 256 KiB buffers, so that reading the next chunk
// overlaps hashing the previous one, and the hash functions run in parallel.
func (f *File) ImageHash(hashes ...crypto.Hash) (map[crypto.Hash][]byte, error) {
	if len(hashes) == 0 {
		return nil, errors.New("pe: ImageHash: no hash function requested")
	}
	ws, ids, err := newWriters(hashes)
	if err != nil {
		return nil, err
	}
	spans, pad := f.hashSpans()
	if err := f.hashStream(spans, ws); err != nil {
		return nil, err
	}
	if pad > 0 {
		z := make([]byte, pad)
		for _, w := range ws {
			w.Write(z)
		}
	}
	return sums(ids, ws), nil
}

// hashStream feeds the spans to every hash. Chunks are read alternately into
// two buffers: while the hashes consume one chunk (each in its own
// goroutine), the next is read into the other buffer.
func (f *File) hashStream(spans []span, ws []hash.Hash) error {
	b0, b1 := bufPool.Get().(*[]byte), bufPool.Get().(*[]byte)
	defer bufPool.Put(b0)
	defer bufPool.Put(b1)
	bufs := [2][]byte{*b0, *b1}
	var wg sync.WaitGroup
	defer wg.Wait() // never return while a goroutine still reads a buffer
	k := 0
	for _, s := range spans {
		if s.n < 0 || s.off < 0 || s.off+s.n > f.Size {
			// Parse prevents this; never read out of bounds regardless.
			return reason.New(reason.Malformed, "pe: internal range [%d,+%d) outside the file", s.off, s.n)
		}
		for off, left := s.off, s.n; left > 0; {
			buf := bufs[k%2]
			k++
			n := min(left, int64(len(buf)))
			// The goroutines of chunk k-2, the last users of buf, were
			// waited for before chunk k-1 was dispatched.
			if err := readFull(f.r, buf[:n], off); err != nil {
				return err
			}
			wg.Wait() // chunk k-1 is hashed: the hashes are free
			p := buf[:n]
			wg.Add(len(ws))
			for _, w := range ws {
				go func() {
					defer wg.Done()
					w.Write(p)
				}()
			}
			off += n
			left -= n
		}
	}
	wg.Wait()
	return nil
}

// copyRange copies [off, off+n) of r to sink through the pooled buffer.
func copyRange(r io.ReaderAt, off, n int64, sink func(off int64, p []byte) error) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for left := n; left > 0; {
		c := int64(len(buf))
		if left < c {
			c = left
		}
		if err := readFull(r, buf[:c], off); err != nil {
			return err
		}
		if err := sink(off, buf[:c]); err != nil {
			return err
		}
		off += c
		left -= c
	}
	return nil
}

// Hashes computes, in one read of the file, the Authenticode image hash for
// each of image and the hash of the whole file as stored for each of file
// (what block lists match). For the usual layout, where the hashed ranges
// come in file order, every byte is read once; otherwise it falls back to
// ImageHash and a second pass.
func (f *File) Hashes(image, file []crypto.Hash) (imageSums, fileSums map[crypto.Hash][]byte, err error) {
	spans, pad := f.hashSpans()
	monotonic := true
	for i := 1; i < len(spans); i++ {
		if spans[i].off < spans[i-1].off+spans[i-1].n {
			monotonic = false
		}
	}
	if !monotonic || len(image) == 0 {
		if len(image) > 0 {
			if imageSums, err = f.ImageHash(image...); err != nil {
				return nil, nil, err
			}
		}
		fileSums, err = f.fileHashes(file)
		return imageSums, fileSums, err
	}
	iw, ids, err := newWriters(image)
	if err != nil {
		return nil, nil, err
	}
	fw, fids, err := newWriters(file)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range spans {
		if s.n < 0 || s.off < 0 || s.off+s.n > f.Size {
			return nil, nil, reason.New(reason.Malformed, "pe: internal range [%d,+%d) outside the file", s.off, s.n)
		}
	}
	b0, b1 := bufPool.Get().(*[]byte), bufPool.Get().(*[]byte)
	defer bufPool.Put(b0)
	defer bufPool.Put(b1)
	bufs := [2][]byte{*b0, *b1}
	var wg sync.WaitGroup
	defer wg.Wait()
	si := 0 // first span that may still intersect
	for k, off := 0, int64(0); off < f.Size; k++ {
		buf := bufs[k%2]
		n := min(f.Size-off, int64(len(buf)))
		if err := readFull(f.r, buf[:n], off); err != nil {
			return nil, nil, err
		}
		wg.Wait()
		chunk := buf[:n]
		// The parts of this chunk that the image hash covers, in order.
		var parts [][]byte
		for si < len(spans) && spans[si].off+spans[si].n <= off {
			si++
		}
		for j := si; j < len(spans) && spans[j].off < off+n; j++ {
			lo := max(spans[j].off, off) - off
			hi := min(spans[j].off+spans[j].n, off+n) - off
			if hi > lo {
				parts = append(parts, chunk[lo:hi])
			}
		}
		wg.Add(len(iw) + len(fw))
		for _, w := range iw {
			go func() {
				defer wg.Done()
				for _, p := range parts {
					w.Write(p)
				}
			}()
		}
		for _, w := range fw {
			go func() {
				defer wg.Done()
				w.Write(chunk)
			}()
		}
		off += n
	}
	wg.Wait()
	if pad > 0 {
		z := make([]byte, pad)
		for _, w := range iw {
			w.Write(z)
		}
	}
	return sums(ids, iw), sums(fids, fw), nil
}

func (f *File) fileHashes(hs []crypto.Hash) (map[crypto.Hash][]byte, error) {
	ws, ids, err := newWriters(hs)
	if err != nil || len(ws) == 0 {
		return map[crypto.Hash][]byte{}, err
	}
	err = copyRange(f.r, 0, f.Size, func(_ int64, p []byte) error {
		for _, w := range ws {
			w.Write(p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sums(ids, ws), nil
}

func newWriters(hs []crypto.Hash) ([]hash.Hash, []crypto.Hash, error) {
	var ws []hash.Hash
	var ids []crypto.Hash
	for _, h := range hs {
		if !h.Available() {
			return nil, nil, fmt.Errorf("pe: hash function %v not available", h)
		}
		dup := false
		for _, x := range ids {
			dup = dup || x == h
		}
		if !dup {
			ids = append(ids, h)
			ws = append(ws, h.New())
		}
	}
	return ws, ids, nil
}

func sums(ids []crypto.Hash, ws []hash.Hash) map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(ids))
	for i, h := range ids {
		out[h] = ws[i].Sum(nil)
	}
	return out
}
