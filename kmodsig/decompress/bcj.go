package decompress

import "io"

// bcjX86Reader undoes the x86 BCJ filter (xz --x86): the encoder turned the
// relative targets of E8 (CALL) and E9 (JMP) instructions into absolute ones
// to make them more compressible. The algorithm is Igor Pavlov's, as in
// liblzma's simple/x86.c and the kernel's lib/xz/xz_dec_bcj.c; the result
// must not depend on how the input is split into reads, so the filter state
// (position, prevMask, prevPos) carries over and up to four trailing bytes
// wait for more data.
type bcjX86Reader struct {
	r        io.Reader
	buf      []byte
	start    int // buf[start:filtered] is ready to return
	filtered int // buf[filtered:end] waits to be filtered
	end      int
	pos      uint32 // stream position of buf[filtered]
	prevMask uint32
	prevPos  uint32
	err      error // sticky error from r (io.EOF at the end)
}

func newBCJX86Reader(r io.Reader, startOffset uint32) *bcjX86Reader {
	return &bcjX86Reader{r: r, buf: make([]byte, 64<<10), pos: startOffset, prevPos: ^uint32(0) - 4}
}

func (b *bcjX86Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for tries := 0; ; tries++ {
		if b.start < b.filtered {
			n := copy(p, b.buf[b.start:b.filtered])
			b.start += n
			return n, nil
		}
		if b.err != nil {
			if b.err == io.EOF && b.filtered < b.end {
				// At the end, the last (at most four) bytes pass unchanged.
				b.filtered = b.end
				continue
			}
			return 0, b.err
		}
		if tries > 100 {
			return 0, io.ErrNoProgress
		}
		copy(b.buf, b.buf[b.filtered:b.end])
		b.end -= b.filtered
		b.start, b.filtered = 0, 0
		n, err := b.r.Read(b.buf[b.end:])
		if n < 0 || n > len(b.buf)-b.end {
			n, err = 0, io.ErrNoProgress
		}
		b.end += n
		if err != nil {
			b.err = err
			if err != io.EOF {
				return 0, err
			}
		}
		k := b.code(b.buf[:b.end])
		b.filtered = k
		b.pos += uint32(k)
	}
}

func test86MSByte(c byte) bool { return c == 0 || c == 0xff }

var (
	maskToAllowed   = [8]bool{true, true, true, false, true, false, false, false}
	maskToBitNumber = [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
)

// code decodes buf in place and returns how many bytes are final.
func (b *bcjX86Reader) code(buf []byte) int {
	if len(buf) < 5 {
		return 0
	}
	nowPos := b.pos
	prevMask, prevPos := b.prevMask, b.prevPos
	if nowPos-prevPos > 5 {
		prevPos = nowPos - 5
	}
	limit := len(buf) - 5
	i := 0
	for i <= limit {
		c := buf[i]
		if c != 0xe8 && c != 0xe9 {
			i++
			continue
		}
		offset := nowPos + uint32(i) - prevPos
		prevPos = nowPos + uint32(i)
		if offset > 5 {
			prevMask = 0
		} else {
			for j := uint32(0); j < offset; j++ {
				prevMask &= 0x77
				prevMask <<= 1
			}
		}
		c = buf[i+4]
		if test86MSByte(c) && maskToAllowed[(prevMask>>1)&7] && prevMask>>1 < 0x10 {
			src := uint32(c)<<24 | uint32(buf[i+3])<<16 | uint32(buf[i+2])<<8 | uint32(buf[i+1])
			var dest uint32
			// The loop ends within two rounds: the byte it tests starts as
			// a non-0x00/0xFF byte of src (prevMask guarantees it) and the
			// XOR complements it. The bound only guards against a mistake.
			for round := 0; round < 8; round++ {
				dest = src - (nowPos + uint32(i) + 5)
				if prevMask == 0 {
					break
				}
				bit := maskToBitNumber[(prevMask>>1)&7]
				c = byte(dest >> (24 - bit*8))
				if !test86MSByte(c) {
					break
				}
				src = dest ^ (1<<(32-bit*8) - 1)
			}
			buf[i+4] = ^byte((dest>>24)&1 - 1)
			buf[i+3] = byte(dest >> 16)
			buf[i+2] = byte(dest >> 8)
			buf[i+1] = byte(dest)
			i += 5
			prevMask = 0
		} else {
			i++
			prevMask |= 1
			if test86MSByte(c) {
				prevMask |= 0x10
			}
		}
	}
	b.prevMask, b.prevPos = prevMask, prevPos
	return i
}
