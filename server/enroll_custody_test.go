package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/storetest"
)

// countAgents counts the stored agents in status st.
func countAgents(t *testing.T, s store.Store, st store.Status) int {
	t.Helper()
	as, err := s.ListAgents(t.Context(), store.ListOptions{Status: st, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(as)
}

// TestEnrollFlood: one client posting 500 enrollments under 500 IDs, with
// one TPM's EK and AK (a squatter needs nothing more: the EK is public),
// gets the per-client bound recorded and every other one refused with
// 429 enrollment-limited; the per-agent rate limit (off here) plays no
// part. Software enrollments awaiting approval count against the same
// bound. Once the flood's enrollments expire, the client may enroll
// again.
func TestEnrollFlood(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		c := &clock{}
		svc := testserver.Start(t, testserver.Options{DB: db, Now: c.now, Software: server.SoftwarePending})
		squatter, _ := newSimAgent(t, "unused")
		req := squatter.tpmEnroll(t)
		const n, bound = 500, server.DefaultMaxEnrollPerSource
		created := 0
		for i := range n {
			req.AgentID = fmt.Sprintf("flood-%03d", i)
			r := do(t, svc.URL, "POST", api.PathEnroll, req)
			if r.status == http.StatusCreated {
				created++
				continue
			}
			r.wantProblem(t, http.StatusTooManyRequests, api.CodeEnrollLimited)
			if r.header.Get("Retry-After") == "" {
				t.Fatal("enrollment-limited without Retry-After")
			}
		}
		if created != bound {
			t.Fatalf("%d of %d enrollments recorded, want the bound %d", created, n, bound)
		}
		if got := countAgents(t, svc.Store, store.Activating); got != bound {
			t.Fatalf("the store holds %d activating agents, want %d", got, bound)
		}
		// A software agent awaiting approval is unfinished too.
		do(t, svc.URL, "POST", api.PathEnroll, newSoftAgent(t, "soft-1").softEnroll(t)).
			wantProblem(t, http.StatusTooManyRequests, api.CodeEnrollLimited)
		// Past the activation TTL the flood is gone, and the client is
		// admitted again.
		c.advance(server.DefaultActivationTTL + time.Minute)
		r := do(t, svc.URL, "POST", api.PathEnroll, newSoftAgent(t, "soft-1").softEnroll(t))
		if r.status != http.StatusCreated {
			t.Fatalf("enrollment after the flood expired: %d %s", r.status, r.body)
		}
		if got := countAgents(t, svc.Store, store.Activating); got != 0 {
			t.Fatalf("%d activating agents left after they expired", got)
		}
	})
}

// enrollFrom posts an enrollment straight to the handler as the client
// at remote (host:port).
func enrollFrom(t *testing.T, h http.Handler, remote string, req *api.EnrollRequest) *response {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hr := httptest.NewRequest("POST", api.PathEnroll, bytes.NewReader(b))
	hr.Header.Set("Content-Type", "application/json")
	hr.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return &response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// TestEnrollLimits: the per-client bound counts an IPv4 address, or an
// IPv6 /64 (one host's allotment: an attacker has 2^64 addresses in it);
// the total bound holds whoever asks; finished agents count toward
// neither.
func TestEnrollLimits(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Software: server.SoftwarePending, Configure: func(o *server.Options) {
		o.MaxEnrollPerSource, o.MaxUnfinished = 2, 5
	}})
	h := svc.Server.Handler()
	i := 0
	try := func(remote string) *response {
		i++
		return enrollFrom(t, h, remote, newSoftAgent(t, fmt.Sprintf("a-%d", i)).softEnroll(t))
	}
	for _, tc := range []struct {
		remote string
		code   string // "" for enrolled
	}{
		{"192.0.2.1:1000", ""},
		{"192.0.2.1:1001", ""},
		{"192.0.2.1:1002", api.CodeEnrollLimited},
		{"[2001:db8::1]:1000", ""},
		{"[2001:db8::ffff:2]:1000", ""}, // the same /64
		{"[2001:db8::3]:1000", api.CodeEnrollLimited},
		{"[::ffff:192.0.2.1]:1000", api.CodeEnrollLimited}, // 192.0.2.1 again
		{"[2001:db8:0:1::1]:1000", ""},                     // another /64: the fifth in all
		{"198.51.100.7:1000", api.CodeEnrollLimited},       // the total bound
	} {
		r := try(tc.remote)
		if tc.code == "" {
			if r.status != http.StatusCreated {
				t.Fatalf("%s: %d %s, want enrolled", tc.remote, r.status, r.body)
			}
			continue
		}
		r.wantProblem(t, http.StatusTooManyRequests, tc.code)
	}
	if got := countAgents(t, svc.Store, store.Pending); got != 5 {
		t.Fatalf("%d pending agents, want the total bound 5", got)
	}
	// An approved agent is finished: it frees room and counts no more.
	admin(t, svc, "POST", agentPath(api.PathApprove, "a-1"), nil).decode(t, &api.Agent{})
	if r := try("192.0.2.1:1003"); r.status != http.StatusCreated {
		t.Fatalf("after an approval: %d %s", r.status, r.body)
	}
}

// TestEKOnce: one EK holds one agent ID. An activated EK enrolling under
// another ID is refused (409 ek-in-use), revoked or not; two enrollments
// of one EK racing to activate leave one ID; a squatter who enrolls a
// victim's (public) EK with its own AK cannot activate and blocks
// nothing; an operator may allow reuse.
func TestEKOnce(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		svc := testserver.Start(t, testserver.Options{DB: db})
		victim, vt := newSimAgent(t, "victim")
		// The squatter goes first, with the victim's EK and its own AK:
		// its enrollment is recorded (activating) but can never activate.
		squatter, _ := newSimAgent(t, "squat")
		sq := squatter.tpmEnroll(t)
		vreq := victim.tpmEnroll(t)
		sq.EKPublic, sq.EKCert = vreq.EKPublic, vreq.EKCert
		var er api.EnrollResponse
		do(t, svc.URL, "POST", api.PathEnroll, sq).decode(t, &er)
		if _, err := vt.ActivateCredential(t.Context(), er.CredentialBlob, er.EncryptedSecret); err == nil {
			t.Fatal("the victim's TPM activated a credential for the squatter's AK")
		}
		// The victim enrolls and activates as usual.
		if ar := victim.enrollTPM(t, svc.URL); ar.Status != "pending" {
			t.Fatalf("victim: %+v", ar)
		}
		// Its EK now holds "victim": another ID is refused at enrollment,
		// and nothing is recorded.
		again := victim.tpmEnroll(t)
		again.AgentID = "victim-2"
		do(t, svc.URL, "POST", api.PathEnroll, again).wantProblem(t, http.StatusConflict, api.CodeEKInUse)
		if _, err := svc.Store.GetAgent(t.Context(), "victim-2"); err == nil {
			t.Fatal("a refused enrollment was recorded")
		}
		// The same ID with the same keys is still idempotent.
		if r := do(t, svc.URL, "POST", api.PathEnroll, victim.tpmEnroll(t)); r.status != http.StatusOK {
			t.Fatalf("re-enrollment of the holder: %d %s", r.status, r.body)
		}
		// Revoked, the EK stays held.
		admin(t, svc, "POST", agentPath(api.PathRevoke, "victim"), nil).decode(t, &api.Agent{})
		do(t, svc.URL, "POST", api.PathEnroll, again).wantProblem(t, http.StatusConflict, api.CodeEKInUse)

		// Two IDs of one fresh EK enrolled before either activates: the
		// first activation takes the EK, the second is refused.
		twin, _ := newSimAgent(t, "twin-a")
		creds := map[string]api.EnrollResponse{}
		for _, id := range []string{"twin-a", "twin-b"} {
			req := twin.tpmEnroll(t)
			req.AgentID = id
			var er api.EnrollResponse
			do(t, svc.URL, "POST", api.PathEnroll, req).decode(t, &er)
			creds[id] = er
		}
		for i, id := range []string{"twin-a", "twin-b"} {
			secret, err := twin.enc.(activator).ActivateCredential(t.Context(), creds[id].CredentialBlob, creds[id].EncryptedSecret)
			if err != nil {
				t.Fatal(err)
			}
			r := do(t, svc.URL, "POST", api.PathActivate, api.ActivateRequest{AgentID: id, Secret: secret})
			if i == 0 {
				r.decode(t, &api.EnrollResponse{})
				continue
			}
			r.wantProblem(t, http.StatusConflict, api.CodeEKInUse)
		}
		if a, err := svc.Store.GetAgent(t.Context(), "twin-b"); err != nil || a.Status != store.Activating {
			t.Fatalf("twin-b after its refused activation: %+v %v", a, err)
		}
	})
}

// TestEKReuseAllowed: with AllowEKReuse an operator lets one EK enroll
// under several IDs.
func TestEKReuseAllowed(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Configure: func(o *server.Options) { o.AllowEKReuse = true }})
	a, _ := newSimAgent(t, "vm-1")
	if ar := a.enrollTPM(t, svc.URL); ar.Status != "pending" {
		t.Fatalf("vm-1: %+v", ar)
	}
	a.id = "vm-2"
	if ar := a.enrollTPM(t, svc.URL); ar.Status != "pending" {
		t.Fatalf("vm-2 on the same EK: %+v", ar)
	}
	ag, err := svc.Store.GetAgent(t.Context(), "vm-2")
	if err != nil || !ag.EKShared {
		t.Fatalf("vm-2: %+v %v; want EKShared", ag, err)
	}
}

// TestEnrollExpiry: with a fake clock, an enrollment left activating past
// ActivationTTL, or pending past PendingTTL, is gone: its ID enrolls
// again with other keys (a squat ends), a late activation is refused
// (404 unknown-agent), and the maintenance loop deletes what is left.
func TestEnrollExpiry(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		c := &clock{}
		svc := testserver.Start(t, testserver.Options{DB: db, Now: c.now, Software: server.SoftwarePending, Configure: func(o *server.Options) {
			o.ActivationTTL, o.PendingTTL = 10*time.Minute, time.Hour
		}})
		// A squatter takes "web-01" and never activates.
		squatter, _ := newSimAgent(t, "web-01")
		do(t, svc.URL, "POST", api.PathEnroll, squatter.tpmEnroll(t)).decode(t, &api.EnrollResponse{})
		owner, _ := newSimAgent(t, "web-01")
		do(t, svc.URL, "POST", api.PathEnroll, owner.tpmEnroll(t)).wantProblem(t, http.StatusConflict, api.CodeEnrollConflict)
		c.advance(9 * time.Minute)
		do(t, svc.URL, "POST", api.PathEnroll, owner.tpmEnroll(t)).wantProblem(t, http.StatusConflict, api.CodeEnrollConflict)
		c.advance(2 * time.Minute)
		if ar := owner.enrollTPM(t, svc.URL); ar.Status != "pending" {
			t.Fatalf("the owner after the squat expired: %+v", ar)
		}
		ag, err := svc.Store.GetAgent(t.Context(), "web-01")
		if err != nil || ag.EKHash != ekHash(t, owner) {
			t.Fatalf("web-01 is %+v, %v; want the owner's EK", ag, err)
		}

		// An activation past the TTL is refused, and the enrollment gone.
		late, _ := newSimAgent(t, "late")
		var er api.EnrollResponse
		do(t, svc.URL, "POST", api.PathEnroll, late.tpmEnroll(t)).decode(t, &er)
		c.advance(11 * time.Minute)
		secret, err := late.enc.(activator).ActivateCredential(t.Context(), er.CredentialBlob, er.EncryptedSecret)
		if err != nil {
			t.Fatal(err)
		}
		do(t, svc.URL, "POST", api.PathActivate, api.ActivateRequest{AgentID: "late", Secret: secret}).
			wantProblem(t, http.StatusNotFound, api.CodeUnknownAgent)
		if _, err := svc.Store.GetAgent(t.Context(), "late"); err == nil {
			t.Fatal("the expired enrollment is still stored")
		}

		// Pending past PendingTTL: counted from activation (web-01) or
		// enrollment (a software agent).
		soft := newSoftAgent(t, "soft-1")
		do(t, svc.URL, "POST", api.PathEnroll, soft.softEnroll(t)).decode(t, &api.EnrollResponse{})
		c.advance(59 * time.Minute)
		other := newSoftAgent(t, "soft-1")
		do(t, svc.URL, "POST", api.PathEnroll, other.softEnroll(t)).wantProblem(t, http.StatusConflict, api.CodeEnrollConflict)
		c.advance(2 * time.Minute)
		if r := do(t, svc.URL, "POST", api.PathEnroll, other.softEnroll(t)); r.status != http.StatusCreated {
			t.Fatalf("soft-1 after its pending enrollment expired: %d %s", r.status, r.body)
		}
		// web-01 (pending for 61 minutes) is pruned by the maintenance
		// loop; an approved agent never expires.
		ap := newSoftAgent(t, "kept")
		do(t, svc.URL, "POST", api.PathEnroll, ap.softEnroll(t)).decode(t, &api.EnrollResponse{})
		admin(t, svc, "POST", agentPath(api.PathApprove, "kept"), nil).decode(t, &api.Agent{})
		c.advance(24 * time.Hour)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { svc.Server.Maintain(ctx); close(done) }()
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := svc.Store.GetAgent(t.Context(), "web-01")
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the maintenance loop did not delete an expired pending enrollment")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if _, err := svc.Store.GetAgent(t.Context(), "kept"); err != nil {
			t.Fatalf("the approved agent: %v", err)
		}
	})
}

func ekHash(t *testing.T, a *testAgent) string {
	t.Helper()
	h := sha256.Sum256(a.tpmEnroll(t).EKPublic)
	return hex.EncodeToString(h[:])
}

// TestRevokeRacesAttestation: an operator revokes an agent while its
// evidence is being appraised, so that the attestation's save lands after
// the revoke: the answer is 403 agent-revoked with no token, and no
// result, Last or State is stored.
func TestRevokeRacesAttestation(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		fs := &faultStore{Store: db.Open(t)}
		svc := testserver.Start(t, testserver.Options{Store: fs})
		a := newSoftAgent(t, "victim")
		do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
		first := a.round(t, svc.URL)
		var revoked atomic.Int32
		hook := func(r *store.Result) {
			if r.AgentID != "victim" || revoked.Load() != 0 {
				return
			}
			// Another operator, another connection, while this request
			// holds its token.
			req, _ := http.NewRequest("POST", svc.URL+agentPath(api.PathRevoke, "victim"), strings.NewReader(`{"reason":"stolen"}`))
			req.Header.Set("Authorization", "Bearer "+svc.AdminToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				revoked.Store(int32(resp.StatusCode))
			}
		}
		fs.beforeSave.Store(&hook)
		r := a.attest(t, svc.URL, a.evidenceFor(t, a.challenge(t, svc.URL)))
		if revoked.Load() != http.StatusOK {
			t.Fatalf("the racing revoke answered %d", revoked.Load())
		}
		r.wantProblem(t, http.StatusForbidden, api.CodeAgentRevoked)
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil || body["token"] != nil || bytes.Contains(r.body, []byte("eyJ")) {
			t.Fatalf("the refusal carries a token: %s", r.body)
		}
		rs, err := svc.Store.Results(t.Context(), "victim", 10)
		if err != nil || len(rs) != 1 || rs[0].ID != first.ResultID {
			t.Fatalf("results after the refused save: %d, %v; want only the first (%d)", len(rs), err, first.ResultID)
		}
		ag, err := svc.Store.GetAgent(t.Context(), "victim")
		if err != nil || ag.Status != store.Revoked || ag.Last == nil || !ag.Last.Time.Equal(rs[0].Time) {
			t.Fatalf("agent after the refused save: %+v, %v", ag, err)
		}
	})
}

// TestApproveRacesRevoke: an approve that read "pending" loses to a
// revoke that lands before its write: it answers 403 agent-revoked and
// the agent stays revoked. Then approves and revokes at once, many times:
// every agent ends revoked.
func TestApproveRacesRevoke(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		fs := &faultStore{Store: db.Open(t)}
		svc := testserver.Start(t, testserver.Options{Store: fs, Software: server.SoftwarePending})
		do(t, svc.URL, "POST", api.PathEnroll, newSoftAgent(t, "p").softEnroll(t)).decode(t, &api.EnrollResponse{})
		var once sync.Once
		var revokeStatus atomic.Int32
		hook := func(id string, c store.StatusChange) {
			if c.To != store.Approved {
				return
			}
			once.Do(func() {
				req, _ := http.NewRequest("POST", svc.URL+agentPath(api.PathRevoke, id), nil)
				req.Header.Set("Authorization", "Bearer "+svc.AdminToken)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
					revokeStatus.Store(int32(resp.StatusCode))
				}
			})
		}
		fs.beforeStatus.Store(&hook)
		admin(t, svc, "POST", agentPath(api.PathApprove, "p"), nil).wantProblem(t, http.StatusForbidden, api.CodeAgentRevoked)
		if revokeStatus.Load() != http.StatusOK {
			t.Fatalf("the racing revoke answered %d", revokeStatus.Load())
		}
		if ag, err := svc.Store.GetAgent(t.Context(), "p"); err != nil || ag.Status != store.Revoked {
			t.Fatalf("after approve raced revoke: %+v %v", ag, err)
		}
		fs.beforeStatus.Store(nil)
		// Without a key proof a challenge answers alike for every ID (no
		// status oracle): a bare nonce, nothing about the agent.
		var ch api.Challenge
		do(t, svc.URL, "POST", agentPath(api.PathChallenge, "p"), nil).decode(t, &ch)
		if ch.Authenticated || ch.EventLogSHA256 != "" {
			t.Fatalf("an unauthenticated challenge says %+v", ch)
		}

		for round := range 5 {
			id := fmt.Sprintf("r-%d", round)
			do(t, svc.URL, "POST", api.PathEnroll, newSoftAgent(t, id).softEnroll(t)).decode(t, &api.EnrollResponse{})
			var wg sync.WaitGroup
			for i := range 6 {
				path := api.PathApprove
				if i%2 == 1 {
					path = api.PathRevoke
				}
				wg.Go(func() {
					req, _ := http.NewRequest("POST", svc.URL+agentPath(path, id), nil)
					req.Header.Set("Authorization", "Bearer "+svc.AdminToken)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden {
						t.Errorf("%s: %d", path, resp.StatusCode)
					}
				})
			}
			wg.Wait()
			if ag, err := svc.Store.GetAgent(t.Context(), id); err != nil || ag.Status != store.Revoked {
				t.Fatalf("round %d: agent %+v %v; want revoked", round, ag, err)
			}
		}
	})
}
