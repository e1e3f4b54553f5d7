package tpm_test

import (
	"crypto/sha256"
	"testing"

	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

// The benchmarks measure the swtpm round trips: ns/op is the latency of
// one operation as the agent sees it.

// BenchmarkQuote: TPM2_Quote of PCRs 0-10 (ECDSA P-256 AK) plus the
// TPM2_PCR_Read calls for their values.
func BenchmarkQuote(b *testing.B) {
	e := open(b, testtpm.Start(b).URI, tpm.Options{})
	n := make([]byte, 32)
	for b.Loop() {
		if _, err := e.Quote(ctx, bootPCRs, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCertify: TPM2_Certify of the report key by the AK.
func BenchmarkCertify(b *testing.B) {
	e := open(b, testtpm.Start(b).URI, tpm.Options{})
	n := make([]byte, 32)
	for b.Loop() {
		if _, err := e.Certify(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignReport: TPM2_Sign with the report key (and the check of
// the signature).
func BenchmarkSignReport(b *testing.B) {
	e := open(b, testtpm.Start(b).URI, tpm.Options{})
	d := sha256.Sum256([]byte("report"))
	for b.Loop() {
		if _, err := e.SignReport(ctx, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuoteTCP is BenchmarkQuote over swtpm's TCP port.
func BenchmarkQuoteTCP(b *testing.B) {
	e := open(b, testtpm.StartTCP(b).URI, tpm.Options{})
	n := make([]byte, 32)
	for b.Loop() {
		if _, err := e.Quote(ctx, bootPCRs, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen: Open with the keys already persisted (an agent restart).
func BenchmarkOpen(b *testing.B) {
	sw := testtpm.Start(b)
	open(b, sw.URI, tpm.Options{}).Close()
	for b.Loop() {
		e, err := tpm.Open(ctx, sw.URI, tpm.Options{})
		if err != nil {
			b.Fatal(err)
		}
		e.Close()
	}
}
