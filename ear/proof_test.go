package ear_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// epoch is the fake clock: reports and proofs are made and checked at it.
var epoch = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// service is an Issuer under a CA of its own at epoch.
type service struct {
	iss   *token.Issuer
	roots *x509.CertPool
	now   time.Time
}

func newService(tb testing.TB) *service {
	tb.Helper()
	s := &service{now: epoch}
	iss, err := token.NewIssuer(context.Background(), tokentest.NewKeyStore(), token.Options{
		Now: func() time.Time { return s.now }, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	s.iss = iss
	s.roots = x509.NewCertPool()
	s.roots.AddCert(iss.CA())
	return s
}

// report issues and verifies a report binding key, for aud.
func (s *service) report(tb testing.TB, key crypto.PublicKey, aud ...string) *ear.Verified {
	tb.Helper()
	tok, err := s.iss.Issue(context.Background(), &ear.Claims{AgentID: "web-01", Nonce: []byte("0123456789abcdef"), Level: 2, Status: "affirming", ReportKey: key, Audience: aud})
	if err != nil {
		tb.Fatal(err)
	}
	v, err := ear.Verify(tok, s.roots, s.now)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// signer is SignFunc for a software key: what an enclave returns.
func signer(k crypto.Signer) ear.SignFunc {
	return func(_ context.Context, m []byte) ([]byte, error) {
		h := sha256.Sum256(m)
		if ek, ok := k.(*ecdsa.PrivateKey); ok {
			return ecdsa.SignASN1(rand.Reader, ek, h[:])
		}
		return k.Sign(rand.Reader, h[:], crypto.SHA256)
	}
}

func p256(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func prove(tb testing.TB, k crypto.Signer, c ear.ProofClaims) string {
	tb.Helper()
	p, err := ear.SignProof(context.Background(), k.Public(), c, signer(k))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func claimsFor(v *ear.Verified, at time.Time, jti string) ear.ProofClaims {
	return ear.ProofClaims{Audience: "https://bank.example", Nonce: "rp-nonce-1", IssuedAt: at.Unix(), ID: jti, ReportHash: ear.ReportHash(v.Token),
		Method: "POST", URL: "https://bank.example/transfer"}
}

func expect(now time.Time) ear.ProofExpect {
	return ear.ProofExpect{Audience: "https://bank.example", Nonce: "rp-nonce-1", Method: "POST", URL: "https://bank.example/transfer?amount=5", Now: now}
}

// b64 and resign let a test rewrite a proof's segments and sign them
// with a key of its choosing.
func b64(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func segment(tb testing.TB, seg string) map[string]any {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func resignES256(tb testing.TB, k *ecdsa.PrivateKey, hdr, claims string) string {
	tb.Helper()
	in := hdr + "." + claims
	h := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	if err != nil {
		tb.Fatal(err)
	}
	half := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
	if s.Cmp(half) > 0 {
		s.Sub(elliptic.P256().Params().N, s)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestProofAttacks: each way a proof can be wrong, made as an attacker
// would make it, is refused with its code; the honest proof passes.
func TestProofAttacks(t *testing.T) {
	s := newService(t)
	key, other := p256(t), p256(t)
	v := s.report(t, &key.PublicKey)
	otherReport := s.report(t, &key.PublicKey)
	shopReport := s.report(t, &key.PublicKey, "https://shop.example")
	jwkOf := func(k crypto.PublicKey) any {
		j, err := ear.PublicJWK(k)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(j, &m)
		return m
	}
	good := prove(t, key, claimsFor(v, epoch, "jti-good"))
	parts := strings.Split(good, ".")
	hdr, cl := segment(t, parts[0]), segment(t, parts[1])
	with := func(m map[string]any, k string, val any) map[string]any {
		c := map[string]any{}
		for a, b := range m {
			c[a] = b
		}
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	privJWK := jwkOf(&key.PublicKey).(map[string]any)
	privJWK = with(privJWK, "d", base64.RawURLEncoding.EncodeToString(mustBytes(t, key)))
	otherEC := jwkOf(&other.PublicKey)

	cases := []struct {
		name   string
		proof  string
		report *ear.Verified
		want   func(*ear.ProofExpect)
		code   ear.Code
	}{
		{"none", "", v, nil, ear.ProofMissing},
		{"not a JWS", "level-4", v, nil, ear.ProofMalformed},
		{"the session report as its own proof", v.Token, v, nil, ear.ProofWrongType},
		{"typ JWT", resignES256(t, key, b64(t, with(hdr, "typ", "JWT")), parts[1]), v, nil, ear.ProofWrongType},
		{"typ dpop+jwt", resignES256(t, key, b64(t, with(hdr, "typ", "dpop+jwt")), parts[1]), v, nil, ear.ProofWrongType},
		{"no typ", resignES256(t, key, b64(t, with(hdr, "typ", nil)), parts[1]), v, nil, ear.ProofWrongType},
		{"alg none", b64(t, with(hdr, "alg", "none")) + "." + parts[1] + ".", v, nil, ear.ProofAlg},
		{"alg HS256", resignES256(t, key, b64(t, with(hdr, "alg", "HS256")), parts[1]), v, nil, ear.ProofAlg},
		{"jwk with the private key", resignES256(t, key, b64(t, with(hdr, "jwk", privJWK)), parts[1]), v, nil, ear.ProofMalformed},
		{"no jwk", resignES256(t, key, b64(t, with(hdr, "jwk", nil)), parts[1]), v, nil, ear.ProofMalformed},
		{"kid beside jwk", resignES256(t, key, b64(t, with(hdr, "kid", "x")), parts[1]), v, nil, ear.ProofMalformed},
		{"crit", resignES256(t, key, b64(t, with(hdr, "crit", []string{"exp"})), parts[1]), v, nil, ear.ProofMalformed},
		{"claims altered after signing", parts[0] + "." + b64(t, with(cl, "aud", "https://evil.example")) + "." + parts[2], v, nil, ear.ProofBadSignature},
		{"high-S twin", highS(t, good), v, nil, ear.ProofBadSignature},
		{"signed by another key, its own jwk", resignES256(t, other, b64(t, with(hdr, "jwk", otherEC)), parts[1]), v, nil, ear.ProofKeyMismatch},
		{"another key under the report key's jwk", resignES256(t, other, parts[0], parts[1]), v, nil, ear.ProofBadSignature},
		{"report with no cnf", good, s.report(t, nil), nil, ear.ProofKeyMismatch},
		{"another report of the same key", good, otherReport, nil, ear.ProofATHMismatch},
		{"wrong aud", good, v, func(e *ear.ProofExpect) { e.Audience = "https://shop.example" }, ear.ProofAudience},
		{"report for another audience", prove(t, key, claimsFor(shopReport, epoch, "a")), shopReport, nil, ear.ReportAudience},
		{"report without aud, required", good, v, func(e *ear.ProofExpect) { e.RequireReportAudience = true }, ear.ReportAudience},
		{"wrong nonce", good, v, func(e *ear.ProofExpect) { e.Nonce = "rp-nonce-2" }, ear.ProofNonce},
		{"no nonce", prove(t, key, func() ear.ProofClaims { c := claimsFor(v, epoch, "n"); c.Nonce = ""; return c }()), v, nil, ear.ProofNonce},
		{"wrong method", good, v, func(e *ear.ProofExpect) { e.Method = "GET" }, ear.ProofMethod},
		{"wrong URL", good, v, func(e *ear.ProofExpect) { e.URL = "https://bank.example/login" }, ear.ProofURL},
		{"wrong host", good, v, func(e *ear.ProofExpect) { e.URL = "https://bank.example.evil/transfer" }, ear.ProofURL},
		{"HTTP-bound proof off HTTP", good, v, func(e *ear.ProofExpect) { e.Method, e.URL = "", "" }, ear.ProofMethod},
		{"stale", good, v, func(e *ear.ProofExpect) { e.Now = epoch.Add(61 * time.Second) }, ear.ProofStale},
		{"default port and case", good, v, func(e *ear.ProofExpect) { e.URL = "HTTPS://Bank.Example:443/transfer#x" }, ""},
		{"another port", good, v, func(e *ear.ProofExpect) { e.URL = "https://bank.example:8443/transfer" }, ear.ProofURL},
		{"from the future", prove(t, key, claimsFor(v, epoch.Add(6*time.Second), "f")), v, nil, ear.ProofFuture},
		{"report expired", good, v, func(e *ear.ProofExpect) { e.Now = epoch.Add(11 * time.Minute); e.MaxAge = time.Hour }, ear.Expired},
		{"unknown claim", resignES256(t, key, parts[0], b64(t, with(cl, "level", 4))), v, nil, ear.ProofMalformed},
		{"no jti", resignES256(t, key, parts[0], b64(t, with(cl, "jti", nil))), v, nil, ear.ProofMalformed},
		{"iat a string", resignES256(t, key, parts[0], b64(t, with(cl, "iat", "1700000000"))), v, nil, ear.ProofMalformed},
		{"ath not a digest", resignES256(t, key, parts[0], b64(t, with(cl, "ath", "abc"))), v, nil, ear.ProofMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := expect(epoch)
			if tc.want != nil {
				tc.want(&want)
			}
			_, err := ear.VerifyProof(context.Background(), tc.proof, tc.report, want, ear.NewMemoryReplayCache(0))
			if ear.Of(err) != tc.code || (tc.code == "") != (err == nil) {
				t.Fatalf("VerifyProof: %v (code %q), want %s", err, ear.Of(err), tc.code)
			}
		})
	}

	t.Run("replayed at the window's last instant", func(t *testing.T) {
		cache := ear.NewMemoryReplayCache(0)
		last := expect(epoch.Add(ear.DefaultProofMaxAge))
		if _, err := ear.VerifyProof(context.Background(), good, v, last, cache); err != nil {
			t.Fatal(err)
		}
		if _, err := ear.VerifyProof(context.Background(), good, v, last, cache); ear.Of(err) != ear.ProofReplayed {
			t.Fatalf("the same proof at the same last instant: %v", err)
		}
	})

	t.Run("honest, then replayed", func(t *testing.T) {
		cache := ear.NewMemoryReplayCache(0)
		p, err := ear.VerifyProof(context.Background(), good, v, expect(epoch), cache)
		if err != nil {
			t.Fatalf("the honest proof: %v", err)
		}
		tp, _ := ear.Thumbprint(&key.PublicKey)
		if p.Thumbprint != tp || p.Alg != "ES256" || p.Claims.ID != "jti-good" {
			t.Errorf("proof %+v", p)
		}
		_, err = ear.VerifyProof(context.Background(), good, v, expect(epoch.Add(time.Second)), cache)
		if ear.Of(err) != ear.ProofReplayed {
			t.Fatalf("replayed: %v, want %s", err, ear.ProofReplayed)
		}
	})
}

func highS(tb testing.TB, p string) string {
	tb.Helper()
	i := strings.LastIndexByte(p, '.')
	sig, err := base64.RawURLEncoding.DecodeString(p[i+1:])
	if err != nil {
		tb.Fatal(err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	s.FillBytes(sig[32:])
	return p[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// TestProofRS256: an RSA report key (a TPM's RSA report key) proves with
// RS256; a small RSA key is refused.
func TestProofRS256(t *testing.T) {
	s := newService(t)
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	v := s.report(t, &k.PublicKey)
	p := prove(t, k, claimsFor(v, epoch, "rsa-1"))
	got, err := ear.VerifyProof(context.Background(), p, v, expect(epoch), ear.NewMemoryReplayCache(0))
	if err != nil || got.Alg != "RS256" {
		t.Fatalf("RS256 proof: %+v, %v", got, err)
	}
	// The same claims under alg ES256 with the RSA jwk.
	parts := strings.Split(p, ".")
	h := segment(t, parts[0])
	h["alg"] = "ES256"
	forged := b64(t, h) + "." + parts[1] + "." + parts[2]
	if _, err := ear.VerifyProof(context.Background(), forged, v, expect(epoch), ear.NewMemoryReplayCache(0)); ear.Of(err) != ear.ProofAlg {
		t.Fatalf("ES256 with an RSA jwk: %v, want %s", err, ear.ProofAlg)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	vs := s.report(t, &small.PublicKey)
	_, err = ear.SignProof(context.Background(), &small.PublicKey, claimsFor(vs, epoch, "rsa-small"), signer(small))
	if ear.Of(err) != ear.ProofAlg {
		t.Fatalf("an RSA-1024 proof: %v, want %s", err, ear.ProofAlg)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	ctx := context.Background()
	c := ear.NewMemoryReplayCache(2)
	for _, id := range []string{"a", "b"} {
		if fresh, err := c.Record(ctx, id, epoch, epoch.Add(time.Minute)); !fresh || err != nil {
			t.Fatalf("%s: %v %v", id, fresh, err)
		}
	}
	if fresh, err := c.Record(ctx, "a", epoch.Add(59*time.Second), epoch.Add(2*time.Minute)); fresh || err != nil {
		t.Fatalf("replay of a within its window: fresh %v, %v", fresh, err)
	}
	if _, err := c.Record(ctx, "c", epoch, epoch.Add(time.Minute)); !errors.Is(err, ear.ErrReplayCacheFull) {
		t.Fatalf("a full cache: %v, want ErrReplayCacheFull", err)
	}
	// A minute later a and b have expired: room again, and a is new.
	if fresh, err := c.Record(ctx, "a", epoch.Add(time.Minute), epoch.Add(2*time.Minute)); !fresh || err != nil || c.Len() != 1 {
		t.Fatalf("after expiry: fresh %v, %v, len %d", fresh, err, c.Len())
	}
}

func mustBytes(tb testing.TB, k *ecdsa.PrivateKey) []byte {
	tb.Helper()
	b, err := k.Bytes()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
