package authenticode

import (
	"crypto"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func benchImageHash(b *testing.B, path string, hashes ...crypto.Hash) {
	fh, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		b.Fatal(err)
	}
	f, err := Parse(fh, st.Size())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ReportAllocs()
	cpu0 := cpuTime()
	n := 0
	for b.Loop() {
		if _, err := f.ImageHash(hashes...); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportCPUThroughput(b, cpu0, int64(n)*st.Size())
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPUThroughput reports MB per CPU-second: on a shared machine whose
// wall-clock throughput swings with other load, this is the stable "per
// core" figure.
func reportCPUThroughput(b *testing.B, cpu0 time.Duration, bytes int64) {
	if d := cpuTime() - cpu0; d > 0 {
		b.ReportMetric(float64(bytes)/1e6/d.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkImageHashSHA256 measures the image hash of a generated 64 MiB PE
// read from a file (through the page cache) and of Debian's signed kernel.
func BenchmarkImageHashSHA256(b *testing.B) {
	p := filepath.Join(b.TempDir(), "big.exe")
	if err := os.WriteFile(p, synthPE(synthOpts{textSize: 64 << 20, certSize: 1500}), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("64MiB", func(b *testing.B) { benchImageHash(b, p, crypto.SHA256) })
	b.Run("vmlinuz", func(b *testing.B) { benchImageHash(b, vmlinuzPath(b), crypto.SHA256) })
	b.Run("64MiB-sha1+sha256", func(b *testing.B) { benchImageHash(b, p, crypto.SHA1, crypto.SHA256) })
	// The ceiling: SHA-256 over an in-memory buffer of the same chunk size,
	// without any reads. ImageHash should come close to it.
	b.Run("raw-sha256-reference", func(b *testing.B) {
		buf := make([]byte, bufSize)
		h := crypto.SHA256.New()
		b.SetBytes(int64(len(buf)))
		cpu0 := cpuTime()
		n := 0
		for b.Loop() {
			h.Write(buf)
			n++
		}
		reportCPUThroughput(b, cpu0, int64(n)*int64(len(buf)))
	})
}
