package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/eventlog/eventlogtest"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/storetest"
	"github.com/vigil-attest/vigil/tpm"
)

// newAgent is an agent of svc measuring the host tree at root (no
// code-integrity engine: modules carry no signature claims).
func newAgent(t *testing.T, svc *testserver.Service, e enclave.Enclave, root string, o agent.Options) *agent.Agent {
	t.Helper()
	c, err := agent.NewClient(svc.URL, agent.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	o.Client, o.Enclave = c, e
	if o.Measure == nil {
		o.Measure = agent.MeasureWith(measure.New(measure.Options{}), hostfs.New(root))
	}
	a, err := agent.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func softEnclave(t *testing.T) enclave.Enclave {
	t.Helper()
	e, err := soft.Open(filepath.Join(t.TempDir(), "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// verifyToken checks a session report offline against the service CA and
// that it says what the result says.
func verifyToken(t *testing.T, svc *testserver.Service, r *agent.Result) *ear.Verified {
	t.Helper()
	v, err := ear.Verify(r.Token, svc.CAPool, time.Now())
	if err != nil {
		t.Fatalf("session report: %v", err)
	}
	c := v.Claims
	if c.AgentID != r.AgentID || c.Level != r.Level || c.Status != r.Status || len(c.Failures) != len(r.Failures) {
		t.Errorf("token says agent %s level %d %s (%d failures); result %s level %d %s (%d)",
			c.AgentID, c.Level, c.Status, len(c.Failures), r.AgentID, r.Level, r.Status, len(r.Failures))
	}
	return v
}

func hasFailure(fs []appraise.Failure, reason string) bool {
	return slices.ContainsFunc(fs, func(f appraise.Failure) bool { return f.Reason == reason })
}

// TestSoftwareAgent: a software agent on a healthy fixture host enrolls
// (admitted by policy), attests at level 1 with a session report that
// verifies against the service CA and binds the report key, and says why
// it is not higher. Its ID is derived from its key and saved.
func TestSoftwareAgent(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	e := softEnclave(t)
	state := t.TempDir()
	a := newAgent(t, svc, e, testhost.Base().WriteDir(t), agent.Options{StateDir: state})
	if id, _ := agent.DeriveID(context.Background(), e); a.ID() != id || id[:3] != "sw-" || len(id) != 35 {
		t.Fatalf("ID %q, derived %q", a.ID(), id)
	}
	ctx := context.Background()
	if _, err := a.AttestOnce(ctx); !errors.Is(err, agent.ErrNotApproved) {
		t.Fatalf("attest before enrolling: %v", err)
	}
	for range 2 { // idempotent
		if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
			t.Fatalf("enroll: %s %v", st, err)
		}
	}
	res, err := a.AttestOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Level != appraise.LevelSoftware || res.Status != "warning" || !res.Healthy() || !hasFailure(res.Failures, "software-enclave") {
		t.Fatalf("result %+v", res)
	}
	v := verifyToken(t, svc, res)
	if v.Claims.ReportKey == nil {
		t.Error("the session report binds no key (cnf)")
	} else if pk, ok := v.Claims.ReportKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pk.Equal(e.ReportPublic()) {
		t.Error("cnf is not the agent's report key")
	}
	if _, ok := v.Raw[ear.ClaimEKSHA256]; ok || v.Claims.EKSHA256 != "" {
		t.Errorf("a software agent's report names an EK: %q", v.Claims.EKSHA256)
	}
	if a.Latest() != res {
		t.Error("Latest is not the last result")
	}
	stored, err := svc.Store.Results(ctx, a.ID(), 1)
	if err != nil || len(stored) != 1 || stored[0].Token != res.Token || stored[0].ID != res.ResultID {
		t.Fatalf("stored results %+v %v", stored, err)
	}

	// A restart reads the saved ID and status: it attests without
	// enrolling again.
	b := newAgent(t, svc, e, testhost.Base().WriteDir(t), agent.Options{StateDir: state})
	if b.ID() != a.ID() || b.EnrollmentStatus() != agent.StatusApproved {
		t.Fatalf("restarted agent %s %q", b.ID(), b.EnrollmentStatus())
	}
	if st, err := os.Stat(filepath.Join(state, "state.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v", st, err)
	}
	if _, err := b.AttestOnce(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSoftwareAgentRefusals: a service that admits no software agents,
// one that wants an operator, a revoked agent, and an ID enrolled with
// another key are each refused with their code; an operator's approval
// lets the pending agent attest.
func TestSoftwareAgentRefusals(t *testing.T) {
	ctx := context.Background()
	root := testhost.Base().WriteDir(t)

	deny := testserver.Start(t, testserver.Options{Software: server.SoftwareDeny})
	_, err := newAgent(t, deny, softEnclave(t), root, agent.Options{}).Enroll(ctx)
	var pe *agent.ProblemError
	if !errors.As(err, &pe) || pe.Status != http.StatusForbidden || pe.Code != api.CodeSoftwareNotAllowed {
		t.Fatalf("software denied: %v", err)
	}

	svc := testserver.Start(t, testserver.Options{Software: server.SoftwarePending})
	a := newAgent(t, svc, softEnclave(t), root, agent.Options{})
	if st, err := a.Enroll(ctx); err != nil || st != agent.StatusPending {
		t.Fatalf("enroll: %s %v", st, err)
	}
	if _, err := a.AttestOnce(ctx); !errors.Is(err, agent.ErrNotApproved) {
		t.Fatalf("attest while pending: %v", err)
	}
	if err := svc.Store.SetStatus(ctx, a.ID(), store.StatusChange{From: store.Pending, To: store.Approved, Reason: "test operator"}); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
		t.Fatalf("enroll after approval: %s %v", st, err)
	}
	if res, err := a.AttestOnce(ctx); err != nil || res.Level != 1 {
		t.Fatalf("attest after approval: %+v %v", res, err)
	}

	// Another key under the same ID.
	other := newAgent(t, svc, softEnclave(t), root, agent.Options{AgentID: a.ID()})
	if _, err := other.Enroll(ctx); !agent.IsProblem(err, api.CodeEnrollConflict) {
		t.Errorf("other key, same ID: %v", err)
	}

	// Revoked: the next round is refused, the result is dropped, and
	// enrolling again is refused.
	if err := svc.Store.SetStatus(ctx, a.ID(), store.StatusChange{From: store.Approved, To: store.Revoked, Reason: "test operator"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AttestOnce(ctx); !agent.IsProblem(err, api.CodeAgentRevoked) {
		t.Fatalf("attest when revoked: %v", err)
	}
	if a.Latest() != nil || a.EnrollmentStatus() == agent.StatusApproved {
		t.Errorf("revoked agent keeps result %v, status %q", a.Latest(), a.EnrollmentStatus())
	}
	if _, err := a.Enroll(ctx); !agent.IsProblem(err, api.CodeAgentRevoked) {
		t.Errorf("enroll when revoked: %v", err)
	}
}

// eventLogSHA is the SHA-256 hex of a log.
func eventLogSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// recorder is a reverse proxy in front of the service that keeps every
// evidence the agent posts.
type recorder struct {
	URL string
	mu  sync.Mutex
	evs []*evidence.Evidence
	chs []api.Challenge
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/challenge") || resp.StatusCode != 200 {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		var ch api.Challenge
		if json.Unmarshal(b, &ch) == nil {
			rec.mu.Lock()
			rec.chs = append(rec.chs, ch)
			rec.mu.Unlock()
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/attest") {
			b, _ := io.ReadAll(r.Body)
			if ev, err := evidence.Decode(b); err == nil {
				rec.mu.Lock()
				rec.evs = append(rec.evs, ev)
				rec.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

func (r *recorder) evidence() []*evidence.Evidence {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

// checkEventLog: the agent sends the event log exactly when the service
// does not already hold it (the challenge's digest differs).
func (r *recorder) checkEventLog(t *testing.T, log []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.chs) < len(r.evs) {
		t.Fatalf("%d challenges for %d evidence", len(r.chs), len(r.evs))
	}
	hinted := 0
	for i, ev := range r.evs {
		held := r.chs[i].EventLogSHA256 == eventLogSHA(log)
		if held {
			hinted++
		}
		if sent := ev.EventLog != nil; sent == held || sent && !bytes.Equal(ev.EventLog.Data, log) {
			t.Errorf("round %d: event log sent %t, the service holds it %t", i+1, sent, held)
		}
	}
	// The first round sends the log; every later round of the same boot
	// leaves it out, because the service says it holds it.
	if len(r.evs) > 1 && hinted != len(r.evs)-1 {
		t.Errorf("the service said it holds the event log in %d of %d later rounds", hinted, len(r.evs)-1)
	}
}

// TestTPMAgent, on SQLite and PostgreSQL: an agent on swtpm, whose PCRs
// hold a played measured boot (a real firmware event log, an IMA list),
// on a fixture host with Secure Boot on, sig_enforce and lockdown
// integrity, enrolls with credential activation (approved: the EK
// certificate chains to the manufacturer CA), reaches level 3 with a
// session report bound to its TPM report key; the second round leaves the event log out
// and sends only the new IMA entries; then Run attests on its interval,
// each round sending only the IMA increment, and the socket serves the
// latest session report.
func TestTPMAgent(t *testing.T) {
	boot := eventlogtest.Debian()
	logBytes, err := boot.Log(), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := context.Background()
		sw := testtpm.Start(t)
		e, err := tpm.Open(ctx, sw.URI, tpm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		host := testhost.Base()
		host.EventLog = logBytes
		if err := host.SetSecureBoot(true, []*x509.Certificate{testpki.NewRoot(testpki.Options{}).Cert}, 40); err != nil {
			t.Fatal(err)
		}
		list := imatest.Boot(60, boot.BootPCRs())
		first := list[:len(imatest.Boot(50, boot.BootPCRs()))]
		host.Files[testhost.IMAListPath] = first
		root := host.WriteDir(t)
		testtpm.ExtendEventLog(t, e, logBytes)
		testtpm.ExtendIMA(t, e, first)

		svc := testserver.Start(t, testserver.Options{DB: db, EKRoots: sw.Roots, EKIntermediates: sw.Intermediates})
		rec := newRecorder(t, svc.URL)
		c, err := agent.NewClient(rec.URL, agent.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := agent.New(ctx, agent.Options{
			Client: c, Enclave: e, Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New(root)),
			Interval: 100 * time.Millisecond, BackoffMin: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ekPub, _, _, _ := e.EK(ctx)
		if a.ID() != "tpm-"+eventLogSHA(ekPub)[:32] {
			t.Errorf("ID %s is not derived from the EK", a.ID())
		}
		if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
			t.Fatalf("enroll: %s %v", st, err)
		}
		stored, err := svc.Store.GetAgent(ctx, a.ID())
		if err != nil || stored.Status != store.Approved || stored.Enclave != "tpm" || stored.EKHash != eventLogSHA(ekPub) {
			t.Fatalf("stored agent %+v %v", stored, err)
		}

		r1, err := a.AttestOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: level %d %s, failures %+v", db.Name, r1.Level, r1.Status, r1.Failures)
		// Secure Boot on with a dbx, sig_enforce, lockdown integrity and
		// an event log that replays: level 3, capped only by level-4
		// claims.
		if r1.Level != appraise.LevelMeasured || r1.Status != "affirming" || slices.ContainsFunc(r1.Failures, func(f appraise.Failure) bool { return f.Level < 4 }) {
			t.Fatalf("first round: %+v", r1)
		}
		v := verifyToken(t, svc, r1)
		if pk, ok := v.Claims.ReportKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pk.Equal(e.ReportPublic()) {
			t.Error("cnf is not the TPM report key")
		}
		// The report names the enrolled EK: SHA-256 of its TPMT_PUBLIC.
		if v.Claims.EKSHA256 != eventLogSHA(ekPub) || v.Raw[ear.ClaimEKSHA256] != eventLogSHA(ekPub) {
			t.Errorf("%s %q, want the EK's SHA-256 %s", ear.ClaimEKSHA256, v.Claims.EKSHA256, eventLogSHA(ekPub))
		}

		// New files measured: the list grows, PCR 10 follows.
		f, err := os.OpenFile(filepath.Join(root, testhost.IMAListPath), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(list[len(first):])
		f.Close()
		testtpm.ExtendIMA(t, e, list[len(first):])
		r2, err := a.AttestOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r2.Level != r1.Level || hasFailure(r2.Failures, "ima-not-verified") || r2.ResultID <= r1.ResultID || r2.Token == r1.Token {
			t.Fatalf("second round: %+v", r2)
		}
		evs := rec.evidence()
		if len(evs) != 2 {
			t.Fatalf("%d evidence posted", len(evs))
		}
		if evs[0].EventLog == nil || evs[0].IMALog.Offset != 0 || !bytes.Equal(evs[0].IMALog.Data, first) {
			t.Error("first round: want the whole event log and IMA list")
		}
		if evs[1].IMALog.Offset != int64(len(first)) || !bytes.Equal(evs[1].IMALog.Data, list[len(first):]) {
			t.Errorf("second round: IMA from %d (%d bytes); want the %d new bytes from %d",
				evs[1].IMALog.Offset, len(evs[1].IMALog.Data), len(list)-len(first), len(first))
		}

		// The loop.
		sock := filepath.Join(t.TempDir(), "agent.sock")
		stopSocket := serveSocket(t, a, sock)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx) }()
		deadline := time.Now().Add(30 * time.Second)
		for len(rec.evidence()) < 4 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		evs = rec.evidence()
		if len(evs) < 4 {
			t.Fatalf("Run made %d rounds in 30s", len(evs)-2)
		}
		for i, ev := range evs[2:] {
			if ev.IMALog.Offset != int64(len(list)) || len(ev.IMALog.Data) != 0 {
				t.Errorf("loop round %d: IMA from %d (%d bytes)", i+1, ev.IMALog.Offset, len(ev.IMALog.Data))
			}
		}
		rec.checkEventLog(t, logBytes)
		latest := a.Latest()
		code, served, _ := getReport(t, sock)
		if code != 200 || served.Token != latest.Token || served.ResultID != latest.ResultID || served.Level != r1.Level {
			t.Errorf("socket serves %+v, latest %+v", served, latest)
		}
		verifyToken(t, svc, served)
		if err := stopSocket(); err != nil {
			t.Error(err)
		}
	})
}

// logRecorder keeps the agent's log records.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// waits returns the retry_in of each record with message msg.
func (l *logRecorder) waits(msg string) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Duration
	for _, r := range l.recs {
		if r.Message != msg {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "retry_in" {
				out = append(out, a.Value.Duration())
			}
			return true
		})
	}
	return out
}

// eventually polls cond every 10 ms for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// runAgent runs a.Run until the test ends or the returned stop is
// called; stop returns Run's error.
func runAgent(t *testing.T, a *agent.Agent) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestRunRecoversFromOutage: with the service down, Run backs off
// exponentially (each wait in the upper half of a doubling range), then
// attests again once the service is back, on the same enrollment.
func TestRunRecoversFromOutage(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	logs := &logRecorder{}
	a := newAgent(t, svc, softEnclave(t), testhost.Base().WriteDir(t), agent.Options{
		Interval: 50 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: time.Second,
		Logger: slog.New(logs),
	})
	ctx := context.Background()
	if _, err := a.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := a.AttestOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svc.Stop()
	stop := runAgent(t, a)
	eventually(t, "three failed rounds", func() bool { return len(logs.waits("attestation failed; retrying")) >= 3 })
	svc.Restart()
	eventually(t, "an attestation after the outage", func() bool {
		l := a.Latest()
		return l != nil && l.ResultID > before.ResultID
	})
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	w := logs.waits("attestation failed; retrying")
	ceil := 20 * time.Millisecond
	for i, d := range w[:3] {
		if d < ceil/2 || d > ceil {
			t.Errorf("wait %d: %v, want in [%v, %v]", i, d, ceil/2, ceil)
		}
		ceil *= 2
	}
	if got := a.Latest(); got.Level != 1 || got.AgentID != before.AgentID {
		t.Errorf("after the outage: %+v", got)
	}
	if n := len(logs.waits("enrollment failed; retrying")); n != 0 {
		t.Errorf("%d enrollment attempts: an outage must not reset enrollment", n)
	}
}

// TestTPMPendingApproval: with no manufacturer roots and no allowlist,
// a TPM agent activates its credential and waits, pending; Run polls
// until an operator approves it, then attests at level 2.
func TestTPMPendingApproval(t *testing.T) {
	ctx := context.Background()
	sw := testtpm.Start(t)
	e, err := tpm.Open(ctx, sw.URI, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	svc := testserver.Start(t, testserver.Options{})
	logs := &logRecorder{}
	a := newAgent(t, svc, e, testhost.Base().WriteDir(t), agent.Options{
		Interval: time.Hour, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Logger: slog.New(logs),
	})
	if st, err := a.Enroll(ctx); err != nil || st != agent.StatusPending {
		t.Fatalf("enroll: %s %v", st, err)
	}
	stored, err := svc.Store.GetAgent(ctx, a.ID())
	if err != nil || stored.Status != store.Pending || len(stored.ActivationHash) != 0 {
		t.Fatalf("stored agent after activation: %+v %v", stored, err)
	}
	stop := runAgent(t, a)
	const waiting = "waiting for an operator to approve the agent (vigil admin approve)"
	eventually(t, "two polls while pending", func() bool { return len(logs.waits(waiting)) >= 2 })
	if a.Latest() != nil {
		t.Fatal("a result while pending")
	}
	if err := svc.Store.SetStatus(ctx, a.ID(), store.StatusChange{From: store.Pending, To: store.Approved, Reason: "test operator"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an attestation after approval", func() bool { return a.Latest() != nil })
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if r := a.Latest(); r.Level < appraise.LevelHardware || r.Status != "affirming" {
		t.Errorf("after approval: %+v", r)
	}
}

// TestEnrollForeignCredential: a credential made for another AK (a
// service tricked, or an attacker in the middle) fails activation in the
// TPM, and the agent sends nothing more.
func TestEnrollForeignCredential(t *testing.T) {
	ctx := context.Background()
	sw := testtpm.Start(t)
	e, err := tpm.Open(ctx, sw.URI, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ekPub, _, _, err := e.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var activations int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.PathActivate {
			activations++
		}
		// The EK is right, the AK name is another key's (the report key).
		blob, secret, err := tpm.MakeCredential(ekPub, e.ReportKeyName(), []byte("0123456789abcdef0123456789abcdef"))
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.EnrollResponse{Status: "activating", CredentialBlob: blob, EncryptedSecret: secret})
	}))
	defer srv.Close()
	c, _ := agent.NewClient(srv.URL, agent.ClientOptions{})
	// A given service CA: the agent fetches none.
	ca := []*x509.Certificate{testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256}).Cert}
	a, err := agent.New(ctx, agent.Options{Client: c, Enclave: e, ServiceCA: ca, Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New("/nonexistent"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Enroll(ctx); !errors.Is(err, tpm.ErrActivation) || activations != 0 {
		t.Fatalf("enroll: %v, %d activations posted", err, activations)
	}
	// A software enclave asked to activate cannot.
	b, err := agent.New(ctx, agent.Options{Client: c, Enclave: softEnclave(t), ServiceCA: ca, Measure: agent.MeasureWith(measure.New(measure.Options{}), hostfs.New("/nonexistent"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Enroll(ctx); !errors.Is(err, agent.ErrNoActivation) || activations != 0 {
		t.Fatalf("software enroll: %v", err)
	}
}
