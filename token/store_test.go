package token_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/storetest"
	"github.com/vigil-attest/vigil/token"
)

// TestRealStore runs the Issuer on the real stores (SQLite, and
// PostgreSQL when VIGIL_TEST_POSTGRES is set): two replicas racing to
// start share one CA; a rotation on one reaches the other within
// RefreshInterval; a restarted replica keeps the CA and the key; old
// reports keep verifying.
func TestRealStore(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := context.Background()
		clk := newClock(epoch)
		o := token.Options{Now: clk.Now, KeyLifetime: time.Hour, Issuer: "https://vigil.test", Logger: slog.New(slog.DiscardHandler)}
		open := func(s store.Store) (*token.Issuer, error) { return token.NewIssuer(ctx, s, o) }

		var a, b *token.Issuer
		var errA, errB error
		sa, sb := db.Open(t), db.Open(t)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a, errA = open(sa) }()
		go func() { defer wg.Done(); b, errB = open(sb) }()
		wg.Wait()
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !a.CA().Equal(b.CA()) {
			t.Fatal("two replicas starting together made two CAs")
		}
		roots := poolOf(a.CA())

		tok1, err := a.Issue(ctx, sampleClaims())
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		tok2, err := a.Issue(ctx, sampleClaims())
		if err != nil {
			t.Fatal(err)
		}
		if kidOf(t, tok1) == kidOf(t, tok2) {
			t.Fatal("Rotate kept the key")
		}
		clk.Advance(token.RefreshInterval)
		if got := kidOfIssuer(t, b); got != kidOf(t, tok2) {
			t.Errorf("replica b signs with %s after a's rotation, want %s", got, kidOf(t, tok2))
		}
		jwks := mustJWKS(t, b)
		if got := kidsOf(t, jwks); len(got) < 2 || got[0] != kidOf(t, tok2) {
			t.Errorf("replica b's JWKS %v", got)
		}
		for _, tok := range []string{tok1, tok2} {
			if _, err := ear.Verify(tok, roots, clk.Now()); err != nil {
				t.Error(err)
			}
			if _, err := ear.VerifyJWKS(tok, jwks, clk.Now()); err != nil {
				t.Error(err)
			}
		}

		// A restart: the CA and the current key come back from the store.
		c, err := open(db.Open(t))
		if err != nil {
			t.Fatal(err)
		}
		if !c.CA().Equal(a.CA()) || kidOfIssuer(t, c) != kidOf(t, tok2) {
			t.Error("a restarted replica lost the CA or the key")
		}

		// Past the key's retirement, the first replica to sign rotates;
		// the other follows.
		clk.Advance(time.Hour)
		k3 := kidOfIssuer(t, b)
		if k3 == kidOf(t, tok2) {
			t.Fatal("no rotation after retirement")
		}
		if got := kidOfIssuer(t, a); got != k3 {
			t.Errorf("replica a signs with %s, b with %s", got, k3)
		}
	})
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
