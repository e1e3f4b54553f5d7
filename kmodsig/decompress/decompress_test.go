package decompress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ulikunitz/xz/lzma"

	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/reason"
)

// sample returns real binary data: a Debian kernel module of a few hundred
// KiB (x86 code, so the BCJ filter has work to do).
func sample(t testing.TB) []byte {
	t.Helper()
	for _, p := range artifacts.Modules(t) {
		if filepath.Base(p) == "e1000.ko" {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("e1000.ko not among the artifacts")
	return nil
}

func mustCode(t *testing.T, err error, want reason.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", want)
	}
	if got := reason.Of(err, ""); got != want {
		t.Fatalf("code %q, want %q (err: %v)", got, want, err)
	}
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		head []byte
		want Format
	}{
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, XZ},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x24}, Zstd},
		{[]byte{0x1f, 0x8b, 0x08, 0}, Gzip},
		{[]byte("BZh9"), Bzip2},
		{[]byte{0x5d, 0, 0, 0x80}, LZMA},
		{[]byte("\x89LZO\x00"), LZO},
		{[]byte{0x02, 0x21, 0x4c, 0x18}, LZ4},
		{[]byte{0x04, 0x22, 0x4d, 0x18}, LZ4},
		{[]byte("\x7fELF\x02\x01"), None},
		{[]byte{0xfd, '7', 'z'}, None},
		{nil, None},
	} {
		if got := Detect(c.head); got != c.want {
			t.Errorf("Detect(% x) = %s, want %s", c.head, got, c.want)
		}
	}
	// The magic bytes Detect uses are the ones the CLI tools write.
	data := []byte("hello, kernel")
	for f, args := range map[Format][]string{XZ: {"xz", "-c"}, Zstd: {"zstd", "-q", "-c"}, Gzip: {"gzip", "-c"}, Bzip2: {"bzip2", "-c"}, LZ4: {"lz4", "-q", "-l", "-c"}} {
		if _, err := exec.LookPath(args[0]); err != nil {
			if f == Bzip2 || f == LZ4 {
				continue // only used to check detection
			}
			t.Fatalf("%s: %v", args[0], err)
		}
		if got := Detect(testcmd.RunStdin(t, data, args[0], args[1:]...)); got != f {
			t.Errorf("Detect(%s output) = %s", args[0], got)
		}
	}
}

// TestRoundTripCLI decodes what the reference tools produce, in the variants
// Linux uses (kmod's xz --check=crc32, the kernel's xz --x86 with a 32 MiB
// dictionary, zstd, gzip) and the container features a decoder must handle
// (other checks, several blocks, several streams, padding).
func TestRoundTripCLI(t *testing.T) {
	data := sample(t)
	xzA := testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "--lzma2=dict=1MiB")
	gzA := testcmd.RunStdin(t, data, "gzip", "-c", "-9")
	zsA := testcmd.RunStdin(t, data, "zstd", "-q", "-c")
	cases := []struct {
		name string
		f    Format
		in   []byte
		want []byte
	}{
		{"xz kmod crc32", XZ, xzA, data},
		{"xz no check", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=none"), data},
		{"xz kernel x86 bcj", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "--x86", "--lzma2=dict=32MiB"), data},
		{"xz blocks with sizes", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "-T2", "--block-size=40000"), data},
		{"xz blocks, one thread", XZ, testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "-T1", "--block-size=40000", "--x86", "--lzma2=preset=6"), data},
		{"xz empty", XZ, testcmd.RunStdin(t, nil, "xz", "-c", "--check=crc32"), nil},
		{"xz incompressible", XZ, testcmd.RunStdin(t, testcmd.RunStdin(t, data, "xz", "-c", "-9"), "xz", "-c", "-0", "--check=crc32"), testcmd.RunStdin(t, data, "xz", "-c", "-9")},
		{"gzip", Gzip, gzA, data},
		{"gzip with name", Gzip, gzipNamed(t, data), data},
		{"zstd", Zstd, zsA, data},
		{"zstd -19 checksum", Zstd, testcmd.RunStdin(t, data, "zstd", "-q", "-c", "-19", "--check"), data},
		{"none", None, data, data},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Detect(c.in); got != c.f && c.f != None {
				t.Fatalf("Detect = %s", got)
			}
			for _, rd := range []struct {
				name string
				wrap func(io.Reader) io.Reader
			}{
				{"plain", func(r io.Reader) io.Reader { return r }},
				{"one byte reads", iotest.OneByteReader},
				{"half reads", iotest.HalfReader},
			} {
				got, err := ReadAll(rd.wrap(bytes.NewReader(c.in)), c.f, Options{})
				if err != nil {
					t.Fatalf("%s: %v", rd.name, err)
				}
				if !bytes.Equal(got, c.want) {
					t.Fatalf("%s: output differs (%d bytes, want %d)", rd.name, len(got), len(c.want))
				}
			}
		})
	}
}

// TestKernelPayload decodes the Debian kernel's xz payload (x86 BCJ +
// LZMA2, 32 MiB dictionary, CRC32) and compares it with xz -dc.
func TestKernelPayload(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 66 MB")
	}
	img, err := os.ReadFile(artifacts.Vmlinuz(t))
	if err != nil {
		t.Fatal(err)
	}
	pm := (int(img[0x1f1]) + 1) * 512
	off := pm + int(binary.LittleEndian.Uint32(img[0x248:]))
	payload := img[off : off+int(binary.LittleEndian.Uint32(img[0x24c:]))]
	want := testcmd.RunStdin(t, payload, "xz", "-dc", "--single-stream")
	start := time.Now()
	got, err := ReadAll(bytes.NewReader(payload), XZ, Options{FirstStream: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("decoded %d bytes in %v", len(got), time.Since(start))
	if !bytes.Equal(got, want) {
		t.Fatalf("kernel payload differs from xz -dc (%d vs %d bytes)", len(got), len(want))
	}
	// Without FirstStream the appended size is garbage after the stream.
	_, err = ReadAll(bytes.NewReader(payload), XZ, Options{})
	mustCode(t, err, reason.Malformed)
}

// TestBCJSplits checks that the BCJ decoder's output does not depend on how
// its input arrives: the BCJ-encoded bytes come from xz --format=raw --x86,
// unpacked with the LZMA2 decoder alone.
func TestBCJSplits(t *testing.T) {
	data := sample(t)
	raw := testcmd.RunStdin(t, data, "xz", "-c", "--format=raw", "--x86", "--lzma2=dict=1MiB")
	lz, err := lzma.Reader2Config{DictCap: 1 << 20}.NewReader2(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	encoded, err := io.ReadAll(lz)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(encoded, data) {
		t.Fatal("BCJ changed nothing: the test data has no E8/E9 to convert")
	}
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader, iotest.HalfReader, iotest.DataErrReader,
		func(r io.Reader) io.Reader { return io.LimitReader(r, 1<<40) },
	} {
		got, err := io.ReadAll(newBCJX86Reader(wrap(bytes.NewReader(encoded)), 0))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("BCJ decoding depends on the read pattern or is wrong")
		}
	}
	// Reads of every small size, including when p is shorter than the
	// pending output.
	for _, size := range []int{1, 3, 5, 7, 4096} {
		r := newBCJX86Reader(bytes.NewReader(encoded), 0)
		var out []byte
		buf := make([]byte, size)
		for {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("read size %d: output differs", size)
		}
	}
}

func TestTruncated(t *testing.T) {
	data := sample(t)[:100000]
	for f, in := range map[Format][]byte{
		XZ:   testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32"),
		Zstd: testcmd.RunStdin(t, data, "zstd", "-q", "-c"),
		Gzip: testcmd.RunStdin(t, data, "gzip", "-c"),
	} {
		cuts := []int{0, 1, 5, 11, 12, 13, 20, len(in) / 2}
		for i := 1; i <= 24 && i < len(in); i++ {
			cuts = append(cuts, len(in)-i)
		}
		for _, n := range cuts {
			for _, first := range []bool{false, true} {
				_, err := ReadAll(bytes.NewReader(in[:n]), f, Options{FirstStream: first})
				if err == nil {
					t.Errorf("%s cut to %d of %d bytes (FirstStream %v): no error", f, n, len(in), first)
					continue
				}
				if reason.Of(err, "") != reason.Malformed {
					t.Errorf("%s cut to %d: %v, want malformed", f, n, err)
				}
			}
		}
	}
}

func TestCorrupt(t *testing.T) {
	data := sample(t)[:100000]
	for f, in := range map[Format][]byte{
		XZ:   testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32"),
		Zstd: testcmd.RunStdin(t, data, "zstd", "-q", "-c", "--check"),
		Gzip: testcmd.RunStdin(t, data, "gzip", "-c"),
	} {
		for _, at := range []int{len(in) / 3, len(in) / 2, len(in) - 9, len(in) - 2} {
			bad := bytes.Clone(in)
			bad[at] ^= 0x55
			got, err := ReadAll(bytes.NewReader(bad), f, Options{})
			if err == nil && bytes.Equal(got, data) {
				t.Errorf("%s: flipping byte %d changed nothing", f, at)
				continue
			}
			if err == nil {
				t.Errorf("%s: flipped byte %d: corrupt output without an error", f, at)
				continue
			}
			if reason.Of(err, "") != reason.Malformed {
				t.Errorf("%s: flipped byte %d: %v, want malformed", f, at, err)
			}
		}
	}
}

func TestTrailingGarbage(t *testing.T) {
	data := sample(t)[:5000]
	for f, in := range map[Format][]byte{
		XZ:   testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32"),
		Zstd: testcmd.RunStdin(t, data, "zstd", "-q", "-c"),
		Gzip: testcmd.RunStdin(t, data, "gzip", "-c"),
	} {
		junk := append(bytes.Clone(in), 0x34, 0x12, 0x99, 0x00)
		_, err := ReadAll(bytes.NewReader(junk), f, Options{})
		mustCode(t, err, reason.Malformed)
		got, err := ReadAll(bytes.NewReader(junk), f, Options{FirstStream: true})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s FirstStream with trailing bytes: %v", f, err)
		}
		// FirstStream ignores a second stream too.
		got, err = ReadAll(bytes.NewReader(append(bytes.Clone(in), in...)), f, Options{FirstStream: true})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s FirstStream with two streams: %v", f, err)
		}
	}
}

// allocated returns the bytes allocated while fn runs.
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestBombs(t *testing.T) {
	zeros := make([]byte, 64<<20)
	const limit = 1 << 20
	for f, in := range map[Format][]byte{
		XZ:   testcmd.RunStdin(t, zeros, "xz", "-c", "-0", "--check=crc32"),
		Zstd: testcmd.RunStdin(t, zeros, "zstd", "-q", "-c", "-1"),
		Gzip: testcmd.RunStdin(t, zeros, "gzip", "-c", "-1"),
	} {
		t.Logf("%s: %d bytes expand to %d", f, len(in), len(zeros))
		var err error
		start := time.Now()
		alloc := allocated(func() { _, err = ReadAll(bytes.NewReader(in), f, Options{MaxOutput: limit, MaxWindow: limit}) })
		mustCode(t, err, reason.Malformed)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v does not wrap ErrTooLarge", f, err)
		}
		if alloc > 16*limit+uint64(len(in))*4 {
			t.Errorf("%s: allocated %d bytes for a %d-byte limit", f, alloc, limit)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v to hit the limit", f, d)
		}
	}
	// Output of exactly the limit is accepted.
	exact := testcmd.RunStdin(t, zeros[:limit], "xz", "-c", "-0", "--check=crc32")
	if got, err := ReadAll(bytes.NewReader(exact), XZ, Options{MaxOutput: limit}); err != nil || len(got) != limit {
		t.Errorf("exactly the limit: %d bytes, %v", len(got), err)
	}
}

// TestDefaultLimit feeds 300 MiB bombs to the default 256 MiB cap.
func TestDefaultLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("decompresses 256 MiB")
	}
	zeros := make([]byte, 300<<20)
	for f, in := range map[Format][]byte{
		Zstd: testcmd.RunStdin(t, zeros, "zstd", "-q", "-c", "-1"),
		Gzip: testcmd.RunStdin(t, zeros, "gzip", "-c", "-1"),
	} {
		r, err := NewReader(bytes.NewReader(in), f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		mustCode(t, err, reason.Malformed)
		if n != DefaultMaxOutput {
			t.Errorf("%s: %d bytes before the error, want %d", f, n, DefaultMaxOutput)
		}
		r.Close()
	}
}

// xzBuilder writes .xz streams by hand, for containers the xz tool does not
// produce. Blocks hold LZMA2 uncompressed chunks.
type xzBuilder struct {
	dictProp  byte
	withSizes bool
	buf       bytes.Buffer
	records   [][2]uint64
}

func newXZ(dictProp byte) *xzBuilder {
	b := &xzBuilder{dictProp: dictProp}
	b.buf.Write([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1}) // CRC32 check
	b.buf.Write(le32(crc32.ChecksumIEEE([]byte{0, 1})))
	return b
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func (b *xzBuilder) block(data []byte) {
	uncomp := len(data)
	var lz []byte
	for first := true; len(data) > 0; first = false {
		n := min(len(data), 1<<16)
		ctl := byte(0x02) // uncompressed chunk
		if first {
			ctl = 0x01 // uncompressed chunk, dictionary reset
		}
		lz = append(lz, ctl, byte((n-1)>>8), byte(n-1))
		lz = append(lz, data[:n]...)
		data = data[n:]
	}
	lz = append(lz, 0) // end of LZMA2
	hdr := []byte{0, 0}
	if b.withSizes {
		hdr[1] = 0xc0
		hdr = binary.AppendUvarint(hdr, uint64(len(lz)))
		hdr = binary.AppendUvarint(hdr, uint64(uncomp))
	}
	hdr = append(hdr, 0x21, 1, b.dictProp)
	for (len(hdr)+4)%4 != 0 {
		hdr = append(hdr, 0)
	}
	hdr[0] = byte((len(hdr)+4)/4 - 1)
	hdr = append(hdr, le32(crc32.ChecksumIEEE(hdr))...)
	b.buf.Write(hdr)
	b.buf.Write(lz)
	for i := len(lz); i%4 != 0; i++ {
		b.buf.WriteByte(0)
	}
	b.records = append(b.records, [2]uint64{uint64(len(hdr) + len(lz) + 4), uint64(uncomp)})
}

func (b *xzBuilder) blockCRC(data []byte) {
	b.block(data)
	b.buf.Write(le32(crc32.ChecksumIEEE(data)))
}

func (b *xzBuilder) finish() []byte {
	idx := []byte{0}
	idx = binary.AppendUvarint(idx, uint64(len(b.records)))
	for _, r := range b.records {
		idx = binary.AppendUvarint(idx, r[0])
		idx = binary.AppendUvarint(idx, r[1])
	}
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = append(idx, le32(crc32.ChecksumIEEE(idx))...)
	b.buf.Write(idx)
	foot := append(le32(uint32(len(idx)/4-1)), 0, 1)
	b.buf.Write(le32(crc32.ChecksumIEEE(foot)))
	b.buf.Write(foot)
	b.buf.WriteString("YZ")
	return b.buf.Bytes()
}

func TestXZBuilderIsValid(t *testing.T) {
	b := newXZ(20)
	b.blockCRC([]byte("hello "))
	b.withSizes = true
	b.blockCRC([]byte("world"))
	in := b.finish()
	// xz itself accepts what the builder writes.
	if got := testcmd.RunStdin(t, in, "xz", "-dc"); string(got) != "hello world" {
		t.Fatalf("xz -dc: %q", got)
	}
	got, err := ReadAll(bytes.NewReader(in), XZ, Options{})
	if err != nil || string(got) != "hello world" {
		t.Fatalf("%q, %v", got, err)
	}
}

// TestXZDictionaryClamped: a header may declare a dictionary of 4 GiB; the
// decoder must not allocate it.
func TestXZDictionaryClamped(t *testing.T) {
	data := sample(t)[:200000]
	in := testcmd.RunStdin(t, data, "xz", "-c", "--check=crc32", "--lzma2=dict=1MiB")
	// Rewrite the LZMA2 dictionary property in the block header (size byte
	// at 12, flags, filter id 0x21, props size 1, dict) and fix its CRC32.
	hsize := (int(in[12]) + 1) * 4
	hdr := in[12 : 12+hsize]
	i := bytes.Index(hdr, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatal("no LZMA2 filter in the block header")
	}
	for _, prop := range []byte{40, 39, 36} {
		bad := bytes.Clone(in)
		bad[12+i+2] = prop
		binary.LittleEndian.PutUint32(bad[12+hsize-4:], crc32.ChecksumIEEE(bad[12:12+hsize-4]))
		if out := testcmd.RunStdin(t, bad, "xz", "-dc", "--memlimit=0"); !bytes.Equal(out, data) {
			t.Fatal("xz -dc rejects the rewritten header")
		}
		var got []byte
		var err error
		alloc := allocated(func() { got, err = ReadAll(bytes.NewReader(bad), XZ, Options{}) })
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("dict prop %d: %v", prop, err)
		}
		if alloc > DefaultMaxWindow+(8<<20) {
			t.Errorf("dict prop %d: allocated %d bytes", prop, alloc)
		}
		// With a small output cap the dictionary is clamped to it.
		alloc = allocated(func() { _, err = ReadAll(bytes.NewReader(bad), XZ, Options{MaxOutput: 300000}) })
		if err != nil {
			t.Fatalf("dict prop %d, small cap: %v", prop, err)
		}
		if alloc > 4<<20 {
			t.Errorf("dict prop %d, small cap: allocated %d bytes", prop, alloc)
		}
	}
	bad := bytes.Clone(in)
	bad[12+i+2] = 41
	binary.LittleEndian.PutUint32(bad[12+hsize-4:], crc32.ChecksumIEEE(bad[12:12+hsize-4]))
	_, err := ReadAll(bytes.NewReader(bad), XZ, Options{})
	mustCode(t, err, reason.Malformed)
}

// TestXZManyBlocks: every block may declare a big dictionary; their total
// allocation is bounded.
func TestXZManyBlocks(t *testing.T) {
	b := newXZ(40)
	for i := 0; i < 20000; i++ {
		b.blockCRC(nil)
	}
	in := b.finish()
	start := time.Now()
	var err error
	alloc := allocated(func() { _, err = ReadAll(bytes.NewReader(in), XZ, Options{MaxOutput: 1 << 20, MaxWindow: 1 << 20}) })
	mustCode(t, err, reason.Malformed)
	if !strings.Contains(err.Error(), "dictionary allocations") {
		t.Errorf("error %v does not name the dictionary budget", err)
	}
	if alloc > 64<<20 || time.Since(start) > 5*time.Second {
		t.Errorf("allocated %d bytes in %v", alloc, time.Since(start))
	}
	// Many small blocks with sizes in their headers are fine.
	b = newXZ(40)
	b.withSizes = true
	var want []byte
	for i := 0; i < 3000; i++ {
		d := []byte{byte(i), byte(i >> 8)}
		want = append(want, d...)
		b.blockCRC(d)
	}
	got, err := ReadAll(bytes.NewReader(b.finish()), XZ, Options{})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("3000 sized blocks: %v", err)
	}
}

func TestXZContainerErrors(t *testing.T) {
	good := func() *xzBuilder { b := newXZ(20); b.blockCRC([]byte("abc")); return b }
	in := good().finish()
	if _, err := ReadAll(bytes.NewReader(in), XZ, Options{}); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(in); f(b); return b }
	cases := []struct {
		name string
		in   []byte
		code reason.Code
		msg  string
	}{
		{"bad magic", mod(func(b []byte) { b[1] = 'x' }), reason.Malformed, "magic"},
		{"header crc", mod(func(b []byte) { b[8] ^= 1 }), reason.Malformed, "stream header CRC32"},
		{"unknown check", func() []byte {
			b := bytes.Clone(in)
			b[7] = 0x02
			binary.LittleEndian.PutUint32(b[8:], crc32.ChecksumIEEE(b[6:8]))
			return b
		}(), reason.Malformed, "check type"},
		{"block header crc", mod(func(b []byte) { b[14] ^= 1 }), reason.Malformed, "block header CRC32"},
		{"block check", mod(func(b []byte) { b[12+8+3+3+1] ^= 1 }), reason.Malformed, "check"},
		{"index count", func() []byte {
			b := good()
			b.records = append(b.records, [2]uint64{8, 0})
			return b.finish()
		}(), reason.Malformed, "index lists 2 blocks"},
		{"index sizes", func() []byte {
			b := good()
			b.records[0][1]++
			return b.finish()
		}(), reason.Malformed, "index does not match"},
		{"footer magic", mod(func(b []byte) { b[len(b)-1] = 'Q' }), reason.Malformed, "footer magic"},
		{"footer flags", func() []byte {
			b := bytes.Clone(in)
			f := b[len(b)-12:]
			f[9] = 4
			binary.LittleEndian.PutUint32(f, crc32.ChecksumIEEE(f[4:10]))
			return b
		}(), reason.Malformed, "footer flags"},
		{"odd stream padding", append(bytes.Clone(in), 0, 0), reason.Malformed, "data after the end"},
		{"unknown filter", func() []byte {
			b := bytes.Clone(in)
			h := b[12 : 12+(int(b[12])+1)*4]
			h[2] = 0x03 // delta
			binary.LittleEndian.PutUint32(h[len(h)-4:], crc32.ChecksumIEEE(h[:len(h)-4]))
			return b
		}(), reason.Unsupported, "filter 0x3"},
	}
	for _, c := range cases {
		_, err := ReadAll(bytes.NewReader(c.in), XZ, Options{})
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if reason.Of(err, "") != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %s naming %q", c.name, err, c.code, c.msg)
		}
	}
}

func TestUnsupportedAndSourceErrors(t *testing.T) {
	for _, f := range []Format{Bzip2, LZMA, LZO, LZ4, Format(99)} {
		_, err := NewReader(bytes.NewReader(nil), f, Options{})
		mustCode(t, err, reason.Unsupported)
	}
	if Format(99).String() != "format(99)" || XZ.String() != "xz" {
		t.Error("Format.String")
	}
	// An I/O error of the source is not a verdict about the data.
	boom := errors.New("disk on fire")
	in := testcmd.RunStdin(t, sample(t)[:100000], "xz", "-c", "--check=crc32")
	for _, f := range []Format{XZ, Gzip, Zstd, None} {
		src := io.MultiReader(bytes.NewReader(in[:len(in)/2]), iotest.ErrReader(boom))
		if f == Gzip {
			src = io.MultiReader(bytes.NewReader(testcmd.RunStdin(t, sample(t)[:100000], "gzip", "-c")[:1000]), iotest.ErrReader(boom))
		}
		if f == Zstd {
			src = io.MultiReader(bytes.NewReader(testcmd.RunStdin(t, sample(t)[:100000], "zstd", "-q", "-c")[:1000]), iotest.ErrReader(boom))
		}
		_, err := ReadAll(src, f, Options{})
		if !errors.Is(err, boom) {
			t.Errorf("%s: %v does not wrap the source error", f, err)
		}
		if c := reason.Of(err, ""); c != "" && f != Zstd {
			t.Errorf("%s: source error tagged %s", f, c)
		}
	}
}
