package server_test

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/store/storetest"
)

// TestReplicas: two services on one PostgreSQL schema share the nonce key
// (a store secret), the CA and the agents: a challenge from one is
// accepted by the other, a nonce works once across both even when both
// get it at the same moment, and a revocation on one is refused at once
// by the other.
func TestReplicas(t *testing.T) {
	db := storetest.NewPostgres(t)
	ra := testserver.Start(t, testserver.Options{DB: db})
	rb := testserver.Start(t, testserver.Options{DB: db, AdminToken: ra.AdminToken})
	if !ra.CA.Equal(rb.CA) {
		t.Fatal("the replicas have different CAs")
	}
	a := newSoftAgent(t, "rep-1")
	do(t, ra.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})

	// Challenge on A, evidence on B.
	ev := a.evidenceFor(t, a.challenge(t, ra.URL))
	var ar api.AttestResponse
	a.attest(t, rb.URL, ev).decode(t, &ar)
	vb, err := ear.Verify(ar.Token, ra.CAPool, time.Now())
	if err != nil {
		t.Fatalf("B's token under A's CA: %v", err)
	}
	// One iss for both replicas, derived from the shared CA, never a
	// replica's URL.
	var aa api.AttestResponse
	a.attest(t, ra.URL, a.evidenceFor(t, a.challenge(t, ra.URL))).decode(t, &aa)
	va, err := ear.Verify(aa.Token, ra.CAPool, time.Now())
	if err != nil {
		t.Fatalf("A's token: %v", err)
	}
	if va.Claims.Issuer != vb.Claims.Issuer || va.Claims.Issuer != ear.IssuerOf(ra.CA) || ra.URL == rb.URL {
		t.Fatalf("iss: A %q, B %q, want both %q", va.Claims.Issuer, vb.Claims.Issuer, ear.IssuerOf(ra.CA))
	}
	a.attest(t, ra.URL, ev).wantProblem(t, 409, api.CodeNonceReplayed)
	a.attest(t, rb.URL, ev).wantProblem(t, 409, api.CodeNonceReplayed)

	// The same evidence raced on both replicas: exactly one wins.
	for round := range 5 {
		ev := a.evidenceFor(t, a.challenge(t, []string{ra.URL, rb.URL}[round%2]))
		var wins, replays atomic.Int32
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				r := a.attest(t, []string{ra.URL, rb.URL}[i%2], ev)
				switch {
				case r.status == 200:
					wins.Add(1)
				case r.status == 409:
					replays.Add(1)
				default:
					t.Errorf("race: %d %s", r.status, r.body)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || replays.Load() != 5 {
			t.Fatalf("round %d: %d accepted, %d replays", round, wins.Load(), replays.Load())
		}
	}

	// Revoked on A: B refuses the next attestation, with a nonce B gave.
	ev = a.evidenceFor(t, a.challenge(t, rb.URL))
	admin(t, ra, "POST", agentPath(api.PathRevoke, "rep-1"), nil).decode(t, &api.Agent{})
	a.attest(t, rb.URL, ev).wantProblem(t, 403, api.CodeAgentRevoked)
	do(t, rb.URL, "POST", agentPath(api.PathChallenge, "rep-1"), a.challengeBody(t)).wantProblem(t, 403, api.CodeAgentRevoked)
}

// TestRestartKeepsResults: agents attest without pause while the service
// restarts (twice) on the same database; every result acknowledged with
// 200 is in the store afterwards — on both back ends.
func TestRestartKeepsResults(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		svc := testserver.Start(t, testserver.Options{DB: db})
		const agents = 4
		as := make([]*testAgent, agents)
		for i := range as {
			as[i] = newSoftAgent(t, "rs-"+string(rune('a'+i)))
			do(t, svc.URL, "POST", api.PathEnroll, as[i].softEnroll(t)).decode(t, &api.EnrollResponse{})
		}
		var (
			mu     sync.Mutex
			acked  = map[string][]int64{}
			errs   atomic.Int32
			stop   atomic.Bool
			wg     sync.WaitGroup
			client = &http.Client{Timeout: 20 * time.Second}
		)
		for _, a := range as {
			wg.Go(func() {
				for !stop.Load() {
					ar, err := tryRound(t, client, svc.URL, a)
					if err != nil {
						errs.Add(1)
						time.Sleep(5 * time.Millisecond)
						continue
					}
					mu.Lock()
					acked[a.id] = append(acked[a.id], ar.ResultID)
					mu.Unlock()
				}
			})
		}
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, ids := range acked {
				n += len(ids)
			}
			return n
		}
		waitFor := func(n int) {
			deadline := time.Now().Add(20 * time.Second)
			for count() < n && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		waitFor(10)
		svc.Restart()
		waitFor(count() + 10)
		svc.Restart()
		waitFor(count() + 10)
		stop.Store(true)
		wg.Wait()
		svc.Restart()
		total := 0
		for id, ids := range acked {
			stored, err := svc.Store.Results(t.Context(), id, 10000)
			if err != nil {
				t.Fatal(err)
			}
			have := map[int64]bool{}
			for _, r := range stored {
				have[r.ID] = true
			}
			for _, rid := range ids {
				if !have[rid] {
					t.Errorf("agent %s: acknowledged result %d is not stored", id, rid)
				}
			}
			total += len(ids)
		}
		if total < 30 {
			t.Fatalf("only %d acknowledged results", total)
		}
		t.Logf("%d acknowledged results kept across 3 restarts (%d requests failed while down)", total, errs.Load())
	})
}

// tryRound is one challenge and attestation that reports failures
// instead of failing the test: the service may be restarting.
func tryRound(t *testing.T, c *http.Client, base string, a *testAgent) (*api.AttestResponse, error) {
	post := func(path string, body []byte, v any) error {
		resp, err := c.Post(base+path, "application/json", bytesReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return decodeBody(resp, v)
	}
	var ch api.Challenge
	if err := post(agentPath(api.PathChallenge, a.id), nil, &ch); err != nil {
		return nil, err
	}
	var ar api.AttestResponse
	if err := post(agentPath(api.PathAttest, a.id), a.evidenceFor(t, &ch), &ar); err != nil {
		return nil, err
	}
	if ar.ResultID == 0 || ar.Token == "" {
		t.Errorf("200 without a result: %+v", ar)
	}
	return &ar, nil
}
