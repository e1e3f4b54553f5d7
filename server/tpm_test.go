package server_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/eventlog/eventlogtest"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/store/storetest"
	"github.com/vigil-attest/vigil/tpm"
)

// swtpmAgent opens a TPM enclave on a fresh swtpm.
func swtpmAgent(t *testing.T, id string, o testtpm.Options) (*testAgent, *testtpm.TPM) {
	t.Helper()
	sw := testtpm.StartWith(t, o)
	e, err := tpm.Open(context.Background(), sw.URI, tpm.Options{})
	if err != nil {
		t.Fatalf("opening swtpm: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return &testAgent{id: id, enc: e}, sw
}

// TestTPMFlow: a TPM agent on swtpm enrolls with its EK certificate,
// which chains to the manufacturer CA, proves with credential activation
// that its AK shares the TPM, is approved, and attests at a
// hardware-rooted level with a session report bound to its report key —
// on both back ends.
func TestTPMFlow(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		a, sw := swtpmAgent(t, "tpm-01", testtpm.Options{})
		svc := testserver.Start(t, testserver.Options{DB: db, EKRoots: sw.Roots, EKIntermediates: sw.Intermediates})
		req := a.tpmEnroll(t)
		if len(req.EKCert) == 0 {
			t.Fatal("swtpm has no EK certificate")
		}
		// Enrolling twice while activating gives a credential each time;
		// a wrong secret is refused and leaves the agent activating.
		var first api.EnrollResponse
		do(t, svc.URL, "POST", api.PathEnroll, req).decode(t, &first)
		do(t, svc.URL, "POST", api.PathActivate, api.ActivateRequest{AgentID: "tpm-01", Secret: make([]byte, 32)}).
			wantProblem(t, 403, api.CodeActivationFailed)
		r := do(t, svc.URL, "POST", api.PathEnroll, req)
		var again api.EnrollResponse
		r.decode(t, &again)
		if r.status != http.StatusOK || again.Status != "activating" || len(again.CredentialBlob) == 0 {
			t.Fatalf("re-enroll while activating: %d %+v", r.status, again)
		}
		secret, err := a.enc.(activator).ActivateCredential(t.Context(), again.CredentialBlob, again.EncryptedSecret)
		if err != nil {
			t.Fatalf("ActivateCredential: %v", err)
		}
		var ar api.EnrollResponse
		do(t, svc.URL, "POST", api.PathActivate, api.ActivateRequest{AgentID: "tpm-01", Secret: secret}).decode(t, &ar)
		if ar.Status != "approved" {
			t.Fatalf("activate: %+v", ar)
		}
		// Activation is single use.
		do(t, svc.URL, "POST", api.PathActivate, api.ActivateRequest{AgentID: "tpm-01", Secret: secret}).
			wantProblem(t, 409, api.CodeNotActivating)
		ag, err := svc.Store.GetAgent(t.Context(), "tpm-01")
		ek := sha256.Sum256(req.EKPublic)
		if err != nil || ag.EKHash != hex.EncodeToString(ek[:]) || len(ag.ActivationHash) != 0 {
			t.Fatalf("agent %+v %v", ag, err)
		}

		res := a.round(t, svc.URL)
		if res.Level < 2 || res.Status != "affirming" {
			t.Fatalf("TPM attestation: level %d %s, failures %+v", res.Level, res.Status, res.Failures)
		}
		v, err := ear.Verify(res.Token, svc.CAPool, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if v.Claims.Level != res.Level || !a.enc.ReportPublic().(interface{ Equal(crypto.PublicKey) bool }).Equal(v.Claims.ReportKey) {
			t.Fatalf("claims %+v", v.Claims)
		}
		// Enrolling again once approved changes nothing.
		var er api.EnrollResponse
		do(t, svc.URL, "POST", api.PathEnroll, req).decode(t, &er)
		if er.Status != "approved" || er.CredentialBlob != nil {
			t.Fatalf("re-enroll: %+v", er)
		}
	})
}

// TestTPMApproval: an EK certificate from a foreign CA is refused
// outright; without a chaining certificate the EK allowlist approves,
// and otherwise the agent waits for an operator; another TPM under a
// taken ID is a conflict.
func TestTPMApproval(t *testing.T) {
	a, sw := swtpmAgent(t, "tpm-02", testtpm.Options{})
	req := a.tpmEnroll(t)
	ekHash := sha256.Sum256(req.EKPublic)

	foreign := testpki.NewRoot(testpki.Options{CommonName: "Foreign TPM CA"})
	untrusting := testserver.Start(t, testserver.Options{EKRoots: []*x509.Certificate{foreign.Cert}})
	do(t, untrusting.URL, "POST", api.PathEnroll, req).wantProblem(t, 403, api.CodeEKUntrusted)
	// The root without the issuing CA is no chain.
	noInter := testserver.Start(t, testserver.Options{EKRoots: sw.Roots})
	do(t, noInter.URL, "POST", api.PathEnroll, req).wantProblem(t, 403, api.CodeEKUntrusted)
	// The certificate of another TPM's EK, under the right CA, does not
	// certify this EK.
	b, _ := swtpmAgent(t, "tpm-03", testtpm.Options{Fresh: true})
	mixed := *req
	mixed.EKCert = b.tpmEnroll(t).EKCert
	trusting := testserver.Start(t, testserver.Options{EKRoots: sw.Roots, EKIntermediates: sw.Intermediates})
	do(t, trusting.URL, "POST", api.PathEnroll, &mixed).wantProblem(t, 403, api.CodeEKUntrusted)

	allow := testserver.Start(t, testserver.Options{EKAllowlist: []string{hex.EncodeToString(ekHash[:])}})
	if ar := a.enrollTPM(t, allow.URL); ar.Status != "approved" {
		t.Fatalf("allowlisted EK: %+v", ar)
	}
	// Another TPM under the same ID is a conflict.
	bReq := b.tpmEnroll(t)
	bReq.AgentID = "tpm-02"
	do(t, allow.URL, "POST", api.PathEnroll, bReq).wantProblem(t, 409, api.CodeEnrollConflict)
	// The same EK with another AK too.
	sameEK := *req
	sameEK.AKPublic = bReq.AKPublic
	do(t, allow.URL, "POST", api.PathEnroll, &sameEK).wantProblem(t, 409, api.CodeEnrollConflict)

	plain := testserver.Start(t, testserver.Options{})
	if ar := a.enrollTPM(t, plain.URL); ar.Status != "pending" {
		t.Fatalf("unverified EK: %+v", ar)
	}
	do(t, plain.URL, "POST", agentPath(api.PathChallenge, "tpm-02"), a.challengeBody(t)).wantProblem(t, 403, api.CodeAgentPending)
	var ag api.Agent
	admin(t, plain, "POST", agentPath(api.PathApprove, "tpm-02"), nil).decode(t, &ag)
	if ag.Status != "approved" || ag.EKHash != hex.EncodeToString(ekHash[:]) || ag.Enclave != "tpm" {
		t.Fatalf("approved: %+v", ag)
	}
	if res := a.round(t, plain.URL); res.Level < 2 {
		t.Fatalf("attest after approval: %+v", res)
	}
}

// TestTPMEventLogHint: after a round that sent the boot event log, the
// challenge names its digest and the agent may leave the log out; the
// service still counts it as verified while the boot PCRs are unchanged.
func TestTPMEventLogHint(t *testing.T) {
	a, sw := swtpmAgent(t, "tpm-log", testtpm.Options{})
	log, err := eventlogtest.Debian().Log(), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	testtpm.ExtendEventLog(t, a.enc.(*tpm.Enclave), log)
	svc := testserver.Start(t, testserver.Options{EKRoots: sw.Roots, EKIntermediates: sw.Intermediates})
	if ar := a.enrollTPM(t, svc.URL); ar.Status != "approved" {
		t.Fatalf("enroll: %+v", ar)
	}
	round := func(withLog bool) (*api.Challenge, *api.AttestResponse) {
		t.Helper()
		ch := a.challenge(t, svc.URL)
		nonce, _ := hex.DecodeString(ch.Nonce)
		o := evidence.BuildOptions{Nonce: nonce, Report: testReport(t)}
		if withLog {
			o.EventLog = log
		}
		ev, err := evidence.Build(t.Context(), a.enc, o)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ev.Encode()
		ar := &api.AttestResponse{}
		a.attest(t, svc.URL, b).decode(t, ar)
		return ch, ar
	}
	ch1, r1 := round(true)
	if ch1.EventLogSHA256 != "" {
		t.Fatalf("a first challenge names a log: %+v", ch1)
	}
	ch2, r2 := round(false)
	sum := sha256.Sum256(log)
	if ch2.EventLogSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("challenge after the log: %q, want %x", ch2.EventLogSHA256, sum)
	}
	// The same verdict, failure for failure: the log counts as verified.
	if r2.Level != r1.Level || r1.Level < 2 || !reflect.DeepEqual(r1.Failures, r2.Failures) {
		t.Fatalf("level %d with the log, %d without (failures %+v)", r1.Level, r2.Level, r2.Failures)
	}
}
