package server_test

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
)

// BenchmarkAttestHTTP: full rounds (challenge, evidence, attest) over
// HTTP on loopback by parallel software agents, SQLite store. The agents'
// signing runs on the same machine.
func BenchmarkAttestHTTP(b *testing.B) {
	svc := testserver.Start(b, testserver.Options{})
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		a := newSoftAgent(b, "bench-"+strconv.FormatInt(n.Add(1), 10))
		do(b, svc.URL, "POST", api.PathEnroll, a.softEnroll(b)).decode(b, &api.EnrollResponse{})
		for pb.Next() {
			a.round(b, svc.URL)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attest/s")
}
