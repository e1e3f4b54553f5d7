// Package agent is the attestation agent's side of the service's protocol
// (package api): a Client for the HTTP API, and an Agent that enrolls its
// enclave's keys once, then attests on an interval — challenge, measure,
// evidence, appraisal — keeping the latest session report, which
// ServeSocket hands to relying parties on the same host over a unix socket.
//
// The network is hostile: nothing the agent sends needs TLS to be sound
// (the evidence is bound to the service's single-use nonce), and nothing
// the service answers is trusted beyond what the agent passes on — the
// session report is verified by whoever relies on it.
package agent

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/verdict"
)

// Defaults of Options.
const (
	DefaultInterval   = 60 * time.Second
	DefaultJitter     = 0.1
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 5 * time.Minute
)

// Enrollment statuses (api.EnrollResponse.Status).
const (
	StatusActivating = "activating"
	StatusPending    = "pending"
	StatusApproved   = "approved"
)

// ErrNotApproved is AttestOnce before enrollment was approved.
var ErrNotApproved = errors.New("agent not approved by the service yet")

// ErrNoActivation: the service asked for credential activation and the
// enclave cannot do it (it is not a TPM).
var ErrNoActivation = errors.New("the enclave cannot activate a credential")

// Activator is the capability of an enclave that can answer credential
// activation (TPM2_ActivateCredential); *tpm.Enclave is one.
type Activator interface {
	ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error)
}

// MeasureFunc measures the host: the canonical runtime report and the
// source the logs are read through.
type MeasureFunc func(ctx context.Context) (report []byte, src hostfs.Source, err error)

// MeasureWith measures src with m (one measurer for the agent's life: it
// keeps caches between rounds) and canonicalizes the report.
func MeasureWith(m *measure.Measurer, src hostfs.Source) MeasureFunc {
	return func(ctx context.Context) ([]byte, hostfs.Source, error) {
		r, err := m.Measure(ctx, src)
		if err != nil {
			return nil, nil, fmt.Errorf("measure: %w", err)
		}
		b, err := r.Canonical()
		if err != nil {
			return nil, nil, fmt.Errorf("canonical report: %w", err)
		}
		return b, src, nil
	}
}

// Options configure an Agent.
type Options struct {
	// Client speaks to the service. Required.
	Client *Client
	// Enclave signs the evidence. Required. A TPM enclave must be an
	// enclave.Attester, and an Activator to enroll.
	Enclave enclave.Enclave
	// Measure measures the host. Required.
	Measure MeasureFunc
	// AgentID is the agent's ID; empty means the one in StateDir, or else
	// DeriveID's.
	AgentID string
	// PCRs is the quote's selection; nil means evidence.DefaultPCRs.
	PCRs map[string][]int
	// Interval is the time between attestations (DefaultInterval when
	// 0), varied by ±Jitter (a fraction; DefaultJitter when 0, none when
	// negative) so that a fleet started together spreads out.
	Interval time.Duration
	Jitter   float64
	// BackoffMin and BackoffMax bound the exponential, jittered wait
	// after an error (DefaultBackoffMin, DefaultBackoffMax when 0).
	BackoffMin time.Duration
	BackoffMax time.Duration
	// StateDir, when set, keeps the agent ID, the enrollment status and
	// the pinned service CA across restarts (state.json, 0600).
	StateDir string
	// ServiceCA is the CA the service's session reports must chain to,
	// given by the operator. Nil means the one pinned in StateDir for
	// this service, or else the one fetched from the service at
	// enrollment (trust on first use), pinned from then on.
	ServiceCA []*x509.Certificate
	// Audiences are the relying parties every session report is asked
	// for (its aud); a proof requested for another adds it (Prove).
	Audiences []string
	// Logger logs what the agent does; nil discards.
	Logger *slog.Logger
}

// Result is the latest appraisal, as `vigil agent run --once` prints it
// and the local socket serves it.
type Result struct {
	AgentID  string `json:"agent_id"`
	ResultID int64  `json:"result_id"`
	// Level is the security level (0–4); Status the EAR status
	// ("affirming", "warning", "contraindicated").
	Level    int               `json:"level"`
	Status   string            `json:"status"`
	Token    string            `json:"token"`
	Failures []verdict.Failure `json:"failures"`
	// Audience is the report's aud: the relying parties it is for.
	Audience []string `json:"audience,omitempty"`
	// Time is when the agent received the appraisal; Expires is the
	// report's exp.
	Time    time.Time `json:"time"`
	Expires time.Time `json:"expires"`
}

// Healthy is true when the service affirmed the host or gave it a
// warning (a software enclave's best): the status a relying party may act
// on. Contraindicated, or any other status, is not.
func (r *Result) Healthy() bool {
	return r != nil && (r.Status == verdict.Affirming || r.Status == verdict.Warning)
}

// Agent enrolls and attests one enclave with one service.
type Agent struct {
	o   Options
	id  string
	log *slog.Logger

	mu     sync.Mutex // serializes Enroll and AttestOnce (the measurer is not concurrent)
	status string     // enrollment status as last seen
	ca     *serviceCA // checks session reports; nil until pinned (Enroll) or given
	pin    []byte     // the service CA (PEM) pinned in the state
	bootID string     // the host's boot at the last attested round (state)
	// proofWarned: the service's refusal of a challenge key proof was
	// logged once (an older service never says it accepted one).
	proofWarned bool
	// audiences are the report's aud, asked for each round (sorted,
	// under mu).
	audiences []string
	latestMu  sync.RWMutex
	latest    *Result
	rand      *rand.Rand
}

// New returns an agent for o. It resolves the agent ID (Options.AgentID,
// the state directory's, or DeriveID's) and reads the saved enrollment
// status.
func New(ctx context.Context, o Options) (*Agent, error) {
	if o.Client == nil || o.Enclave == nil || o.Measure == nil {
		return nil, errors.New("agent: Client, Enclave and Measure are required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Jitter == 0 {
		o.Jitter = DefaultJitter
	}
	if o.Jitter < 0 {
		o.Jitter = 0
	}
	if o.Jitter > 0.5 {
		o.Jitter = 0.5
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	a := &Agent{o: o, log: o.Logger, rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	for _, aud := range o.Audiences {
		if err := a.addAudience(aud); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	st, err := loadState(o.StateDir)
	if err != nil {
		return nil, err
	}
	switch {
	case o.AgentID != "":
		a.id = o.AgentID
	case st.AgentID != "":
		a.id = st.AgentID
	default:
		if a.id, err = DeriveID(ctx, o.Enclave); err != nil {
			return nil, err
		}
	}
	if err := ValidateID(a.id); err != nil {
		return nil, err
	}
	sameService := st.Server == o.Client.URL()
	if sameService {
		a.pin = []byte(st.ServiceCA)
	}
	switch {
	case o.ServiceCA != nil:
		if a.ca, err = newServiceCA(o.ServiceCA); err != nil {
			return nil, fmt.Errorf("agent: service CA: %w", err)
		}
	case len(a.pin) > 0:
		if a.ca, err = parseServiceCA(a.pin); err != nil {
			return nil, fmt.Errorf("agent state: service CA: %w", err)
		}
	}
	// The saved status holds only for the same ID at the same service,
	// and only with a CA to check its reports: without one, the next
	// round enrolls again (harmless with the same keys) and pins it.
	if st.AgentID == a.id && sameService && a.ca != nil {
		a.status = st.Status
	}
	if st.AgentID == a.id && sameService {
		a.bootID = st.BootID
	}
	a.log = a.log.With("agent_id", a.id)
	return a, nil
}

// ID is the agent's ID.
func (a *Agent) ID() string { return a.id }

// EnrollmentStatus is the enrollment status as last seen ("" before the
// first enrollment).
func (a *Agent) EnrollmentStatus() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// ValidateID checks an agent ID: [A-Za-z0-9._-]{1,128}, and not "." or
// ".." (they would be path segments).
func ValidateID(id string) error {
	if !api.ValidAgentID(id) {
		return fmt.Errorf("agent ID %q: want 1 to %d of A-Z a-z 0-9 . _ -", id, api.MaxAgentID)
	}
	return nil
}

// DeriveID is the agent ID a host gets when none is configured, stable
// for its enclave's life: for a TPM, "tpm-" and the first 16 bytes of the
// SHA-256 of the EK's TPMT_PUBLIC in hex (the service's EK hash starts
// with the same 32 digits; the EK survives reinstalls); for a software
// key, "sw-" and the first 16 bytes of the SHA-256 of the report key's
// SubjectPublicKeyInfo. Hostnames are not used: they are neither unique
// nor stable.
func DeriveID(ctx context.Context, e enclave.Enclave) (string, error) {
	if at, ok := e.(enclave.Attester); ok {
		ek, _, _, err := at.EK(ctx)
		if err != nil {
			return "", fmt.Errorf("agent ID from the EK: %w", err)
		}
		sum := sha256.Sum256(ek)
		return "tpm-" + hex.EncodeToString(sum[:16]), nil
	}
	der, err := x509.MarshalPKIXPublicKey(e.ReportPublic())
	if err != nil {
		return "", fmt.Errorf("agent ID from the report key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sw-" + hex.EncodeToString(sum[:16]), nil
}

// Enroll runs one round of enrollment and returns the status: it posts
// the enclave's keys (TPM: EK, EK certificate and AK; software: the report
// key), answers credential activation when the service asks, and saves the
// status. Re-enrolling with the same keys is harmless: the service answers
// with the agent's current status. "pending" means an operator has to
// approve the agent (Run polls).
func (a *Agent) Enroll(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.enroll(ctx)
}

func (a *Agent) enroll(ctx context.Context) (string, error) {
	if err := a.pinServiceCA(ctx); err != nil {
		return "", fmt.Errorf("enroll: %w", err)
	}
	req := &api.EnrollRequest{AgentID: a.id, Enclave: string(a.o.Enclave.Kind())}
	switch a.o.Enclave.Kind() {
	case enclave.TPM:
		at, ok := a.o.Enclave.(enclave.Attester)
		if !ok {
			return "", errors.New("enroll: the TPM enclave cannot attest")
		}
		ek, _, cert, err := at.EK(ctx)
		if err != nil {
			return "", fmt.Errorf("enroll: EK: %w", err)
		}
		req.EKPublic, req.EKCert = ek, cert
		req.AKPublic, _ = at.AKPublic()
	default:
		pemKey, err := evidence.PublicKeyPEM(a.o.Enclave.ReportPublic())
		if err != nil {
			return "", fmt.Errorf("enroll: report key: %w", err)
		}
		req.ReportKeyPEM = pemKey
	}
	resp, err := a.o.Client.Enroll(ctx, req)
	if err != nil {
		return "", err
	}
	if resp.AgentID != "" && resp.AgentID != a.id {
		return "", fmt.Errorf("enroll: %w: the service answered for agent %q", ErrResponse, resp.AgentID)
	}
	if resp.Status == StatusActivating {
		act, ok := a.o.Enclave.(Activator)
		if !ok {
			return "", fmt.Errorf("enroll: %w", ErrNoActivation)
		}
		secret, err := act.ActivateCredential(ctx, resp.CredentialBlob, resp.EncryptedSecret)
		if err != nil {
			return "", fmt.Errorf("enroll: credential activation: %w", err)
		}
		if resp, err = a.o.Client.Activate(ctx, &api.ActivateRequest{AgentID: a.id, Secret: secret}); err != nil {
			return "", err
		}
		a.log.Info("credential activated", "status", resp.Status)
	}
	switch resp.Status {
	case StatusApproved, StatusPending:
	default:
		return "", fmt.Errorf("enroll: %w: status %q", ErrResponse, clip(resp.Status))
	}
	if resp.Status != a.status {
		a.log.Info("enrollment", "status", resp.Status)
	}
	a.status = resp.Status
	a.save()
	return a.status, nil
}

// save writes the agent's state to the state directory (a failure is
// logged: the agent goes on, and enrolls again after a restart).
func (a *Agent) save() {
	if err := saveState(a.o.StateDir, state{AgentID: a.id, Server: a.o.Client.URL(), Status: a.status, ServiceCA: string(a.pin), BootID: a.bootID}); err != nil {
		a.log.Warn("cannot save the agent state", "err", err)
	}
}

// BootIDPath is where Linux gives the boot's random ID.
const BootIDPath = "/proc/sys/kernel/random/boot_id"

// readBootID is the host's boot ID, "" when it cannot be read.
func readBootID(src hostfs.Source) string {
	f, err := src.Open(BootIDPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// AttestOnce runs one attestation: measure, challenge, evidence (the event
// log left out when the service holds the same one, the IMA list from the
// service's offset), appraisal. It keeps the result as the latest. The
// agent must be approved (Enroll); a service that no longer knows it, or
// no longer approves it, resets the saved status.
func (a *Agent) AttestOnce(ctx context.Context) (*Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status != StatusApproved {
		return nil, ErrNotApproved
	}
	// Measure first: the nonce's life is then spent only on signing.
	report, src, err := a.o.Measure(ctx)
	if err != nil {
		return nil, err
	}
	// The key proof (the AK's certification for a TPM, the report key's
	// signature otherwise) earns the replay hints and our real status.
	proof, err := evidence.ProveKey(ctx, a.o.Enclave, api.ChallengePurpose, a.id, time.Now())
	if err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	ch, err := a.o.Client.ChallengeProved(ctx, a.id, proof)
	if err != nil {
		a.forget(err)
		return nil, err
	}
	if !ch.Authenticated && !a.proofWarned {
		a.proofWarned = true
		a.log.Warn("the service did not accept the challenge's key proof (clock more than 5 minutes off, or keys it does not know): sending every log whole")
	}
	nonce, err := hex.DecodeString(ch.Nonce)
	if err != nil || len(nonce) < evidence.MinNonce {
		return nil, fmt.Errorf("challenge: %w: nonce is not hex of at least %d bytes", ErrResponse, evidence.MinNonce)
	}
	// The service's IMA offset is where its replay of the list ends; after
	// a reboot that is the old boot's list, and the new one must be sent
	// from its start, or the round is judged without it.
	imaOffset, boot := ch.IMAOffset, readBootID(src)
	if imaOffset > 0 && a.bootID != "" && boot != "" && boot != a.bootID {
		a.log.Info("a new boot since the last round: sending the IMA list from its start", "service_offset", imaOffset)
		imaOffset = 0
	}
	ev, err := BuildEvidence(ctx, a.o.Enclave, src, EvidenceOptions{
		Nonce: nonce, Report: report, PCRs: a.o.PCRs,
		IMAOffset: imaOffset, KnownEventLogSHA256: ch.EventLogSHA256,
	})
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	aud := slices.Clone(a.audiences)
	resp, err := a.o.Client.Attest(ctx, a.id, ev, aud...)
	if err != nil {
		a.forget(err)
		return nil, err
	}
	// Nothing the service answers is used before its session report
	// verifies as the answer to this evidence; the result is what the
	// report says (the answer's own level, status and failures are
	// unsigned copies, not read).
	now := time.Now()
	v, err := a.checkReport(resp.Token, nonce, aud, now)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	failures := v.Claims.Failures
	if failures == nil {
		failures = []verdict.Failure{}
	}
	res := &Result{
		AgentID: a.id, ResultID: resp.ResultID, Level: v.Claims.Level, Status: v.Claims.Status,
		Token: resp.Token, Failures: failures, Audience: v.Claims.Audience, Time: now.UTC(), Expires: v.Claims.Expiry.UTC(),
	}
	a.latestMu.Lock()
	a.latest = res
	a.latestMu.Unlock()
	if boot != "" && boot != a.bootID {
		a.bootID = boot
		a.save()
	}
	sent := "none"
	if ev.IMALog != nil {
		sent = fmt.Sprintf("%d bytes from %d", len(ev.IMALog.Data), ev.IMALog.Offset)
	}
	a.log.Info("attested", "level", res.Level, "status", res.Status, "failures", len(res.Failures),
		"event_log_sent", ev.EventLog != nil, "ima", sent)
	return res, nil
}

// forget drops the approved status when the service says the agent is
// unknown, not approved or revoked: the next round enrolls again. The
// latest result goes too: the service no longer stands behind it, so the
// socket must not hand it out.
func (a *Agent) forget(err error) {
	if IsProblem(err, api.CodeUnknownAgent, api.CodeAgentPending, api.CodeAgentRevoked) {
		a.status = ""
		a.latestMu.Lock()
		a.latest = nil
		a.latestMu.Unlock()
	}
}

// Latest is the latest result (nil before the first).
func (a *Agent) Latest() *Result {
	a.latestMu.RLock()
	defer a.latestMu.RUnlock()
	return a.latest
}

// Run enrolls (polling with backoff while the service says pending), then
// attests every Interval ± Jitter until ctx ends, backing off
// exponentially after errors. It returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	bo := backoff{min: a.o.BackoffMin, max: a.o.BackoffMax, rand: a.rand}
	for {
		var wait time.Duration
		if a.EnrollmentStatus() != StatusApproved {
			st, err := a.Enroll(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				wait = bo.next(err)
				a.log.Warn("enrollment failed; retrying", "err", err, "retry_in", wait)
			case st != StatusApproved:
				wait = bo.next(nil)
				a.log.Info("waiting for an operator to approve the agent (vigil admin approve)", "retry_in", wait)
			}
		}
		if wait == 0 {
			if _, err := a.AttestOnce(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				wait = bo.next(err)
				a.log.Warn("attestation failed; retrying", "err", err, "retry_in", wait)
			} else {
				bo.reset()
				wait = a.interval()
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// interval is Interval ± Jitter.
func (a *Agent) interval() time.Duration {
	j := a.o.Jitter * (2*a.rand.Float64() - 1)
	return time.Duration(float64(a.o.Interval) * (1 + j))
}

// backoff is exponential from min to max, each wait drawn from its upper
// half ("equal jitter"); a service's Retry-After lengthens it.
type backoff struct {
	min, max time.Duration
	n        int
	rand     *rand.Rand
}

func (b *backoff) reset() { b.n = 0 }

func (b *backoff) next(err error) time.Duration {
	d := b.min
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	d = d/2 + time.Duration(b.rand.Int64N(int64(d/2)+1))
	var pe *ProblemError
	if errors.As(err, &pe) && pe.RetryAfter > d {
		d = min(pe.RetryAfter, b.max)
	}
	return d
}
