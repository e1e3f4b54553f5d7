package evidence

import (
	"context"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave"
)

// TestDomainSeparation: one report key signs evidence and proofs of
// possession, and neither signature passes for the other. A proof's
// signature set as evidence's report signature is bad-report-signature;
// the evidence's report signature set as a proof's is pop-bad-signature.
func TestDomainSeparation(t *testing.T) {
	if enclave.ProofType != ear.ProofType {
		t.Fatalf("enclave.ProofType %q, ear.ProofType %q", enclave.ProofType, ear.ProofType)
	}
	ctx := context.Background()
	fx := newFixture(t, fixtureOptions{software: true})
	e := newSoft(t, "agent-a")
	if pemOf(t, e.ReportPublic()) != fx.ev.ReportKey.Public {
		t.Fatal("the test's key is not the evidence's report key")
	}
	sign := func(ctx context.Context, m []byte) ([]byte, error) { return enclave.SignMessage(ctx, e, m) }
	proof, err := ear.SignProof(ctx, e.ReportPublic(), ear.ProofClaims{Audience: "rp", IssuedAt: time.Now().Unix(), ID: "j1", ReportHash: ear.ReportHash("tok")}, sign)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(proof, ".")
	rs, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a proof's signature as evidence", func(t *testing.T) {
		der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])})
		if err != nil {
			t.Fatal(err)
		}
		ev := clone(t, fx.ev)
		ev.ReportSignature = der
		wantReasons(t, verify(t, ev, fx.opts), BadReportSignature)
	})

	t.Run("evidence's signature as a proof", func(t *testing.T) {
		var sig struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(fx.ev.ReportSignature, &sig); err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, 64)
		sig.R.FillBytes(raw[:32])
		sig.S.FillBytes(raw[32:])
		forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(raw)
		if _, err := ear.ParseProof(forged); ear.Of(err) != ear.ProofBadSignature {
			t.Fatalf("ParseProof: %v, want %s", err, ear.ProofBadSignature)
		}
		// And the evidence's own message can never be a proof's input:
		// it is labelled, and a JWS signing input is not.
		if err := enclave.CheckSignable(BindingMessage(testNonce, fx.ev.Report)); err != nil {
			t.Fatalf("the binding message is refused: %v", err)
		}
		if strings.ContainsRune(parts[0]+"."+parts[1], 0) {
			t.Fatal("a JWS signing input holds a NUL")
		}
	})
}
