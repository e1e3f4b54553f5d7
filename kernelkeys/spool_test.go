package kernelkeys_test

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/kmodsig/decompress"
)

// maxExtractionHeap bounds the Go heap while Read extracts the keys of the
// Debian vmlinuz (8 MB, a 66 MB payload in an xz stream with a 32 MiB
// dictionary), with the collector at internal/cli's extraction setting
// (GOGC 10): the dictionary, a tenth of it in garbage, and the init data
// section. Holding the payload (66 MB), as Read once did, exceeds it.
const maxExtractionHeap = 48 << 20

// readOverDecoder bounds what Read adds to the heap over the decoder alone
// (the init data section, the hash scan's window, the certificates).
const readOverDecoder = 12 << 20

// TestReadHeapBounded: Read keeps the decompressed Debian kernel in its
// temporary file, not in memory: the heap, sampled every millisecond
// through the extraction, stays under maxExtractionHeap and within
// readOverDecoder of the decoder's own peak (the floor, measured here on
// the same payload and logged); the keys are those read from the payload
// held in memory; nothing is left in TempDir.
func TestReadHeapBounded(t *testing.T) {
	f, err := os.Open(artifacts.Vmlinuz(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	defer debug.SetGCPercent(debug.SetGCPercent(10))

	// The floor: the decoder alone, its output discarded.
	p, err := kernelkeys.Locate(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	floor := heapGrowth(t, func() error {
		r, err := decompress.NewReader(io.NewSectionReader(f, p.Offset, p.Length), p.Format, decompress.Options{FirstStream: true})
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
		return err
	})
	var got *kernelkeys.Keys
	peak := heapGrowth(t, func() error {
		got, err = kernelkeys.Read(f, st.Size(), kernelkeys.Options{TempDir: dir})
		return err
	})
	t.Logf("peak heap growth: the decoder alone %.1f MiB, Read %.1f MiB (bound: the decoder + %d MiB, at most %d MiB)",
		float64(floor)/(1<<20), float64(peak)/(1<<20), readOverDecoder>>20, maxExtractionHeap>>20)
	if peak > maxExtractionHeap || peak > floor+readOverDecoder {
		t.Fatalf("heap grew by %d bytes during Read (the decoder alone: %d)", peak, floor)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Fatalf("TempDir after Read: %v %v", left, err)
	}

	img := image(t)
	p, err = kernelkeys.Locate(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := decompress.ReadAll(io.NewSectionReader(bytes.NewReader(img), p.Offset, p.Length), p.Format, decompress.Options{FirstStream: true})
	if err != nil {
		t.Fatal(err)
	}
	want, err := kernelkeys.ReadPayload(payload, kernelkeys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(keySummary(got), keySummary(want)) || len(got.System) == 0 {
		t.Fatalf("spooled: %v\nin memory: %v", keySummary(got), keySummary(want))
	}
}

// heapGrowth runs fn and returns how far the Go heap grew above where it
// was before (what other tests left in it, such as the package's shared
// images, is not fn's), sampled every millisecond.
func heapGrowth(t *testing.T, fn func() error) uint64 {
	t.Helper()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	base := s[0].Value.Uint64()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64()-min(base, s[0].Value.Uint64()))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	err := fn()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return peak
}

// TestReadNoTempDir: when the temporary file cannot be made, Read holds
// the payload in memory and returns the same keys.
func TestReadNoTempDir(t *testing.T) {
	img, certs := debian(t)
	k, err := kernelkeys.Read(bytes.NewReader(img), int64(len(img)), kernelkeys.Options{TempDir: t.TempDir() + "/absent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.System) != len(certs) || !k.System[0].Equal(certs[0]) {
		t.Fatalf("%d certificates, want %d", len(k.System), len(certs))
	}
}

func keySummary(k *kernelkeys.Keys) []string {
	out := []string{"method " + k.Method}
	for _, c := range k.System {
		out = append(out, "system "+string(c.Raw))
	}
	for _, c := range k.Revoked {
		out = append(out, "revoked "+string(c.Raw))
	}
	for _, h := range k.Hashes {
		out = append(out, "hash "+h.String())
	}
	return append(out, k.Notes...)
}
