package gatekeeper_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/gatekeeper"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// BenchmarkCheck is the gatekeeper's decision on one request with a
// cached key set: a report (ES256, x5c to the CA) and a fresh proof
// (ES256) each verified, the replay cache written, the route's checks.
// Proofs are made before the timer (a P-256 software key: the gate's
// cost does not depend on who signed).
func BenchmarkCheck(b *testing.B) {
	ctx := context.Background()
	iss, err := token.NewIssuer(ctx, tokentest.NewKeyStore(), token.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(iss.CA())
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	report, err := iss.Issue(ctx, &ear.Claims{
		AgentID: "bench-1", Nonce: []byte("0123456789abcdef"), Level: 2, Status: "affirming",
		TrustVector: map[string]int{"hardware": 2}, ReportKey: &key.PublicKey, Audience: []string{"app.test"},
	})
	if err != nil {
		b.Fatal(err)
	}
	gk, err := gatekeeper.New(gatekeeper.Options{Audience: "app.test", Keys: gatekeeper.CAKeys(roots), PublicURL: "https://app.test"})
	if err != nil {
		b.Fatal(err)
	}
	const url = "https://app.test/api/orders"
	proofs := make([]string, b.N)
	now := time.Now().Unix()
	for i := range proofs {
		proofs[i], err = ear.SignProof(ctx, &key.PublicKey, ear.ProofClaims{
			Audience: "app.test", Method: "GET", URL: url, IssuedAt: now, ID: "j" + strconv.Itoa(i), ReportHash: ear.ReportHash(report),
		}, func(_ context.Context, m []byte) ([]byte, error) {
			d := sha256.Sum256(m)
			return ecdsa.SignASN1(rand.Reader, key, d[:])
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	p := gatekeeper.Policy{MinLevel: 2, TrustVector: map[string]string{"hardware": "affirming"}, MaxAge: 5 * time.Minute}
	h := http.Header{"Authorization": {"Vigil " + report}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Set("Vigil-Pop", proofs[i])
		if _, ref := gk.Check(ctx, h, "GET", url, p); ref != nil {
			b.Fatal(ref)
		}
	}
}
