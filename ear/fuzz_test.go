package ear_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
)

// FuzzProof: ParseProof and VerifyProof on any string never panic, and
// a proof they admit says what was required. Seeded with real proofs
// (ES256 and RS256, HTTP-bound or not, made by SignProof as the agent
// makes them) and their tampered forms.
func FuzzProof(f *testing.F) {
	s := newService(f)
	key := p256(f)
	v := s.report(f, &key.PublicKey, "https://bank.example")
	good := prove(f, key, claimsFor(v, epoch, "seed-1"))
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	rv := s.report(f, &rk.PublicKey)
	plain := claimsFor(rv, epoch, "seed-rsa")
	plain.Method, plain.URL, plain.Nonce = "", "", ""
	seeds := []string{good, prove(f, rk, plain), v.Token, highS(f, good), "", "a.b.c", good + "x", strings.Replace(good, ".", "..", 1)}
	for _, sd := range seeds {
		f.Add(sd)
	}
	want := expect(epoch)
	f.Fuzz(func(t *testing.T, proof string) {
		p, err := ear.ParseProof(proof)
		if err == nil {
			if p.Thumbprint == "" || (p.Alg != "ES256" && p.Alg != "RS256") || p.Claims.ID == "" || p.Claims.Audience == "" {
				t.Fatalf("ParseProof admitted %+v", p)
			}
		} else if ear.Of(err) == "" {
			t.Fatalf("ParseProof: an error without a code: %v", err)
		}
		for _, r := range []*ear.Verified{v, rv} {
			got, err := ear.VerifyProof(context.Background(), proof, r, want, ear.NewMemoryReplayCache(0))
			if err != nil {
				if ear.Of(err) == "" {
					t.Fatalf("VerifyProof: an error without a code: %v", err)
				}
				continue
			}
			c := got.Claims
			if c.Audience != want.Audience || c.Nonce != want.Nonce || c.Method != want.Method || c.ReportHash != ear.ReportHash(r.Token) ||
				time.Unix(c.IssuedAt, 0).Before(epoch.Add(-ear.DefaultProofMaxAge)) {
				t.Fatalf("VerifyProof admitted %+v", c)
			}
			if tp, _ := ear.Thumbprint(r.Claims.ReportKey); tp != got.Thumbprint {
				t.Fatal("VerifyProof admitted another key's proof")
			}
		}
	})
}
