package token_test

import (
	"testing"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/token"
)

// TestExpect: a genuine report (it verifies against the CA) that is not
// the one asked for — another agent's, another challenge's, another
// key's, or one lacking the claim — is refused with its reason; an empty
// expectation never passes.
func TestExpect(t *testing.T) {
	f := newFixture(t, token.Options{})
	c := sampleClaims()
	v, err := ear.Verify(f.issue(t, c), f.roots, epoch)
	if err != nil {
		t.Fatal(err)
	}
	noNonce, noKey := sampleClaims(), sampleClaims()
	noNonce.Nonce, noKey.ReportKey = nil, nil
	verified := func(c *ear.Claims) *ear.Verified {
		v, err := ear.Verify(f.issue(t, c), f.roots, epoch)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	other := ecdsaKey(t)
	want := ear.Expected{AgentID: c.AgentID, Nonce: c.Nonce, ReportKey: &reportKey.PublicKey}
	for _, tc := range []struct {
		name string
		v    *ear.Verified
		e    ear.Expected
		want ear.Code
	}{
		{"the report asked for", v, want, ""},
		{"another agent", v, ear.Expected{AgentID: "agent-8", Nonce: want.Nonce, ReportKey: want.ReportKey}, ear.WrongSubject},
		{"another challenge", v, ear.Expected{AgentID: want.AgentID, Nonce: []byte("0123456789abcdef0123456789abcdeF"), ReportKey: want.ReportKey}, ear.WrongNonce},
		{"a prefix of the nonce", v, ear.Expected{AgentID: want.AgentID, Nonce: want.Nonce[:16], ReportKey: want.ReportKey}, ear.WrongNonce},
		{"another key", v, ear.Expected{AgentID: want.AgentID, Nonce: want.Nonce, ReportKey: &other.PublicKey}, ear.WrongKey},
		{"no eat_nonce", verified(noNonce), want, ear.WrongNonce},
		{"no cnf", verified(noKey), want, ear.WrongKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.Expect(tc.e)
			if got := ear.Of(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("%v (reason %q), want %q", err, got, tc.want)
			}
		})
	}
	for name, e := range map[string]ear.Expected{
		"no agent": {Nonce: want.Nonce, ReportKey: want.ReportKey},
		"no nonce": {AgentID: want.AgentID, ReportKey: want.ReportKey},
		"no key":   {AgentID: want.AgentID, Nonce: want.Nonce},
	} {
		if err := v.Expect(e); err == nil || ear.Of(err) != "" {
			t.Errorf("%s: %v, want a caller's error", name, err)
		}
	}
	var none *ear.Verified
	if err := none.Expect(want); err == nil {
		t.Error("a nil report passed")
	}
}
