package decompress

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/vigil-attest/vigil/reason"
)

// gzip header flags (RFC 1952, section 2.3.1).
const (
	gzFTEXT    = 0x01
	gzFHCRC    = 0x02
	gzFEXTRA   = 0x04
	gzFNAME    = 0x08
	gzFCOMMENT = 0x10
)

// gzipReader decodes one gzip member under the kernel's header rule
// (kernel/module/decompress.c, module_gzip_header_len: the 10 fixed bytes,
// then an FNAME up to its NUL, then raw deflate) and refuses every header
// the kernel and RFC 1952 readers would split differently (ErrHeaderField).
// After the deflate stream it requires the CRC32/ISIZE trailer
// (ErrTrailer) and, unless FirstStream, the end of the input
// (ErrConcatenated, ErrTrailingData).
type gzipReader struct {
	br    *bufio.Reader
	fl    io.ReadCloser
	crc   hash.Hash32
	size  uint32
	first bool
	done  bool
}

func gzErr(sentinel error, format string, args ...any) error {
	if sentinel == nil {
		return reason.New(reason.Malformed, "gzip: "+format, args...)
	}
	return reason.New(reason.Malformed, "gzip: %w: "+format, append([]any{sentinel}, args...)...)
}

func newGzipReader(src io.Reader, o Options) (*gzipReader, error) {
	br := bufio.NewReader(src)
	var h [10]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, gzErr(nil, "header: %w", eofUnexpected(err))
	}
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 0x08 {
		return nil, gzErr(nil, "bad magic or compression method % x", h[:3])
	}
	if fl := h[3] &^ (gzFTEXT | gzFNAME); fl != 0 {
		var names []string
		for _, f := range []struct {
			bit  byte
			name string
		}{{gzFHCRC, "FHCRC"}, {gzFEXTRA, "FEXTRA"}, {gzFCOMMENT, "FCOMMENT"}, {0xe0, "reserved"}} {
			if fl&f.bit != 0 {
				names = append(names, f.name)
			}
		}
		return nil, gzErr(ErrHeaderField, "flags %#02x set %v (module_gzip_header_len skips only FNAME)", h[3], names)
	}
	if h[3]&gzFNAME != 0 {
		// The kernel scans for the NUL over the whole input; so does this,
		// without keeping the name.
		for {
			c, err := br.ReadByte()
			if err != nil {
				return nil, gzErr(nil, "file name not terminated: %w", eofUnexpected(err))
			}
			if c == 0 {
				break
			}
		}
	}
	// bufio.Reader is an io.ByteReader, so flate reads no byte past the
	// end of the deflate stream.
	return &gzipReader{br: br, fl: flate.NewReader(br), crc: crc32.NewIEEE(), first: o.FirstStream}, nil
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (g *gzipReader) Read(p []byte) (int, error) {
	if g.done {
		return 0, io.EOF
	}
	n, err := g.fl.Read(p)
	g.crc.Write(p[:n])
	g.size += uint32(n)
	if err == nil {
		return n, nil
	}
	if err != io.EOF {
		var se *srcError
		if errors.As(err, &se) {
			return n, err
		}
		return n, gzErr(nil, "deflate: %w", eofUnexpected(err))
	}
	if err := g.finish(); err != nil {
		return n, err
	}
	g.done = true
	return n, io.EOF
}

// finish checks the trailer and what follows it.
func (g *gzipReader) finish() error {
	var t [8]byte
	if _, err := io.ReadFull(g.br, t[:]); err != nil {
		var se *srcError
		if errors.As(err, &se) {
			return err
		}
		return gzErr(ErrTrailer, "%v", eofUnexpected(err))
	}
	if got, want := binary.LittleEndian.Uint32(t[:4]), g.crc.Sum32(); got != want {
		return gzErr(ErrTrailer, "CRC32 %08x, data has %08x", got, want)
	}
	if got := binary.LittleEndian.Uint32(t[4:]); got != g.size {
		return gzErr(ErrTrailer, "ISIZE %d, data has %d (mod 2^32)", got, g.size)
	}
	if g.first {
		return nil
	}
	return checkEnd(g.br, Gzip, func(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b })
}

// checkEnd requires br to be at the end of its input. Bytes that begin a
// second stream (isNext) are ErrConcatenated; anything else is
// ErrTrailingData.
func checkEnd(br *bufio.Reader, f Format, isNext func([]byte) bool) error {
	b, err := br.Peek(8)
	if len(b) == 0 {
		if err == io.EOF {
			return nil
		}
		var se *srcError
		if errors.As(err, &se) {
			return err
		}
		return reason.New(reason.Malformed, "%s: after the stream: %w", f, err)
	}
	if isNext(b) {
		return reason.New(reason.Malformed, "%s: %w", f, ErrConcatenated)
	}
	return reason.New(reason.Malformed, "%s: %w (%s)", f, ErrTrailingData, fmt.Sprintf("% x…", b))
}

func (g *gzipReader) Close() error { return g.fl.Close() }
