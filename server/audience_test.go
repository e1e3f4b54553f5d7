package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testserver"
)

// TestAttestAudience: the attest request's aud parameters become the
// session report's aud; a malformed one, too many, a repeat or another
// query parameter is 400 bad-request before the nonce is spent.
func TestAttestAudience(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	a := newSoftAgent(t, "aud-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	path := agentPath(api.PathAttest, a.id)

	ev := a.evidenceFor(t, a.challenge(t, svc.URL))
	many := url.Values{}
	for i := range api.MaxAudiences + 1 {
		many.Add(api.QueryAudience, "rp-"+string(rune('a'+i)))
	}
	for _, q := range []string{"aud=", "aud=a%20b", "aud=x&aud=x", "aud=" + strings.Repeat("a", api.MaxAudienceLen+1), "audience=x", many.Encode(), "aud=%zz"} {
		do(t, svc.URL, "POST", path+"?"+q, ev).wantProblem(t, http.StatusBadRequest, api.CodeBadRequest)
	}
	// The nonce was not spent by the refusals.
	var ar api.AttestResponse
	do(t, svc.URL, "POST", path+"?aud=https%3A%2F%2Fbank.example&aud=edr", ev).decode(t, &ar)
	v, err := ear.Verify(ar.Token, svc.CAPool, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(v.Claims.Audience, ",") != "https://bank.example,edr" {
		t.Fatalf("aud %q", v.Claims.Audience)
	}
	// None: a report for no audience.
	do(t, svc.URL, "POST", path, a.evidenceFor(t, a.challenge(t, svc.URL))).decode(t, &ar)
	if v, err := ear.Verify(ar.Token, svc.CAPool, time.Now()); err != nil || v.Claims.Audience != nil || v.Raw["aud"] != nil {
		t.Fatalf("no aud asked: %v %v", v.Claims.Audience, err)
	}
}
