package measure_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/measure"
)

// benchHost is the reference tree: 200 loaded, signed modules and
// a 10,000-entry IMA list, plus a few hundred processes.
func benchHost(b *testing.B) (string, *testhost.Host) {
	h := healthy(b)
	h.Modules = nil
	for i := 0; i < 200; i++ {
		n := fmt.Sprintf("mod%03d", i)
		h.Modules = append(h.Modules, testhost.Module{Name: n, Size: 65536, File: signedModule(b, n)})
	}
	for pid := 2000; pid < 2300; pid++ {
		h.Processes = append(h.Processes, testhost.Process{PID: pid, Comm: "worker", Exe: "/usr/bin/worker", ExeData: []byte("w")})
	}
	addBenchIMA(b, h, 10000)
	return h.WriteDir(b), h
}

func benchMeasure(b *testing.B, warm bool, withEngine bool) {
	dir, h := benchHost(b)
	o := measure.Options{Config: sshdConfig()}
	if withEngine {
		o.Engine = engine(b, "")
	}
	m := measure.New(o)
	if warm {
		if _, err := m.Measure(context.Background(), h.Source(dir)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !warm {
			m = measure.New(o)
			if withEngine {
				o.Engine = engine(b, "")
				m = measure.New(o)
			}
		}
		r, err := m.Measure(context.Background(), hostfs.Source(h.Source(dir)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Canonical(); err != nil {
			b.Fatal(err)
		}
		if len(r.Modules.Loaded) != 200 {
			b.Fatalf("%d modules", len(r.Modules.Loaded))
		}
	}
}

// BenchmarkMeasureCold: a fresh measurer, no module signature checks
// (target ≤ 100 ms).
func BenchmarkMeasureCold(b *testing.B) { benchMeasure(b, false, false) }

// BenchmarkMeasureColdVerify: a fresh measurer and engine, every module
// judged.
func BenchmarkMeasureColdVerify(b *testing.B) { benchMeasure(b, false, true) }

// BenchmarkMeasureWarm: the agent's steady state, module verdicts cached
// and the IMA list read incrementally (target < 20 ms).
func BenchmarkMeasureWarm(b *testing.B) { benchMeasure(b, true, true) }
