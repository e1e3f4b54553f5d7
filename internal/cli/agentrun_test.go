package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
)

// TestAgentRunUsage: bad flags and an unreachable service exit 2, before
// or without any attestation.
func TestAgentRunUsage(t *testing.T) {
	dir := testhost.Base().WriteDir(t)
	key := filepath.Join(t.TempDir(), "agent.key")
	base := []string{"agent", "run", "--root", dir, "--no-verify"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no server", []string{"--soft", key, "--once"}, "--server is required"},
		{"bad server URL", []string{"--server", "vigil.example:8443", "--soft", key, "--once"}, "want http(s)://"},
		{"no enclave", []string{"--server", "http://127.0.0.1:1", "--once"}, "--tpm or --soft is required"},
		{"both enclaves", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--tpm", "unix:///nope", "--once"}, "exclusive"},
		{"short interval", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--interval", "10ms"}, "--interval"},
		{"bad output", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once", "-o", "yaml"}, "--output"},
		{"bad PCRs", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once", "--pcrs", "sha256:0-99"}, "--pcrs"},
		{"bad agent ID", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once", "--agent-id", "a/b"}, "agent ID"},
		{"missing CA file", []string{"--server", "https://127.0.0.1:1", "--soft", key, "--once", "--ca", filepath.Join(dir, "none.pem")}, "CA file"},
		{"missing report CA file", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once", "--report-ca", filepath.Join(dir, "none.pem")}, "--report-ca"},
		{"service down", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--once"}, "connection refused"},
		{"socket nowhere", []string{"--server", "http://127.0.0.1:1", "--soft", key, "--socket", filepath.Join(dir, "missing", "agent.sock")}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := vigil(t, append(base, tc.args...)...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
			if out != "" {
				t.Errorf("stdout on error: %q", out)
			}
		})
	}
	if code, out, _ := vigil(t, "agent", "run", "--help"); code != 0 || !strings.Contains(out, "--once") {
		t.Errorf("agent run --help: exit %d\n%s", code, out)
	}
}

// onceResult is `vigil agent run --once`'s JSON.
type onceResult struct {
	AgentID    string             `json:"agent_id"`
	Enrollment string             `json:"enrollment"`
	Level      int                `json:"level"`
	Status     string             `json:"status"`
	Token      string             `json:"token"`
	Failures   []appraise.Failure `json:"failures"`
	Code       string             `json:"code"`
	Detail     string             `json:"detail"`
	Time       *time.Time         `json:"time"`
}

func runOnce(t *testing.T, args ...string) (int, onceResult, string) {
	t.Helper()
	code, out, errs := vigil(t, append([]string{"agent", "run", "--once", "--no-verify"}, args...)...)
	var r onceResult
	if code != 2 {
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("exit %d, output %.300q: %v (%s)", code, out, err, errs)
		}
	}
	return code, r, errs
}

// TestAgentRunOnce: --once against a real service — a healthy software
// host exits 0 at level 1 with a session report that verifies; a host
// hiding a module exits 1 at level 0 with the failure; a pending agent
// exits 1 until an operator approves it; a revoked one exits 1, refused;
// the state directory keeps the agent ID.
func TestAgentRunOnce(t *testing.T) {
	ctx := context.Background()
	svc := testserver.Start(t, testserver.Options{Software: server.SoftwarePending})
	work := t.TempDir()
	key := filepath.Join(work, "agent.key")
	state := filepath.Join(work, "state")
	healthy := testhost.Base().WriteDir(t)
	base := []string{"--server", svc.URL, "--soft", key, "--state-dir", state, "--root", healthy}

	code, r, errs := runOnce(t, append(base, "--agent-id", "web-01")...)
	if code != 1 || r.Enrollment != "pending" || r.Status != "none" || r.Token != "" || r.AgentID != "web-01" {
		t.Fatalf("pending: exit %d %+v %s", code, r, errs)
	}
	if err := svc.Store.SetStatus(ctx, "web-01", store.StatusChange{From: store.Pending, To: store.Approved, Reason: "test operator"}); err != nil {
		t.Fatal(err)
	}
	// No --agent-id: the saved one.
	code, r, errs = runOnce(t, base...)
	if code != 0 || r.AgentID != "web-01" || r.Enrollment != "approved" || r.Level != 1 || r.Status != "warning" {
		t.Fatalf("approved: exit %d %+v %s", code, r, errs)
	}
	v, err := ear.Verify(r.Token, svc.CAPool, time.Now())
	if err != nil || v.Claims.AgentID != "web-01" || v.Claims.Level != 1 {
		t.Fatalf("session report: %+v %v", v, err)
	}
	code, text, _ := vigil(t, append([]string{"agent", "run", "--once", "--no-verify", "-o", "text"}, base...)...)
	if code != 0 || !strings.Contains(text, "agent web-01: level 1 (warning)") || !strings.Contains(text, "software-enclave") {
		t.Errorf("text: exit %d %s", code, text)
	}

	// The same agent on a host hiding a module: untrusted.
	host := testhost.Base()
	host.Modules = append(host.Modules, testhost.Module{Name: "rootkit", Size: 4096, Hide: []string{"proc_modules"}})
	hidden := host.WriteDir(t)
	code, r, errs = runOnce(t, "--server", svc.URL, "--soft", key, "--state-dir", state, "--root", hidden)
	if code != 1 || r.Level != 0 || r.Status != "contraindicated" || r.Token == "" ||
		!slices.ContainsFunc(r.Failures, func(f appraise.Failure) bool { return f.Reason == "hidden-module" && f.Level == 1 }) {
		t.Fatalf("hidden module: exit %d %+v %s", code, r, errs)
	}

	if err := svc.Store.SetStatus(ctx, "web-01", store.StatusChange{From: store.Approved, To: store.Revoked, Reason: "test operator"}); err != nil {
		t.Fatal(err)
	}
	code, r, errs = runOnce(t, base...)
	if code != 1 || r.Enrollment != "refused" || r.Code != api.CodeAgentRevoked || r.Token != "" {
		t.Fatalf("revoked: exit %d %+v %s", code, r, errs)
	}
}

// TestAgentRunOnceTPM: --once with swtpm, approved by its EK certificate
// after credential activation, reaches level 2.
func TestAgentRunOnceTPM(t *testing.T) {
	sw := testtpm.Start(t)
	svc := testserver.Start(t, testserver.Options{EKRoots: sw.Roots, EKIntermediates: sw.Intermediates})
	code, r, errs := runOnce(t, "--server", svc.URL, "--tpm", sw.URI, "--root", testhost.Base().WriteDir(t))
	if code != 0 || r.Enrollment != "approved" || r.Level < 2 || r.Status != "affirming" || !strings.HasPrefix(r.AgentID, "tpm-") {
		t.Fatalf("exit %d %+v %s", code, r, errs)
	}
	if _, err := ear.Verify(r.Token, svc.CAPool, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestAgentRunServesSocket: without --once the agent keeps attesting and
// serves the latest session report on its socket (0600) until SIGINT,
// then exits 0 and removes the socket.
func TestAgentRunServesSocket(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	work := t.TempDir()
	sock := filepath.Join(work, "agent.sock")
	done := make(chan int, 1)
	var errs string
	go func() {
		code, _, e := vigil(t, "agent", "run", "--no-verify", "--server", svc.URL, "--soft", filepath.Join(work, "agent.key"),
			"--root", testhost.Base().WriteDir(t), "--socket", sock, "--interval", "1s", "--agent-id", "web-01")
		errs = e
		done <- code
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	var served struct {
		AgentID string `json:"agent_id"`
		Level   int    `json:"level"`
		Token   string `json:"token"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case code := <-done:
			t.Fatalf("agent run exited %d: %s", code, errs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no report on the socket in 30s")
		}
		resp, err := client.Get("http://agent/v1/report")
		if err != nil {
			continue
		}
		ok := resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&served) == nil
		resp.Body.Close()
		if ok {
			break
		}
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %v %v", fi.Mode(), err)
	}
	if served.AgentID != "web-01" || served.Level != 1 {
		t.Errorf("served %+v", served)
	}
	if _, err := ear.Verify(served.Token, svc.CAPool, time.Now()); err != nil {
		t.Errorf("served token: %v", err)
	}
	// The agent handles SIGINT (signal.NotifyContext): the test process
	// is not interrupted.
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after SIGINT: %s", code, errs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent run did not stop on SIGINT")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left: %v", err)
	}
}

// TestAgentRunOnceRefusesForgedReport: someone between the agent and a
// real service replays the agent's earlier genuine session report (the
// pinned CA signed it, for this agent and key, but for another nonce):
// --once exits 2 with the reason on stderr and prints no result. The same
// with a --report-ca that is not the service's: untrusted-chain.
func TestAgentRunOnceRefusesForgedReport(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	target, err := url.Parse(svc.URL)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var first string // the first genuine token; every later answer carries it
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/attest") || resp.StatusCode != http.StatusOK {
			return nil
		}
		var ar map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil {
			return err
		}
		mu.Lock()
		if first == "" {
			first, _ = ar["token"].(string)
		}
		ar["token"], ar["level"] = first, 4
		mu.Unlock()
		b, _ := json.Marshal(ar)
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	mitm := httptest.NewServer(proxy)
	defer mitm.Close()
	work := t.TempDir()
	base := []string{"--server", mitm.URL, "--soft", filepath.Join(work, "agent.key"), "--state-dir", filepath.Join(work, "state"),
		"--root", testhost.Base().WriteDir(t), "--agent-id", "web-01"}
	if code, r, errs := runOnce(t, base...); code != 0 || r.Level != 1 || r.Token != first {
		t.Fatalf("first round: exit %d %+v %s", code, r, errs)
	}
	code, out, errs := vigil(t, append([]string{"agent", "run", "--once", "--no-verify"}, base...)...)
	if code != 2 || out != "" || !strings.Contains(errs, "session report is refused") || !strings.Contains(errs, string(ear.WrongNonce)) {
		t.Fatalf("replayed report: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// Another CA given with --report-ca: the genuine report is refused.
	other := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	caFile := testpki.WritePEMs(t, work, "other-ca.pem", other)
	direct := []string{"--server", svc.URL, "--soft", filepath.Join(work, "agent2.key"), "--root", testhost.Base().WriteDir(t), "--report-ca", caFile}
	code, out, errs = vigil(t, append([]string{"agent", "run", "--once", "--no-verify"}, direct...)...)
	if code != 2 || out != "" || !strings.Contains(errs, string(ear.UntrustedChain)) {
		t.Fatalf("--report-ca of another CA: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
