package decompress

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz/lzma"

	"github.com/vigil-attest/vigil/reason"
)

// The .xz container (https://tukaani.org/xz/xz-file-format.txt), decoded
// here so that the x86 BCJ filter of kernel images is supported and every
// size the stream declares is checked rather than trusted.

var (
	xzHeaderMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	xzFooterMagic = []byte{'Y', 'Z'}
)

const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
	xzMinDict     = 4096 // lzma.MinDictCap
	xzMaxVarint   = 9
)

// countReader is a buffered reader that counts consumed bytes; the LZMA2
// decoder reads its input one byte at a time through it.
type countReader struct {
	r   io.Reader
	buf [32 << 10]byte
	i   int
	n   int
	pos int64 // bytes consumed
	err error
}

func (c *countReader) fill() error {
	if c.i < c.n {
		return nil
	}
	if c.err != nil {
		return c.err
	}
	c.i, c.n = 0, 0
	for tries := 0; c.n == 0; tries++ {
		if tries == 100 {
			c.err = io.ErrNoProgress
			return c.err
		}
		k, err := c.r.Read(c.buf[:])
		if k < 0 || k > len(c.buf) {
			k, err = 0, io.ErrNoProgress
		}
		c.n = k
		if err != nil {
			c.err = err
			if k == 0 {
				return err
			}
			return nil
		}
	}
	return nil
}

func (c *countReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.fill(); err != nil {
		return 0, err
	}
	k := copy(p, c.buf[c.i:c.n])
	c.i += k
	c.pos += int64(k)
	return k, nil
}

func (c *countReader) ReadByte() (byte, error) {
	if err := c.fill(); err != nil {
		return 0, err
	}
	b := c.buf[c.i]
	c.i++
	c.pos++
	return b, nil
}

// peek returns the next byte without consuming it; io.EOF at a clean end.
func (c *countReader) peek() (byte, error) {
	if err := c.fill(); err != nil {
		return 0, err
	}
	return c.buf[c.i], nil
}

// full reads exactly len(p) bytes; a short input is io.ErrUnexpectedEOF.
func (c *countReader) full(p []byte) error {
	_, err := io.ReadFull(c, p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

type xzState int

const (
	xzStreamStart xzState = iota
	xzBlockOrIndex
	xzInBlock
	xzAfterStream
	xzDone
)

type xzReader struct {
	in          *countReader
	o           Options
	state       xzState
	err         error
	streamFlags [2]byte
	checkSize   int
	check       hash.Hash
	checkType   byte

	// current block
	blk          io.Reader
	lz           *lzma.Reader2
	blkHdrSize   int64
	blkDataStart int64
	blkComp      int64 // declared compressed size, -1 if absent
	blkUncomp    int64 // declared uncompressed size, -1 if absent
	blkOut       int64

	// index accumulation for the current stream
	nrec      uint64
	recHash   hash.Hash
	totalOut  int64
	dictAlloc int64 // cumulative dictionary bytes allocated (bounded)
}

func newXZReader(src io.Reader, o Options) (*xzReader, error) {
	x := &xzReader{in: &countReader{r: src}, o: o}
	if err := x.readStreamHeader(); err != nil {
		return nil, err
	}
	return x, nil
}

func xzErr(format string, args ...any) error {
	return reason.New(reason.Malformed, "xz: "+format, args...)
}

func xzUnsupported(format string, args ...any) error {
	return reason.New(reason.Unsupported, "xz: "+format, args...)
}

func (x *xzReader) readStreamHeader() error {
	var h [12]byte
	if err := x.in.full(h[:]); err != nil {
		return xzErr("stream header: %w", err)
	}
	if !bytes.Equal(h[:6], xzHeaderMagic) {
		return xzErr("bad stream header magic")
	}
	if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:12]) {
		return xzErr("stream header CRC32 mismatch")
	}
	if h[6] != 0 || h[7]&0xf0 != 0 {
		return xzUnsupported("reserved stream flags set (%02x %02x)", h[6], h[7])
	}
	x.streamFlags = [2]byte{h[6], h[7]}
	x.checkType = h[7] & 0x0f
	switch x.checkType {
	case 0x00:
		x.check, x.checkSize = nil, 0
	case 0x01:
		x.check, x.checkSize = crc32.NewIEEE(), 4
	default:
		// CRC64 (0x04), SHA-256 (0x0a) and the rest: lib/xz in the kernel
		// has neither XZ_USE_CRC64 nor XZ_DEC_ANY_CHECK, so
		// dec_stream_header returns XZ_OPTIONS_ERROR.
		return xzErr("%w: check type %#x", ErrCheckType, x.checkType)
	}
	x.nrec = 0
	x.recHash = sha256.New()
	x.state = xzBlockOrIndex
	return nil
}

// varint decodes an xz multibyte integer from b, returning the value and the
// number of bytes used, or n == 0 when it is invalid or truncated.
func varint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < xzMaxVarint; i++ {
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0 // non-minimal encoding
			}
			return v, i + 1
		}
	}
	return 0, 0
}

func (x *xzReader) readVarint(crc hash.Hash) (uint64, error) {
	var v uint64
	for i := 0; i < xzMaxVarint; i++ {
		c, err := x.in.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		crc.Write([]byte{c})
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, errors.New("non-minimal integer encoding")
			}
			return v, nil
		}
	}
	return 0, errors.New("integer longer than 9 bytes")
}

func lzma2Dict(p byte) (int64, error) {
	if p > 40 {
		return 0, fmt.Errorf("LZMA2 dictionary property %d > 40", p)
	}
	if p == 40 {
		return 0xffffffff, nil
	}
	return int64(2|p&1) << (p/2 + 11), nil
}

// startBlock parses a block header whose first byte (the size) is b0.
func (x *xzReader) startBlock(b0 byte) error {
	size := (int(b0) + 1) * 4
	hdr := make([]byte, size)
	hdr[0] = b0
	if _, err := x.in.ReadByte(); err != nil { // consume b0
		return xzErr("block header: %w", err)
	}
	if err := x.in.full(hdr[1:]); err != nil {
		return xzErr("block header: %w", err)
	}
	body, sum := hdr[:size-4], binary.LittleEndian.Uint32(hdr[size-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return xzErr("block header CRC32 mismatch")
	}
	flags := body[1]
	if flags&0x3c != 0 {
		return xzUnsupported("reserved block flags set (%02x)", flags)
	}
	p := body[2:]
	x.blkComp, x.blkUncomp = -1, -1
	if flags&0x40 != 0 {
		v, n := varint(p)
		if n == 0 || v == 0 || v > 1<<62 {
			return xzErr("block header: bad compressed size")
		}
		x.blkComp, p = int64(v), p[n:]
	}
	if flags&0x80 != 0 {
		v, n := varint(p)
		if n == 0 || v > 1<<62 {
			return xzErr("block header: bad uncompressed size")
		}
		x.blkUncomp, p = int64(v), p[n:]
	}
	nfilters := int(flags&3) + 1
	if nfilters > 2 {
		// dec_block_header: "We support only one or two filters".
		return xzErr("%w: %d filters, lib/xz decodes at most one BCJ filter and LZMA2", ErrFilterChain, nfilters)
	}
	var dict int64
	var x86Starts []uint32
	for i := 0; i < nfilters; i++ {
		id, n := varint(p)
		if n == 0 {
			return xzErr("block header: bad filter id")
		}
		p = p[n:]
		psize, n := varint(p)
		if n == 0 || psize > uint64(len(p)-n) {
			return xzErr("block header: bad filter properties size")
		}
		props := p[n : n+int(psize)]
		p = p[n+int(psize):]
		last := i == nfilters-1
		switch {
		case id == xzFilterLZMA2 && last:
			if len(props) != 1 {
				return xzErr("LZMA2 filter needs 1 property byte, has %d", len(props))
			}
			d, err := lzma2Dict(props[0])
			if err != nil {
				return xzErr("%w", err)
			}
			dict = d
		case id == xzFilterX86 && !last:
			if len(props) != 0 {
				// dec_block_header: "We don't support custom start
				// offset, so Size of Properties must be zero."
				return xzErr("%w: x86 BCJ filter with %d bytes of properties (a start offset)", ErrFilterChain, len(props))
			}
			x86Starts = append(x86Starts, 0)
		case id == xzFilterLZMA2 || id == xzFilterX86:
			return xzErr("filter %#x in an invalid position of the chain", id)
		default:
			return xzUnsupported("filter %#x is not supported (only LZMA2 and x86 BCJ)", id)
		}
	}
	for _, c := range p {
		if c != 0 {
			return xzErr("block header: non-zero padding")
		}
	}

	// Each block restarts the dictionary, so a block never needs more than
	// its own output; clamp what the header asks for accordingly.
	remaining := x.o.maxOutput() - x.totalOut
	dc := min(dict, x.o.maxWindow(), remaining+1)
	if x.blkUncomp >= 0 {
		dc = min(dc, x.blkUncomp)
	}
	dc = max(dc, xzMinDict)
	x.dictAlloc += dc
	if x.dictAlloc > x.o.maxOutput()+x.o.maxWindow() {
		return xzErr("dictionary allocations exceed %d bytes (too many blocks)", x.o.maxOutput()+x.o.maxWindow())
	}
	x.blkHdrSize = int64(size)
	x.blkDataStart = x.in.pos
	var lzIn io.Reader = x.in
	if x.blkComp >= 0 {
		lzIn = &io.LimitedReader{R: x.in, N: x.blkComp}
	}
	lz, err := lzma.Reader2Config{DictCap: int(dc)}.NewReader2(lzIn)
	if err != nil {
		return xzErr("LZMA2: %w", err)
	}
	x.lz = lz
	var r io.Reader = lz
	for i := len(x86Starts) - 1; i >= 0; i-- {
		r = newBCJX86Reader(r, x86Starts[i])
	}
	x.blk = r
	x.blkOut = 0
	if x.check != nil {
		x.check.Reset()
	}
	x.state = xzInBlock
	return nil
}

// endBlock checks the block's sizes, padding and check field.
func (x *xzReader) endBlock() error {
	if !x.lz.EOS() {
		return xzErr("LZMA2 data not terminated by an end marker")
	}
	comp := x.in.pos - x.blkDataStart
	if x.blkComp >= 0 && comp != x.blkComp {
		return xzErr("block compressed size %d, header says %d", comp, x.blkComp)
	}
	if x.blkUncomp >= 0 && x.blkOut != x.blkUncomp {
		return xzErr("block uncompressed size %d, header says %d", x.blkOut, x.blkUncomp)
	}
	var pad [3]byte
	np := int((4 - comp%4) % 4)
	if err := x.in.full(pad[:np]); err != nil {
		return xzErr("block padding: %w", err)
	}
	for _, c := range pad[:np] {
		if c != 0 {
			return xzErr("non-zero block padding")
		}
	}
	if x.checkSize > 0 {
		got := make([]byte, x.checkSize)
		if err := x.in.full(got); err != nil {
			return xzErr("block check: %w", err)
		}
		want := x.check.Sum(nil)
		if x.checkType == 0x01 {
			// CRC32 is stored little endian; hash.Hash sums are big endian.
			for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
				want[i], want[j] = want[j], want[i]
			}
		}
		if !bytes.Equal(got, want) {
			return xzErr("block check (%d-byte) mismatch: data corrupt", x.checkSize)
		}
	}
	unpadded := x.blkHdrSize + comp + int64(x.checkSize)
	x.addRecord(x.recHash, uint64(unpadded), uint64(x.blkOut))
	x.nrec++
	x.blk, x.lz = nil, nil
	x.state = xzBlockOrIndex
	return nil
}

func (x *xzReader) addRecord(h hash.Hash, unpadded, uncomp uint64) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], unpadded)
	binary.LittleEndian.PutUint64(b[8:], uncomp)
	h.Write(b[:])
}

// readIndexAndFooter parses the index (its indicator byte not yet consumed)
// and the stream footer, and compares them with the blocks decoded.
func (x *xzReader) readIndexAndFooter() error {
	start := x.in.pos
	crc := crc32.NewIEEE()
	ind, err := x.in.ReadByte()
	if err != nil || ind != 0 {
		return xzErr("index indicator")
	}
	crc.Write([]byte{0})
	n, err := x.readVarint(crc)
	if err != nil {
		return xzErr("index: %w", err)
	}
	if n != x.nrec {
		return xzErr("index lists %d blocks, stream has %d", n, x.nrec)
	}
	h := sha256.New()
	for i := uint64(0); i < n; i++ {
		u, err := x.readVarint(crc)
		if err != nil {
			return xzErr("index: %w", err)
		}
		c, err := x.readVarint(crc)
		if err != nil {
			return xzErr("index: %w", err)
		}
		x.addRecord(h, u, c)
	}
	if !bytes.Equal(h.Sum(nil), x.recHash.Sum(nil)) {
		return xzErr("index does not match the blocks")
	}
	for (x.in.pos-start)%4 != 0 {
		c, err := x.in.ReadByte()
		if err != nil {
			return xzErr("index padding: %w", io.ErrUnexpectedEOF)
		}
		if c != 0 {
			return xzErr("non-zero index padding")
		}
		crc.Write([]byte{c})
	}
	var sum [4]byte
	if err := x.in.full(sum[:]); err != nil {
		return xzErr("index CRC32: %w", err)
	}
	if binary.LittleEndian.Uint32(sum[:]) != crc.Sum32() {
		return xzErr("index CRC32 mismatch")
	}
	indexSize := x.in.pos - start

	var f [12]byte
	if err := x.in.full(f[:]); err != nil {
		return xzErr("stream footer: %w", err)
	}
	if !bytes.Equal(f[10:12], xzFooterMagic) {
		return xzErr("bad stream footer magic")
	}
	if crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[0:4]) {
		return xzErr("stream footer CRC32 mismatch")
	}
	if back := (int64(binary.LittleEndian.Uint32(f[4:8])) + 1) * 4; back != indexSize {
		return xzErr("stream footer backward size %d, index is %d bytes", back, indexSize)
	}
	if f[8] != x.streamFlags[0] || f[9] != x.streamFlags[1] {
		return xzErr("stream footer flags differ from the header")
	}
	return nil
}

// afterStream ends the decoding after the first stream. The kernel's
// xz_dec_run returns XZ_STREAM_END at the first stream footer and
// module_xz_decompress stops there: stream padding, a second stream or any
// other byte after it is never read by the kernel. With FirstStream they are
// ignored, as the kernel does; otherwise (modules) they are refused, since
// the xz format (and xz(1), and Go readers) would read a second stream as
// more module: ErrConcatenated or ErrTrailingData.
func (x *xzReader) afterStream() error {
	x.state = xzDone
	if x.o.FirstStream {
		return nil
	}
	if _, err := x.in.peek(); err == io.EOF {
		return nil
	} else if err != nil {
		return err
	}
	var b [6]byte
	n, _ := io.ReadFull(x.in, b[:])
	if bytes.Equal(b[:n], xzHeaderMagic) {
		return xzErr("%w", ErrConcatenated)
	}
	return xzErr("%w (% x…)", ErrTrailingData, b[:n])
}

func (x *xzReader) Read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	n, err := x.read(p)
	if err != nil {
		x.err = err
	}
	return n, err
}

func (x *xzReader) read(p []byte) (int, error) {
	for {
		switch x.state {
		case xzInBlock:
			if len(p) == 0 {
				return 0, nil
			}
			n, err := x.blk.Read(p)
			if n < 0 || n > len(p) {
				return 0, xzErr("decoder misbehaved")
			}
			if n > 0 {
				if x.check != nil {
					x.check.Write(p[:n])
				}
				x.blkOut += int64(n)
				x.totalOut += int64(n)
				if x.blkUncomp >= 0 && x.blkOut > x.blkUncomp {
					return 0, xzErr("block exceeds its declared uncompressed size %d", x.blkUncomp)
				}
			}
			if err == io.EOF {
				if err := x.endBlock(); err != nil {
					return n, err
				}
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				return n, err
			}
			if n > 0 {
				return n, nil
			}
		case xzBlockOrIndex:
			b, err := x.in.peek()
			if err != nil {
				return 0, xzErr("expected a block or the index: %w", io.ErrUnexpectedEOF)
			}
			if b == 0 {
				if err := x.readIndexAndFooter(); err != nil {
					return 0, err
				}
				x.state = xzAfterStream
				continue
			}
			if err := x.startBlock(b); err != nil {
				return 0, err
			}
		case xzAfterStream:
			if err := x.afterStream(); err != nil {
				return 0, err
			}
		case xzDone:
			return 0, io.EOF
		default:
			return 0, xzErr("bad state")
		}
	}
}
