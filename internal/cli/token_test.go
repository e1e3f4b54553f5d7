package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/internal/cli"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/measure"
)

// socketAgent is a software agent of svc serving its socket; enrolled
// (and attested) when enroll is set.
func socketAgent(t *testing.T, svc *testserver.Service, enroll bool) string {
	t.Helper()
	ctx := context.Background()
	e, err := soft.Open(filepath.Join(t.TempDir(), "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := agent.NewClient(svc.URL, agent.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	a, err := agent.New(ctx, agent.Options{Client: c, Enclave: e, Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New(testhost.Base().WriteDir(t)))})
	if err != nil {
		t.Fatal(err)
	}
	if enroll {
		if _, err := a.Enroll(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AttestOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.ServeSocket(ctx, sock, agent.SocketOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	for i := 0; ; i++ {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return sock
		}
		if i > 500 {
			t.Fatal("the socket never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type verifyOut struct {
	Valid  bool     `json:"valid"`
	Code   string   `json:"code"`
	Level  *int     `json:"level"`
	Aud    []string `json:"audience"`
	Issuer string   `json:"issuer"`
	Proof  *struct {
		Thumbprint string `json:"thumbprint"`
		Alg        string `json:"alg"`
	} `json:"proof"`
}

// TestAgentProveTokenVerify: `vigil agent prove` gets a report and a
// proof from a running agent's socket; `vigil token verify` admits them
// with the CA or the JWKS (file or URL), and refuses with exit 1 and the
// code each relying-party check that fails; usage errors exit 2.
func TestAgentProveTokenVerify(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	sock := socketAgent(t, svc, true)
	const aud, url = "https://bank.example", "https://bank.example/transfer"
	code, out, errs := vigil(t, "agent", "prove", "--socket", sock, "--aud", aud, "--nonce", "n-1", "--htm", "POST", "--htu", url, "-o", "json")
	if code != 0 {
		t.Fatalf("agent prove: exit %d %s", code, errs)
	}
	var ans agent.ProofAnswer
	if err := json.Unmarshal([]byte(out), &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Enclave != "software" || ans.Level != 1 {
		t.Fatalf("answer %+v", ans)
	}
	code, text, _ := vigil(t, "agent", "prove", "--socket", sock, "--aud", aud)
	if code != 0 || !strings.Contains(text, "signed by its software key") || !strings.Contains(text, "proof: ") {
		t.Errorf("agent prove text: exit %d %s", code, text)
	}

	dir := t.TempDir()
	rep, proof, ca, jwks := filepath.Join(dir, "report.jwt"), filepath.Join(dir, "proof.jwt"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "jwks.json")
	jwksBytes, err := svc.Issuer.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{rep: []byte(ans.SessionReport + "\n"), proof: []byte(ans.Proof), ca: svc.Issuer.CAPEM(), jwks: jwksBytes} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(args ...string) (int, verifyOut, string) {
		t.Helper()
		code, out, errs := vigil(t, append([]string{"token", "verify", "-o", "json"}, args...)...)
		var v verifyOut
		if code != 2 {
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("token verify %v: %q: %v", args, out, err)
			}
		}
		return code, v, errs
	}
	withProof := []string{rep, "--proof", proof, "--aud", aud, "--nonce", "n-1", "--htm", "POST", "--htu", url}

	for _, keys := range [][]string{{"--ca", ca}, {"--jwks", jwks}, {"--jwks", svc.URL + api.PathJWKS}} {
		code, v, errs := verify(append(withProof, keys...)...)
		if code != 0 || !v.Valid || v.Level == nil || *v.Level != 1 || v.Proof == nil || v.Proof.Alg != "ES256" || v.Issuer != ear.IssuerOf(svc.CA) || len(v.Aud) != 1 || v.Aud[0] != aud {
			t.Errorf("%v: exit %d %+v %s", keys, code, v, errs)
		}
	}
	tampered := filepath.Join(dir, "tampered.jwt")
	parts := strings.Split(ans.SessionReport, ".")
	os.WriteFile(tampered, []byte(parts[0]+"."+parts[1]+"x."+parts[2]), 0o644)
	other := filepath.Join(dir, "other.jwt")
	otherAns, err := agent.RequestProof(context.Background(), sock, agent.ProofRequest{Audience: "edr"}) // a new audience: a new report
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(other, []byte(otherAns.Proof), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code ear.Code
	}{
		{"level below the minimum", append(withProof, "--ca", ca, "--min-level", "2"), ear.LevelTooLow},
		{"another relying party", []string{rep, "--ca", ca, "--proof", proof, "--aud", "https://shop.example", "--nonce", "n-1"}, ear.ReportAudience},
		{"another nonce", []string{rep, "--ca", ca, "--proof", proof, "--aud", aud, "--nonce", "n-2", "--htm", "POST", "--htu", url}, ear.ProofNonce},
		{"another request", []string{rep, "--ca", ca, "--proof", proof, "--aud", aud, "--nonce", "n-1", "--htm", "GET", "--htu", url}, ear.ProofMethod},
		{"a proof of another report", []string{rep, "--ca", ca, "--proof", other, "--aud", aud}, ear.ProofATHMismatch},
		{"the report as its own proof", []string{rep, "--ca", ca, "--proof", rep, "--aud", aud}, ear.ProofWrongType},
		{"tampered report", []string{tampered, "--ca", ca}, ear.BadSignature},
	} {
		code, v, errs := verify(tc.args...)
		if code != 1 || v.Valid || v.Code != string(tc.code) {
			t.Errorf("%s: exit %d %+v %s, want 1 and %s", tc.name, code, v, errs, tc.code)
		}
	}
	code, text, _ = vigil(t, "token", "verify", rep, "--ca", ca, "--min-level", "3")
	if code != 1 || !strings.Contains(text, "refused: level-too-low") || !strings.Contains(text, "level 1 (software-rooted)") {
		t.Errorf("text refusal: exit %d %s", code, text)
	}

	// Standard input.
	var o, e bytes.Buffer
	root := cli.NewRoot(&o, &e)
	root.SetIn(strings.NewReader(ans.SessionReport))
	root.SetArgs([]string{"token", "verify", "--ca", ca})
	if err := root.Execute(); err != nil || !strings.Contains(o.String(), "valid") {
		t.Errorf("from stdin: %v %s %s", err, o.String(), e.String())
	}

	for _, args := range [][]string{
		{rep},                               // neither --ca nor --jwks
		{rep, "--ca", ca, "--jwks", jwks},   // both
		{rep, "--ca", ca, "--proof", proof}, // a proof without --aud
		{rep, "--ca", ca, "--nonce", "n"},   // a nonce without a proof
		{rep, "--ca", ca, "--proof", proof, "--aud", aud, "--htm", "POST"}, // htm without htu
		{rep, "--ca", ca, "--min-level", "5"},
		{filepath.Join(dir, "none.jwt"), "--ca", ca},
		{rep, "--ca", filepath.Join(dir, "none.pem")},
		{rep, "--ca", ca, "-o", "yaml"},
		{rep, "--ca", ca, "extra"},
	} {
		if code, _, errs := vigil(t, append([]string{"token", "verify"}, args...)...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, want 2 with a message", args, code)
		}
	}

	// No agent at the socket: exit 2; an agent with no report: exit 1.
	if code, _, errs := vigil(t, "agent", "prove", "--socket", filepath.Join(dir, "none.sock"), "--aud", aud); code != 2 || errs == "" {
		t.Errorf("no agent: exit %d %s", code, errs)
	}
	idle := socketAgent(t, svc, false)
	if code, _, errs := vigil(t, "agent", "prove", "--socket", idle, "--aud", aud); code != 1 || !strings.Contains(errs, api.CodeUnavailable) {
		t.Errorf("an agent with no report: exit %d %s", code, errs)
	}
	if code, _, _ := vigil(t, "agent", "prove", "--socket", sock); code != 2 {
		t.Errorf("no --aud: exit %d", code)
	}
	if code, out, _ := vigil(t, "help", "token"); code != 0 || !strings.Contains(out, "verify") {
		t.Errorf("vigil help token: exit %d %s", code, out)
	}
}
