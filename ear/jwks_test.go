package ear_test

import (
	"testing"
	"time"

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

// TestWindow: a verified report's window runs from its iat (or its
// chain's NotBefore, the later) less Leeway to its exp (or its chain's
// earliest NotAfter) plus Leeway, from the CA and from the JWKS alike;
// Verify accepts it at the window's end and refuses it (expired) a
// second after.
func TestWindow(t *testing.T) {
	s := newService(t)
	v := s.report(t, nil)
	from, until := v.Window()
	wantFrom, wantUntil := v.Claims.IssuedAt, v.Claims.Expiry
	for _, c := range v.Chain {
		if c.NotBefore.After(wantFrom) {
			wantFrom = c.NotBefore
		}
		if c.NotAfter.Before(wantUntil) {
			wantUntil = c.NotAfter
		}
	}
	if !from.Equal(wantFrom.Add(-ear.Leeway)) || !until.Equal(wantUntil.Add(ear.Leeway)) || !until.After(from) {
		t.Fatalf("window %v – %v, want %v – %v", from, until, wantFrom.Add(-ear.Leeway), wantUntil.Add(ear.Leeway))
	}
	if _, err := ear.Verify(v.Token, s.roots, until); err != nil {
		t.Fatalf("at the window's end: %v", err)
	}
	if _, err := ear.Verify(v.Token, s.roots, until.Add(time.Second)); ear.Of(err) != ear.Expired {
		t.Fatalf("a second after the window: %v", err)
	}
	jwks, err := s.iss.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	j, err := ear.VerifyJWKS(v.Token, jwks, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if f, u := j.Window(); !f.Equal(v.Claims.IssuedAt.Add(-ear.Leeway)) || !u.Equal(v.Claims.Expiry.Add(ear.Leeway)) {
		t.Fatalf("the JWKS window %v – %v", f, u)
	}
}
