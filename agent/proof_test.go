package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

// tpmAgent is an enrolled, attested agent on its own swtpm.
func tpmAgent(t *testing.T, svc *testserver.Service, sw *testtpm.TPM, root string, o ...tpm.Options) (*agent.Agent, enclave.Enclave) {
	t.Helper()
	ctx := context.Background()
	var to tpm.Options
	if len(o) > 0 {
		to = o[0]
	}
	e, err := tpm.Open(ctx, sw.URI, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	a := newAgent(t, svc, e, root, agent.Options{})
	if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
		t.Fatalf("enroll: %s %v", st, err)
	}
	if _, err := a.AttestOnce(ctx); err != nil {
		t.Fatal(err)
	}
	return a, e
}

// askProof posts body to the socket's PathProof.
func askProof(t *testing.T, c *http.Client, body string) (int, []byte) {
	t.Helper()
	resp, err := c.Post("http://agent"+agent.PathProof, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

const (
	rpAud = "https://bank.example"
	rpURL = "https://bank.example/transfer"
)

// TestProofFromTPM: an agent on swtpm answers POST /v1/proof on its
// socket with a session report now issued for the relying party (aud)
// and a proof its TPM's report key signed; ear verifies both, and refuses
// the attacks with their codes: a proof by another TPM (pop-key-mismatch),
// a replay (pop-replayed), another audience, nonce, report or a stale
// proof. Node jose, following the docs, agrees on each.
func TestProofFromTPM(t *testing.T) {
	ctx := context.Background()
	swA, swB := testtpm.Start(t), testtpm.StartWith(t, testtpm.Options{Fresh: true})
	svc := testserver.Start(t, testserver.Options{EKRoots: swA.Roots, EKIntermediates: swA.Intermediates})
	root := testhost.Base().WriteDir(t)
	a, ea := tpmAgent(t, svc, swA, root)
	b, eb := tpmAgent(t, svc, swB, root)
	if ea.ReportPublic().(interface{ Equal(crypto.PublicKey) bool }).Equal(eb.ReportPublic()) {
		t.Fatal("the two TPMs have the same report key")
	}
	old := a.Latest()

	sock := filepath.Join(t.TempDir(), "agent.sock")
	stop := serveSocket(t, a, sock)
	defer stop()
	c := socketClient(sock)
	st, body := askProof(t, c, `{"aud":"`+rpAud+`","nonce":"rp-nonce-1","htm":"POST","htu":"`+rpURL+`?amount=5"}`)
	if st != http.StatusOK {
		t.Fatalf("POST /v1/proof: %d %s", st, body)
	}
	var ans agent.ProofAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Enclave != "tpm" || ans.AgentID != a.ID() || ans.SessionReport == old.Token {
		t.Fatalf("answer: enclave %q, agent %q, a new report %v", ans.Enclave, ans.AgentID, ans.SessionReport != old.Token)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v %v", fi.Mode(), err)
	}

	now := time.Now()
	report, err := ear.Verify(ans.SessionReport, svc.CAPool, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Claims.Audience) != 1 || report.Claims.Audience[0] != rpAud {
		t.Fatalf("the session report's aud %q, want [%s]", report.Claims.Audience, rpAud)
	}
	oldReport, err := ear.Verify(old.Token, svc.CAPool, now)
	if err != nil {
		t.Fatal(err)
	}
	want := ear.ProofExpect{Audience: rpAud, Nonce: "rp-nonce-1", Method: "POST", URL: rpURL, Now: now, RequireReportAudience: true}
	cache := ear.NewMemoryReplayCache(0)
	p, err := ear.VerifyProof(ctx, ans.Proof, report, want, cache)
	if err != nil {
		t.Fatalf("the TPM's proof: %v", err)
	}
	tp, _ := ear.Thumbprint(ea.ReportPublic())
	if p.Thumbprint != tp || p.Claims.URL != rpURL {
		t.Fatalf("proof %+v, want key %s and htu %s", p, tp, rpURL)
	}

	// B's TPM proves for the same relying party.
	bAns, err := b.Prove(ctx, agent.ProofRequest{Audience: rpAud, Nonce: "rp-nonce-1", Method: "POST", URL: rpURL})
	if err != nil {
		t.Fatal(err)
	}
	bReport, err := ear.Verify(bAns.SessionReport, svc.CAPool, now)
	if err != nil {
		t.Fatal(err)
	}
	// A's proof again, after one that was just made: a fresh one passes.
	again, err := a.Prove(ctx, agent.ProofRequest{Audience: rpAud, Nonce: "rp-nonce-1", Method: "POST", URL: rpURL})
	if err != nil || again.SessionReport != ans.SessionReport {
		t.Fatalf("a second proof: %v (same report: %v)", err, err == nil && again.SessionReport == ans.SessionReport)
	}

	type attack struct {
		name   string
		proof  string
		report *ear.Verified
		want   ear.ProofExpect
		code   ear.Code
		jose   string
	}
	with := func(f func(*ear.ProofExpect)) ear.ProofExpect { w := want; f(&w); return w }
	attacks := []attack{
		{"replayed", ans.Proof, report, want, ear.ProofReplayed, "REPLAYED"},
		{"another TPM's proof with A's report", bAns.Proof, report, want, ear.ProofKeyMismatch, "KEY_MISMATCH"},
		{"A's proof with an earlier report of A", again.Proof, oldReport, with(func(e *ear.ProofExpect) { e.RequireReportAudience = false }), ear.ProofATHMismatch, "ATH_MISMATCH"},
		{"another audience", again.Proof, report, with(func(e *ear.ProofExpect) { e.Audience = "https://shop.example" }), ear.ProofAudience, "REPORT_AUDIENCE"},
		{"another nonce", again.Proof, report, with(func(e *ear.ProofExpect) { e.Nonce = "rp-nonce-2" }), ear.ProofNonce, "NONCE_MISMATCH"},
		{"another request", again.Proof, report, with(func(e *ear.ProofExpect) { e.URL = "https://bank.example/login" }), ear.ProofURL, "REQUEST_MISMATCH"},
		{"stale", again.Proof, report, with(func(e *ear.ProofExpect) { e.Now = now.Add(2 * time.Minute) }), ear.ProofStale, "ERR_JWT_EXPIRED"},
	}
	for _, at := range attacks {
		if _, err := ear.VerifyProof(ctx, at.proof, at.report, at.want, cache); ear.Of(err) != at.code {
			t.Errorf("%s: %v (code %q), want %s", at.name, err, ear.Of(err), at.code)
		}
	}
	if _, err := ear.VerifyProof(ctx, bAns.Proof, bReport, want, cache); err != nil {
		t.Errorf("B's proof with B's report: %v", err)
	}

	// Node jose, from the docs alone: the honest proofs pass, the same
	// attacks fail.
	script, err := os.ReadFile(filepath.Join("testdata", "verify-proof.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	js := testcmd.JoseScript(t, script)
	type jcase struct {
		Report string `json:"report"`
		Proof  string `json:"proof"`
		Aud    string `json:"aud"`
		Nonce  string `json:"nonce"`
		Htm    string `json:"htm"`
		Htu    string `json:"htu"`
		Now    int64  `json:"now"`
	}
	jc := func(proof string, r *ear.Verified, w ear.ProofExpect) jcase {
		return jcase{Report: r.Token, Proof: proof, Aud: w.Audience, Nonce: w.Nonce, Htm: w.Method, Htu: w.URL, Now: w.Now.Unix()}
	}
	cases := []jcase{jc(ans.Proof, report, want), jc(bAns.Proof, bReport, want)}
	for _, at := range attacks {
		cases = append(cases, jc(at.proof, at.report, at.want))
	}
	dir := t.TempDir()
	casesPath, caPath := filepath.Join(dir, "cases.json"), filepath.Join(dir, "ca.pem")
	cb, _ := json.Marshal(cases)
	write(t, casesPath, cb)
	write(t, caPath, svc.Issuer.CAPEM())
	out, err := testcmd.Output("node", js, caPath, casesPath)
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var res []struct {
		Level      *int   `json:"level"`
		Thumbprint string `json:"thumbprint"`
		Error      string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != len(cases) {
		t.Fatalf("node output %q: %v", out, err)
	}
	tpB, _ := ear.Thumbprint(eb.ReportPublic())
	for i, want := range []string{tp, tpB} {
		if res[i].Error != "" || res[i].Thumbprint != want || res[i].Level == nil || *res[i].Level != report.Claims.Level {
			t.Errorf("jose, honest proof %d: %+v, want thumbprint %s", i, res[i], want)
		}
	}
	for i, at := range attacks {
		if got := res[2+i].Error; got != at.jose {
			t.Errorf("jose, %s: %q, want %q", at.name, got, at.jose)
		}
	}
}

// TestProofRSAReportKey: a TPM whose report key is RSA 2048 proves with
// RS256, and ear verifies it; another proof's signature under its header
// is refused.
func TestProofRSAReportKey(t *testing.T) {
	ctx := context.Background()
	sw := testtpm.Start(t)
	svc := testserver.Start(t, testserver.Options{EKRoots: sw.Roots, EKIntermediates: sw.Intermediates})
	a, e := tpmAgent(t, svc, sw, testhost.Base().WriteDir(t), tpm.Options{ReportKey: tpm.RSASSA2048})
	ans, err := a.Prove(ctx, agent.ProofRequest{Audience: rpAud, Nonce: "n"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r, err := ear.Verify(ans.SessionReport, svc.CAPool, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ear.VerifyProof(ctx, ans.Proof, r, ear.ProofExpect{Audience: rpAud, Nonce: "n", Now: now}, ear.NewMemoryReplayCache(0))
	if err != nil || p.Alg != "RS256" {
		t.Fatalf("the TPM's RS256 proof: %+v %v", p, err)
	}
	if tp, _ := ear.Thumbprint(e.ReportPublic()); tp != p.Thumbprint {
		t.Fatal("the proof's key is not the TPM's report key")
	}
	other, err := a.Prove(ctx, agent.ProofRequest{Audience: rpAud, Nonce: "m"})
	if err != nil {
		t.Fatal(err)
	}
	forged := ans.Proof[:strings.LastIndexByte(ans.Proof, '.')] + other.Proof[strings.LastIndexByte(other.Proof, '.'):]
	if _, err := ear.VerifyProof(ctx, forged, r, ear.ProofExpect{Audience: rpAud, Nonce: "n", Now: now}, ear.NewMemoryReplayCache(0)); ear.Of(err) != ear.ProofBadSignature {
		t.Fatalf("another proof's signature: %v", err)
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestProofSoftware: a software agent's proof verifies and is labelled
// software, over a level-1 report; a group-owned socket is 0660 in that
// group; bad requests and an agent with no report are refused with their
// problem codes.
func TestProofSoftware(t *testing.T) {
	ctx := context.Background()
	svc := testserver.Start(t, testserver.Options{})
	e := softEnclave(t)
	a := newAgent(t, svc, e, testhost.Base().WriteDir(t), agent.Options{Audiences: []string{"edr"}})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ctxS, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.ServeSocket(ctxS, sock, agent.SocketOptions{Group: strconv.Itoa(os.Getgid())}) }()
	c := socketClient(sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket with a group: mode %v %v, want 0660", fi.Mode(), err)
	}

	// Not enrolled: no report to prove for.
	if st, body := askProof(t, c, `{"aud":"`+rpAud+`"}`); st != http.StatusServiceUnavailable || !strings.Contains(string(body), api.CodeUnavailable) {
		t.Fatalf("before enrollment: %d %s", st, body)
	}
	if _, err := a.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"aud":""}`, `{"aud":"x","level":4}`, `{"aud":"x","htm":"POST"}`, `{"aud":"x","htm":"post","htu":"https://x/"}`, `{"aud":"a b"}`, `not json`} {
		if st, body := askProof(t, c, bad); st != http.StatusBadRequest || !strings.Contains(string(body), api.CodeBadRequest) {
			t.Errorf("%s: %d %s, want 400 bad-request", bad, st, body)
		}
	}
	st, body := askProof(t, c, `{"aud":"`+rpAud+`","nonce":"n-7"}`)
	if st != http.StatusOK {
		t.Fatalf("POST /v1/proof: %d %s", st, body)
	}
	var ans agent.ProofAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Enclave != "software" || ans.Level != 1 {
		t.Fatalf("a software agent's answer: enclave %q, level %d", ans.Enclave, ans.Level)
	}
	r, err := ear.Verify(ans.SessionReport, svc.CAPool, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Claims.Audience, " ") != rpAud+" edr" && strings.Join(r.Claims.Audience, " ") != "edr "+rpAud {
		t.Fatalf("aud %q: want the configured edr and %s", r.Claims.Audience, rpAud)
	}
	if _, err := ear.VerifyProof(ctx, ans.Proof, r, ear.ProofExpect{Audience: rpAud, Nonce: "n-7", Now: time.Now(), RequireReportAudience: true}, ear.NewMemoryReplayCache(0)); err != nil {
		t.Fatalf("the software proof: %v", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
