package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/simtpm"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/measure"
)

// response is one HTTP exchange's outcome.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problem decodes the response as a problem, failing unless it is one.
func (r *response) problem(t testing.TB) api.Problem {
	t.Helper()
	var p api.Problem
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d, Content-Type %q, want a problem: %s", r.status, ct, r.body)
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Status != r.status || p.Type != api.ProblemType+p.Code || p.Title == "" {
		t.Fatalf("malformed problem %+v for status %d", p, r.status)
	}
	return p
}

// wantProblem fails unless the response is the problem code with status.
func (r *response) wantProblem(t testing.TB, status int, code string) {
	t.Helper()
	p := r.problem(t)
	if r.status != status || p.Code != code {
		t.Fatalf("got %d %s (%s), want %d %s", r.status, p.Code, p.Detail, status, code)
	}
}

// decode decodes a 2xx JSON response into v.
func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if r.status/100 != 2 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// do sends a request to base+path. body is sent as is when []byte or
// string, as JSON otherwise; ct is its Content-Type ("" for JSON).
func do(t testing.TB, base, method, path string, body any, hdr ...string) *response {
	t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

func agentPath(p, id string) string { return strings.Replace(p, "{id}", id, 1) }

// admin sends an admin request with the service's token.
func admin(t testing.TB, svc *testserver.Service, method, path string, body any) *response {
	t.Helper()
	return do(t, svc.URL, method, path, body, "Authorization", "Bearer "+svc.AdminToken)
}

var (
	hostOnce   sync.Once
	hostReport []byte
)

// testReport is the canonical runtime report of a measured fixture host.
func testReport(t testing.TB) []byte {
	t.Helper()
	hostOnce.Do(func() {
		h := testhost.Base()
		r, err := measure.New(measure.Options{}).Measure(context.Background(), h.Source(h.WriteDir(t)))
		if err != nil {
			t.Fatal(err)
		}
		if hostReport, err = r.Canonical(); err != nil {
			t.Fatal(err)
		}
	})
	if hostReport == nil {
		t.Fatal("no test host report")
	}
	return hostReport
}

// testAgent is the agent's half of the protocol, done by hand over HTTP.
type testAgent struct {
	id  string
	enc enclave.Enclave
}

func newSoftAgent(t testing.TB, id string) *testAgent {
	t.Helper()
	e, err := soft.New()
	if err != nil {
		t.Fatal(err)
	}
	return &testAgent{id: id, enc: e}
}

func (a *testAgent) softEnroll(t testing.TB) *api.EnrollRequest {
	t.Helper()
	pemKey, err := evidence.PublicKeyPEM(a.enc.ReportPublic())
	if err != nil {
		t.Fatal(err)
	}
	return &api.EnrollRequest{AgentID: a.id, Enclave: "software", ReportKeyPEM: pemKey}
}

// keyProof is the agent's proof of its enrolled key for a challenge
// request, made now (the stock agent's).
func (a *testAgent) keyProof(t testing.TB) *evidence.KeyProof {
	t.Helper()
	p, err := evidence.ProveKey(context.Background(), a.enc, api.ChallengePurpose, a.id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// challengeBody is a challenge request with the agent's key proof.
func (a *testAgent) challengeBody(t testing.TB) api.ChallengeRequest {
	return api.ChallengeRequest{Proof: a.keyProof(t)}
}

// challenge asks base for a challenge with the agent's key proof, as the
// stock agent does, failing unless it gets one.
func (a *testAgent) challenge(t testing.TB, base string) *api.Challenge {
	t.Helper()
	return a.challengeWith(t, base, a.challengeBody(t))
}

// bareChallenge asks for a challenge without a key proof, as anyone may.
func (a *testAgent) bareChallenge(t testing.TB, base string) *api.Challenge {
	t.Helper()
	return a.challengeWith(t, base, nil)
}

func (a *testAgent) challengeWith(t testing.TB, base string, body any) *api.Challenge {
	t.Helper()
	r := do(t, base, "POST", agentPath(api.PathChallenge, a.id), body)
	var c api.Challenge
	if r.status != http.StatusOK {
		t.Fatalf("challenge: %d %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// evidenceFor builds evidence for a challenge.
func (a *testAgent) evidenceFor(t testing.TB, c *api.Challenge) []byte {
	t.Helper()
	nonce, err := hex.DecodeString(c.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	return a.evidenceNonce(t, nonce, c.IMAOffset)
}

// evidenceNonce builds evidence of the test host's report for a nonce,
// without logs (the service's replay state is not exercised here).
func (a *testAgent) evidenceNonce(t testing.TB, nonce []byte, _ int64) []byte {
	t.Helper()
	ev, err := evidence.Build(context.Background(), a.enc, evidence.BuildOptions{Nonce: nonce, Report: testReport(t)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attest posts evidence to base.
func (a *testAgent) attest(t testing.TB, base string, ev []byte) *response {
	t.Helper()
	return do(t, base, "POST", agentPath(api.PathAttest, a.id), ev)
}

// round runs challenge and attest on base and returns the appraisal.
func (a *testAgent) round(t testing.TB, base string) *api.AttestResponse {
	t.Helper()
	r := a.attest(t, base, a.evidenceFor(t, a.challenge(t, base)))
	var out api.AttestResponse
	if r.status != http.StatusOK {
		t.Fatalf("attest: %d %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// newSimAgent is a TPM agent on the software TPM simulator (fast; its EK
// has no certificate).
func newSimAgent(t testing.TB, id string) (*testAgent, *simtpm.TPM) {
	t.Helper()
	tp, err := simtpm.New(simtpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &testAgent{id: id, enc: tp}, tp
}

// tpmEnroll is the enrollment request of an attesting enclave.
func (a *testAgent) tpmEnroll(t testing.TB) *api.EnrollRequest {
	t.Helper()
	at := a.enc.(enclave.Attester)
	ek, _, cert, err := at.EK(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ak, _ := at.AKPublic()
	return &api.EnrollRequest{AgentID: a.id, Enclave: "tpm", EKPublic: ek, EKCert: cert, AKPublic: ak}
}

// activator is the enclave's half of credential activation.
type activator interface {
	ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error)
}

// enrollTPM enrolls a TPM agent and activates its credential; it returns
// the activation's answer.
func (a *testAgent) enrollTPM(t testing.TB, base string) *api.EnrollResponse {
	t.Helper()
	r := do(t, base, "POST", api.PathEnroll, a.tpmEnroll(t))
	var er api.EnrollResponse
	if r.status != http.StatusCreated {
		t.Fatalf("enroll: %d %s", r.status, r.body)
	}
	json.Unmarshal(r.body, &er)
	if er.Status != "activating" || len(er.CredentialBlob) == 0 || len(er.EncryptedSecret) == 0 {
		t.Fatalf("enroll: %+v", er)
	}
	secret, err := a.enc.(activator).ActivateCredential(context.Background(), er.CredentialBlob, er.EncryptedSecret)
	if err != nil {
		t.Fatalf("activating the credential: %v", err)
	}
	r = do(t, base, "POST", api.PathActivate, api.ActivateRequest{AgentID: a.id, Secret: secret})
	var ar api.EnrollResponse
	r.decode(t, &ar)
	return &ar
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return http.NoBody
	}
	return bytes.NewReader(b)
}

func decodeBody(resp *http.Response, v any) error {
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
