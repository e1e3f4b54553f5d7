package ear_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// A relying party admits a client that presents a session report and a
// proof of possession: the report verifies offline against the service's
// report CA, the proof is signed by the report key the report binds
// (cnf), for this relying party and its nonce, and is used once.
func ExampleVerifyProof() {
	ctx := context.Background()
	now := time.Now()

	// The service issues the host a session report binding its report
	// key (here a service in memory and a software key; a real host's
	// key is in its TPM, and the agent signs with it: vigil agent prove).
	iss, err := token.NewIssuer(ctx, tokentest.NewKeyStore(), token.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	hostKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	report, err := iss.Issue(ctx, &ear.Claims{AgentID: "web-01", Level: 3, Status: "affirming", ReportKey: &hostKey.PublicKey, Audience: []string{"https://bank.example"}})
	if err != nil {
		log.Fatal(err)
	}
	// The host proves possession for the relying party's nonce.
	proof, err := ear.SignProof(ctx, &hostKey.PublicKey, ear.ProofClaims{
		Audience: "https://bank.example", Nonce: "5e1f0c", IssuedAt: now.Unix(), ID: "a1", ReportHash: ear.ReportHash(report),
	}, func(_ context.Context, m []byte) ([]byte, error) {
		h := sha256.Sum256(m)
		return ecdsa.SignASN1(rand.Reader, hostKey, h[:])
	})
	if err != nil {
		log.Fatal(err)
	}

	// The relying party holds the report CA (/.well-known/vigil-ca.pem)
	// and one replay cache.
	roots := x509.NewCertPool()
	roots.AddCert(iss.CA())
	replay := ear.NewMemoryReplayCache(0)
	admit := func(report, proof string) error {
		v, err := ear.Verify(report, roots, now)
		if err != nil {
			return err
		}
		if err := v.Require(ear.Requirement{MinLevel: 2}, now); err != nil {
			return err
		}
		_, err = ear.VerifyProof(ctx, proof, v, ear.ProofExpect{Audience: "https://bank.example", Nonce: "5e1f0c", Now: now}, replay)
		if err == nil {
			fmt.Printf("admitted %s at level %d\n", v.Claims.AgentID, v.Claims.Level)
		}
		return err
	}
	if err := admit(report, proof); err != nil {
		log.Fatal(err)
	}
	// The same proof again, and the report with no proof.
	fmt.Println(ear.Of(admit(report, proof)))
	fmt.Println(ear.Of(admit(report, "")))
	// Output:
	// admitted web-01 at level 3
	// pop-replayed
	// pop-missing
}
