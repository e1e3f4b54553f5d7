package kmodsig

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/vigil-attest/vigil/kmodsig/decompress"
	"github.com/vigil-attest/vigil/reason"
)

// Options bounds the decompression of compressed modules. The zero value
// uses the decompress package defaults (256 MiB of output, 64 MiB window).
type Options struct {
	// MaxDecompressedSize caps a compressed module's decompressed size;
	// exceeding it is reason.Malformed.
	MaxDecompressedSize int64
	// MaxWindow caps the xz dictionary / zstd window a stream may make the
	// decoder allocate.
	MaxWindow int64
}

func (o Options) decompress() decompress.Options {
	return decompress.Options{MaxOutput: o.MaxDecompressedSize, MaxWindow: o.MaxWindow}
}

// Reader gives random access to a module as the kernel sees it: a plain
// module is read in place; a compressed one is decompressed into memory
// (bounded by Options) when it is opened.
type Reader struct {
	ra     io.ReaderAt
	size   int64
	format decompress.Format
	closer io.Closer
}

// ReadAt implements io.ReaderAt over the (decompressed) module.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) { return r.ra.ReadAt(p, off) }

// Size is the size of the (decompressed) module.
func (r *Reader) Size() int64 { return r.size }

// Format is the compression the module was stored with (decompress.None for
// a plain module).
func (r *Reader) Format() decompress.Format { return r.format }

// Parse parses the module's signature; see Parse.
func (r *Reader) Parse() (*Module, error) { return Parse(r, r.size) }

// Close closes the underlying file, if Open opened one.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	c := r.closer
	r.closer = nil
	return c.Close()
}

// Open opens a module file with default Options. The compression is detected
// from the magic bytes, as kmod does, not from the file name: xz, zstd and
// gzip are decoded, any other content is read as a plain module.
func Open(path string) (*Reader, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with explicit bounds.
func OpenWith(path string, o Options) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kmodsig: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kmodsig: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("kmodsig: %s is not a regular file", path)
	}
	r, err := NewReader(f, st.Size(), o)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kmodsig: %s: %w", path, err)
	}
	if r.format == decompress.None {
		r.closer = f
	} else {
		f.Close()
	}
	return r, nil
}

// NewReader is Open for data already at hand: ra holds size bytes of a
// plain or compressed module. A plain module is read through ra directly;
// a compressed one is decompressed now.
func NewReader(ra io.ReaderAt, size int64, o Options) (*Reader, error) {
	if size < 0 {
		return nil, reason.New(reason.Malformed, "kmodsig: negative size %d", size)
	}
	head := make([]byte, min(size, decompress.MagicLen))
	if err := readAt(ra, head, 0); err != nil {
		return nil, fmt.Errorf("kmodsig: reading header: %w", err)
	}
	f := decompress.Detect(head)
	switch f {
	case decompress.Gzip, decompress.XZ, decompress.Zstd:
	default:
		// kmod (libkmod-file.c) knows only these three; anything else is
		// read as an uncompressed module.
		return &Reader{ra: ra, size: size, format: decompress.None}, nil
	}
	b, err := decompress.ReadAll(io.NewSectionReader(ra, 0, size), f, o.decompress())
	if err != nil {
		return nil, fmt.Errorf("kmodsig: decompressing %s module: %w", f, err)
	}
	return &Reader{ra: bytes.NewReader(b), size: int64(len(b)), format: f}, nil
}

// ParseFile opens, parses and closes a module file.
func ParseFile(path string) (*Module, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Parse()
}
