package evidence

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"testing"

	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// benchFixture is TPM evidence with an ECC P-256 AK, the 121-event
// keylime firmware log and a 1,000-entry IMA increment (entries 5,000 to
// 5,999 after a saved state of 5,000).
func benchFixture(b *testing.B, withLog, withIMA bool) (*Evidence, Options) {
	b.Helper()
	const saved, inc = 5000, 1000
	list := imatest.List(saved + inc)
	// Records are deterministic: List(saved) is a prefix of list. The saved
	// state is what the verifier kept from its last round: SHA-256 only.
	st, err := ima.Parse(bytes.NewReader(imatest.List(saved)), ima.Options{SHA256Only: true})
	if err != nil {
		b.Fatal(err)
	}
	f := newFakeTPM(b, "bench", akECDSA)
	log := readEventLog(b, eventLogName)
	f.setLogPCRs(b, log, list, len(list))
	bo := BuildOptions{Nonce: testNonce, Report: testReport(b, "bench")}
	if withLog {
		bo.EventLog = log
	}
	if withIMA {
		bo.IMALog, bo.IMAOffset = list[st.Offset:], st.Offset
	}
	ev, err := Build(context.Background(), f, bo)
	if err != nil {
		b.Fatal(err)
	}
	o := Options{Nonce: testNonce, AK: f.ak.Public(), IMAState: st}
	if r := Verify(context.Background(), ev, o); !r.Valid || r.EventLogVerified != withLog || r.IMAVerified != withIMA {
		b.Fatalf("fixture: %v %v", r.Reasons, r.Messages)
	}
	return ev, o
}

// BenchmarkVerify is the figure: ECC P-256 AK, a 100-event log
// and a 1,000-entry IMA increment. The sub-benchmarks split it.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name         string
		log, imaList bool
		cache        bool
	}{{"log+ima1000", true, true, false}, {"no-logs", false, false, false}, {"log", true, false, false}, {"ima1000", false, true, false},
		// The boot facts of a log verified before (Options.Cache): what
		// a service judging a fleet booted alike pays per log.
		{"log-cached", true, false, true}} {
		b.Run(c.name, func(b *testing.B) {
			ev, o := benchFixture(b, c.log, c.imaList)
			if c.cache {
				o.Cache = NewCache(0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := Verify(ctx, ev, o); !r.Valid {
					b.Fatal(r.Reasons)
				}
			}
		})
	}
	// The floor: the three P-256 signature verifications every TPM
	// evidence needs (report, certification, quote).
	b.Run("3xECDSA-P256", func(b *testing.B) {
		k := testKey(b, "bench/floor", false).(*ecdsa.PrivateKey)
		d := Binding(testNonce, nil)
		sig, err := ecdsa.SignASN1(rand.Reader, k, d)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for j := 0; j < 3; j++ {
				if !ecdsa.VerifyASN1(&k.PublicKey, d, sig) {
					b.Fatal("verify")
				}
			}
		}
	})
}
