package server_test

import (
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/storetest"
)

// TestReplayAcrossSkewedReplicas: two replicas on one database, A's clock
// 50 s fast and B's 50 s slow. A nonce A issued is used on B; 200 s later
// A has pruned every nonce record it deems expired, and B (whose clock
// still says the nonce is valid) is offered the same evidence again. With
// the skew margin (the default) the record outlives B's acceptance and
// the replay is 409 nonce-replayed; with a 1 s margin the same sequence
// replays, which is the attack the margin stops. Both back ends.
func TestReplayAcrossSkewedReplicas(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		for _, c := range []struct {
			name   string
			skew   time.Duration
			replay int
		}{
			{"default margin", 0, http.StatusConflict},
			{"1s margin (the attack)", time.Second, http.StatusOK},
		} {
			t.Run(c.name, func(t *testing.T) {
				clkA, clkB := &clock{}, &clock{}
				clkA.advance(50 * time.Second)
				clkB.advance(-50 * time.Second)
				key := make([]byte, 32)
				rand.Read(key)
				a := testserver.Start(t, testserver.Options{DB: db, Now: clkA.now, NonceKey: key, Configure: func(o *server.Options) {
					o.NonceSkew = c.skew
					o.PruneInterval = 10 * time.Millisecond
				}})
				b := testserver.Start(t, testserver.Options{DB: db, Now: clkB.now, NonceKey: key, AdminToken: a.AdminToken, Configure: func(o *server.Options) {
					o.NonceSkew = c.skew
				}})
				ag := newSoftAgent(t, "skew-"+strings.Fields(c.name)[0])
				do(t, a.URL, "POST", api.PathEnroll, ag.softEnroll(t)).decode(t, &api.EnrollResponse{})
				ev := ag.evidenceFor(t, ag.challenge(t, a.URL))
				ag.attest(t, b.URL, ev).decode(t, &api.AttestResponse{})
				ag.attest(t, b.URL, ev).wantProblem(t, 409, api.CodeNonceReplayed)

				clkA.advance(200 * time.Second)
				clkB.advance(200 * time.Second)
				margin := c.skew
				if margin == 0 {
					margin = server.DefaultNonceSkew
				}
				waitPruned(t, a.Store, clkA.now().Add(-margin))

				r := ag.attest(t, b.URL, ev)
				if c.replay == http.StatusOK {
					r.decode(t, &api.AttestResponse{})
					return
				}
				r.wantProblem(t, 409, api.CodeNonceReplayed)
			})
		}
	})
}

// waitPruned returns once the replica pruning st has run a prune that
// deletes nonce records expired before cutoff: a sentinel record just
// before it is gone.
func waitPruned(t *testing.T, st store.Store, cutoff time.Time) {
	t.Helper()
	h := make([]byte, 32)
	rand.Read(h)
	exp := cutoff.Add(-10 * time.Second)
	if err := st.UseNonce(t.Context(), h, "(sentinel)", exp); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		err := st.UseNonce(t.Context(), h, "(sentinel)", exp)
		if err == nil {
			return
		}
		if !errors.Is(err, store.ErrNonceUsed) {
			t.Fatal(err)
		}
	}
	t.Fatal("the replica did not prune")
}

// failWrites makes every insert into the nonces and results tables fail
// inside the database itself (a trigger), as a read-only or full database
// refuses them; reads still work. It returns the undo.
func failWrites(t *testing.T, db *storetest.DB) func() {
	t.Helper()
	h := db.Open(t).DB()
	var do, undo []string
	switch db.Name {
	case "sqlite":
		for _, tb := range []string{"nonces", "results"} {
			do = append(do, `CREATE TRIGGER vigil_test_ro_`+tb+` BEFORE INSERT ON `+tb+` BEGIN SELECT RAISE(ABORT, 'injected: attempt to write a readonly database'); END`)
			undo = append(undo, `DROP TRIGGER vigil_test_ro_`+tb)
		}
	case "postgres":
		do = append(do, `CREATE FUNCTION vigil_test_ro() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected: cannot execute INSERT in a read-only transaction' USING ERRCODE = '25006'; END $$ LANGUAGE plpgsql`)
		for _, tb := range []string{"nonces", "results"} {
			do = append(do, `CREATE TRIGGER vigil_test_ro_`+tb+` BEFORE INSERT ON `+tb+` FOR EACH ROW EXECUTE FUNCTION vigil_test_ro()`)
			undo = append(undo, `DROP TRIGGER vigil_test_ro_`+tb+` ON `+tb)
		}
		undo = append(undo, `DROP FUNCTION vigil_test_ro()`)
	}
	for _, q := range do {
		if _, err := h.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return func() {
		for _, q := range undo {
			if _, err := h.ExecContext(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
}

// TestReadyzWrites: a database that answers pings and reads but refuses
// writes (results cannot be saved) is not ready: /readyz is 503
// unavailable, and ready again once writes work. Both back ends; the
// refusal happens in the database.
func TestReadyzWrites(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		svc := testserver.Start(t, testserver.Options{DB: db})
		a := newSoftAgent(t, "ro-1")
		do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
		do(t, svc.URL, "GET", api.PathReadyz, nil).decode(t, &map[string]string{})

		undo := failWrites(t, db)
		time.Sleep(1100 * time.Millisecond) // past the probe's cache
		if err := svc.Store.Ping(t.Context()); err != nil {
			t.Fatalf("the database should still answer: %v", err)
		}
		r := do(t, svc.URL, "GET", api.PathReadyz, nil)
		r.wantProblem(t, 503, api.CodeUnavailable)
		if p := r.problem(t); !strings.Contains(p.Detail, "writes") {
			t.Errorf("detail %q", p.Detail)
		}
		// What readiness predicted: the attestation cannot be stored.
		if r := a.attest(t, svc.URL, a.evidenceFor(t, a.challenge(t, svc.URL))); r.status/100 != 5 {
			t.Fatalf("attest with writes failing: %d %s", r.status, r.body)
		}
		// A flood of probes is one write a second.
		for range 20 {
			do(t, svc.URL, "GET", api.PathReadyz, nil).wantProblem(t, 503, api.CodeUnavailable)
		}
		if m := metricsText(t, svc.URL); !strings.Contains(m, `vigil_store_errors_total{op="write_probe"} 1`) {
			t.Errorf("write probe failures not counted once: %s", grepLines(m, "write_probe"))
		}

		undo()
		time.Sleep(1100 * time.Millisecond)
		do(t, svc.URL, "GET", api.PathReadyz, nil).decode(t, &map[string]string{})
		a.round(t, svc.URL)
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsAccess: /metrics may require the admin token (401
// unauthorized without it), or move off the API listener (404 there) to
// a listener of its own.
func TestMetricsAccess(t *testing.T) {
	public := testserver.Start(t, testserver.Options{})
	if r := do(t, public.URL, "GET", api.PathMetrics, nil); r.status != 200 {
		t.Fatalf("public metrics: %d", r.status)
	}

	guarded := testserver.Start(t, testserver.Options{Configure: func(o *server.Options) { o.MetricsAuth = server.MetricsAdmin }})
	r := do(t, guarded.URL, "GET", api.PathMetrics, nil)
	r.wantProblem(t, 401, api.CodeUnauthorized)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	do(t, guarded.URL, "GET", api.PathMetrics, nil, "Authorization", "Bearer wrong").wantProblem(t, 401, api.CodeUnauthorized)
	if r := admin(t, guarded, "GET", api.PathMetrics, nil); r.status != 200 || !strings.Contains(string(r.body), "vigil_http_requests_total") {
		t.Fatalf("metrics with the admin token: %d", r.status)
	}

	separate := testserver.Start(t, testserver.Options{Configure: func(o *server.Options) { o.MetricsSeparate = true }})
	do(t, separate.URL, "GET", api.PathMetrics, nil).wantProblem(t, 404, api.CodeNotFound)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: separate.Server.MetricsHandler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	do(t, separate.URL, "GET", api.PathHealthz, nil).decode(t, &map[string]string{})
	if r := do(t, "http://"+ln.Addr().String(), "GET", api.PathMetrics, nil); r.status != 200 || !strings.Contains(string(r.body), `route="GET /healthz"`) {
		t.Fatalf("the separate listener: %d", r.status)
	}

	if _, err := server.New(t.Context(), server.Options{Store: public.Store, Appraiser: public.Appraiser, Issuer: public.Issuer, MetricsAuth: "everyone"}); err == nil {
		t.Fatal("an unknown metrics auth mode was accepted")
	}
}
