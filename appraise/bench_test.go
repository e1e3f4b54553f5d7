package appraise_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/eventlog/eventlogtest"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/service"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// BenchmarkAppraise appraises TPM evidence (ECDSA P-256 AK and report key,
// from swtpm) of the healthy fixture host: the real firmware event log
// sent whole, or reused from the replay state, and an increment of 10 IMA
// entries on a saved state of 200. Verification and Rego included; EAR
// signing is the service's. Run with -cpu 1,2: appraisals run in
// parallel (b.RunParallel), as the service runs them.
//
// input measures the policy input's conversion (the report's JSON to an
// ast.Value), rego the evaluation of the default policy on it.
func BenchmarkAppraise(b *testing.B) {
	ctx := context.Background()
	sw := testtpm.Start(b)
	e := openTPM(b, sw)
	debian := eventlogtest.Debian()
	log := debian.Log()
	testtpm.ExtendEventLog(b, e, log)
	list := imatest.Boot(210, bootPCRs(debian))
	base := imatest.Boot(200, bootPCRs(debian))
	testtpm.ExtendIMA(b, e, base)
	h := healthyHost(b)
	h.EventLog = log
	h.Files[testhost.IMAListPath] = list
	report := measureHost(b, h, engine(b, ""))
	a := defaultAppraiser(b)
	agent := tpmAgent(e)

	// The saved state: a round with the first 200 entries; then the
	// kernel measures 10 more files.
	first := appraiseOK(b, a, &appraise.Request{Agent: agent, Nonce: nonce,
		Evidence: build(b, e, evidence.BuildOptions{Nonce: nonce, Report: report, EventLog: log, IMALog: base})}).State
	off := appraise.IMAOffset(first)
	testtpm.ExtendIMA(b, e, list[off:])

	withLog := build(b, e, evidence.BuildOptions{Nonce: nonce, Report: report, EventLog: log, IMALog: list[off:], IMAOffset: off})
	noLog := build(b, e, evidence.BuildOptions{Nonce: nonce, Report: report, IMALog: list[off:], IMAOffset: off})
	for _, c := range []struct {
		name string
		ev   *evidence.Evidence
	}{{"event-log", withLog}, {"log-reused", noLog}} {
		req := &appraise.Request{Agent: agent, Nonce: nonce, Evidence: c.ev, State: first}
		out := appraiseOK(b, a, req)
		if out.Level != 3 || !out.Verification.IMAVerified {
			b.Fatalf("%s: level %d\n%s", c.name, out.Level, failureSet(out))
		}
		b.Run(c.name, func(b *testing.B) {
			cpu0 := cpuTime()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					out, err := a.Appraise(ctx, req)
					if err != nil || out.Level != 3 {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appraisals/s")
			reportCPU(b, cpu0)
		})
	}
	// The service's whole in-process step: appraisal and the signed
	// session report (EAR, ES256), as server/attest.go does it.
	iss, err := token.NewIssuer(ctx, tokentest.NewKeyStore(), token.Options{Issuer: "https://bench"})
	if err != nil {
		b.Fatal(err)
	}
	// Under the service's garbage-collector settings (vigil server sets
	// them at start): what one service process does per core.
	b.Run("log-reused+ear", func(b *testing.B) {
		defer service.TuneRuntime()()
		req := &appraise.Request{Agent: agent, Nonce: nonce, Evidence: noLog, State: first}
		cpu0 := cpuTime()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				out, err := a.Appraise(ctx, req)
				if err != nil || out.Level != 3 {
					b.Error(err)
					return
				}
				if _, err := iss.Issue(ctx, &ear.Claims{AgentID: "bench", Nonce: nonce, Level: out.Level, Status: out.Status,
					TrustVector: out.TrustVector, Failures: out.Failures, PolicyID: out.PolicyID, PolicyDigest: out.PolicyDigest,
					ContentVersion: out.ContentVersion, ReportKey: out.ReportKey}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appraisals/s")
		reportCPU(b, cpu0)
	})
	input, eval, err := appraise.PolicySteps(ctx, a, &appraise.Request{Agent: agent, Nonce: nonce, Evidence: noLog, State: first})
	if err != nil {
		b.Fatal(err)
	}
	in, err := input()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("report: %d bytes", len(report))
	b.Run("input", func(b *testing.B) {
		cpu0 := cpuTime()
		defer reportCPU(b, cpu0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := input(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("rego", func(b *testing.B) {
		cpu0 := cpuTime()
		defer reportCPU(b, cpu0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := eval(ctx, in); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// cpuTime is the process's user and system CPU time: on a shared machine
// it measures the work per operation where wall time measures the
// contention too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since cpu0 (GC included).
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
