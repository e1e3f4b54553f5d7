package decompress

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"

	"github.com/vigil-attest/vigil/reason"
)

// zstdFrameReader passes through the bytes of the first zstd frame (and any
// skippable frames before it) and then reports io.EOF, so that the decoder
// does not see what follows the frame (a kernel payload ends with its
// decompressed size). It reads the frame and block headers as they go by
// (RFC 8878, section 3.1.1); it allocates nothing from their contents.
//
// With strict set (modules) it also applies the kernel's reading: a
// skippable frame (ErrSkippableFrame), a dictionary ID (ErrDictionary) and
// anything after the first frame (ErrConcatenated, ErrTrailingData) are
// refused, and the refusal is kept in err, since the zstd decoder may
// replace an error from its source with its own.
type zstdFrameReader struct {
	r       *bufio.Reader
	strict  bool
	err     error
	pending int64 // bytes of the current element still to pass through
	state   int
	csum    bool
}

const (
	zfMagic = iota
	zfBlock
	zfChecksum
	zfDone
)

func newZstdFrameReader(r io.Reader, strict bool) *zstdFrameReader {
	return &zstdFrameReader{r: bufio.NewReaderSize(r, 16), strict: strict}
}

// errZstdTruncated is deliberately not io.ErrUnexpectedEOF, which the zstd
// decoder takes for a clean end between frames.
var errZstdTruncated = errors.New("zstd: truncated frame")

func (z *zstdFrameReader) peek(n int) ([]byte, error) {
	b, err := z.r.Peek(n)
	if len(b) < n {
		if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
			err = errZstdTruncated
		}
		return nil, err
	}
	return b, nil
}

// next decides how many bytes the next element spans.
func (z *zstdFrameReader) next() error {
	switch z.state {
	case zfMagic:
		b, err := z.peek(4)
		if err != nil {
			return err
		}
		m := binary.LittleEndian.Uint32(b)
		if m&0xfffffff0 == 0x184d2a50 { // skippable frame
			if z.strict {
				return reason.New(reason.Malformed, "zstd: %w", ErrSkippableFrame)
			}
			b, err := z.peek(8)
			if err != nil {
				return err
			}
			z.pending = 8 + int64(binary.LittleEndian.Uint32(b[4:]))
			return nil
		}
		if m != 0xfd2fb528 {
			return errors.New("zstd: bad frame magic")
		}
		b, err = z.peek(5)
		if err != nil {
			return err
		}
		fhd := b[4]
		single := fhd&0x20 != 0
		z.csum = fhd&0x04 != 0
		if fhd&0x08 != 0 {
			return errors.New("zstd: reserved frame header bit set")
		}
		n := int64(5)
		if !single {
			n++ // window descriptor
		}
		if z.strict && fhd&3 != 0 {
			// A zero-valued dictionary ID field also means "none"
			// (RFC 8878, 3.1.1.1.3) but no encoder writes one: refuse
			// the field rather than read it.
			return reason.New(reason.Malformed, "zstd: %w (dictionary ID field of %d bytes)", ErrDictionary, [4]int{0, 1, 2, 4}[fhd&3])
		}
		n += [4]int64{0, 1, 2, 4}[fhd&3] // dictionary id
		switch fhd >> 6 {
		case 0:
			if single {
				n++
			}
		case 1:
			n += 2
		case 2:
			n += 4
		case 3:
			n += 8
		}
		z.pending = n
		z.state = zfBlock
	case zfBlock:
		b, err := z.peek(3)
		if err != nil {
			return err
		}
		h := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		size := int64(h >> 3)
		switch (h >> 1) & 3 {
		case 1: // RLE block: one byte of content
			size = 1
		case 3:
			return errors.New("zstd: reserved block type")
		}
		z.pending = 3 + size
		if h&1 != 0 { // last block
			z.state = zfChecksum
			if !z.csum {
				z.state = zfDone
			}
		}
	case zfChecksum:
		z.pending = 4
		z.state = zfDone
	}
	return nil
}

func (z *zstdFrameReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if z.err != nil {
		return 0, z.err
	}
	for z.pending == 0 {
		if z.state == zfDone {
			if z.strict {
				if err := checkEnd(z.r, Zstd, isZstdFrame); err != nil {
					z.err = err
					return 0, err
				}
			}
			return 0, io.EOF
		}
		if err := z.next(); err != nil {
			z.err = err
			return 0, err
		}
	}
	if int64(len(p)) > z.pending {
		p = p[:z.pending]
	}
	n, err := z.r.Read(p)
	z.pending -= int64(n)
	if err == io.EOF && z.pending > 0 {
		err = errZstdTruncated
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// nonEmptyReader reports an input that ends before its first byte as an
// error: the zstd decoder accepts zero frames as empty output.
type nonEmptyReader struct {
	r    io.Reader
	seen bool
}

func (n *nonEmptyReader) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if k > 0 {
		n.seen = true
	}
	if err == io.EOF && !n.seen {
		err = errors.New("zstd: empty input")
	}
	return k, err
}

// isZstdFrame reports whether b begins with a zstd or skippable frame magic.
func isZstdFrame(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	m := binary.LittleEndian.Uint32(b)
	return m == 0xfd2fb528 || m&0xfffffff0 == 0x184d2a50
}
