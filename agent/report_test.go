package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// hostile is a fake attestation service that speaks the protocol — it
// approves any enrollment, serves a CA, hands out nonces — and answers
// each evidence with the session report its answer function makes.
type hostile struct {
	URL string

	mu      sync.Mutex
	ca      *token.Issuer // served at api.PathCA
	answer  func(q attestQuery) (level int, tok string)
	fetches int
	results int64
}

// attestQuery is an evidence as the hostile service received it: the
// agent ID of its path and its nonce.
type attestQuery struct {
	id    string
	nonce []byte
}

func newIssuer(t *testing.T) *token.Issuer {
	t.Helper()
	iss, err := token.NewIssuer(context.Background(), tokentest.NewKeyStore(), token.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func newHostile(t *testing.T, ca *token.Issuer) *hostile {
	t.Helper()
	h := &hostile{ca: ca}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET "+api.PathCA, func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		h.fetches++
		pem := h.ca.CAPEM()
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(pem)
	})
	mux.HandleFunc("POST "+api.PathEnroll, func(w http.ResponseWriter, r *http.Request) {
		var req api.EnrollRequest
		json.NewDecoder(r.Body).Decode(&req)
		reply(w, api.EnrollResponse{AgentID: req.AgentID, Status: "approved"})
	})
	mux.HandleFunc("POST "+api.PathChallenge, func(w http.ResponseWriter, _ *http.Request) {
		n := make([]byte, 32)
		rand.Read(n)
		reply(w, api.Challenge{Nonce: hex.EncodeToString(n), ExpiresAt: time.Now().Add(time.Minute)})
	})
	mux.HandleFunc("POST "+api.PathAttest, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		ev, err := evidence.Decode(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		nonce, _ := hex.DecodeString(ev.Nonce)
		h.mu.Lock()
		answer := h.answer
		h.results++
		id := h.results
		h.mu.Unlock()
		level, tok := answer(attestQuery{id: r.PathValue("id"), nonce: nonce})
		reply(w, api.AttestResponse{AgentID: r.PathValue("id"), ResultID: id, Level: level, Status: "affirming", Failures: []appraise.Failure{}, Token: tok})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

func (h *hostile) set(answer func(q attestQuery) (int, string)) {
	h.mu.Lock()
	h.answer = answer
	h.mu.Unlock()
}

// sign issues a level-4 report with iss.
func sign(t *testing.T, iss *token.Issuer, c ear.Claims) string {
	t.Helper()
	c.Level, c.Status = appraise.MaxLevel, "affirming"
	tok, err := iss.Issue(context.Background(), &c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// highS is a token with its ES256 signature's s replaced by n−s: the same
// signed bytes, a signature plain ECDSA also accepts.
func highS(t *testing.T, tok string) string {
	t.Helper()
	dot := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %v", err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	new(big.Int).Sub(elliptic.P256().Params().N, s).FillBytes(sig[32:])
	return tok[:dot+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// TestForgedReports: a service (or anyone between it and the agent)
// answering with a forged level-4 session report — signed by another
// CA; by the pinned CA but for another agent, another challenge or
// another key; without cnf; the high-S twin of a genuine one; or the
// agent's own earlier report replayed — is refused with the reason
// ear.Of names, and the agent's socket serves nothing new. A
// genuine report is served, from its signed claims: the answer's
// unsigned level is not read.
func TestForgedReports(t *testing.T) {
	ctx := context.Background()
	pinned, other := newIssuer(t), newIssuer(t)
	h := newHostile(t, pinned)
	c, err := agent.NewClient(h.URL, agent.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := softEnclave(t)
	a, err := agent.New(ctx, agent.Options{
		Client: c, Enclave: e, StateDir: t.TempDir(),
		Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New(testhost.Base().WriteDir(t))),
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
		t.Fatalf("enroll: %s %v", st, err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	defer serveSocket(t, a, sock)()
	nothingServed := func(what string) {
		t.Helper()
		if code, r, p := getReport(t, sock); code != http.StatusServiceUnavailable || r != nil || p.Code != api.CodeUnavailable {
			t.Fatalf("%s: the socket serves %d %+v", what, code, r)
		}
	}
	nothingServed("before any round")

	key := e.ReportPublic() // the agent's report key
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var earlier string // a genuine report of the agent, once it has one
	for _, tc := range []struct {
		name   string
		answer func(q attestQuery) string
		want   ear.Code
	}{
		{"signed by another CA", func(q attestQuery) string {
			return sign(t, other, ear.Claims{AgentID: q.id, Nonce: q.nonce, ReportKey: key})
		}, ear.UntrustedChain},
		{"the pinned CA, another agent", func(q attestQuery) string {
			return sign(t, pinned, ear.Claims{AgentID: "web-02", Nonce: q.nonce, ReportKey: key})
		}, ear.WrongSubject},
		{"the pinned CA, another challenge", func(q attestQuery) string {
			n := make([]byte, 32)
			rand.Read(n)
			return sign(t, pinned, ear.Claims{AgentID: q.id, Nonce: n, ReportKey: key})
		}, ear.WrongNonce},
		{"the pinned CA, no nonce", func(q attestQuery) string {
			return sign(t, pinned, ear.Claims{AgentID: q.id, ReportKey: key})
		}, ear.WrongNonce},
		{"the pinned CA, another key", func(q attestQuery) string {
			return sign(t, pinned, ear.Claims{AgentID: q.id, Nonce: q.nonce, ReportKey: &stranger.PublicKey})
		}, ear.WrongKey},
		{"the pinned CA, no cnf", func(q attestQuery) string {
			return sign(t, pinned, ear.Claims{AgentID: q.id, Nonce: q.nonce})
		}, ear.WrongKey},
		{"the high-S twin of a genuine report", func(q attestQuery) string {
			return highS(t, sign(t, pinned, ear.Claims{AgentID: q.id, Nonce: q.nonce, ReportKey: key}))
		}, ear.HighS},
		{"the pinned CA, for an audience the agent did not ask", func(q attestQuery) string {
			return sign(t, pinned, ear.Claims{AgentID: q.id, Nonce: q.nonce, ReportKey: key, Audience: []string{"https://evil.example"}})
		}, ear.ReportAudience},
		{"not a token", func(attestQuery) string { return "level-4" }, ear.Malformed},
		{"genuine", func(q attestQuery) string {
			earlier = sign(t, pinned, ear.Claims{AgentID: q.id, Nonce: q.nonce, ReportKey: key})
			return earlier
		}, ""},
		{"the agent's earlier report replayed", func(attestQuery) string { return earlier }, ear.WrongNonce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.set(func(q attestQuery) (int, string) { return appraise.MaxLevel, tc.answer(q) })
			before := a.Latest()
			res, err := a.AttestOnce(ctx)
			if tc.want == "" {
				if err != nil || res.Level != appraise.MaxLevel || res.Token != earlier {
					t.Fatalf("genuine report: %+v %v", res, err)
				}
				if _, r, _ := getReport(t, sock); r == nil || r.Token != earlier {
					t.Fatalf("the socket does not serve the genuine report: %+v", r)
				}
				return
			}
			if res != nil {
				t.Fatalf("AttestOnce accepted the forged report: level %d %s", res.Level, res.Status)
			}
			if !errors.Is(err, agent.ErrReportRefused) || ear.Of(err) != tc.want {
				t.Fatalf("AttestOnce: %v (reason %q); want %s", err, ear.Of(err), tc.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), string(tc.want)) {
				t.Errorf("the error does not name its reason: %v", err)
			}
			if a.Latest() != before {
				t.Errorf("the forged report replaced the latest result")
			}
			if before == nil {
				nothingServed(tc.name)
			} else if _, r, _ := getReport(t, sock); r == nil || r.Token != before.Token {
				t.Errorf("the socket serves %+v, want the earlier genuine report", r)
			}
		})
	}

	// The answer's unsigned fields say level 4; the signed report says 1.
	h.set(func(q attestQuery) (int, string) {
		tok, err := pinned.Issue(ctx, &ear.Claims{AgentID: q.id, Nonce: q.nonce, ReportKey: key, Level: appraise.LevelSoftware, Status: "warning",
			Failures: []appraise.Failure{{Claim: "enclave", Reason: "software-enclave", Level: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		return appraise.MaxLevel, tok
	})
	res, err := a.AttestOnce(ctx)
	if err != nil || res.Level != appraise.LevelSoftware || res.Status != "warning" || len(res.Failures) != 1 {
		t.Fatalf("unsigned level: %+v %v", res, err)
	}
}

// TestServiceCAPinned: the CA fetched at the first enrollment is pinned
// in the state directory; a restarted agent neither fetches it again nor
// trusts a service that has since changed CA. An operator-given CA
// (--report-ca) replaces the fetch.
func TestServiceCAPinned(t *testing.T) {
	ctx := context.Background()
	first, second := newIssuer(t), newIssuer(t)
	h := newHostile(t, first)
	e := softEnclave(t)
	genuine := func(iss *token.Issuer) func(q attestQuery) (int, string) {
		return func(q attestQuery) (int, string) {
			return appraise.MaxLevel, sign(t, iss, ear.Claims{AgentID: q.id, Nonce: q.nonce, ReportKey: e.ReportPublic()})
		}
	}
	root := testhost.Base().WriteDir(t)
	state := t.TempDir()
	start := func(ca []*x509.Certificate) *agent.Agent {
		t.Helper()
		c, err := agent.NewClient(h.URL, agent.ClientOptions{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		a, err := agent.New(ctx, agent.Options{
			Client: c, Enclave: e, StateDir: state, ServiceCA: ca,
			Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New(root)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	a := start(nil)
	if _, err := a.AttestOnce(ctx); !errors.Is(err, agent.ErrNotApproved) {
		t.Fatalf("attest with no CA pinned: %v", err)
	}
	if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved || h.fetches != 1 {
		t.Fatalf("enroll: %s %v, %d CA fetches", st, err, h.fetches)
	}
	h.set(genuine(first))
	if _, err := a.AttestOnce(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(state, "state.json"))
	if err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Fatalf("state %s %v: no pinned CA", b, err)
	}

	// The service now has another CA, and serves it.
	h.mu.Lock()
	h.ca = second
	h.mu.Unlock()
	h.set(genuine(second))
	b2 := start(nil)
	if b2.EnrollmentStatus() != agent.StatusApproved {
		t.Fatalf("restarted agent: %q", b2.EnrollmentStatus())
	}
	if _, err := b2.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.AttestOnce(ctx); ear.Of(err) != ear.UntrustedChain || h.fetches != 1 {
		t.Fatalf("report of a CA swapped after the pin: %v (%d CA fetches)", err, h.fetches)
	}

	// The operator gives the new CA.
	c3 := start([]*x509.Certificate{second.CA()})
	if _, err := c3.AttestOnce(ctx); err != nil || h.fetches != 1 {
		t.Fatalf("with the given CA: %v (%d CA fetches)", err, h.fetches)
	}
	c, err := agent.NewClient(h.URL, agent.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{Raw: []byte{1}, BasicConstraintsValid: true}
	if _, err := agent.New(ctx, agent.Options{Client: c, Enclave: e, Measure: agent.MeasureWith(nil, nil), ServiceCA: []*x509.Certificate{leaf}}); err == nil {
		t.Error("a given CA that is not a CA was accepted")
	}
}
