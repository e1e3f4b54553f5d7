package gatekeeper

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// TestReportCache: a report verified once serves the host's next
// requests from the cache, and each request's own checks still run on
// it (a replayed proof, a proof for another audience, a route's level);
// the report expires from the cache at its window's end (expired), and
// a key set that drops its key refuses it at once after the set is
// fetched again (unknown-key). The cache is bounded, least recently used
// out first; ReportCache < 0 disables it.
func TestReportCache(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	mk := func() *token.Issuer {
		iss, err := token.NewIssuer(ctx, tokentest.NewKeyStore(), token.Options{Now: clock, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	a, b := mk(), mk()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	report, err := a.Issue(ctx, &ear.Claims{AgentID: "web-01", Nonce: []byte("0123456789abcdef"), Level: 2, Status: "affirming",
		ReportKey: &key.PublicKey, Audience: []string{"app.test"}})
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://app.test/api"
	n := 0
	proof := func(aud string) http.Header {
		n++
		p, err := ear.SignProof(ctx, &key.PublicKey, ear.ProofClaims{Audience: aud, Method: "GET", URL: url, IssuedAt: now.Unix(),
			ID: "j" + strconv.Itoa(n), ReportHash: ear.ReportHash(report)}, func(_ context.Context, m []byte) ([]byte, error) {
			d := sha256.Sum256(m)
			return ecdsa.SignASN1(rand.Reader, key, d[:])
		})
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Vigil " + report}, "Vigil-Pop": {p}}
	}
	p2 := Policy{MinLevel: 2}
	check := func(g *Gatekeeper, h http.Header, p Policy, want Code) {
		t.Helper()
		_, ref := g.Check(ctx, h, "GET", url, p)
		switch {
		case want == "" && ref != nil:
			t.Fatalf("refused: %v", ref)
		case want != "" && (ref == nil || ref.Code != want):
			t.Fatalf("%v, want %s", ref, want)
		}
	}

	// By the CA.
	roots := x509.NewCertPool()
	roots.AddCert(a.CA())
	g, err := New(Options{Audience: "app.test", Keys: CAKeys(roots), PublicURL: "https://app.test", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	check(g, proof("app.test"), p2, "")
	check(g, proof("app.test"), p2, "")
	if g.reports.len() != 1 {
		t.Fatalf("%d reports cached, want 1", g.reports.len())
	}
	h := proof("app.test")
	check(g, h, p2, "")
	check(g, h, p2, Code(ear.ProofReplayed))
	check(g, proof("other.test"), p2, Code(ear.ProofAudience))
	check(g, proof("app.test"), Policy{MinLevel: 3}, Code(ear.LevelTooLow))
	check(g, proof("app.test"), Policy{MinLevel: 2, MaxAge: time.Minute}, "")
	now = t0.Add(2 * time.Minute)
	check(g, proof("app.test"), Policy{MinLevel: 2, MaxAge: time.Minute}, Code(ear.TooOld))
	v, err := ear.Verify(report, roots, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, until := v.Window()
	now = until
	check(g, proof("app.test"), p2, "")
	now = until.Add(time.Second)
	check(g, proof("app.test"), p2, Code(ear.Expired))
	if g.reports.len() != 0 {
		t.Fatalf("an expired report stays cached")
	}

	// By the JWKS: the service's set drops the report's key.
	now = t0
	var serveB atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		iss := a
		if serveB.Load() {
			iss = b
		}
		set, err := iss.JWKS()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(set)
	}))
	defer srv.Close()
	g, err = New(Options{Audience: "app.test", Keys: NewJWKS(srv.URL, JWKSOptions{}), PublicURL: "https://app.test", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	check(g, proof("app.test"), p2, "")
	check(g, proof("app.test"), p2, "")
	serveB.Store(true)
	now = t0.Add(DefaultJWKSRefresh + time.Second)
	check(g, proof("app.test"), p2, Code(ear.UnknownKey))

	// Bounded; disabled.
	c := newReportCache(2)
	for i := range 3 {
		c.put([32]byte{byte(i)}, v, roots)
	}
	if c.len() != 2 || c.get([32]byte{0}, roots, t0) != nil || c.get([32]byte{2}, roots, t0) == nil {
		t.Fatalf("a cache of 2 after 3 puts: %d held", c.len())
	}
	if c.get([32]byte{2}, x509.NewCertPool(), t0) != nil {
		t.Fatal("an entry served under another pool")
	}
	if g, _ := New(Options{Audience: "app.test", Keys: CAKeys(roots), ReportCache: -1}); g.reports != nil {
		t.Fatal("ReportCache -1 keeps a cache")
	}
}
