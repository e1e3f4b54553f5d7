package integrity_test

// Benchmarks of the hashing behind PE verification, for bench/run.sh and
// docs/BENCHMARKS.md. They run on a synthetic PE32+ image held in memory
// (headers and one 32 MiB section of pseudorandom data), so they need no
// artifacts and measure hashing, not I/O:
//
//	go test -run '^$' -bench ImageHash -benchtime 2s -count 5 ./integrity/
//
// One benchmark goroutine is one core; MB/s is 10^6 bytes per second of
// wall time. On a shared machine wall time also counts the time other
// processes held the core, so each benchmark also reports MB/cpu-s: bytes
// per second of CPU time this process used (getrusage), which is what one
// core delivers when it is not taken away.

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // register crypto.SHA1
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/authenticode"
)

const (
	benchHeaders = 0x400    // SizeOfHeaders
	benchSection = 32 << 20 // raw data of the one section
)

// benchPE returns an unsigned PE32+ image: DOS header, PE signature, COFF
// header, optional header with 16 data directories, one section table entry,
// and the section's data.
func benchPE() []byte {
	img := make([]byte, benchHeaders+benchSection)
	le := binary.LittleEndian
	img[0], img[1] = 'M', 'Z'
	const peOff = 0x80
	le.PutUint32(img[0x3c:], peOff)
	copy(img[peOff:], "PE\x00\x00")
	coff := img[peOff+4:]
	le.PutUint16(coff[0:], 0x8664) // AMD64
	le.PutUint16(coff[2:], 1)      // NumberOfSections
	const optSize = 112 + 16*8
	le.PutUint16(coff[16:], optSize)
	le.PutUint16(coff[18:], 0x0022) // EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE
	opt := img[peOff+4+20:]
	le.PutUint16(opt[0:], 0x20b)   // PE32+
	le.PutUint32(opt[16:], 0x1000) // AddressOfEntryPoint
	le.PutUint64(opt[24:], 0x140000000)
	le.PutUint32(opt[32:], 0x1000)              // SectionAlignment
	le.PutUint32(opt[36:], 0x200)               // FileAlignment
	le.PutUint32(opt[56:], 0x1000+benchSection) // SizeOfImage
	le.PutUint32(opt[60:], benchHeaders)        // SizeOfHeaders
	le.PutUint16(opt[68:], 3)                   // Subsystem: console
	le.PutUint32(opt[108:], 16)                 // NumberOfRvaAndSizes
	sec := opt[optSize:]
	copy(sec, ".text")
	le.PutUint32(sec[8:], benchSection)  // VirtualSize
	le.PutUint32(sec[12:], 0x1000)       // VirtualAddress
	le.PutUint32(sec[16:], benchSection) // SizeOfRawData
	le.PutUint32(sec[20:], benchHeaders) // PointerToRawData
	le.PutUint32(sec[36:], 0x60000020)   // code, execute, read
	rng := rand.New(rand.NewPCG(1, 2))
	for i := benchHeaders; i+8 <= len(img); i += 8 {
		le.PutUint64(img[i:], rng.Uint64())
	}
	return img
}

// cpuTime returns the CPU time (user+system) the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the MB/cpu-s metric for n bytes per iteration.
func reportCPU(b *testing.B, n int64, start time.Duration) {
	if cpu := (cpuTime(b) - start).Seconds(); cpu > 0 {
		b.ReportMetric(float64(n)*float64(b.N)/cpu/1e6, "MB/cpu-s")
	}
}

func benchImageHash(b *testing.B, hs ...crypto.Hash) {
	img := benchPE()
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	start := cpuTime(b)
	defer func() { reportCPU(b, int64(len(img)), start) }()
	for b.Loop() {
		f, err := authenticode.Parse(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.ImageHash(hs...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImageHashSHA256 is the Authenticode SHA-256 image hash alone:
// the figure behind "Authenticode hashing runs at >= 1 GB/s per core".
func BenchmarkImageHashSHA256(b *testing.B) { benchImageHash(b, crypto.SHA256) }

// BenchmarkImageHashSHA1SHA256 is the single pass verifyPE makes: SHA-1 and
// SHA-256 image hashes together (block lists need both).
func BenchmarkImageHashSHA1SHA256(b *testing.B) { benchImageHash(b, crypto.SHA1, crypto.SHA256) }

// BenchmarkSHA256Reference is plain crypto/sha256 over the same bytes in
// the same 256 KiB chunks: the ceiling for this CPU.
func BenchmarkSHA256Reference(b *testing.B) {
	img := benchPE()
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	start := cpuTime(b)
	defer func() { reportCPU(b, int64(len(img)), start) }()
	for b.Loop() {
		h := sha256.New()
		for off := 0; off < len(img); off += 256 << 10 {
			h.Write(img[off:min(off+256<<10, len(img))])
		}
		h.Sum(nil)
	}
}
