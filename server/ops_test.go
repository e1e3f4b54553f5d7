package server_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store/storetest"
)

// TestDatabaseFailure: while the database fails, every request that
// needs it is 503 unavailable (no crash, no token), readiness is 503 and
// liveness 200; when it is back, everything works again.
func TestDatabaseFailure(t *testing.T) {
	fs := &faultStore{Store: storetest.SQLite(t)}
	svc := testserver.Start(t, testserver.Options{Store: fs})
	a := newSoftAgent(t, "db-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	do(t, svc.URL, "GET", api.PathReadyz, nil).decode(t, &map[string]string{})
	ch := a.challenge(t, svc.URL)
	ev := a.evidenceFor(t, ch)

	fs.down.Store(true)
	for _, c := range []struct{ method, path string }{
		{"POST", agentPath(api.PathChallenge, "db-1")},
		{"POST", api.PathEnroll},
		{"GET", api.PathReadyz},
		{"GET", api.PathAgents},
		{"POST", agentPath(api.PathRevoke, "db-1")},
	} {
		var body any
		switch c.path {
		case api.PathEnroll:
			body = newSoftAgent(t, "db-2").softEnroll(t)
		case agentPath(api.PathChallenge, "db-1"):
			body = a.challengeBody(t)
		}
		admin(t, svc, c.method, c.path, body).wantProblem(t, 503, api.CodeUnavailable)
	}
	r := a.attest(t, svc.URL, ev)
	r.wantProblem(t, 503, api.CodeUnavailable)
	if strings.Contains(string(r.body), "token") {
		t.Fatalf("a 503 carries a token: %s", r.body)
	}
	do(t, svc.URL, "GET", api.PathHealthz, nil).decode(t, &map[string]string{})

	// Back up: the same evidence is accepted (its nonce was never used).
	fs.down.Store(false)
	var ar api.AttestResponse
	a.attest(t, svc.URL, ev).decode(t, &ar)

	// The result cannot be stored: 503 and no token; nothing stored.
	fs.saveDown.Store(true)
	before, _ := svc.Store.Results(t.Context(), "db-1", 100)
	r = a.attest(t, svc.URL, a.evidenceFor(t, a.challenge(t, svc.URL)))
	r.wantProblem(t, 503, api.CodeUnavailable)
	if strings.Contains(string(r.body), "token") || strings.Contains(string(r.body), "eyJ") {
		t.Fatalf("a failed save answered with a token: %s", r.body)
	}
	fs.saveDown.Store(false)
	after, _ := svc.Store.Results(t.Context(), "db-1", 100)
	if len(after) != len(before) || len(after) != 1 || after[0].ID != ar.ResultID {
		t.Fatalf("results %d before, %d after", len(before), len(after))
	}
	m := metricsText(t, svc.URL)
	for _, want := range []string{`vigil_store_errors_total{op="get_agent"}`, `vigil_store_errors_total{op="save_result"} 1`, `vigil_store_errors_total{op="ping"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestClosedStore: a database handle that is gone (closed under the
// server) gives 503s, never a crash, and readiness says so.
func TestClosedStore(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	a := newSoftAgent(t, "closed-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	ev := a.evidenceFor(t, a.challenge(t, svc.URL))
	svc.Store.Close()
	a.attest(t, svc.URL, ev).wantProblem(t, 503, api.CodeUnavailable)
	do(t, svc.URL, "POST", agentPath(api.PathChallenge, "closed-1"), a.challengeBody(t)).wantProblem(t, 503, api.CodeUnavailable)
	do(t, svc.URL, "GET", api.PathReadyz, nil).wantProblem(t, 503, api.CodeUnavailable)
	do(t, svc.URL, "GET", api.PathHealthz, nil).decode(t, &map[string]string{})
}

// TestAppraiserFailure: an appraisal error or a panic is 500 internal,
// with no token and no stored result, and the service keeps serving.
func TestAppraiserFailure(t *testing.T) {
	var fa *faultAppraiser
	svc := testserver.Start(t, testserver.Options{Configure: func(o *server.Options) {
		fa = &faultAppraiser{next: o.Appraiser}
		o.Appraiser = fa
	}})
	a := newSoftAgent(t, "ap-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	for _, mode := range []string{"error", "panic"} {
		fa.fail.Store(mode == "error")
		fa.panics.Store(mode == "panic")
		r := a.attest(t, svc.URL, a.evidenceFor(t, a.challenge(t, svc.URL)))
		r.wantProblem(t, 500, api.CodeInternal)
		if strings.Contains(string(r.body), "injected") || strings.Contains(string(r.body), "eyJ") {
			t.Errorf("%s: the problem leaks internals or a token: %s", mode, r.body)
		}
	}
	if res, _ := svc.Store.Results(t.Context(), "ap-1", 10); len(res) != 0 {
		t.Fatalf("%d results stored for failed appraisals", len(res))
	}
	fa.fail.Store(false)
	fa.panics.Store(false)
	if res := a.round(t, svc.URL); res.Level != 1 {
		t.Fatalf("after the faults: %+v", res)
	}
	if m := metricsText(t, svc.URL); !strings.Contains(m, "vigil_http_panics_total 1") {
		t.Error("the panic is not counted")
	}
}

// TestRequestTimeout: a request whose work outlives the request timeout
// is answered 503 timeout.
func TestRequestTimeout(t *testing.T) {
	fs := &faultStore{Store: storetest.SQLite(t)}
	svc := testserver.Start(t, testserver.Options{Store: fs, Configure: func(o *server.Options) {
		o.RequestTimeout = 100 * time.Millisecond
	}})
	a := newSoftAgent(t, "slow-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	fs.slow.Store(true)
	start := time.Now()
	do(t, svc.URL, "POST", agentPath(api.PathChallenge, "slow-1"), a.challengeBody(t)).wantProblem(t, 503, api.CodeTimeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %v", d)
	}
}

// TestRateLimit: each agent has its own token bucket, spent by enrollment
// and by attestations proven to be the agent's (never by challenges,
// which anyone may ask for); past it, 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Rate: 0.5, Burst: 3})
	a, b := newSoftAgent(t, "rl-1"), newSoftAgent(t, "rl-2")
	for _, x := range []*testAgent{a, b} {
		do(t, svc.URL, "POST", api.PathEnroll, x.softEnroll(t)).decode(t, &api.EnrollResponse{})
	}
	// Enrollment took one token of rl-1's three; challenges take none.
	for range 2 {
		a.round(t, svc.URL)
	}
	r := a.attest(t, svc.URL, a.evidenceFor(t, a.challenge(t, svc.URL)))
	r.wantProblem(t, 429, api.CodeRateLimited)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 2 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Another agent is not affected.
	b.round(t, svc.URL)
	if m := metricsText(t, svc.URL); !strings.Contains(m, `vigil_rate_limited_total{scope="agent"} 1`) {
		t.Error("rate limiting not counted")
	}
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	r := do(t, base, "GET", api.PathMetrics, nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", r.status, r.header.Get("Content-Type"))
	}
	return string(r.body)
}

// TestMetricsAndHealth: the metrics count requests by route and code,
// attestations by level and status, appraisal time, nonce rejections and
// agents; health, JWKS, CA and OpenAPI are served.
func TestMetricsAndHealth(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	a := newSoftAgent(t, "m-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	ev := a.evidenceFor(t, a.challenge(t, svc.URL))
	a.attest(t, svc.URL, ev).decode(t, &api.AttestResponse{})
	a.attest(t, svc.URL, ev).wantProblem(t, 409, api.CodeNonceReplayed)
	m := metricsText(t, svc.URL)
	for _, want := range []string{
		`vigil_http_requests_total{code="200",route="POST /v1/agents/{id}/attest"} 1`,
		`vigil_http_requests_total{code="409",route="POST /v1/agents/{id}/attest"} 1`,
		`vigil_http_requests_total{code="201",route="POST /v1/enroll"} 1`,
		`vigil_http_request_duration_seconds_bucket{code="200",route="POST /v1/agents/{id}/challenge",le="+Inf"} 1`,
		`vigil_attestations_total{level="1",status="warning"} 1`,
		`vigil_appraisal_duration_seconds_count 1`,
		`vigil_nonce_rejections_total{code="nonce-replayed"} 1`,
		`vigil_agents{status="approved"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var h map[string]string
	do(t, svc.URL, "GET", api.PathHealthz, nil).decode(t, &h)
	do(t, svc.URL, "GET", api.PathReadyz, nil).decode(t, &h)
	if h["status"] != "ready" {
		t.Errorf("readyz %v", h)
	}
	var jwks struct{ Keys []map[string]any }
	do(t, svc.URL, "GET", api.PathJWKS, nil).decode(t, &jwks)
	if len(jwks.Keys) == 0 || jwks.Keys[0]["alg"] != "ES256" {
		t.Errorf("jwks %+v", jwks)
	}
	if r := do(t, svc.URL, "GET", api.PathCA, nil); r.status != 200 || !strings.Contains(string(r.body), "BEGIN CERTIFICATE") {
		t.Errorf("CA: %d %s", r.status, r.body)
	}
	var doc map[string]any
	do(t, svc.URL, "GET", api.PathOpenAPI, nil).decode(t, &doc)
	if !strings.HasPrefix(doc["openapi"].(string), "3.") {
		t.Errorf("openapi %v", doc["openapi"])
	}
}

// TestAdminAPI: listing with filters and cursors, and the admin API off
// when no token is configured.
func TestAdminAPI(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	for i := range 5 {
		a := newSoftAgent(t, "list-"+strconv.Itoa(i))
		do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	}
	admin(t, svc, "POST", agentPath(api.PathRevoke, "list-3"), nil).decode(t, &api.Agent{})
	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		var l api.AgentList
		admin(t, svc, "GET", api.PathAgents+"?limit=2&after="+after, nil).decode(t, &l)
		for _, a := range l.Agents {
			ids = append(ids, a.ID)
			if a.Level != -1 || a.AttestedAt != nil {
				t.Errorf("unattested agent %+v", a)
			}
		}
		if l.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("the cursor does not advance")
		}
		after = l.Next
	}
	if strings.Join(ids, ",") != "list-0,list-1,list-2,list-3,list-4" {
		t.Errorf("listed %v", ids)
	}
	var l api.AgentList
	admin(t, svc, "GET", api.PathAgents+"?status=revoked", nil).decode(t, &l)
	if len(l.Agents) != 1 || l.Agents[0].ID != "list-3" || l.Agents[0].Status != "revoked" || l.Next != "" {
		t.Errorf("revoked: %+v", l)
	}
	// Revoking again is idempotent.
	var ag api.Agent
	admin(t, svc, "POST", agentPath(api.PathRevoke, "list-3"), api.AdminRequest{Reason: "again"}).decode(t, &ag)
	if ag.Status != "revoked" {
		t.Errorf("%+v", ag)
	}

	off := testserver.Start(t, testserver.Options{Configure: func(o *server.Options) { o.AdminToken = "" }})
	r := do(t, off.URL, "GET", api.PathAgents, nil, "Authorization", "Bearer ")
	r.wantProblem(t, 401, api.CodeUnauthorized)
	if p := r.problem(t); !strings.Contains(p.Detail, "disabled") {
		t.Errorf("detail %q", p.Detail)
	}
}

// TestEvents: level and status changes reach the event stream (SSE,
// admin token required); an unchanged level publishes nothing.
func TestEvents(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	st, evc := sse(t, svc.URL+api.PathEvents, svc.AdminToken, "")
	if st != 200 {
		t.Fatalf("events: %d", st)
	}
	next := func() api.Event { t.Helper(); return nextEvent(t, evc) }
	a := newSoftAgent(t, "ev-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	if e := next(); e.Type != api.EventStatus || e.AgentID != "ev-1" || e.Status != "approved" || e.PreviousStatus != "" || e.ID == 0 {
		t.Fatalf("enroll event %+v", e)
	}
	res := a.round(t, svc.URL)
	if e := next(); e.Type != api.EventLevel || e.Level != 1 || e.PreviousLevel != -1 || e.Status != "warning" || e.ResultID != res.ResultID {
		t.Fatalf("level event %+v", e)
	}
	a.round(t, svc.URL) // same level: no event
	admin(t, svc, "POST", agentPath(api.PathRevoke, "ev-1"), nil).decode(t, &api.Agent{})
	if e := next(); e.Type != api.EventStatus || e.Status != "revoked" || e.PreviousStatus != "approved" || e.Level != 1 {
		t.Fatalf("revoke event %+v", e)
	}
	// The stream ends when the service shuts down.
	svc.Stop()
	for range evc {
	}
}

// TestRetention: the background loop deletes results older than the
// retention, keeping each agent's latest.
func TestRetention(t *testing.T) {
	clk := &clock{}
	svc := testserver.Start(t, testserver.Options{Now: clk.now, Configure: func(o *server.Options) {
		o.Retention = time.Hour
		o.PruneInterval = 20 * time.Millisecond
	}})
	a := newSoftAgent(t, "ret-1")
	do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	for range 3 {
		a.round(t, svc.URL)
	}
	clk.advance(2 * time.Hour)
	recent := a.round(t, svc.URL).ResultID
	newest := a.round(t, svc.URL).ResultID
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	for {
		res, err := svc.Store.Results(t.Context(), "ret-1", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) == 2 {
			t.Logf("pruned after %v", time.Since(start))
			if res[0].ID != newest || res[1].ID != recent {
				t.Fatalf("kept %d and %d", res[0].ID, res[1].ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d results after the retention", len(res))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := metricsText(t, svc.URL); !strings.Contains(m, "vigil_pruned_rows_total") {
		t.Error("pruning not counted")
	}
}
