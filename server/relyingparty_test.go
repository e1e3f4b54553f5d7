package server_test

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
)

// newRP creates a relying party through the admin API and returns its
// token.
func newRP(t testing.TB, svc *testserver.Service, name string, scopes ...string) string {
	t.Helper()
	var rp api.RelyingParty
	admin(t, svc, "POST", api.PathRelyingParties, api.RelyingPartyRequest{Name: name, Scopes: scopes}).decode(t, &rp)
	if rp.Name != name || !strings.HasPrefix(rp.Token, server.RelyingPartyTokenPrefix) || len(rp.Scopes) != len(scopes) {
		t.Fatalf("created %+v", rp)
	}
	return rp.Token
}

// TestRelyingPartyAdmin: only the operator creates, lists and deletes
// relying parties; the token is shown once and never stored; names and
// scopes are checked; a deleted relying party's token stops working.
func TestRelyingPartyAdmin(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	do(t, svc.URL, "POST", api.PathRelyingParties, api.RelyingPartyRequest{Name: "bank", Scopes: []string{"feed"}}).
		wantProblem(t, 401, api.CodeUnauthorized)
	tok := newRP(t, svc, "bank", store.ScopeVerify, store.ScopeFeed)
	admin(t, svc, "POST", api.PathRelyingParties, api.RelyingPartyRequest{Name: "bank", Scopes: []string{"feed"}}).
		wantProblem(t, 409, api.CodeRelyingPartyExists)
	for name, req := range map[string]api.RelyingPartyRequest{
		"bad name":      {Name: "a/b", Scopes: []string{"feed"}},
		"no scope":      {Name: "x"},
		"unknown scope": {Name: "x", Scopes: []string{"admin"}},
	} {
		r := admin(t, svc, "POST", api.PathRelyingParties, req)
		if p := r.problem(t); r.status != 400 || p.Code != api.CodeBadRequest {
			t.Errorf("%s: %d %s", name, r.status, p.Code)
		}
	}
	var list api.RelyingPartyList
	admin(t, svc, "GET", api.PathRelyingParties, nil).decode(t, &list)
	if len(list.RelyingParties) != 1 || list.RelyingParties[0].Token != "" || list.RelyingParties[0].Name != "bank" {
		t.Fatalf("list %+v", list)
	}
	if strings.Contains(string(admin(t, svc, "GET", api.PathRelyingParties, nil).body), tok) {
		t.Fatal("the list shows the token")
	}
	path := strings.Replace(api.PathRelyingParty, "{name}", "bank", 1)
	if r := admin(t, svc, "DELETE", path, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	admin(t, svc, "DELETE", path, nil).wantProblem(t, 404, api.CodeUnknownRelyingParty)
	do(t, svc.URL, "GET", api.PathFeed, nil, "Authorization", "Bearer "+tok).wantProblem(t, 401, api.CodeUnauthorized)
}

// verifyReq is a background check of agent a's evidence for the nonce
// the relying party obtained.
func verifyReq(t testing.TB, nonce string, id string, ev []byte) api.VerifyRequest {
	return api.VerifyRequest{AgentID: id, Nonce: nonce, Evidence: json.RawMessage(ev)}
}

// TestVerifyBackgroundCheck: a relying party with the verify scope gets
// its own session report (aud = its name) for a client's evidence
// answering the challenge it obtained; without its token, with the admin
// token or a feed-only token it is refused; evidence not signed by the
// agent's enrolled key, for another challenge, or replayed is refused
// with the attestation's own codes.
func TestVerifyBackgroundCheck(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	a := newSoftAgent(t, "bg-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	verifyTok := newRP(t, svc, "bank", store.ScopeVerify)
	feedTok := newRP(t, svc, "siem", store.ScopeFeed)
	post := func(tok string, body any) *response {
		t.Helper()
		if tok == "" {
			return do(t, svc.URL, "POST", api.PathVerify, body)
		}
		return do(t, svc.URL, "POST", api.PathVerify, body, "Authorization", "Bearer "+tok)
	}

	// The relying party asks for a challenge (anyone may) and gives its
	// nonce to the client, which answers with evidence.
	c := a.bareChallenge(t, svc.URL)
	ev := a.evidenceFor(t, c)
	req := verifyReq(t, c.Nonce, a.id, ev)
	post("", req).wantProblem(t, 401, api.CodeUnauthorized)
	post(svc.AdminToken, req).wantProblem(t, 401, api.CodeUnauthorized)
	post(feedTok, req).wantProblem(t, 403, api.CodeScopeMissing)
	post(server.RelyingPartyTokenPrefix+"guessed", req).wantProblem(t, 401, api.CodeUnauthorized)

	// Another challenge's nonce than the relying party's.
	other := a.bareChallenge(t, svc.URL)
	post(verifyTok, verifyReq(t, other.Nonce, a.id, ev)).wantProblem(t, 400, api.CodeNonceMismatch)

	// An outsider's evidence for the agent's nonce: another key signed it.
	mallory := newSoftAgent(t, "bg-1")
	post(verifyTok, verifyReq(t, other.Nonce, a.id, mallory.evidenceFor(t, other))).wantProblem(t, 404, api.CodeUnknownAgent)

	var out api.VerifyResponse
	post(verifyTok, req).decode(t, &out)
	if out.AgentID != a.id || out.Audience != "bank" || out.Token == "" || out.Level != 1 {
		t.Fatalf("verify %+v", out)
	}
	v, err := ear.Verify(out.Token, svc.CAPool, time.Now())
	if err != nil {
		t.Fatalf("the session report does not verify: %v", err)
	}
	if v.Claims.AgentID != a.id || hex.EncodeToString(v.Claims.Nonce) != c.Nonce {
		t.Errorf("claims %+v", v.Claims)
	}
	if !slices.Equal(v.Claims.Audience, []string{"bank"}) {
		t.Errorf("aud %v, want [bank]", v.Claims.Audience)
	}
	// The same evidence again: the nonce is spent.
	post(verifyTok, req).wantProblem(t, 409, api.CodeNonceReplayed)
	// A revoked agent is refused.
	admin(t, svc, "POST", agentPath(api.PathRevoke, a.id), nil).decode(t, &api.Agent{})
	c = a.bareChallenge(t, svc.URL)
	post(verifyTok, verifyReq(t, c.Nonce, a.id, a.evidenceFor(t, c))).wantProblem(t, 403, api.CodeAgentRevoked)
}

// nextEvent is the stream's next event, within 5 seconds.
func nextEvent(t *testing.T, evc <-chan api.Event) api.Event {
	t.Helper()
	select {
	case e, ok := <-evc:
		if !ok {
			t.Fatal("the stream ended")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return api.Event{}
}

// sse reads an event stream's events (the stream ends, and the channel
// closes, when the service shuts down).
func sse(t *testing.T, url, tok, lastID string) (int, <-chan api.Event) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	evc := make(chan api.Event, 16)
	if resp.StatusCode != 200 {
		resp.Body.Close()
		close(evc)
		return resp.StatusCode, evc
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("%s: Content-Type %q", url, ct)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				var e api.Event
				if json.Unmarshal([]byte(strings.TrimSpace(d)), &e) == nil {
					evc <- e
				}
			}
		}
		close(evc)
	})
	t.Cleanup(func() { resp.Body.Close(); wg.Wait() })
	return 200, evc
}

// TestFeed: a feed-scoped token, not the admin token, reads the level
// changes, approvals and revocations, and nothing else (a pending
// enrollment is the operator's business); Last-Event-ID resumes it; a
// verify-only token, no token and the admin token are refused.
func TestFeed(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Software: server.SoftwarePending})
	feedTok := newRP(t, svc, "gate", store.ScopeFeed)
	verifyTok := newRP(t, svc, "bank", store.ScopeVerify)
	do(t, svc.URL, "GET", api.PathFeed, nil).wantProblem(t, 401, api.CodeUnauthorized)
	do(t, svc.URL, "GET", api.PathFeed, nil, "Authorization", "Bearer "+svc.AdminToken).wantProblem(t, 401, api.CodeUnauthorized)
	do(t, svc.URL, "GET", api.PathFeed, nil, "Authorization", "Bearer "+verifyTok).wantProblem(t, 403, api.CodeScopeMissing)

	_, evc := sse(t, svc.URL+api.PathFeed, feedTok, "")
	next := func() api.Event { t.Helper(); return nextEvent(t, evc) }
	a := newSoftAgent(t, "feed-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{}) // pending: not in the feed
	admin(t, svc, "POST", agentPath(api.PathApprove, a.id), nil).decode(t, &api.Agent{})
	e := next()
	if e.Type != api.EventStatus || e.Status != "approved" || e.AgentID != a.id {
		t.Fatalf("first feed event %+v, want the approval (the pending enrollment is not in the feed)", e)
	}
	first := e.ID
	a.round(t, svc.URL)
	if e := next(); e.Type != api.EventLevel || e.Level != 1 || e.AgentID != a.id {
		t.Fatalf("level event %+v", e)
	}
	admin(t, svc, "POST", agentPath(api.PathRevoke, a.id), nil).decode(t, &api.Agent{})
	if e := next(); e.Type != api.EventStatus || e.Status != "revoked" {
		t.Fatalf("revoke event %+v", e)
	}
	// Resuming after the approval replays the level change and the
	// revocation only.
	_, again := sse(t, svc.URL+api.PathFeed, feedTok, itoa(first))
	for _, want := range []string{api.EventLevel, "revoked"} {
		select {
		case e := <-again:
			if e.Type != want && e.Status != want {
				t.Fatalf("resumed %+v, want %s", e, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("resume: no %s event", want)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
