package measure_test

import (
	"context"
	"crypto/x509"
	"os"
	"testing"

	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/measure"
)

// benchHost is the reference tree (testhost.Reference): 200
// loaded, signed modules, a 10,000-entry IMA list and 300 processes, with
// efivars (Secure Boot on, a 400-hash dbx) and a real event log.
func benchHost(b *testing.B) (string, *testhost.Host) {
	log, err := os.ReadFile(artifacts.SharedData(b, "eventlogs/option_rom_eventlog"))
	if err != nil {
		b.Fatal(err)
	}
	h, err := testhost.Reference(&codesign.Signer{Key: pki.Leaf.Key, Cert: pki.Leaf.Cert}, 10000, []*x509.Certificate{pki.Root.Cert}, log)
	if err != nil {
		b.Fatal(err)
	}
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
