package integrity_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
)

// BenchmarkVerifyPE measures the engine's verdict on a signed 64 MiB PE (a
// Go-built image grown with overlay data, signed by osslsigncode with
// SHA-256), read through the page cache. The time is the hashes the verdict
// computes in its one read of the file: the image hash the signature names
// and the file's SHA-256.
func BenchmarkVerifyPE(b *testing.B) {
	dir := b.TempDir()
	h := testpki.NewHierarchy(testpki.Options{})
	rootPEM := testpki.WritePEMs(b, dir, "root.pem", h.Root)
	chainPEM := testpki.WritePEMs(b, dir, "chain.pem", h.Leaf, h.Intermediate)
	_, key := h.Leaf.WriteFiles(b, dir, "leaf")
	in := testpe.Copy(b, testpe.Build(b, "amd64"), dir, "big.in.exe")
	raw, err := os.ReadFile(in)
	if err != nil {
		b.Fatal(err)
	}
	raw = append(raw, make([]byte, (8-len(raw)%8)%8)...)
	overlay := make([]byte, 64<<20-len(raw))
	r := rand.NewChaCha8([32]byte{1})
	r.Read(overlay)
	if err := os.WriteFile(in, append(raw, overlay...), 0o644); err != nil {
		b.Fatal(err)
	}
	signed := testpe.OsslSign(b, in, filepath.Join(dir, "big.exe"), "-certs", chainPEM, "-key", key, "-h", "sha256")
	st, err := os.Stat(signed)
	if err != nil {
		b.Fatal(err)
	}
	p, err := codepolicy.Parse([]byte("trust: [root.pem]\n"), filepath.Dir(rootPEM))
	if err != nil {
		b.Fatal(err)
	}
	eng := integrity.New(integrity.Options{Policy: p})
	ctx := context.Background()
	b.SetBytes(st.Size())
	b.ReportAllocs()
	cpu0, n := cpuTime(), 0
	for b.Loop() {
		v, err := eng.VerifyFile(ctx, signed)
		if err != nil || !v.Allowed {
			b.Fatalf("verdict %+v: %v", v, err)
		}
		n++
	}
	// MB per CPU-second of the process: the stable figure on a shared
	// machine, as in authenticode's BenchmarkImageHashSHA256.
	if d := cpuTime() - cpu0; d > 0 {
		b.ReportMetric(float64(int64(n)*st.Size())/1e6/d.Seconds(), "MB/cpu-s")
	}
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
