package token_test

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
)

// fuzzSeeds are real tokens: a full report, a minimal one, and tampered
// and forged variants.
func fuzzSeeds(tb testing.TB, g *forger) []string {
	full := g.issue(tb, sampleClaims())
	minimal := g.issue(tb, &ear.Claims{AgentID: "a", Status: "contraindicated", Failures: []appraise.Failure{{Claim: "evidence.signature", Reason: "bad-report-signature", Level: 1}}})
	parts := strings.Split(full, ".")
	return []string{
		full,
		minimal,
		parts[0] + "." + b64json(tb, with(claimsOf(tb, full), ear.ClaimLevel, 4)) + "." + parts[2],
		b64json(tb, with(headerOf(tb, full), "alg", "none")) + "." + parts[1] + ".",
		mint(tb, g.header(), without(claimsOf(tb, full), "sub"), g.leafKey),
		highSTwin(tb, full),
	}
}

// highSTwin is tok with its signature (r, s) replaced by (r, n−s), which
// ECDSA also accepts.
func highSTwin(tb testing.TB, tok string) string {
	tb.Helper()
	dot := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil || len(sig) != 64 {
		tb.Fatalf("signature %v (%d bytes)", err, len(sig))
	}
	s := new(big.Int).SetBytes(sig[32:])
	new(big.Int).Sub(elliptic.P256().Params().N, s).FillBytes(sig[32:])
	return tok[:dot+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// FuzzVerify feeds untrusted token strings to Verify and VerifyJWKS: no
// panic, every refusal has a reason, and nothing is accepted that is not
// exactly a seed — the signature cannot be forged and has one encoding
// (low s), so mutations must all fail.
func FuzzVerify(f *testing.F) {
	g := newForger(f)
	jwks := mustJWKS(f, g.iss)
	seeds := map[string]bool{}
	for _, s := range fuzzSeeds(f, g) {
		f.Add(s)
		seeds[s] = true
	}
	f.Fuzz(func(t *testing.T, tok string) {
		for name, verify := range map[string]func() (*ear.Verified, error){
			"Verify":     func() (*ear.Verified, error) { return ear.Verify(tok, g.roots, epoch) },
			"VerifyJWKS": func() (*ear.Verified, error) { return ear.VerifyJWKS(tok, jwks, epoch) },
		} {
			v, err := verify()
			if err != nil {
				if ear.Of(err) == "" {
					t.Fatalf("%s: an error without a reason: %v", name, err)
				}
				continue
			}
			if !seeds[tok] {
				t.Fatalf("%s accepted a token nobody signed: %q", name, tok)
			}
			checkVerified(t, v)
		}
	})
}

// FuzzVerifyClaims signs untrusted claims sets with a trusted signing
// certificate, so that the fuzzer reaches the claims decoder (ear's and
// ours) past the signature: no panic, every refusal has a reason, and an
// accepted report's claims are sane.
func FuzzVerifyClaims(f *testing.F) {
	g := newForger(f)
	for _, s := range fuzzSeeds(f, g) {
		_, claims := segments(f, s)
		f.Add([]byte(mustJSON(f, claims)))
	}
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, claims []byte) {
		tok := mint(t, g.header(), string(claims), g.leafKey)
		v, err := ear.Verify(tok, g.roots, epoch)
		if err != nil {
			if ear.Of(err) == "" {
				t.Fatalf("an error without a reason: %v", err)
			}
			return
		}
		checkVerified(t, v)
	})
}

func checkVerified(t *testing.T, v *ear.Verified) {
	t.Helper()
	c := v.Claims
	if c.AgentID == "" || c.Level < 0 || c.Level > appraise.MaxLevel || c.Status == "" ||
		!c.Expiry.After(c.IssuedAt) || epoch.After(c.Expiry.Add(ear.Leeway)) || c.IssuedAt.After(epoch.Add(ear.Leeway)) || v.Raw == nil {
		t.Fatalf("accepted insane claims %+v", c)
	}
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
