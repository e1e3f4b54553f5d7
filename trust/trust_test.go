package trust_test

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
	"github.com/vigil-attest/vigil/trust"
)

func TestBuild(t *testing.T) {
	now := time.Now()
	root := testpki.NewRoot(testpki.Options{})
	inter := root.NewIntermediate(testpki.Options{})
	leaf := inter.NewLeaf(testpki.Options{})
	expired := inter.NewLeaf(testpki.Options{NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})
	future := inter.NewLeaf(testpki.Options{NotBefore: now.AddDate(1, 0, 0)})
	serverOnly := inter.NewLeaf(testpki.Options{EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	kmcs := inter.NewLeaf(testpki.Options{UnknownEKU: []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 61, 1, 1}}})
	sha1Leaf := inter.NewLeaf(testpki.Options{SigAlg: x509.SHA1WithRSA})
	serverInter := root.NewIntermediate(testpki.Options{CommonName: "TLS only CA", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	constrained := serverInter.NewLeaf(testpki.Options{})
	other := testpki.NewRoot(testpki.Options{})
	// Same subject name as inter, different key: no path may form.
	impostor := testpki.NewRoot(testpki.Options{CommonName: "Vigil Test Intermediate CA"})
	forged := impostor.NewLeaf(testpki.Options{})

	code := []asn1.ObjectIdentifier{trust.EKUCodeSigning}
	kmcsEKU := []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 61, 1, 1}}
	cases := []struct {
		name string
		leaf *x509.Certificate
		o    trust.Options
		want reason.Code
		n    int
	}{
		{"root anchor", leaf.Cert, trust.Options{Anchors: []*x509.Certificate{root.Cert}, Intermediates: []*x509.Certificate{inter.Cert}, RequireEKU: code}, "", 3},
		{"intermediate anchor", leaf.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, RequireEKU: code}, "", 2},
		{"leaf itself anchor", leaf.Cert, trust.Options{Anchors: []*x509.Certificate{leaf.Cert}}, "", 1},
		{"missing intermediate", leaf.Cert, trust.Options{Anchors: []*x509.Certificate{root.Cert}}, reason.UntrustedChain, 0},
		{"other root", leaf.Cert, trust.Options{Anchors: []*x509.Certificate{other.Cert}, Intermediates: []*x509.Certificate{inter.Cert}}, reason.UntrustedChain, 0},
		{"expired now", expired.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}}, reason.Expired, 0},
		{"expired but timestamped inside", expired.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, At: now.AddDate(-1, -6, 0)}, "", 2},
		{"expired ignored", expired.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, IgnoreExpiry: true}, "", 2},
		{"not yet valid", future.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}}, reason.NotYetValid, 0},
		{"wrong eku", serverOnly.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, RequireEKU: code}, reason.WrongEKU, 0},
		{"no eku required", serverOnly.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}}, "", 2},
		{"kernel mode eku", kmcs.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, RequireEKU: kmcsEKU}, "", 2},
		{"kernel mode eku missing", leaf.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, RequireEKU: kmcsEKU}, reason.WrongEKU, 0},
		{"intermediate eku constrains", constrained.Cert, trust.Options{Anchors: []*x509.Certificate{root.Cert}, Intermediates: []*x509.Certificate{serverInter.Cert}, RequireEKU: code}, reason.WrongEKU, 0},
		{"sha1 chain weak", sha1Leaf.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, MinHash: crypto.SHA256}, reason.WeakAlgorithm, 0},
		{"sha1 chain allowed", sha1Leaf.Cert, trust.Options{Anchors: []*x509.Certificate{inter.Cert}, MinHash: crypto.SHA1}, "", 2},
		{"forged issuer name", forged.Cert, trust.Options{Anchors: []*x509.Certificate{root.Cert}, Intermediates: []*x509.Certificate{inter.Cert}}, reason.UntrustedChain, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := trust.Build(tc.leaf, tc.o)
			if got := reason.Of(err, ""); got != tc.want {
				t.Fatalf("got %q (%v), want %q", got, err, tc.want)
			}
			if tc.want == "" && len(chain) != tc.n {
				t.Fatalf("chain length %d, want %d: %v", len(chain), tc.n, chain)
			}
		})
	}
}
