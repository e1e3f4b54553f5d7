package ear_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/vigil-attest/vigil/ear"
)

// BenchmarkVerifyProof: what a relying party pays per request: the
// session report against the CA (chain included) and its proof (two
// P-256 verifications of the report, one of the proof, parsing, the
// replay cache).
func BenchmarkVerifyProof(b *testing.B) {
	s := newService(b)
	key := p256(b)
	v := s.report(b, &key.PublicKey)
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = prove(b, key, claimsFor(v, epoch, fmt.Sprint("jti-", i)))
	}
	cache := ear.NewMemoryReplayCache(0)
	want := expect(epoch)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		r, err := ear.Verify(v.Token, s.roots, epoch)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ear.VerifyProof(ctx, proofs[i], r, want, cache); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyProofOnly: the proof alone, the report verified once
// (a relying party caching verified reports by their hash).
func BenchmarkVerifyProofOnly(b *testing.B) {
	s := newService(b)
	key := p256(b)
	v := s.report(b, &key.PublicKey)
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = prove(b, key, claimsFor(v, epoch, fmt.Sprint("jti-", i)))
	}
	cache := ear.NewMemoryReplayCache(0)
	want := expect(epoch)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := ear.VerifyProof(ctx, proofs[i], v, want, cache); err != nil {
			b.Fatal(err)
		}
	}
}
