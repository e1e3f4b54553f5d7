package gatekeeper_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/gatekeeper"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/tpm"
)

// audience is the gate's name: the aud of the proofs it admits.
const audience = "gate.test"

// rig is a service, two agents on two swtpms (another TPM each), an
// upstream that records what reaches it, and the gates' fake clock.
type rig struct {
	t    *testing.T
	svc  *testserver.Service
	a, b *agent.Agent
	// hostA is A's host tree at rootA, eA its TPM enclave.
	hostA  *testhost.Host
	rootA  string
	eA, eB enclave.Enclave
	// noAud is a report of A issued for no audience.
	noAud    string
	feedTok  string
	offset   atomic.Int64 // the gates' clock: time.Now() + offset
	upstream *httptest.Server
	mu       sync.Mutex
	seen     []http.Header
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	swA, swB := testtpm.Start(t), testtpm.StartWith(t, testtpm.Options{Fresh: true})
	svc := testserver.Start(t, testserver.Options{EKRoots: swA.Roots, EKIntermediates: swA.Intermediates})
	r := &rig{t: t, svc: svc, hostA: testhost.Base()}
	r.rootA = r.hostA.WriteDir(t)
	r.a, r.eA = tpmAgent(t, svc, swA, r.rootA)
	r.b, r.eB = tpmAgent(t, svc, swB, testhost.Base().WriteDir(t))
	for _, a := range []*agent.Agent{r.a, r.b} {
		if _, err := a.AttestOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A's first report, asked for no audience.
	r.noAud = r.a.Latest().Token
	// The gate's own credential: a relying party with the feed scope.
	var rp api.RelyingParty
	req := api.RelyingPartyRequest{Name: "gate-test", Scopes: []string{"feed"}}
	if st := r.admin("POST", api.PathRelyingParties, req, &rp); st != http.StatusCreated {
		t.Fatalf("creating the relying party: %d", st)
	}
	r.feedTok = rp.Token
	r.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Header.Clone())
		r.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream %s %s agent=%s level=%s\n", req.Method, req.URL.Path, req.Header.Get("Vigil-Agent"), req.Header.Get("Vigil-Level"))
	}))
	t.Cleanup(r.upstream.Close)
	return r
}

func tpmAgent(t *testing.T, svc *testserver.Service, sw *testtpm.TPM, root string) (*agent.Agent, enclave.Enclave) {
	t.Helper()
	ctx := context.Background()
	e, err := tpm.Open(ctx, sw.URI, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	c, err := agent.NewClient(svc.URL, agent.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	a, err := agent.New(ctx, agent.Options{Client: c, Enclave: e, Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New(root))})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
		t.Fatalf("enroll: %s %v", st, err)
	}
	return a, e
}

// admin calls the service's admin API.
func (r *rig) admin(method, path string, body, out any) int {
	r.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, r.svc.URL+path, strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+r.svc.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (r *rig) now() time.Time { return time.Now().Add(time.Duration(r.offset.Load())) }

// lastSeen is the headers of the upstream's latest request.
func (r *rig) lastSeen() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return nil
	}
	return r.seen[len(r.seen)-1]
}

// gate runs a gate of cfg (the rig's clock and feed) until the test
// ends and returns its proxy and auth_request base URLs.
func (r *rig) gate(cfg gatekeeper.Config) (proxy, auth string) {
	r.t.Helper()
	tokFile := filepath.Join(r.t.TempDir(), "rp-token")
	os.WriteFile(tokFile, []byte(r.feedTok+"\n"), 0o600)
	cfg.FeedURL, cfg.RPTokenFile, cfg.Audience = r.svc.URL+api.PathFeed, tokFile, audience
	g, err := gatekeeper.NewGate(cfg, gatekeeper.GateOptions{Now: r.now})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, func(p, a string) { ready <- [2]string{p, a} }) }()
	r.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("gate: %v", err)
		}
	})
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-done:
		r.t.Fatalf("gate: %v", err)
	}
	select {
	case <-g.Feed().Ready():
	case <-time.After(10 * time.Second):
		r.t.Fatal("the gate never connected to the feed")
	}
	if addrs[0] != "" {
		proxy = "http://" + addrs[0]
	}
	if addrs[1] != "" {
		auth = "http://" + addrs[1]
	}
	return proxy, auth
}

// prove asks agent a for its session report and a proof for method and
// url, for aud.
func prove(t *testing.T, a *agent.Agent, aud, method, url string) *agent.ProofAnswer {
	t.Helper()
	ans, err := a.Prove(context.Background(), agent.ProofRequest{Audience: aud, Method: method, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return ans
}

// proofFor is a fresh proof by A's TPM for report (any of A's reports),
// made as the agent makes them (ear.SignProof through
// enclave.SignMessage).
func (r *rig) proofFor(report, method, url string) string {
	r.t.Helper()
	jti := make([]byte, 16)
	rand.Read(jti)
	p, err := ear.SignProof(context.Background(), r.eA.ReportPublic(), ear.ProofClaims{
		Audience: audience, Method: method, URL: url, IssuedAt: time.Now().Unix(),
		ID: base64.RawURLEncoding.EncodeToString(jti), ReportHash: ear.ReportHash(report),
	}, func(ctx context.Context, m []byte) ([]byte, error) { return enclave.SignMessage(ctx, r.eA, m) })
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// reply is what curl got.
type reply struct {
	status int
	header http.Header
	body   string
}

// code is the problem's code ("" when the body is none).
func (r *reply) code() string {
	var p gatekeeper.Problem
	if json.Unmarshal([]byte(r.body), &p) != nil {
		return ""
	}
	return string(p.Code)
}

// need finds a peer tool: missing, it fails the test under CI=true and
// skips it otherwise.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (make deps installs it): %v", name, err)
		}
		t.Skipf("%s is missing (make deps installs it)", name)
	}
	return p
}

// curl sends one request with the real curl and returns its answer.
func curl(t *testing.T, method, url string, headers ...string) *reply {
	t.Helper()
	dir := t.TempDir()
	args := []string{"-sS", "--max-time", "20", "-X", method, "-o", filepath.Join(dir, "body"), "-D", filepath.Join(dir, "head"), "-w", "%{http_code}"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	out, err := exec.Command(need(t, "curl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	st, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	body, _ := os.ReadFile(filepath.Join(dir, "body"))
	raw, _ := os.ReadFile(filepath.Join(dir, "head"))
	h := http.Header{}
	for _, line := range strings.Split(string(raw), "\r\n")[1:] {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h.Add(k, strings.TrimSpace(v))
		}
	}
	return &reply{status: st, header: h, body: string(body)}
}

// creds are the curl headers carrying a report and a proof.
func creds(ans *agent.ProofAnswer) []string {
	return []string{"Authorization: Vigil " + ans.SessionReport, "Vigil-PoP: " + ans.Proof}
}

// refused fails unless the reply is the refusal code with status.
func refused(t *testing.T, what string, r *reply, status int, code string) {
	t.Helper()
	if r.status != status || r.code() != code {
		t.Errorf("%s: %d %s (%s), want %d %s", what, r.status, r.code(), strings.TrimSpace(r.body), status, code)
	}
}

// TestGate drives `vigil gate`'s proxy with curl, and nginx's
// auth_request through it, with session reports and proofs from agents on
// two swtpms, and each refusal with its code: no report, no proof, an
// expired report (the gate's clock moved on), a proof for another
// audience, for another URL, from another TPM, a replayed proof, a level
// below the route's, trust-vector claims short of the route's, a report
// older than the route's max-age, a path no route takes; through the
// feed, a host revoked after its report was issued and a host whose level
// fell (presenting its older, better report with a fresh TPM proof), both
// refused at once, and everyone once the feed has been lost past its
// grace. Client-supplied
// identity headers never reach the upstream; the verified claims do. A
// rotated signing key is fetched on its unknown kid.
func TestGate(t *testing.T) {
	r := newRig(t)
	proxy, _ := r.gate(gatekeeper.Config{
		Listen: "127.0.0.1:0", Upstream: r.upstream.URL, JWKSURL: r.svc.URL + api.PathJWKS,
		Routes: []gatekeeper.Route{
			{Path: "/api"},
			{Path: "/api/high", Policy: gatekeeper.Policy{MinLevel: 4}},
			{Path: "/api/l2", Policy: gatekeeper.Policy{MinLevel: 2}},
			{Path: "/api/fresh", Policy: gatekeeper.Policy{MaxAge: 10 * time.Second}},
			{Path: "/api/tv", Policy: gatekeeper.Policy{TrustVector: map[string]string{"hardware": "affirming", "configuration": "warning"}}},
			{Path: "/api/tv/exec", Policy: gatekeeper.Policy{TrustVector: map[string]string{"executables": "warning"}}},
			{Path: "/api/tv/config", Policy: gatekeeper.Policy{TrustVector: map[string]string{"configuration": "affirming"}}},
		},
	})
	url := proxy + "/api/hello"
	ans := prove(t, r.a, audience, "GET", url)
	if ans.Enclave != "tpm" || ans.Level >= 4 {
		t.Fatalf("agent A's proof: enclave %s, level %d", ans.Enclave, ans.Level)
	}
	report, err := ear.Verify(ans.SessionReport, r.svc.CAPool, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("admitted", func(t *testing.T) {
		got := curl(t, "GET", url, append(creds(ans), "Vigil-Agent: mallory", "Vigil-Level: 4", "vigil-trust-vector: hardware=2",
			"Authorization: Basic dXNlcjpwdw==", "X-Request-Id: 42")...)
		if got.status != 200 || !strings.Contains(got.body, "upstream GET /api/hello agent="+r.a.ID()) {
			t.Fatalf("%d %s", got.status, got.body)
		}
		h := r.lastSeen()
		if h.Get("Vigil-Agent") != r.a.ID() || h.Get("Vigil-Level") != strconv.Itoa(ans.Level) || h.Get("Vigil-Status") != report.Claims.Status ||
			h.Get("Vigil-Ek-Sha256") != report.Claims.EKSHA256 || h.Get("Vigil-Ek-Sha256") == "" || h.Get("Vigil-Key-Thumbprint") == "" {
			t.Errorf("the upstream's claims headers: %v", h)
		}
		if len(h.Values("Vigil-Agent")) != 1 || len(h.Values("Vigil-Level")) != 1 || h.Get("Vigil-Pop") != "" ||
			strings.Contains(h.Get("Vigil-Trust-Vector"), "hardware=2") && report.Claims.TrustVector["hardware"] != 2 {
			t.Errorf("client identity headers reached the upstream: %v", h)
		}
		if auth := h.Values("Authorization"); len(auth) != 1 || auth[0] != "Basic dXNlcjpwdw==" || h.Get("X-Request-Id") != "42" {
			t.Errorf("the upstream's own headers: %v", h)
		}
	})
	t.Run("rotated key", func(t *testing.T) {
		// The gate cached the JWKS; the service rotates, A attests again
		// under the new key, and the gate fetches the set on the unknown
		// kid (its rate limit is 10 s: the clock moves 15 s).
		if err := r.svc.Issuer.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.a.AttestOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.offset.Store(int64(15 * time.Second))
		defer r.offset.Store(0)
		ans := prove(t, r.a, audience, "GET", url)
		v, err := ear.Verify(ans.SessionReport, r.svc.CAPool, time.Now())
		if err != nil || v.KID == report.KID {
			t.Fatalf("after rotation: kid %s (before %s), %v", v.KID, report.KID, err)
		}
		if got := curl(t, "GET", url, creds(ans)...); got.status != 200 {
			t.Fatalf("a report under the rotated key: %d %s", got.status, got.body)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		refused(t, "no report", curl(t, "GET", url), 401, "token-missing")
		fresh := prove(t, r.a, audience, "GET", url)
		refused(t, "no proof", curl(t, "GET", url, "Authorization: Vigil "+fresh.SessionReport), 401, string(ear.ProofMissing))
		refused(t, "replayed proof", curl(t, "GET", url, creds(ans)...), 401, string(ear.ProofReplayed))
		b := prove(t, r.b, audience, "GET", url)
		refused(t, "another TPM's proof", curl(t, "GET", url, "Authorization: Vigil "+fresh.SessionReport, "Vigil-PoP: "+b.Proof), 401, string(ear.ProofKeyMismatch))
		other := prove(t, r.a, "someone-else.test", "GET", url)
		refused(t, "another audience", curl(t, "GET", url, creds(other)...), 401, string(ear.ProofAudience))
		elsewhere := prove(t, r.a, audience, "GET", proxy+"/api/other")
		refused(t, "another URL", curl(t, "GET", url, creds(elsewhere)...), 401, string(ear.ProofURL))
		post := prove(t, r.a, audience, "POST", url)
		refused(t, "another method", curl(t, "GET", url, creds(post)...), 401, string(ear.ProofMethod))
		// The agent's trust vector: hardware affirming (2), configuration
		// warning (32), executables none.
		if tv := report.Claims.TrustVector; tv["hardware"] != 2 || tv["configuration"] != 32 || tv["executables"] != 0 {
			t.Fatalf("the agent's trust vector %v changed: adjust the routes", tv)
		}
		if got := curl(t, "GET", proxy+"/api/tv", creds(prove(t, r.a, audience, "GET", proxy+"/api/tv"))...); got.status != 200 {
			t.Errorf("trust vector met: %d %s", got.status, got.body)
		}
		for _, p := range []string{"/api/tv/exec", "/api/tv/config"} {
			refused(t, "trust vector "+p, curl(t, "GET", proxy+p, creds(prove(t, r.a, audience, "GET", proxy+p))...), 403, string(ear.TrustVectorClaim))
		}
		high := prove(t, r.a, audience, "GET", proxy+"/api/high")
		refused(t, "level below the route's", curl(t, "GET", proxy+"/api/high", creds(high)...), 403, "level-too-low")
		none := prove(t, r.a, audience, "GET", proxy+"/elsewhere")
		refused(t, "no route", curl(t, "GET", proxy+"/elsewhere", creds(none)...), 403, "no-route")
		// The gate's clock past the report's exp (10 minutes).
		late := prove(t, r.a, audience, "GET", url)
		r.offset.Store(int64(11 * time.Minute))
		refused(t, "expired report", curl(t, "GET", url, creds(late)...), 401, string(ear.Expired))
		// 45 s on: the proof is younger than its 60 s, the report older
		// than the route's 10 s (and ear's 30 s leeway).
		r.offset.Store(int64(45 * time.Second))
		old := prove(t, r.a, audience, "GET", proxy+"/api/fresh")
		refused(t, "report older than the route's max-age", curl(t, "GET", proxy+"/api/fresh", creds(old)...), 401, string(ear.TooOld))
		r.offset.Store(0)
	})
	t.Run("nginx", func(t *testing.T) { testNginx(t, r) })
	t.Run("middleware", func(t *testing.T) { testMiddleware(t, r) })
	t.Run("background check", func(t *testing.T) { testBackgroundCheck(t, r) })
	t.Run("level dropped", func(t *testing.T) {
		// A keeps its level-2 report, then its host degrades (a module
		// hidden from /proc/modules) and its next attestation falls
		// below 2. Presenting the
		// older, better report with a fresh proof from its TPM is refused
		// as soon as the feed brings the new level.
		l2 := proxy + "/api/l2"
		old := prove(t, r.a, audience, "GET", l2)
		if old.Level != 2 {
			t.Fatalf("A is at level %d", old.Level)
		}
		again := func() *reply {
			return curl(t, "GET", l2, "Authorization: Vigil "+old.SessionReport, "Vigil-PoP: "+r.proofFor(old.SessionReport, "GET", l2))
		}
		if got := again(); got.status != 200 {
			t.Fatalf("the report with a proof of A's TPM: %d %s", got.status, got.body)
		}
		r.hostA.Modules = append(r.hostA.Modules, testhost.Module{Name: "vigil_hidden", Size: 16384, Hide: []string{"proc_modules"}})
		if err := r.hostA.Write(r.rootA); err != nil {
			t.Fatal(err)
		}
		res, err := r.a.AttestOnce(context.Background())
		if err != nil || res.Level >= 2 {
			t.Fatalf("after degrading the host: level %+v %v", res, err)
		}
		var got *reply
		for start := time.Now(); time.Since(start) < 5*time.Second; {
			if got = again(); got.status != 200 {
				break
			}
		}
		refused(t, "an older report after the level fell", got, 403, "level-dropped")
		if got := curl(t, "GET", url, creds(prove(t, r.a, audience, "GET", url))...); got.status != 200 || !strings.Contains(got.body, "level="+strconv.Itoa(res.Level)) {
			t.Errorf("A on a route its new level meets: %d %s", got.status, got.body)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		// B is admitted; the operator revokes it; its unexpired report is
		// refused as soon as the feed says so, A is still admitted.
		if got := curl(t, "GET", url, creds(prove(t, r.b, audience, "GET", url))...); got.status != 200 {
			t.Fatalf("B before revocation: %d %s", got.status, got.body)
		}
		start := time.Now()
		if st := r.admin("POST", strings.Replace(api.PathRevoke, "{id}", r.b.ID(), 1), api.AdminRequest{Reason: "stolen"}, nil); st != 200 {
			t.Fatalf("revoke: %d", st)
		}
		var got *reply
		for time.Since(start) < 5*time.Second {
			if got = curl(t, "GET", url, creds(prove(t, r.b, audience, "GET", url))...); got.status != 200 {
				break
			}
		}
		refused(t, "revoked host", got, 403, "agent-revoked")
		t.Logf("refused %v after the revocation", time.Since(start).Round(time.Millisecond))
		if time.Since(start) > 3*time.Second {
			t.Errorf("the revocation took %v to reach the gate", time.Since(start))
		}
		if got := curl(t, "GET", url, creds(prove(t, r.a, audience, "GET", url))...); got.status != 200 {
			t.Errorf("A after B's revocation: %d %s", got.status, got.body)
		}
	})
	t.Run("feed lost", func(t *testing.T) {
		// The service goes away: the feed is lost, and once it has been
		// for longer than its grace (30 s) the gate admits no one, since
		// it could miss a revocation.
		ans := prove(t, r.a, audience, "GET", url)
		r.svc.Stop()
		defer r.offset.Store(0)
		r.offset.Store(int64(40 * time.Second))
		var got *reply
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
			if got = curl(t, "GET", url, creds(ans)...); got.status != 200 {
				break
			}
			ans = prove(t, r.a, audience, "GET", url)
		}
		refused(t, "with the feed lost", got, 503, "feed-unavailable")
	})
}

// freePort is a loopback port nobody listens on (for nginx).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// nginxConf is the recipe of docs/relying-parties.md, on loopback ports
// under a temporary prefix.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log info;
events { worker_connections 64; }
http {
    access_log {{dir}}/access.log;
    client_body_temp_path {{dir}}/body;
    proxy_temp_path {{dir}}/proxy;
    fastcgi_temp_path {{dir}}/fastcgi;
    uwsgi_temp_path {{dir}}/uwsgi;
    scgi_temp_path {{dir}}/scgi;
    server {
        listen 127.0.0.1:{{port}};
        location = /_vigil {
            internal;
            proxy_pass http://{{auth}}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }
        location / {
            auth_request /_vigil;
            auth_request_set $vigil_agent $upstream_http_vigil_agent;
            auth_request_set $vigil_level $upstream_http_vigil_level;
            auth_request_set $vigil_refusal $upstream_http_vigil_refusal;
            add_header Vigil-Refusal $vigil_refusal always;
            proxy_set_header Vigil-Agent $vigil_agent;
            proxy_set_header Vigil-Level $vigil_level;
            proxy_set_header Vigil-PoP "";
            proxy_set_header Authorization "";
            proxy_pass {{upstream}};
        }
    }
}
`

// testNginx: nginx delegates each request to the gate's auth_request
// endpoint; it forwards the claims the gate answered with and refuses
// with the gate's status, the code in Vigil-Refusal.
func testNginx(t *testing.T, r *rig) {
	nginx := need(t, "nginx")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ca := filepath.Join(t.TempDir(), "report-ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.svc.CA.Raw}), 0o644)
	_, auth := r.gate(gatekeeper.Config{
		AuthListen: "127.0.0.1:0", CA: ca,
		Routes: []gatekeeper.Route{{Path: "/api"}, {Path: "/api/high", Policy: gatekeeper.Policy{MinLevel: 4}}},
	})
	dir := t.TempDir()
	conf := strings.NewReplacer("{{dir}}", dir, "{{port}}", strconv.Itoa(port), "{{auth}}", strings.TrimPrefix(auth, "http://"),
		"{{upstream}}", r.upstream.URL).Replace(nginxConf)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx does not listen: %v\n%s\n%s", err, out, log)
		}
		time.Sleep(50 * time.Millisecond)
	}

	url := base + "/api/hello"
	ans := prove(t, r.a, audience, "GET", url)
	got := curl(t, "GET", url, append(creds(ans), "Vigil-Agent: mallory")...)
	if got.status != 200 || !strings.Contains(got.body, "agent="+r.a.ID()+" level="+strconv.Itoa(ans.Level)) {
		t.Fatalf("through nginx: %d %s", got.status, got.body)
	}
	if h := r.lastSeen(); h.Get("Vigil-Pop") != "" || h.Get("Authorization") != "" || len(h.Values("Vigil-Agent")) != 1 {
		t.Errorf("the upstream behind nginx saw %v", h)
	}
	nginxRefused := func(what string, got *reply, status int, code string) {
		t.Helper()
		if got.status != status || got.header.Get("Vigil-Refusal") != code {
			t.Errorf("%s through nginx: %d %q, want %d %s", what, got.status, got.header.Get("Vigil-Refusal"), status, code)
		}
	}
	nginxRefused("no report", curl(t, "GET", url), 401, "token-missing")
	nginxRefused("replayed proof", curl(t, "GET", url, creds(ans)...), 401, string(ear.ProofReplayed))
	b := prove(t, r.b, audience, "GET", url)
	fresh := prove(t, r.a, audience, "GET", url)
	nginxRefused("another TPM's proof", curl(t, "GET", url, "Authorization: Vigil "+fresh.SessionReport, "Vigil-PoP: "+b.Proof), 401, string(ear.ProofKeyMismatch))
	nginxRefused("another audience", curl(t, "GET", url, creds(prove(t, r.a, "someone-else.test", "GET", url))...), 401, string(ear.ProofAudience))
	nginxRefused("level below the route's", curl(t, "GET", base+"/api/high", creds(prove(t, r.a, audience, "GET", base+"/api/high"))...), 403, "level-too-low")
	nginxRefused("no route", curl(t, "GET", base+"/x", creds(prove(t, r.a, audience, "GET", base+"/x"))...), 403, "no-route")
	r.offset.Store(int64(11 * time.Minute))
	nginxRefused("expired report", curl(t, "GET", url, creds(prove(t, r.a, audience, "GET", url))...), 401, string(ear.Expired))
	r.offset.Store(0)
}

// testMiddleware: the library in a Go service's own mux, by route; the
// handler reads the verified claims from the request's context.
func testMiddleware(t *testing.T, r *rig) {
	gk, err := gatekeeper.New(gatekeeper.Options{Audience: audience, Keys: gatekeeper.CAKeys(r.svc.CAPool), RequireReportAudience: true})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	show := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		a := gatekeeper.FromContext(req.Context())
		fmt.Fprintf(w, "%s %d %s", a.Report.Claims.AgentID, a.Level, a.Proof.Thumbprint)
	})
	mux.Handle("GET /account", gk.Require(gatekeeper.Policy{MinLevel: 2, MaxAge: 5 * time.Minute}, show))
	mux.Handle("POST /transfer", gk.Require(gatekeeper.Policy{MinLevel: 4}, show))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	do := func(method, path string, ans *agent.ProofAnswer) (int, string, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if ans != nil {
			req.Header.Set("Authorization", "Vigil "+ans.SessionReport)
			req.Header.Set("Vigil-PoP", ans.Proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var p gatekeeper.Problem
		json.Unmarshal(b, &p)
		return resp.StatusCode, string(p.Code), string(b)
	}
	ans := prove(t, r.a, audience, "GET", srv.URL+"/account")
	if st, _, body := do("GET", "/account", ans); st != 200 || !strings.HasPrefix(body, r.a.ID()+" 2 ") {
		t.Errorf("admitted: %d %s", st, body)
	}
	if st, code, _ := do("GET", "/account", nil); st != 401 || code != "token-missing" {
		t.Errorf("no report: %d %s", st, code)
	}
	if st, code, _ := do("GET", "/account", ans); st != 401 || code != string(ear.ProofReplayed) {
		t.Errorf("replayed: %d %s", st, code)
	}
	if st, code, _ := do("POST", "/transfer", prove(t, r.a, audience, "POST", srv.URL+"/transfer")); st != 403 || code != "level-too-low" {
		t.Errorf("level: %d %s", st, code)
	}
	if st, code, _ := do("GET", "/account", prove(t, r.a, "someone-else.test", "GET", srv.URL+"/account")); st != 401 || code != string(ear.ProofAudience) {
		t.Errorf("audience: %d %s", st, code)
	}
	// A report issued for no audience, with a valid proof of A's TPM:
	// this relying party requires its name in the report.
	bare := &agent.ProofAnswer{SessionReport: r.noAud, Proof: r.proofFor(r.noAud, "GET", srv.URL+"/account")}
	if st, code, _ := do("GET", "/account", bare); st != 401 || code != string(ear.ReportAudience) {
		t.Errorf("a report for no audience: %d %s", st, code)
	}
}

// testBackgroundCheck: a relying party without a report (scope verify)
// obtains a challenge for A, has A's TPM answer it, and forwards the
// evidence: the service appraises it as an attestation and answers with a
// session report whose aud is the relying party. B's TPM answering A's
// challenge is an outsider's evidence (unknown-agent), and the relying
// party's feed-only credential does not verify.
func testBackgroundCheck(t *testing.T, r *rig) {
	ctx := context.Background()
	var rp api.RelyingParty
	if st := r.admin("POST", api.PathRelyingParties, api.RelyingPartyRequest{Name: "bank", Scopes: []string{"verify"}}, &rp); st != 201 {
		t.Fatalf("creating the relying party: %d", st)
	}
	challenge := func() string {
		var c api.Challenge
		resp, err := http.Post(r.svc.URL+strings.Replace(api.PathChallenge, "{id}", r.a.ID(), 1), "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || c.Nonce == "" {
			t.Fatalf("challenge: %d %v", resp.StatusCode, err)
		}
		return c.Nonce
	}
	rep, err := measure.New(measure.Options{}).Measure(ctx, hostfs.New(r.rootA))
	if err != nil {
		t.Fatal(err)
	}
	canon, err := rep.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	evidenceBy := func(e enclave.Enclave, nonce string) json.RawMessage {
		n, _ := hex.DecodeString(nonce)
		ev, err := evidence.Build(ctx, e, evidence.BuildOptions{Nonce: n, Report: canon})
		if err != nil {
			t.Fatal(err)
		}
		b, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	verify := func(tok string, req api.VerifyRequest) (int, []byte) {
		b, _ := json.Marshal(req)
		hr, _ := http.NewRequest("POST", r.svc.URL+api.PathVerify, bytes.NewReader(b))
		hr.Header.Set("Authorization", "Bearer "+tok)
		hr.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	code := func(body []byte) string {
		var p api.Problem
		json.Unmarshal(body, &p)
		return p.Code
	}

	nonce := challenge()
	if st, body := verify(r.feedTok, api.VerifyRequest{AgentID: r.a.ID(), Nonce: nonce, Evidence: evidenceBy(r.eA, nonce)}); st != 403 || code(body) != api.CodeScopeMissing {
		t.Errorf("a feed-only token: %d %s", st, body)
	}
	if st, body := verify(rp.Token, api.VerifyRequest{AgentID: r.a.ID(), Nonce: nonce, Evidence: evidenceBy(r.eB, nonce)}); st != 404 || code(body) != api.CodeUnknownAgent {
		t.Errorf("another TPM's evidence: %d %s", st, body)
	}
	st, body := verify(rp.Token, api.VerifyRequest{AgentID: r.a.ID(), Nonce: nonce, Evidence: evidenceBy(r.eA, nonce)})
	var out api.VerifyResponse
	if err := json.Unmarshal(body, &out); st != 200 || err != nil || out.Audience != "bank" {
		t.Fatalf("A's evidence: %d %s", st, body)
	}
	v, err := ear.Verify(out.Token, r.svc.CAPool, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Require(ear.Requirement{Audience: "bank"}, time.Now()); err != nil || v.Claims.AgentID != r.a.ID() || v.Claims.Level != out.Level || v.Claims.EKSHA256 == "" {
		t.Errorf("the report for the relying party: %v %+v", err, v.Claims)
	}
}
