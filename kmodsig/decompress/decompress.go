// Package decompress decodes, with hard resource bounds, the compression
// formats in which Linux ships kernel modules (.ko.xz, .ko.zst, .ko.gz) and
// kernel images (the bzImage payload).
//
// Every decoder treats its input as hostile: the decompressed output is
// capped (Options.MaxOutput), a dictionary or window declared by the stream
// is capped (Options.MaxWindow) instead of being allocated as declared, and
// every format error is reported as a *reason.Error with code
// reason.Malformed (or reason.Unsupported for a valid construct this package
// does not decode, such as an unknown xz filter or an lz4 kernel).
//
// The xz decoder is a container parser written for this package on top of
// the LZMA2 decoder of github.com/ulikunitz/xz/lzma; it adds the x86 BCJ
// filter that kernel images use (scripts/xz_wrap.sh: xz --x86 --lzma2) and
// verifies block checks (CRC32, CRC64, SHA-256) and the index.
package decompress

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/vigil-attest/vigil/reason"
)

// Format is a compression format, identified by its magic bytes.
type Format uint8

// The formats Detect recognises. Only None, Gzip, XZ and Zstd are decoded;
// the others are recognised so that callers can report them as unsupported.
const (
	None  Format = iota // no known compression magic
	Gzip                // 1f 8b 08
	XZ                  // fd 37 7a 58 5a 00
	Zstd                // 28 b5 2f fd
	Bzip2               // "BZh"
	LZMA                // 5d 00 00 (legacy .lzma, as the kernel uses it)
	LZO                 // 89 "LZO"
	LZ4                 // 02 21 4c 18 (legacy) or 04 22 4d 18 (frame)
)

var formatNames = [...]string{"none", "gzip", "xz", "zstd", "bzip2", "lzma", "lzo", "lz4"}

func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// Decodable reports whether this package can decode f (None included, as
// the identity).
func (f Format) Decodable() bool { return f == None || f == Gzip || f == XZ || f == Zstd }

var magics = []struct {
	f Format
	m []byte
}{
	{XZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{Gzip, []byte{0x1f, 0x8b, 0x08}},
	{Bzip2, []byte{'B', 'Z', 'h'}},
	{LZMA, []byte{0x5d, 0x00, 0x00}},
	{LZO, []byte{0x89, 'L', 'Z', 'O'}},
	{LZ4, []byte{0x02, 0x21, 0x4c, 0x18}},
	{LZ4, []byte{0x04, 0x22, 0x4d, 0x18}},
}

// MagicLen is the number of leading bytes Detect needs to recognise every
// format.
const MagicLen = 6

// Detect returns the format whose magic bytes begin head, or None.
func Detect(head []byte) Format {
	for _, m := range magics {
		if bytes.HasPrefix(head, m.m) {
			return m.f
		}
	}
	return None
}

// Default limits.
const (
	DefaultMaxOutput = 256 << 20 // 256 MiB of decompressed output
	DefaultMaxWindow = 64 << 20  // 64 MiB dictionary / window (xz -9, zstd -19 stay below)
)

// Options bounds a decoder. The zero value is usable.
type Options struct {
	// MaxOutput caps the decompressed size. Exceeding it is an error with
	// code reason.Malformed. Zero means DefaultMaxOutput.
	MaxOutput int64
	// MaxWindow caps the memory a stream may make the decoder allocate for
	// its dictionary (xz) or window (zstd). An xz dictionary larger than
	// the cap is clamped (decoding fails only if the data really refers
	// further back); a zstd frame declaring a larger window is rejected.
	// Zero means DefaultMaxWindow.
	MaxWindow int64
	// FirstStream stops after the first complete stream (xz), member
	// (gzip) or frame (zstd) and ignores whatever follows. Kernel image
	// payloads need it: the build appends the decompressed size. Without
	// it the whole input must be well-formed compressed data.
	FirstStream bool
}

func (o Options) maxOutput() int64 {
	if o.MaxOutput <= 0 {
		return DefaultMaxOutput
	}
	return o.MaxOutput
}

func (o Options) maxWindow() int64 {
	if o.MaxWindow <= 0 {
		return DefaultMaxWindow
	}
	return o.MaxWindow
}

// ErrTooLarge is wrapped by the error returned when the decompressed output
// exceeds Options.MaxOutput.
var ErrTooLarge = errors.New("decompressed output exceeds the limit")

// NewReader returns a reader of the decompressed bytes of src, which holds
// data in format f. For None it returns src itself, still bounded by
// MaxOutput. Read errors carry reason codes (see the package comment); an
// error returned by src itself is passed through untagged. Close releases the
// decoder; it does not close src.
func NewReader(src io.Reader, f Format, o Options) (io.ReadCloser, error) {
	in := &srcReader{r: src}
	var dec io.Reader
	var closer func()
	switch f {
	case None:
		dec = in
	case Gzip:
		z, err := newGzipReader(in, o)
		if err != nil {
			return nil, tag(f, err)
		}
		dec = z
	case XZ:
		x, err := newXZReader(in, o)
		if err != nil {
			return nil, tag(f, err)
		}
		dec = x
	case Zstd:
		// The frame reader always runs: it stops the decoder after the
		// first frame (FirstStream) or applies the kernel's module rules
		// (otherwise).
		fr := newZstdFrameReader(&nonEmptyReader{r: in}, !o.FirstStream)
		// The window a frame declares is allocated as declared, so it is
		// capped by MaxWindow. MaxMemory only bounds the window in
		// streaming mode (the output is bounded by limitReader); it must
		// not be below the window or small outputs with a larger declared
		// window would be refused.
		win := max(o.maxWindow(), zstd.MinWindowSize)
		z, err := zstd.NewReader(fr,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(uint64(win)),
			zstd.WithDecoderMaxMemory(uint64(max(win, o.maxOutput()))))
		if err != nil {
			return nil, tag(f, err)
		}
		dec, closer = &zstdReader{d: z, fr: fr}, z.Close
	default:
		return nil, reason.New(reason.Unsupported, "decompress: %s is not supported", f)
	}
	return &limitReader{r: dec, f: f, left: o.maxOutput(), limit: o.maxOutput(), close: closer}, nil
}

// ReadAll decompresses all of src into memory, bounded by o.MaxOutput. The
// buffer grows with the data actually produced, never with a size declared
// by the stream.
func ReadAll(src io.Reader, f Format, o Options) ([]byte, error) {
	r, err := NewReader(src, f, o)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// Grow by doubling, but never past the cap (+1), so the peak
	// allocation stays under one and a half times the cap.
	limit := o.maxOutput() + 1
	buf := make([]byte, 0, min(limit, 64<<10))
	zero := 0
	for {
		if len(buf) == cap(buf) {
			// limitReader delivers at most the cap, so cap(buf) < limit.
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			if zero++; zero > 100 {
				return nil, io.ErrNoProgress
			}
		}
	}
}

// zstdReader reports the frame reader's refusal in place of whatever the
// decoder made of it.
type zstdReader struct {
	d  *zstd.Decoder
	fr *zstdFrameReader
}

func (z *zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if err != nil && z.fr.err != nil {
		return n, z.fr.err
	}
	if err == io.EOF && z.fr.state != zfDone {
		return n, reason.New(reason.Malformed, "zstd: decoder ended inside the frame")
	}
	return n, err
}

// limitReader enforces MaxOutput and tags decoder errors.
type limitReader struct {
	r     io.Reader
	f     Format
	left  int64
	limit int64
	close func()
	err   error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Ask for one byte more than allowed, so that output of exactly the
	// limit succeeds and anything beyond is detected.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if n < 0 || n > len(p) {
		n, err = 0, io.ErrNoProgress
	}
	if int64(n) > l.left {
		l.err = reason.New(reason.Malformed, "decompress: %s: %w (%d bytes)", l.f, ErrTooLarge, l.limit)
		return 0, l.err
	}
	l.left -= int64(n)
	if err != nil {
		if err != io.EOF {
			err = tag(l.f, err)
		}
		l.err = err
	}
	return n, err
}

func (l *limitReader) Close() error {
	if l.close != nil {
		l.close()
		l.close = nil
	}
	if l.err == nil {
		l.err = errors.New("decompress: reader closed")
	}
	return nil
}

// srcError marks an error returned by the caller's source, so that it is not
// mistaken for a format error.
type srcError struct{ err error }

func (e *srcError) Error() string { return e.err.Error() }
func (e *srcError) Unwrap() error { return e.err }

type srcReader struct{ r io.Reader }

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		err = &srcError{err}
	}
	return n, err
}

// tag gives err a reason code: errors that already carry one keep it, source
// I/O errors stay untagged, and everything else is a format error.
func tag(f Format, err error) error {
	if err == nil {
		return nil
	}
	var re *reason.Error
	if errors.As(err, &re) {
		return err
	}
	var se *srcError
	if errors.As(err, &se) {
		return fmt.Errorf("decompress: %s: reading input: %w", f, se.err)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return reason.New(reason.Malformed, "decompress: %s: %w", f, err)
}
