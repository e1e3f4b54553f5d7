package server_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
)

// TestProblems drives every rejection over HTTP and asserts its exact
// status and problem code.
func TestProblems(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	clk := &clock{}
	svc := testserver.Start(t, testserver.Options{NonceKey: key, Now: clk.now})
	// other shares the nonce key but not the database: it issues nonces
	// the first service's MAC accepts for agents the first does not
	// have, or has in another state.
	other := testserver.Start(t, testserver.Options{NonceKey: key})

	ok := newSoftAgent(t, "ok-1")
	do(t, svc.URL, "POST", api.PathEnroll, ok.softEnroll(t)).decode(t, &api.EnrollResponse{})
	ok2 := newSoftAgent(t, "ok-2")
	do(t, svc.URL, "POST", api.PathEnroll, ok2.softEnroll(t)).decode(t, &api.EnrollResponse{})
	// pend: a simulated TPM without EK certificate or allowlist entry
	// stays pending after activation.
	pend, _ := newSimAgent(t, "pend-1")
	if ar := pend.enrollTPM(t, svc.URL); ar.Status != "pending" {
		t.Fatalf("simulated TPM agent is %s, want pending", ar.Status)
	}
	// act: enrolled, not activated.
	act, _ := newSimAgent(t, "act-1")
	var actEnroll api.EnrollResponse
	do(t, svc.URL, "POST", api.PathEnroll, act.tpmEnroll(t)).decode(t, &actEnroll)
	// gone: approved then revoked.
	gone := newSoftAgent(t, "gone-1")
	do(t, svc.URL, "POST", api.PathEnroll, gone.softEnroll(t)).decode(t, &api.EnrollResponse{})
	goneNonce := gone.challenge(t, svc.URL)
	admin(t, svc, "POST", agentPath(api.PathRevoke, "gone-1"), api.AdminRequest{Reason: "stolen"}).decode(t, &api.Agent{})
	// Approved on other, unknown or pending on svc.
	ghost := newSoftAgent(t, "ghost-1")
	pendOther := newSoftAgent(t, "pend-1")
	for _, a := range []*testAgent{ghost, pendOther} {
		do(t, other.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &api.EnrollResponse{})
	}
	ghostEv := ghost.evidenceFor(t, ghost.challenge(t, other.URL))
	pendEv := pendOther.evidenceFor(t, pendOther.challenge(t, other.URL))

	okCh := ok.challenge(t, svc.URL)
	nonce, _ := hex.DecodeString(okCh.Nonce)
	withNonce := func(n []byte) []byte { return ok.evidenceNonce(t, n, 0) }
	flip := func(i int) []byte {
		b := bytes.Clone(nonce)
		b[i] ^= 1
		return b
	}
	used := ok.evidenceFor(t, ok.challenge(t, svc.URL))
	if r := ok.attest(t, svc.URL, used); r.status != http.StatusOK {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	expiring := ok.challenge(t, svc.URL)
	ok2Ev := ok2.evidenceFor(t, ok2.challenge(t, svc.URL))
	goodEv := withNonce(nonce)
	var evDoc map[string]any
	json.Unmarshal(goodEv, &evDoc)
	evDoc["extra"] = true
	unknownField, _ := json.Marshal(evDoc)

	pemKey := ok.softEnroll(t).ReportKeyPEM
	otherKey := newSoftAgent(t, "x").softEnroll(t).ReportKeyPEM
	simReq := act.tpmEnroll(t)
	swapped := *simReq
	swapped.AgentID, swapped.EKPublic = "sim-swap", simReq.AKPublic // an AK is no EK
	_, simTPM := newSimAgent(t, "sim-x")
	unrestricted := *simReq
	unrestricted.AgentID, unrestricted.AKPublic = "sim-unres", simTPM.ReportKeyPublic() // not restricted

	enroll := func(r api.EnrollRequest) any { return r }
	type tc struct {
		name, method, path string
		body               any
		ct                 string
		hdr                []string
		status             int
		code               string
	}
	cases := []tc{
		{"enroll garbage", "POST", api.PathEnroll, "not json", "", nil, 400, api.CodeBadRequest},
		{"enroll unknown field", "POST", api.PathEnroll, `{"agent_id":"a","enclave":"software","extra":1}`, "", nil, 400, api.CodeBadRequest},
		{"enroll trailing data", "POST", api.PathEnroll, `{"agent_id":"a","enclave":"software"} {}`, "", nil, 400, api.CodeBadRequest},
		{"enroll array", "POST", api.PathEnroll, `[]`, "", nil, 400, api.CodeBadRequest},
		{"enroll text/plain", "POST", api.PathEnroll, `{}`, "text/plain", nil, 415, api.CodeUnsupportedMedia},
		{"enroll no content type", "POST", api.PathEnroll, `{}`, "-", nil, 415, api.CodeUnsupportedMedia},
		{"enroll too large", "POST", api.PathEnroll, `{"agent_id":"` + strings.Repeat("a", 70<<10) + `"}`, "", nil, 413, api.CodeTooLarge},
		{"enroll bad id", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "bad id!", Enclave: "software", ReportKeyPEM: pemKey}), "", nil, 400, api.CodeInvalidAgentID},
		{"enroll long id", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: strings.Repeat("a", 129), Enclave: "software", ReportKeyPEM: pemKey}), "", nil, 400, api.CodeInvalidAgentID},
		{"enroll dotdot id", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "..", Enclave: "software", ReportKeyPEM: pemKey}), "", nil, 400, api.CodeInvalidAgentID},
		{"enroll empty id", "POST", api.PathEnroll, enroll(api.EnrollRequest{Enclave: "software", ReportKeyPEM: pemKey}), "", nil, 400, api.CodeInvalidAgentID},
		{"enroll bogus enclave", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "sgx"}), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll software bad key", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "software", ReportKeyPEM: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll software no key", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "software"}), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll software with EK", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "software", ReportKeyPEM: pemKey, EKPublic: simReq.EKPublic}), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll tpm garbage EK", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "tpm", EKPublic: []byte{1, 2, 3}, AKPublic: simReq.AKPublic}), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll tpm no AK", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "tpm", EKPublic: simReq.EKPublic}), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll tpm AK as EK", "POST", api.PathEnroll, enroll(swapped), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll tpm unrestricted AK", "POST", api.PathEnroll, enroll(unrestricted), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll tpm garbage cert", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "tpm", EKPublic: simReq.EKPublic, AKPublic: simReq.AKPublic, EKCert: []byte("nope")}), "", nil, 400, api.CodeInvalidEnrollment},
		{"enroll tpm with report key", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "b-1", Enclave: "tpm", EKPublic: simReq.EKPublic, AKPublic: simReq.AKPublic, ReportKeyPEM: pemKey}), "", nil, 400, api.CodeInvalidEnrollment},
		{"re-enroll other key", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "ok-1", Enclave: "software", ReportKeyPEM: otherKey}), "", nil, 409, api.CodeEnrollConflict},
		{"re-enroll as tpm", "POST", api.PathEnroll, enroll(api.EnrollRequest{AgentID: "ok-1", Enclave: "tpm", EKPublic: simReq.EKPublic, AKPublic: simReq.AKPublic}), "", nil, 409, api.CodeEnrollConflict},
		{"re-enroll revoked", "POST", api.PathEnroll, gone.softEnroll(t), "", nil, 403, api.CodeAgentRevoked},

		{"activate unknown", "POST", api.PathActivate, api.ActivateRequest{AgentID: "nobody", Secret: []byte{1}}, "", nil, 404, api.CodeUnknownAgent},
		{"activate approved", "POST", api.PathActivate, api.ActivateRequest{AgentID: "ok-1", Secret: []byte{1}}, "", nil, 409, api.CodeNotActivating},
		{"activate revoked", "POST", api.PathActivate, api.ActivateRequest{AgentID: "gone-1", Secret: []byte{1}}, "", nil, 403, api.CodeAgentRevoked},
		{"activate wrong secret", "POST", api.PathActivate, api.ActivateRequest{AgentID: "act-1", Secret: bytes.Repeat([]byte{1}, 32)}, "", nil, 403, api.CodeActivationFailed},
		{"activate no secret", "POST", api.PathActivate, api.ActivateRequest{AgentID: "act-1"}, "", nil, 403, api.CodeActivationFailed},
		{"activate bad id", "POST", api.PathActivate, api.ActivateRequest{AgentID: "a/b"}, "", nil, 400, api.CodeInvalidAgentID},

		// Told only to a caller proving the agent's key (see
		// TestNoStatusOracle for everyone else).
		{"challenge pending", "POST", agentPath(api.PathChallenge, "pend-1"), pend.challengeBody(t), "", nil, 403, api.CodeAgentPending},
		{"challenge activating", "POST", agentPath(api.PathChallenge, "act-1"), act.challengeBody(t), "", nil, 403, api.CodeAgentPending},
		{"challenge revoked", "POST", agentPath(api.PathChallenge, "gone-1"), gone.challengeBody(t), "", nil, 403, api.CodeAgentRevoked},
		{"challenge unknown field", "POST", agentPath(api.PathChallenge, "ok-1"), `{"proof":{},"x":1}`, "", nil, 400, api.CodeBadRequest},
		{"challenge bad id", "POST", agentPath(api.PathChallenge, "bad%20id"), nil, "", nil, 400, api.CodeInvalidAgentID},

		{"attest garbage", "POST", agentPath(api.PathAttest, "ok-1"), "\x00garbage", "", nil, 400, api.CodeBadRequest},
		{"attest unknown field", "POST", agentPath(api.PathAttest, "ok-1"), unknownField, "", nil, 400, api.CodeBadRequest},
		{"attest trailing data", "POST", agentPath(api.PathAttest, "ok-1"), append(bytes.Clone(goodEv), " {}"...), "", nil, 400, api.CodeBadRequest},
		{"attest too large", "POST", agentPath(api.PathAttest, "ok-1"), bytes.Repeat([]byte(" "), server.DefaultMaxEvidence+1), "", nil, 413, api.CodeTooLarge},
		{"attest form", "POST", agentPath(api.PathAttest, "ok-1"), goodEv, "application/x-www-form-urlencoded", nil, 415, api.CodeUnsupportedMedia},
		{"attest nonce not hex", "POST", agentPath(api.PathAttest, "ok-1"), bytes.Replace(goodEv, []byte(okCh.Nonce), []byte("zz"+okCh.Nonce[2:]), 1), "", nil, 400, api.CodeNonceInvalid},
		{"attest nonce short", "POST", agentPath(api.PathAttest, "ok-1"), withNonce(nonce[:40]), "", nil, 400, api.CodeNonceInvalid},
		{"attest nonce bad MAC", "POST", agentPath(api.PathAttest, "ok-1"), withNonce(flip(len(nonce) - 1)), "", nil, 400, api.CodeNonceInvalid},
		{"attest nonce altered expiry", "POST", agentPath(api.PathAttest, "ok-1"), withNonce(flip(5)), "", nil, 400, api.CodeNonceInvalid},
		{"attest nonce bad version", "POST", agentPath(api.PathAttest, "ok-1"), withNonce(flip(0)), "", nil, 400, api.CodeNonceInvalid},
		{"attest random nonce", "POST", agentPath(api.PathAttest, "ok-1"), withNonce(bytes.Repeat([]byte{1}, 32)), "", nil, 400, api.CodeNonceInvalid},
		{"attest another agent's nonce", "POST", agentPath(api.PathAttest, "ok-1"), ok2Ev, "", nil, 400, api.CodeNonceWrongAgent},
		{"attest replayed", "POST", agentPath(api.PathAttest, "ok-1"), used, "", nil, 409, api.CodeNonceReplayed},
		{"attest unknown agent", "POST", agentPath(api.PathAttest, "ghost-1"), ghostEv, "", nil, 404, api.CodeUnknownAgent},
		{"attest pending, another's key", "POST", agentPath(api.PathAttest, "pend-1"), pendEv, "", nil, 404, api.CodeUnknownAgent},
		{"attest pending", "POST", agentPath(api.PathAttest, "pend-1"), pend.evidenceFor(t, pend.bareChallenge(t, svc.URL)), "", nil, 403, api.CodeAgentPending},
		{"attest revoked at once", "POST", agentPath(api.PathAttest, "gone-1"), gone.evidenceFor(t, goneNonce), "", nil, 403, api.CodeAgentRevoked},

		{"admin no token", "GET", api.PathAgents, nil, "", []string{}, 401, api.CodeUnauthorized},
		{"admin wrong token", "GET", api.PathAgents, nil, "", []string{"Authorization", "Bearer nope"}, 401, api.CodeUnauthorized},
		{"admin basic auth", "GET", api.PathAgents, nil, "", []string{"Authorization", "Basic " + svc.AdminToken}, 401, api.CodeUnauthorized},
		{"admin events no token", "GET", api.PathEvents, nil, "", []string{}, 401, api.CodeUnauthorized},
		{"admin bad status", "GET", api.PathAgents + "?status=happy", nil, "", nil, 400, api.CodeBadRequest},
		{"admin bad limit", "GET", api.PathAgents + "?limit=0", nil, "", nil, 400, api.CodeBadRequest},
		{"admin unknown agent", "GET", agentPath(api.PathAgent, "nobody"), nil, "", nil, 404, api.CodeUnknownAgent},
		{"approve unknown", "POST", agentPath(api.PathApprove, "nobody"), nil, "", nil, 404, api.CodeUnknownAgent},
		{"approve revoked", "POST", agentPath(api.PathApprove, "gone-1"), nil, "", nil, 403, api.CodeAgentRevoked},
		{"approve activating", "POST", agentPath(api.PathApprove, "act-1"), nil, "", nil, 409, api.CodeEnrollConflict},
		{"approve unknown field", "POST", agentPath(api.PathApprove, "pend-1"), `{"why":"x"}`, "", nil, 400, api.CodeBadRequest},

		{"unknown path", "GET", "/nope", nil, "", nil, 404, api.CodeNotFound},
		{"unknown v1 path", "POST", "/v1/agents/ok-1/frobnicate", nil, "", nil, 404, api.CodeNotFound},
		{"GET enroll", "GET", api.PathEnroll, nil, "", nil, 405, api.CodeMethodNotAllowed},
		{"DELETE agent", "DELETE", agentPath(api.PathAgent, "ok-1"), nil, "", nil, 405, api.CodeMethodNotAllowed},
		{"GET challenge", "GET", agentPath(api.PathChallenge, "ok-1"), nil, "", nil, 405, api.CodeMethodNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := c.hdr
			if hdr == nil {
				hdr = []string{"Authorization", "Bearer " + svc.AdminToken}
			}
			if c.ct != "" {
				hdr = append(hdr, "Content-Type", strings.TrimPrefix(c.ct, "-"))
			}
			r := do(t, svc.URL, c.method, c.path, c.body, hdr...)
			r.wantProblem(t, c.status, c.code)
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}

	// Nothing above consumed okCh's nonce or stored a result for it: the
	// evidence is still accepted once, and as the evidence media type.
	r := do(t, svc.URL, "POST", agentPath(api.PathAttest, "ok-1"), goodEv, "Content-Type", "application/vnd.vigil.evidence.v1+json; charset=utf-8")
	var ar api.AttestResponse
	r.decode(t, &ar)
	if ar.Level != 1 {
		t.Fatalf("attest %+v", ar)
	}

	// Expired: the clock moves past the TTL.
	clk.advance(server.DefaultNonceTTL + time.Second)
	ok.attest(t, svc.URL, ok.evidenceFor(t, expiring)).wantProblem(t, 400, api.CodeNonceExpired)

	// The revoked agent's row says why; the pending agent is still
	// pending; only ok-1 has results (two), and gone-1 none.
	a, err := svc.Store.GetAgent(t.Context(), "gone-1")
	if err != nil || a.Status != store.Revoked || !strings.Contains(a.StatusReason, "stolen") || a.Last != nil {
		t.Fatalf("gone-1: %+v %v", a, err)
	}
	if res, _ := svc.Store.Results(t.Context(), "ok-1", 10); len(res) != 2 {
		t.Errorf("ok-1 has %d results, want 2", len(res))
	}
}

// TestSoftwareModes: deny refuses software agents; pending admits them
// for an operator, who approves them.
func TestSoftwareModes(t *testing.T) {
	deny := testserver.Start(t, testserver.Options{Software: server.SoftwareDeny})
	a := newSoftAgent(t, "soft-1")
	do(t, deny.URL, "POST", api.PathEnroll, a.softEnroll(t)).wantProblem(t, 403, api.CodeSoftwareNotAllowed)

	pend := testserver.Start(t, testserver.Options{Software: server.SoftwarePending})
	var er api.EnrollResponse
	do(t, pend.URL, "POST", api.PathEnroll, a.softEnroll(t)).decode(t, &er)
	if er.Status != "pending" {
		t.Fatalf("enroll %+v", er)
	}
	do(t, pend.URL, "POST", agentPath(api.PathChallenge, "soft-1"), a.challengeBody(t)).wantProblem(t, 403, api.CodeAgentPending)
	// Enrolling again with the same key is idempotent.
	if r := do(t, pend.URL, "POST", api.PathEnroll, a.softEnroll(t)); r.status != 200 {
		t.Fatalf("re-enroll: %d %s", r.status, r.body)
	}
	var ag api.Agent
	admin(t, pend, "POST", agentPath(api.PathApprove, "soft-1"), api.AdminRequest{Reason: "checked"}).decode(t, &ag)
	if ag.Status != "approved" || !strings.Contains(ag.StatusReason, "checked") {
		t.Fatalf("approved %+v", ag)
	}
	if res := a.round(t, pend.URL); res.Level != 1 {
		t.Fatalf("attest %+v", res)
	}
}
