package server_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/storetest"
)

// eventTap records every event the server publishes, then hands it to
// the real bus.
type eventTap struct {
	next server.Publisher
	mu   sync.Mutex
	got  []api.Event
}

func (e *eventTap) Publish(ev api.Event) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
	e.next.Publish(ev)
}

func (e *eventTap) events() []api.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]api.Event(nil), e.got...)
}

// custody is what an outsider must not change of an agent.
type custody struct {
	last    *store.Summary
	state   []byte
	results []int64
	events  int
}

func custodyOf(t *testing.T, st store.Store, tap *eventTap, id string) custody {
	t.Helper()
	a, err := st.GetAgent(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Results(t.Context(), id, 1000)
	if err != nil {
		t.Fatal(err)
	}
	c := custody{last: a.Last, state: a.State, events: len(tap.events())}
	for _, r := range res {
		c.results = append(c.results, r.ID)
	}
	return c
}

// encodeEvidence rebuilds evidence bytes after a change.
func encodeEvidence(t *testing.T, b []byte, change func(ev *evidence.Evidence)) []byte {
	t.Helper()
	ev, err := evidence.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	change(ev)
	out, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOutsiderEvidence: evidence for an agent's ID that no enrolled key
// of that agent signed is refused 404 unknown-agent before the nonce is
// spent, and changes neither the agent's latest result, its replay state,
// its history nor the event stream; evidence the agent's key signed is
// the agent's, recorded at level 0 when it fails. Both back ends, a
// software victim and a TPM victim.
func TestOutsiderEvidence(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		var tap *eventTap
		svc := testserver.Start(t, testserver.Options{DB: db, Configure: func(o *server.Options) {
			tap = &eventTap{next: o.Events}
			o.Events = tap
		}})

		// The victims: a software agent and a simulated TPM, approved,
		// each with one healthy result.
		soft := newSoftAgent(t, "victim-soft")
		do(t, svc.URL, "POST", api.PathEnroll, soft.softEnroll(t)).decode(t, &api.EnrollResponse{})
		tpmVictim, _ := newSimAgent(t, "victim-tpm")
		tpmVictim.enrollTPM(t, svc.URL)
		admin(t, svc, "POST", agentPath(api.PathApprove, "victim-tpm"), nil).decode(t, &api.Agent{})
		if r := soft.round(t, svc.URL); r.Level != 1 {
			t.Fatalf("software victim: %+v", r)
		}
		if r := tpmVictim.round(t, svc.URL); r.Level < 2 {
			t.Fatalf("TPM victim: %+v", r)
		}

		// The outsiders hold keys of their own, under the victims' IDs.
		softOut := newSoftAgent(t, "victim-soft")
		tpmOut, _ := newSimAgent(t, "victim-tpm")
		for _, c := range []struct {
			name           string
			victim, outsdr *testAgent
			forge          func(ch *api.Challenge) []byte
		}{
			{"software key", soft, softOut, func(ch *api.Challenge) []byte { return softOut.evidenceFor(t, ch) }},
			{"software evidence for a TPM agent", tpmVictim, softOut, func(ch *api.Challenge) []byte {
				return (&testAgent{id: "victim-tpm", enc: softOut.enc}).evidenceFor(t, ch)
			}},
			{"another TPM", tpmVictim, tpmOut, func(ch *api.Challenge) []byte { return tpmOut.evidenceFor(t, ch) }},
			{"TPM evidence for a software agent", soft, tpmOut, func(ch *api.Challenge) []byte {
				return (&testAgent{id: "victim-soft", enc: tpmOut.enc}).evidenceFor(t, ch)
			}},
			{"victim's evidence, report swapped", soft, softOut, func(ch *api.Challenge) []byte {
				other := softOut.evidenceFor(t, ch)
				oe, _ := evidence.Decode(other)
				return encodeEvidence(t, soft.evidenceFor(t, ch), func(ev *evidence.Evidence) { ev.Report = append(oe.Report, ' ') })
			}},
			{"victim's TPM evidence, report signed by the outsider", tpmVictim, softOut, func(ch *api.Challenge) []byte {
				mine := tpmVictim.evidenceFor(t, ch)
				theirs, _ := evidence.Decode(softOut.evidenceFor(t, ch))
				return encodeEvidence(t, mine, func(ev *evidence.Evidence) {
					ev.Report = append(ev.Report, ' ') // no longer what the quote and certification bind
					ev.ReportSignature, ev.ReportKey.Public = theirs.ReportSignature, theirs.ReportKey.Public
				})
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := custodyOf(t, svc.Store, tap, c.victim.id)
				// The outsider gets a challenge for the victim's ID: anyone
				// may, and it is the victim's nonce.
				ch := c.victim.bareChallenge(t, svc.URL) // no key needed
				r := do(t, svc.URL, "POST", agentPath(api.PathAttest, c.victim.id), c.forge(ch))
				r.wantProblem(t, 404, api.CodeUnknownAgent)
				if strings.Contains(string(r.body), "eyJ") {
					t.Fatalf("a token for an outsider: %s", r.body)
				}
				after := custodyOf(t, svc.Store, tap, c.victim.id)
				if !reflect.DeepEqual(before, after) {
					t.Fatalf("the outsider changed the victim:\nbefore %+v\nafter  %+v", before, after)
				}
				// The nonce was not spent: the victim's own evidence for it
				// is still taken.
				var ar api.AttestResponse
				c.victim.attest(t, svc.URL, c.victim.evidenceFor(t, ch)).decode(t, &ar)
				if ar.ResultID == 0 {
					t.Fatalf("the victim's own evidence: %+v", ar)
				}
			})
		}
		if m := metricsText(t, svc.URL); !strings.Contains(m, `vigil_not_from_agent_total{reason="bad-report-signature"}`) ||
			!strings.Contains(m, `vigil_not_from_agent_total{reason="bad-quote-signature"}`) ||
			!strings.Contains(m, `vigil_not_from_agent_total{reason="enclave-mismatch"}`) {
			t.Errorf("outsider evidence not counted by reason")
		}

		// The agent's own key signed it, and it fails: it is the agent's,
		// recorded at level 0, with a level event.
		for _, c := range []struct {
			name   string
			a      *testAgent
			ev     func(ch *api.Challenge) []byte
			reason string
		}{
			{"software: malformed report", soft, func(ch *api.Challenge) []byte {
				nonce, _ := hex.DecodeString(ch.Nonce)
				ev, err := evidence.Build(t.Context(), soft.enc, evidence.BuildOptions{Nonce: nonce, Report: []byte(`{"not":"a report"}`)})
				if err != nil {
					t.Fatal(err)
				}
				b, _ := ev.Encode()
				return b
			}, string(evidence.ReportMalformed)},
			{"TPM: a PCR value changed", tpmVictim, func(ch *api.Challenge) []byte {
				return encodeEvidence(t, tpmVictim.evidenceFor(t, ch), func(ev *evidence.Evidence) {
					for i := range ev.Quote.PCRs["sha256"] {
						ev.Quote.PCRs["sha256"][i] = strings.Repeat("ab", 32)
						break
					}
				})
			}, string(evidence.PCRDigestMismatch)},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := custodyOf(t, svc.Store, tap, c.a.id)
				var ar api.AttestResponse
				c.a.attest(t, svc.URL, c.ev(c.a.challenge(t, svc.URL))).decode(t, &ar)
				if ar.Level != 0 || ar.Status != "contraindicated" {
					t.Fatalf("%+v", ar)
				}
				found := false
				for _, f := range ar.Failures {
					found = found || f.Reason == c.reason
				}
				if !found {
					t.Fatalf("failures %+v lack %s", ar.Failures, c.reason)
				}
				after := custodyOf(t, svc.Store, tap, c.a.id)
				if after.last == nil || after.last.Level != 0 || len(after.results) != len(before.results)+1 || after.events != before.events+1 {
					t.Fatalf("the agent's own failing evidence was not recorded: before %+v after %+v", before, after)
				}
			})
		}
	})
}

// clientFrom is an HTTP client whose connections come from ip (any
// address of 127.0.0.0/8 reaches the test server on Linux): another
// client address as far as the server can tell.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

func post(t *testing.T, c *http.Client, url string, body []byte) int {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytesReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestChallengeBurst: an outsider bursts challenges (and evidence) for a
// victim's ID, and replays the victim's own challenge key proof, while the
// victim keeps attesting: the outsider spends only its own client budget
// (429 rate-limited), never the victim's.
func TestChallengeBurst(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Rate: 0.5, Burst: 3, ClientRate: 1, ClientBurst: 10})
	victim := newSoftAgent(t, "burst-victim")
	do(t, svc.URL, "POST", api.PathEnroll, victim.softEnroll(t)).decode(t, &api.EnrollResponse{})

	outsider := clientFrom(t, "127.0.0.2")
	replayer := clientFrom(t, "127.0.0.3")
	proof, _ := json.Marshal(victim.challengeBody(t))
	path := svc.URL + agentPath(api.PathChallenge, "burst-victim")
	var ok, limited, replayed int
	for range 50 {
		switch post(t, outsider, path, nil) {
		case 200:
			ok++
		case 429:
			limited++
		}
		if post(t, replayer, path, proof) == 200 {
			replayed++
		}
	}
	junk := newSoftAgent(t, "burst-victim").evidenceFor(t, victim.bareChallenge(t, svc.URL))
	if st := post(t, outsider, svc.URL+agentPath(api.PathAttest, "burst-victim"), junk); st != 429 {
		t.Errorf("outsider evidence after its burst: %d, want 429", st)
	}
	if ok > 13 || limited < 37 || replayed > 13 {
		t.Fatalf("outsider: %d challenges, %d limited; replayer %d", ok, limited, replayed)
	}
	// The victim, on its own address, still attests: up to its own budget
	// (enrollment took one of three).
	for range 2 {
		if r := victim.round(t, svc.URL); r.Level != 1 {
			t.Fatalf("victim: %+v", r)
		}
	}
	r := do(t, svc.URL, "POST", agentPath(api.PathChallenge, "burst-victim"), nil, "X-Forwarded-For", "127.0.0.2")
	if r.status != 200 {
		t.Fatalf("a forwarding header is not an address: %d %s", r.status, r.body)
	}
	if !strings.Contains(metricsText(t, svc.URL), `vigil_rate_limited_total{scope="client"}`) {
		t.Error("client rate limiting not counted")
	}
	// The outsider's answer is the rate-limit problem.
	req, _ := http.NewRequest("POST", path, nil)
	resp, err := outsider.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != api.ProblemMediaType {
		t.Fatalf("outsider: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestNoStatusOracle: to a caller who does not prove an agent's key,
// unknown, activating, pending, revoked and approved IDs answer alike:
// a bare nonce to a challenge (with or without a forged key proof), and
// 404 unknown-agent, with the same detail, to evidence.
func TestNoStatusOracle(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Software: server.SoftwarePending})
	ids := map[string]*testAgent{}
	for _, id := range []string{"o-approved", "o-pending", "o-revoked"} {
		a := newSoftAgent(t, id)
		ids[id] = a
		do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	}
	act, _ := newSimAgent(t, "o-activating")
	do(t, svc.URL, "POST", api.PathEnroll, act.tpmEnroll(t)).decode(t, &api.EnrollResponse{})
	admin(t, svc, "POST", agentPath(api.PathApprove, "o-approved"), nil).decode(t, &api.Agent{})
	admin(t, svc, "POST", agentPath(api.PathApprove, "o-revoked"), nil).decode(t, &api.Agent{})
	ids["o-approved"].round(t, svc.URL) // a replay state and hints to leak
	admin(t, svc, "POST", agentPath(api.PathRevoke, "o-revoked"), nil).decode(t, &api.Agent{})

	type answer struct {
		Status        int
		Code, Detail  string
		Fields        []string
		Authenticated bool
	}
	shape := func(id string, r *response) answer {
		a := answer{Status: r.status}
		if r.status == 200 {
			var m map[string]any
			r.decode(t, &m)
			for k := range m {
				a.Fields = append(a.Fields, k)
			}
			var c api.Challenge
			r.decode(t, &c)
			a.Authenticated = c.Authenticated || c.IMAOffset != 0 || c.EventLogSHA256 != ""
		} else {
			p := r.problem(t)
			a.Code, a.Detail = p.Code, strings.ReplaceAll(p.Detail, id, "ID")
		}
		return a
	}
	var want [3]*answer
	for _, id := range []string{"o-approved", "o-pending", "o-revoked", "o-activating", "o-unknown"} {
		outsider := newSoftAgent(t, id) // a key of its own
		got := [3]answer{
			shape(id, do(t, svc.URL, "POST", agentPath(api.PathChallenge, id), nil)),
			shape(id, do(t, svc.URL, "POST", agentPath(api.PathChallenge, id), outsider.challengeBody(t))),
			shape(id, outsider.attest(t, svc.URL, outsider.evidenceFor(t, outsider.bareChallenge(t, svc.URL)))),
		}
		if got[2].Status != 404 || got[2].Code != api.CodeUnknownAgent || got[0].Status != 200 || got[0].Authenticated {
			t.Fatalf("%s: %+v", id, got)
		}
		for i := range got {
			slices.Sort(got[i].Fields)
			if want[i] == nil {
				want[i] = &got[i]
				continue
			}
			if !reflect.DeepEqual(*want[i], got[i]) {
				t.Errorf("%s answers %+v, o-approved %+v: an oracle", id, got[i], *want[i])
			}
		}
	}
	// The agents themselves, proving their keys, learn their status.
	do(t, svc.URL, "POST", agentPath(api.PathChallenge, "o-pending"), ids["o-pending"].challengeBody(t)).wantProblem(t, 403, api.CodeAgentPending)
	do(t, svc.URL, "POST", agentPath(api.PathChallenge, "o-revoked"), ids["o-revoked"].challengeBody(t)).wantProblem(t, 403, api.CodeAgentRevoked)
	if c := ids["o-approved"].challenge(t, svc.URL); !c.Authenticated {
		t.Fatalf("the approved agent's proof was not accepted: %+v", c)
	}
	// A proof too far from the service's clock is no proof.
	p := ids["o-pending"].keyProof(t)
	stale, err := evidence.ProveKey(context.Background(), ids["o-pending"].enc, api.ChallengePurpose, "o-pending", time.Now().Add(-api.ProofMaxAge-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, svc.URL, "POST", agentPath(api.PathChallenge, "o-pending"), api.ChallengeRequest{Proof: stale}); r.status != 200 {
		t.Fatalf("a stale proof: %d %s", r.status, r.body)
	}
	// A proof for another ID is no proof either.
	if r := do(t, svc.URL, "POST", agentPath(api.PathChallenge, "o-revoked"), api.ChallengeRequest{Proof: p}); r.status != 200 {
		t.Fatalf("another ID's proof: %d %s", r.status, r.body)
	}
}
