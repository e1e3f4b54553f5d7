package agent_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/evidence"
)

func problem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Problem{Type: api.ProblemType + code, Title: http.StatusText(status), Status: status, Code: code, Detail: detail})
}

func newClient(t *testing.T, url string) *agent.Client {
	t.Helper()
	c, err := agent.NewClient(url, agent.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestClientProblems: every kind of refusal comes back as a
// *ProblemError with the service's status and code, or without a code
// when the answer is not a problem.
func TestClientProblems(t *testing.T) {
	cases := []struct {
		name       string
		handler    http.HandlerFunc
		status     int
		code       string
		detail     string
		retryAfter time.Duration
	}{
		{"pending", func(w http.ResponseWriter, _ *http.Request) {
			problem(w, 403, api.CodeAgentPending, "awaiting approval")
		}, 403, api.CodeAgentPending, "awaiting approval", 0},
		{"rate limited", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "7")
			problem(w, 429, api.CodeRateLimited, "")
		}, 429, api.CodeRateLimited, "Too Many Requests", 7 * time.Second},
		{"html from a proxy", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			io.WriteString(w, "<html>bad\ngateway</html>")
		}, 502, "", "<html>bad gateway</html>", 0},
		{"problem without code", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(500)
			io.WriteString(w, `{"title":"x","status":500}`)
		}, 500, "", `{"title":"x","status":500}`, 0},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusTemporaryRedirect)
		}, 307, "", "", 0},
		{"empty 404", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(404)
		}, 404, "", "Not Found", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			_, err := newClient(t, srv.URL).Challenge(context.Background(), "web-01")
			var pe *agent.ProblemError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want *ProblemError", err, err)
			}
			if pe.Status != tc.status || pe.Code != tc.code || pe.RetryAfter != tc.retryAfter {
				t.Errorf("got %+v, want status %d code %q retry %v", pe, tc.status, tc.code, tc.retryAfter)
			}
			if tc.detail != "" && pe.Detail != tc.detail {
				t.Errorf("detail %q, want %q", pe.Detail, tc.detail)
			}
			if strings.ContainsAny(pe.Error(), "\n\r") {
				t.Errorf("error message has control characters: %q", pe.Error())
			}
			if got := agent.IsProblem(err, tc.code); tc.code != "" && !got {
				t.Errorf("IsProblem(%q) false", tc.code)
			}
		})
	}
}

// TestClientMalformedResponses: a 2xx answer the client cannot trust is
// ErrResponse, never a half-decoded value.
func TestClientMalformedResponses(t *testing.T) {
	big := `{"nonce":"` + strings.Repeat("a", agent.MaxResponse) + `"}`
	cases := []struct {
		name, ctype, body string
	}{
		{"too large", "application/json", big},
		{"trailing data", "application/json", `{"nonce":"0011223344556677","ima_offset":0} {}`},
		{"not json", "application/json", `nonce=00`},
		{"wrong content type", "text/plain", `{"nonce":"0011223344556677"}`},
		{"no nonce", "application/json", `{"ima_offset":3}`},
		{"negative offset", "application/json", `{"nonce":"0011223344556677","ima_offset":-1}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			ch, err := newClient(t, srv.URL).Challenge(context.Background(), "web-01")
			if !errors.Is(err, agent.ErrResponse) || ch != nil {
				t.Fatalf("got %+v, %v; want ErrResponse", ch, err)
			}
		})
	}
}

// TestClientRequests: what the client sends — paths, methods, media
// types, User-Agent — and that it reads what the service answers.
func TestClientRequests(t *testing.T) {
	type seen struct{ method, path, ctype, ua, body string }
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), string(b)})
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == api.PathEnroll:
			io.WriteString(w, `{"agent_id":"web-01","status":"activating","credential_blob":"AQI=","encrypted_secret":"AwQ=","future_field":1}`)
		case r.URL.Path == api.PathActivate:
			io.WriteString(w, `{"agent_id":"web-01","status":"approved"}`)
		case strings.HasSuffix(r.URL.Path, "/challenge"):
			io.WriteString(w, `{"nonce":"00112233445566778899","expires_at":"2030-01-01T00:00:00Z","ima_offset":42,"event_log_sha256":"ab"}`)
		default:
			io.WriteString(w, `{"agent_id":"web-01","result_id":9,"level":1,"status":"warning","failures":[],"token":"t","ima_offset":50}`)
		}
	}))
	defer srv.Close()
	c := newClient(t, srv.URL+"/")
	ctx := context.Background()
	er, err := c.Enroll(ctx, &api.EnrollRequest{AgentID: "web-01", Enclave: "software", ReportKeyPEM: "k"})
	if err != nil || er.Status != "activating" || string(er.CredentialBlob) != "\x01\x02" || string(er.EncryptedSecret) != "\x03\x04" {
		t.Fatalf("enroll %+v %v", er, err)
	}
	if ar, err := c.Activate(ctx, &api.ActivateRequest{AgentID: "web-01", Secret: []byte{9}}); err != nil || ar.Status != "approved" {
		t.Fatalf("activate %+v %v", ar, err)
	}
	ch, err := c.Challenge(ctx, "web-01")
	if err != nil || ch.IMAOffset != 42 || ch.EventLogSHA256 != "ab" || !ch.ExpiresAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("challenge %+v %v", ch, err)
	}
	res, err := c.Attest(ctx, "web-01", &evidence.Evidence{Version: evidence.Version, Enclave: "software", Nonce: "00"})
	if err != nil || res.ResultID != 9 || res.Level != 1 || res.Token != "t" || res.IMAOffset != 50 {
		t.Fatalf("attest %+v %v", res, err)
	}
	want := []seen{
		{"POST", "/v1/enroll", "application/json", "", `{"agent_id":"web-01","enclave":"software","report_key_pem":"k"}`},
		{"POST", "/v1/enroll/activate", "application/json", "", `{"agent_id":"web-01","secret":"CQ=="}`},
		{"POST", "/v1/agents/web-01/challenge", "application/json", "", `{}`},
		{"POST", "/v1/agents/web-01/attest", evidence.MediaType, "", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.method != w.method || g.path != w.path || g.ctype != w.ctype || g.ua != "vigil-agent/"+agent.Version {
			t.Errorf("request %d: %+v, want %+v", i, g, w)
		}
		if w.body != "" && g.body != w.body {
			t.Errorf("request %d body %s, want %s", i, g.body, w.body)
		}
	}
	if _, err := evidence.Decode([]byte(got[3].body)); err != nil {
		t.Errorf("attest body is not evidence: %v", err)
	}
	// An ID that is not one never reaches the wire.
	for _, id := range []string{"", "..", "a/b", "x?y", strings.Repeat("a", 129)} {
		n := len(got)
		if _, err := c.Challenge(ctx, id); err == nil || len(got) != n {
			t.Errorf("ID %q: err %v, %d requests sent", id, err, len(got)-n)
		}
	}
}

// TestClientTLS: a CA file makes the service's certificate trusted; the
// system roots alone do not.
func TestClientTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		problem(w, 404, api.CodeUnknownAgent, "")
	}))
	defer srv.Close()
	ctx := context.Background()
	plain := newClient(t, srv.URL)
	var ua x509.UnknownAuthorityError
	if _, err := plain.Challenge(ctx, "a"); !errors.As(err, &ua) {
		t.Fatalf("untrusted certificate: %v, want x509.UnknownAuthorityError", err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	c, err := agent.NewClient(srv.URL, agent.ClientOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Challenge(ctx, "a"); !agent.IsProblem(err, api.CodeUnknownAgent) {
		t.Fatalf("with the CA file: %v", err)
	}
	for _, bad := range []agent.ClientOptions{{CAFile: filepath.Join(t.TempDir(), "none.pem")}, {CAFile: os.Args[0]}} {
		if _, err := agent.NewClient(srv.URL, bad); err == nil {
			t.Errorf("CA file %s accepted", bad.CAFile)
		}
	}
	for _, u := range []string{"ftp://x", "http://", "://", "https://h/?q=1", "localhost:8443"} {
		if _, err := agent.NewClient(u, agent.ClientOptions{}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}
