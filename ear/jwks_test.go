package ear_test

import (
	"testing"

	"github.com/vigil-attest/vigil/ear"
)

// TestKeySet: a JWKS parsed once verifies the service's reports as
// VerifyJWKS does; another service's report is unknown-key; a JWKS that
// is not one is an error without a code.
func TestKeySet(t *testing.T) {
	s, other := newService(t), newService(t)
	jwks, err := s.iss.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ear.ParseJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v := s.report(t, nil)
	if len(ks.KeyIDs()) != 1 || ks.KeyIDs()[0] != v.KID {
		t.Fatalf("KeyIDs %v, want [%s]", ks.KeyIDs(), v.KID)
	}
	got, err := ks.Verify(v.Token, epoch)
	if err != nil || got.Claims.AgentID != "web-01" || got.Token != v.Token {
		t.Fatalf("KeySet.Verify: %+v %v", got, err)
	}
	if _, err := ks.Verify(other.report(t, nil).Token, epoch); ear.Of(err) != ear.UnknownKey {
		t.Fatalf("another service's report: %v", err)
	}
	if _, err := ks.Verify("x.y", epoch); ear.Of(err) != ear.Malformed {
		t.Fatalf("not a token: %v", err)
	}
	for _, bad := range []string{"", "{", `{"keys":[{"kty":"EC"}]}`} {
		if _, err := ear.ParseJWKS([]byte(bad)); err == nil || ear.Of(err) != "" {
			t.Errorf("ParseJWKS(%q): %v", bad, err)
		}
	}
}
