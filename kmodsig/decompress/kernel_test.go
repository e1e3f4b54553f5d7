package decompress

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/reason"
)

// gzipNamed is a gzip member with an FNAME field, which the kernel skips
// (module_gzip_header_len) as Go's reader does.
func gzipNamed(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Name = "e1000.ko"
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// gzipRaw builds a gzip member by hand: header flags fl, the optional
// fields in between, raw deflate of data and the trailer.
func gzipRaw(fl byte, fields, data []byte) []byte {
	var d bytes.Buffer
	w, _ := flate.NewWriter(&d, 6)
	w.Write(data)
	w.Close()
	out := []byte{0x1f, 0x8b, 8, fl, 0, 0, 0, 0, 0, 3}
	out = append(out, fields...)
	out = append(out, d.Bytes()...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(data))
	return binary.LittleEndian.AppendUint32(out, uint32(len(data)))
}

// gzipPolyglot is the attack: a gzip file that Go's gzip reader
// decodes as good and the kernel as evil. The kernel does not skip FEXTRA,
// so it inflates from byte 10: the XLEN field 0x01 opens a final stored
// block whose length and payload lie inside the extra field, which Go skips.
func gzipPolyglot(good, evil []byte) []byte {
	n := len(evil) // < 256: LEN's low byte is XLEN's high byte
	xlen := 1 + 256*n
	extra := make([]byte, xlen)
	extra[0] = 0                        // LEN high byte
	extra[1], extra[2] = byte(^n), 0xff // NLEN
	copy(extra[3:], evil)               // the stored block
	fields := append([]byte{byte(xlen), byte(xlen >> 8)}, extra...)
	return gzipRaw(0x04, fields, good)
}

func kernelRefuses(t *testing.T, name string, f Format, in []byte, want error) {
	t.Helper()
	_, err := ReadAll(bytes.NewReader(in), f, Options{})
	if err == nil {
		t.Errorf("%s: accepted", name)
		return
	}
	if reason.Of(err, "") != reason.Malformed || !errors.Is(err, want) {
		t.Errorf("%s: %v, want malformed wrapping %q", name, err, want)
	}
}

// TestKernelRules feeds inputs that the kernel's decompressor and Go's
// decoders read differently, or that only one of them accepts, and asserts
// that each is malformed with its sentinel.
func TestKernelRules(t *testing.T) {
	data := sample(t)[:200000]
	small := []byte("second stream: another module\n")
	gz := testcmd.RunStdin(t, data, "gzip", "-c", "-9")
	xzA := testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "--lzma2=dict=1MiB")
	xzB := testcmd.RunStdin(t, small, "xz", "-c", "--check=crc32")
	zs := testcmd.RunStdin(t, data, "zstd", "-q", "-c")
	zsB := testcmd.RunStdin(t, small, "zstd", "-q", "-c")
	skippable := append(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x184d2a50), 4), 1, 2, 3, 4)

	// The polyglot really is read two ways: Go's gzip reader yields data,
	// the kernel's rule yields the evil bytes.
	evil := []byte("\x7fELF evil module")
	poly := gzipPolyglot(data, evil)
	if r, err := gzip.NewReader(bytes.NewReader(poly)); err != nil {
		t.Fatal(err)
	} else if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Go's gzip reader: %d bytes, %v", len(got), err)
	}
	if got, ok := kernelModel(Gzip, poly); !ok || !bytes.Equal(got, evil) {
		t.Fatalf("kernel model: %q, %v", got, ok)
	}

	withDict := bytes.Clone(zs[:6])
	withDict[4] |= 1 // dictionary ID field of one byte, after the window descriptor
	if withDict[4]&0x20 != 0 {
		t.Fatal("zstd wrote a single-segment frame; the test expects a window descriptor")
	}
	withDict = append(append(withDict, 7), zs[6:]...)
	badCRC := bytes.Clone(gz)
	badCRC[len(badCRC)-6] ^= 1

	cases := []struct {
		name string
		f    Format
		in   []byte
		want error
	}{
		{"gzip FEXTRA polyglot", Gzip, poly, ErrHeaderField},
		{"gzip FEXTRA", Gzip, gzipRaw(0x04, []byte{2, 0, 'A', 'B'}, data), ErrHeaderField},
		{"gzip FCOMMENT", Gzip, gzipRaw(0x10, []byte("comment\x00"), data), ErrHeaderField},
		{"gzip FHCRC", Gzip, gzipRaw(0x02, []byte{0x12, 0x34}, data), ErrHeaderField},
		{"gzip reserved flag", Gzip, gzipRaw(0x20, nil, data), ErrHeaderField},
		{"gzip two members", Gzip, append(bytes.Clone(gz), testcmd.RunStdin(t, small, "gzip", "-c")...), ErrConcatenated},
		{"gzip trailing data", Gzip, append(bytes.Clone(gz), "junk"...), ErrTrailingData},
		{"gzip trailing zeros", Gzip, append(bytes.Clone(gz), 0, 0, 0, 0), ErrTrailingData},
		{"gzip bad CRC32", Gzip, badCRC, ErrTrailer},
		{"gzip no trailer", Gzip, gz[:len(gz)-8], ErrTrailer},
		{"xz crc64", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=crc64"), ErrCheckType},
		{"xz sha256", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=sha256"), ErrCheckType},
		{"xz bcj start offset", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "--x86=start=4096", "--lzma2=preset=1"), ErrFilterChain},
		{"xz two bcj filters", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "--x86", "--x86", "--lzma2=preset=0"), ErrFilterChain},
		{"xz concatenated", XZ, append(bytes.Clone(xzA), xzB...), ErrConcatenated},
		{"xz stream padding", XZ, append(bytes.Clone(xzA), 0, 0, 0, 0), ErrTrailingData},
		{"xz padding then stream", XZ, append(append(bytes.Clone(xzA), 0, 0, 0, 0), xzB...), ErrTrailingData},
		{"xz trailing data", XZ, append(bytes.Clone(xzA), "junk"...), ErrTrailingData},
		{"zstd two frames", Zstd, append(bytes.Clone(zs), zsB...), ErrConcatenated},
		{"zstd leading skippable frame", Zstd, append(bytes.Clone(skippable), zs...), ErrSkippableFrame},
		{"zstd trailing skippable frame", Zstd, append(bytes.Clone(zs), skippable...), ErrConcatenated},
		{"zstd trailing data", Zstd, append(bytes.Clone(zs), "junk"...), ErrTrailingData},
		{"zstd dictionary id", Zstd, withDict, ErrDictionary},
	}
	for _, c := range cases {
		kernelRefuses(t, c.name, c.f, c.in, c.want)
	}

	// What the kernel reads is still read: the same data, FNAME, no check,
	// the kernel's own xz settings (scripts/Makefile.modinst).
	for _, c := range []struct {
		name string
		f    Format
		in   []byte
	}{
		{"gzip", Gzip, gz},
		{"gzip FNAME", Gzip, gzipNamed(t, data)},
		{"gzip FTEXT", Gzip, gzipRaw(0x01, nil, data)},
		{"xz crc32", XZ, xzA},
		{"xz none", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=none")},
		{"xz x86", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "--x86", "--lzma2=dict=1MiB")},
		{"zstd", Zstd, zs},
		{"zstd checksum", Zstd, testcmd.RunStdin(t, data, "zstd", "-q", "-c", "--check", "-19")},
	} {
		got, err := ReadAll(bytes.NewReader(c.in), c.f, Options{})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", c.name, len(got), err)
		}
		if k, ok := kernelModel(c.f, c.in); c.name != "xz x86" && (!ok || !bytes.Equal(k, data)) {
			t.Errorf("%s: the kernel model disagrees (%d bytes, %v)", c.name, len(k), ok)
		}
	}
}

// kernelModel reads in by the kernel's rules, written from the kernel
// source independently of the decoders above, for differential testing.
// It returns the module the kernel would load and whether it loads one;
// skip reports an input the model cannot judge (a BCJ filter, which the
// Go xz package used here does not decode).
func kernelModel(f Format, in []byte) (out []byte, ok bool) {
	out, ok, _ = kernelModelSkip(f, in)
	return out, ok
}

const modelLimit = 1 << 21

func kernelModelSkip(f Format, in []byte) (out []byte, ok, skip bool) {
	switch f {
	case Gzip:
		// module_gzip_header_len: 10 bytes, then FNAME up to its NUL.
		if len(in) < 10 || in[0] != 0x1f || in[1] != 0x8b || in[2] != 8 {
			return nil, false, false
		}
		l := 10
		if in[3]&0x08 != 0 {
			for {
				if l == len(in) {
					return nil, false, false
				}
				c := in[l]
				l++
				if c == 0 {
					break
				}
			}
		}
		// zlib_inflateInit2(-MAX_WBITS), inflate until Z_STREAM_END; the
		// trailer and whatever follows are never read.
		b, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(in[l:])), modelLimit))
		return b, err == nil, false
	case XZ:
		// dec_stream_header: flags byte 0 zero, check none or CRC32.
		if len(in) < 12 || in[6] != 0 || in[7] > 1 {
			return nil, false, false
		}
		// The Go xz package allocates each block's declared dictionary
		// whole (up to 4 GiB for property 40), where the kernel's
		// XZ_DYNALLOC decoder vmallocs it and fails on a host without the
		// memory. The model does not judge an input that may declare a
		// dictionary above 64 MiB (an LZMA2 filter flag, ID 0x21 with one
		// property byte above 26, anywhere in it): that spares the fuzzer
		// gigabytes per run and skips few others.
		for i := 0; i+2 < len(in); i++ {
			if in[i] == 0x21 && in[i+1] == 0x01 && in[i+2] > 26 {
				return nil, false, true
			}
		}
		r, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(in))
		if err != nil {
			return nil, false, false
		}
		b, err := io.ReadAll(io.LimitReader(r, modelLimit))
		if err != nil && strings.Contains(err.Error(), "unexpected data after stream") {
			err = nil // xz_dec_run stops at the first stream end
		}
		if err != nil && strings.Contains(err.Error(), "filter") {
			return nil, false, true
		}
		return b, err == nil, false
	case Zstd:
		if len(in) < 4 {
			return nil, false, false
		}
		if binary.LittleEndian.Uint32(in)&0xfffffff0 == 0x184d2a50 {
			// zstd_decompress_stream returns 0 at the end of the
			// skippable frame: the loop ends with an empty module.
			return nil, true, false
		}
		n, ok := zstdFrameSize(in)
		if !ok {
			return nil, false, false
		}
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<26))
		if err != nil {
			return nil, false, false
		}
		defer d.Close()
		b, err := d.DecodeAll(in[:n], nil)
		return b, err == nil, false
	}
	return nil, false, false
}

// zstdFrameSize is ZSTD_findFrameCompressedSize (lib/zstd/decompress/
// zstd_decompress.c) for a zstd frame: the header, the blocks up to the
// last, the optional checksum.
func zstdFrameSize(in []byte) (int, bool) {
	if len(in) < 5 || binary.LittleEndian.Uint32(in) != 0xfd2fb528 {
		return 0, false
	}
	fhd := in[4]
	single := fhd&0x20 != 0
	n := 5
	if !single {
		n++
	}
	n += []int{0, 1, 2, 4}[fhd&3]
	n += []int{0, 2, 4, 8}[fhd>>6]
	if single && fhd>>6 == 0 {
		n++
	}
	for {
		if n+3 > len(in) {
			return 0, false
		}
		h := int(in[n]) | int(in[n+1])<<8 | int(in[n+2])<<16
		size := h >> 3
		switch (h >> 1) & 3 {
		case 1:
			size = 1
		case 3:
			return 0, false
		}
		n += 3 + size
		if h&1 != 0 {
			break
		}
	}
	if fhd&0x04 != 0 {
		n += 4
	}
	if n > len(in) {
		return 0, false
	}
	return n, true
}

// FuzzKernelAgreement is the differential target: whenever Vigil's decoder
// accepts an input, the kernel model must accept it too and yield the same
// bytes. (The converse need not hold: Vigil refuses some inputs the kernel
// loads, such as a gzip member without its trailer.)
//
// The seeds are small pieces of a real module (400 bytes, compressing to
// about 300): when coverage guidance finds a new input, Go's fuzzer
// minimizes it before it goes on, and its minimizer tries every byte
// range, quadratic in the input's length. Seeds of kilobytes made every
// interesting input cost the whole -fuzzminimizetime (60 s), during which
// the exec count stands still: the run looked stalled after some tens of
// execs under coverage-guided fuzzing, and ran fine without it.
func FuzzKernelAgreement(f *testing.F) {
	data := sample(f)
	mods := [][]byte{data[:400], data[50000:50400]}
	for _, m := range mods {
		f.Add(byte(Gzip), testcmd.RunStdin(f, m, "gzip", "-c"))
		f.Add(byte(Gzip), gzipNamed(f, m))
		f.Add(byte(Gzip), gzipPolyglot(m, []byte("evil")))
		f.Add(byte(XZ), testcmd.RunStdin(f, m, "xz", "-c", "--check=crc32", "--lzma2=dict=1MiB"))
		f.Add(byte(XZ), testcmd.RunStdin(f, m, "xz", "-c", "--check=none"))
		f.Add(byte(Zstd), testcmd.RunStdin(f, m, "zstd", "-q", "-c"))
		f.Add(byte(Zstd), testcmd.RunStdin(f, m, "zstd", "-q", "-c", "--check"))
	}
	f.Fuzz(func(t *testing.T, which byte, in []byte) {
		fm := []Format{Gzip, XZ, Zstd}[int(which)%3]
		got, err := ReadAll(bytes.NewReader(in), fm, Options{MaxOutput: modelLimit / 2, MaxWindow: 1 << 20})
		if err != nil {
			if reason.Of(err, "") == "" {
				t.Fatalf("%s: error without a reason code: %v", fm, err)
			}
			return
		}
		want, ok, skip := kernelModelSkip(fm, in)
		if skip {
			return
		}
		if !ok {
			t.Fatalf("%s: Vigil accepts %d bytes of output; the kernel refuses the input", fm, len(got))
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: Vigil reads %d bytes, the kernel %d", fm, len(got), len(want))
		}
	})
}
