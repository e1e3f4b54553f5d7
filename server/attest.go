package server

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/verdict"
)

// Who may learn what about an agent ID. Unauthenticated callers learn
// nothing: a challenge without a valid key proof gets a bare nonce for any
// valid ID, and evidence that no enrolled key of the ID signed is refused
// with unknown-agent, whether the ID is unknown, activating, pending,
// revoked or approved (the outsider case). Only a caller proven to hold
// the agent's enrolled key (a key proof, or evidence whose origin holds)
// is told that the agent is pending or revoked.

// notFromAgent is the one answer to a caller who did not prove it holds
// an enrolled key of the ID: the same status, code and detail for every
// kind of ID.
func notFromAgent(id string) *problemError {
	return fail(api.CodeUnknownAgent, "no agent "+strconv.Quote(id)+" is enrolled with the key that signed this request")
}

// enrolledAgent reads the path's agent and its enrolled key (the report
// key of a software agent, the AK of a TPM agent). An unknown agent is
// nil with no error.
func (s *Server) enrolledAgent(r *http.Request, id string) (*store.Agent, *appraise.Agent, crypto.PublicKey, error) {
	a, err := s.o.Store.GetAgent(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil, nil
	}
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("get_agent").Inc()
		return nil, nil, nil, storeFailure("get_agent", err)
	}
	ag := &appraise.Agent{ID: a.ID, Enclave: a.Enclave}
	if err := enrolledKeys(a, ag); err != nil {
		return nil, nil, nil, failWith(api.CodeInternal, "internal error", err)
	}
	key := ag.ReportKey
	if enclave.Kind(a.Enclave) == enclave.TPM {
		key = ag.AK
	}
	return a, ag, key, nil
}

// statusGate refuses an agent proven to hold its key unless approved.
func statusGate(a *store.Agent) error {
	switch a.Status {
	case store.Approved:
		return nil
	case store.Revoked:
		return fail(api.CodeAgentRevoked, "the agent is revoked")
	default:
		return fail(api.CodeAgentPending, "the agent is "+string(a.Status)+", not approved")
	}
}

// unattributed records, for the operator only, why a request was not
// taken as the agent's.
func (s *Server) unattributed(r *http.Request, reason evidence.Reason, err error) {
	s.metrics.unattributed.WithLabelValues(string(reason)).Inc()
	if info := infoOf(r.Context()); info != nil {
		info.origin = string(reason) + ": " + err.Error()
	}
}

// decoyKind is the enclave kind to check an unknown agent's proof or
// evidence against the decoy key with, so that an unknown ID costs the
// same work as a known one.
func decoyKind(tpmShaped bool) enclave.Kind {
	if tpmShaped {
		return enclave.TPM
	}
	return enclave.Software
}

// challenge: POST /v1/agents/{id}/challenge with an optional
// api.ChallengeRequest. Without a valid key proof the answer is a bare
// nonce whatever the ID is (no store read); with one it carries the
// agent's replay hints, or tells a pending or revoked agent so. Only the
// client's rate budget is spent: a proof may be replayed within its
// window by whoever saw it, so it must not spend the agent's.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	var req api.ChallengeRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	now := s.now()
	c := api.Challenge{}
	if req.Proof != nil {
		a, err := s.provenAgent(r, id, req.Proof, now)
		if err != nil {
			return err
		}
		if a != nil {
			if err := statusGate(a); err != nil {
				return err
			}
			c.IMAOffset, c.EventLogSHA256 = stateHints(a.State)
			c.Authenticated = true
		}
	}
	n, exp, err := s.nonces.mint(id, now)
	if err != nil {
		return failWith(api.CodeInternal, "internal error", err)
	}
	c.Nonce, c.ExpiresAt = hex.EncodeToString(n), exp
	return writeJSON(w, http.StatusOK, c)
}

// provenAgent returns the agent when p proves its enrolled key at now,
// and nil (no error) when it does not or the agent is unknown.
func (s *Server) provenAgent(r *http.Request, id string, p *evidence.KeyProof, now time.Time) (*store.Agent, error) {
	a, _, key, err := s.enrolledAgent(r, id)
	if err != nil {
		return nil, err
	}
	kind := decoyKind(len(p.CertifyInfo) > 0)
	if a == nil {
		key = s.decoy
	} else {
		kind = enclave.Kind(a.Enclave)
	}
	reason, perr := evidence.CheckKeyProof(p, api.ChallengePurpose, id, kind, key)
	if perr == nil && (p.Time.Before(now.Add(-api.ProofMaxAge)) || p.Time.After(now.Add(api.ProofMaxAge))) {
		reason, perr = evidence.NonceMismatch, fmt.Errorf("the key proof's time %v is more than %v from the service's %v", p.Time, api.ProofMaxAge, now.UTC())
	}
	if a == nil || perr != nil {
		if perr == nil {
			reason, perr = evidence.AKUnknown, errors.New("unknown agent")
		}
		s.unattributed(r, reason, perr)
		return nil, nil
	}
	return a, nil
}

// audiences reads the attest request's aud parameters (api.QueryAudience):
// the relying parties the agent asks the session report to name. Each is
// api.ValidAudience, at most api.MaxAudiences, no repeats; none is a
// report for no audience.
func audiences(r *http.Request) ([]string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fail(api.CodeBadRequest, "the query does not parse")
	}
	for k := range q {
		if k != api.QueryAudience {
			return nil, fail(api.CodeBadRequest, fmt.Sprintf("unknown query parameter %.40q", k))
		}
	}
	aud := q[api.QueryAudience]
	if len(aud) > api.MaxAudiences {
		return nil, fail(api.CodeBadRequest, fmt.Sprintf("%d audiences, at most %d", len(aud), api.MaxAudiences))
	}
	seen := map[string]bool{}
	for _, a := range aud {
		if !api.ValidAudience(a) || seen[a] {
			return nil, fail(api.CodeBadRequest, fmt.Sprintf("audience %.60q: want 1–%d visible ASCII characters, each once", a, api.MaxAudienceLen))
		}
		seen[a] = true
	}
	return aud, nil
}

// attest: POST /v1/agents/{id}/attest with the evidence as the body.
// Evidence whose origin (evidence.Origin) does not hold against the
// agent's enrolled key is an outsider's: answered as for an unknown
// agent, before the nonce is spent, and nothing of the agent changes.
// Evidence whose origin holds is the agent's, recorded whatever its level.
func (s *Server) attest(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	aud, err := audiences(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, s.o.MaxEvidence, false, "application/json", evidence.MediaType)
	if err != nil {
		return err
	}
	ev, err := evidence.Decode(body)
	if err != nil {
		return fail(api.CodeBadRequest, "the evidence does not decode: "+err.Error())
	}
	at, err := s.appraiseEvidence(w, r, id, ev, aud)
	if err != nil {
		return err
	}
	out, failures, res, tok := at.out, at.failures, at.result, at.token
	state := out.State
	if state == nil {
		state = at.agent.State
	}
	resp := api.AttestResponse{
		AgentID: id, ResultID: res.ID, Level: out.Level, Status: out.Status,
		Failures: failures, Token: tok,
	}
	resp.IMAOffset, _ = stateHints(state)
	return writeJSON(w, http.StatusOK, resp)
}

// attestation is one appraised evidence, its stored result and its
// session report.
type attestation struct {
	agent    *store.Agent
	out      *appraise.Outcome
	failures []verdict.Failure
	result   *store.Result
	token    string
}

// appraiseEvidence is the attestation flow of evidence ev presented for
// agent id, by the agent itself (PathAttest, aud the audiences it asked
// for) or by a relying party (PathVerify, aud its name), whose session
// report names aud. The nonce is this service's for id,
// unexpired; the evidence's origin holds against the agent's enrolled
// key (an outsider's is refused as for an unknown agent, before the
// nonce is spent); the agent is approved; the nonce is spent once; the
// appraisal is stored before its session report is returned, and its
// level change published.
func (s *Server) appraiseEvidence(w http.ResponseWriter, r *http.Request, id string, ev *evidence.Evidence, aud []string) (*attestation, error) {
	nonce, err := hex.DecodeString(ev.Nonce)
	if err != nil {
		return nil, fail(api.CodeNonceInvalid, "the evidence's nonce is not hex")
	}
	expires, code := s.nonces.check(nonce, id, s.now())
	if code != "" {
		return nil, fail(code, nonceDetail[code])
	}
	a, ag, key, err := s.enrolledAgent(r, id)
	if err != nil {
		return nil, err
	}
	if a == nil {
		// The same work as for a known agent, against a key nobody holds.
		reason, oerr := evidence.Origin(ev, nonce, decoyKind(ev.Quote != nil), s.decoy)
		if oerr == nil {
			reason, oerr = evidence.AKUnknown, errors.New("unknown agent")
		}
		s.unattributed(r, reason, oerr)
		return nil, notFromAgent(id)
	}
	if reason, oerr := evidence.Origin(ev, nonce, enclave.Kind(a.Enclave), key); oerr != nil {
		s.unattributed(r, reason, oerr)
		return nil, notFromAgent(id)
	}
	if err := statusGate(a); err != nil {
		return nil, err
	}
	if err := s.rateLimit(w, id); err != nil {
		return nil, err
	}
	nh := sha256.Sum256(nonce)
	if err := s.o.Store.UseNonce(r.Context(), nh[:], id, expires); err != nil {
		if errors.Is(err, store.ErrNonceUsed) {
			return nil, fail(api.CodeNonceReplayed, nonceDetail[api.CodeNonceReplayed])
		}
		s.metrics.storeErrors.WithLabelValues("use_nonce").Inc()
		return nil, storeFailure("use_nonce", err)
	}
	req := &appraise.Request{Agent: *ag, Nonce: nonce, Evidence: ev, State: a.State}
	start := time.Now()
	out, err := s.o.Appraiser.Appraise(r.Context(), req)
	s.metrics.appraisal.Observe(time.Since(start).Seconds())
	if err != nil {
		if rc := r.Context().Err(); rc != nil {
			return nil, storeFailure("appraise", rc)
		}
		return nil, failWith(api.CodeInternal, "internal error", fmt.Errorf("appraising evidence of agent %s: %w", id, err))
	}
	if out == nil {
		return nil, failWith(api.CodeInternal, "internal error", fmt.Errorf("appraising evidence of agent %s: no outcome", id))
	}
	failures := out.Failures
	if failures == nil {
		failures = []appraise.Failure{}
	}
	claims := &ear.Claims{
		AgentID: id, Nonce: nonce, Level: out.Level, Status: out.Status, TrustVector: out.TrustVector,
		Failures: failures, PolicyID: out.PolicyID, PolicyDigest: out.PolicyDigest,
		ContentVersion: out.ContentVersion, ReportKey: out.ReportKey, EKSHA256: a.EKHash,
		Provenance: out.Provenance, Audience: aud,
	}
	tok, err := s.o.Issuer.Issue(r.Context(), claims)
	if err != nil {
		if rc := r.Context().Err(); rc != nil {
			return nil, storeFailure("issue", rc)
		}
		return nil, failWith(api.CodeInternal, "internal error", fmt.Errorf("signing the session report of agent %s: %w", id, err))
	}
	fj, err := json.Marshal(failures)
	if err != nil {
		return nil, failWith(api.CodeInternal, "internal error", err)
	}
	res := &store.Result{
		AgentID: id, Time: claims.IssuedAt.UTC(), Level: out.Level, Status: out.Status, Failures: fj,
		PolicyID: out.PolicyID, PolicyDigest: out.PolicyDigest, Token: tok,
	}
	if res.Time.IsZero() {
		res.Time = s.now().UTC()
	}
	// The result is durable before anyone hears of it: no token without
	// a stored result.
	if err := s.o.Store.SaveResult(r.Context(), res, out.State); err != nil {
		// Revoked (or no longer approved) while appraised: the store
		// refused the save in the same statement; the token is dropped.
		var se *store.StatusError
		if errors.As(err, &se) && errors.Is(err, store.ErrNotApproved) {
			if se.Status == store.Revoked {
				return nil, fail(api.CodeAgentRevoked, "the agent was revoked while its evidence was appraised; no result was stored")
			}
			return nil, fail(api.CodeAgentPending, "the agent is "+string(se.Status)+", not approved; no result was stored")
		}
		s.metrics.storeErrors.WithLabelValues("save_result").Inc()
		if errors.Is(err, store.ErrNotFound) {
			return nil, fail(api.CodeUnknownAgent, "the agent is no longer enrolled")
		}
		return nil, storeFailure("save_result", err)
	}
	s.metrics.attested(out.Level, out.Status)
	s.levelEvent(a, res)
	return &attestation{agent: a, out: out, failures: failures, result: res, token: tok}, nil
}

var nonceDetail = map[string]string{
	api.CodeNonceInvalid:    "the nonce was not issued by this service (malformed or bad MAC)",
	api.CodeNonceWrongAgent: "the nonce was issued to another agent",
	api.CodeNonceExpired:    "the nonce has expired; ask for a new challenge",
	api.CodeNonceReplayed:   "the nonce was already used; ask for a new challenge",
}

// enrolledKeys fills in the appraisal's enrolled keys from the agent row.
func enrolledKeys(a *store.Agent, ag *appraise.Agent) error {
	pub, err := evidence.AKFromPEM([]byte(a.KeyPEM))
	if err != nil {
		return fmt.Errorf("enrolled key of agent %s: %w", a.ID, err)
	}
	switch enclave.Kind(a.Enclave) {
	case enclave.TPM:
		ag.AK, ag.AKPublic = pub, a.AKPublic
	case enclave.Software:
		ag.ReportKey = pub
	default:
		return fmt.Errorf("agent %s has enclave %q", a.ID, a.Enclave)
	}
	return nil
}

// levelEvent publishes a change of the agent's level or result status.
func (s *Server) levelEvent(a *store.Agent, r *store.Result) {
	if s.o.Events == nil {
		return
	}
	e := api.Event{
		Type: api.EventLevel, Time: r.Time, AgentID: a.ID, Level: r.Level, PreviousLevel: -1,
		Status: r.Status, ResultID: r.ID,
	}
	if a.Last != nil {
		if a.Last.Level == r.Level && a.Last.Status == r.Status {
			return
		}
		e.PreviousLevel, e.PreviousStatus = a.Last.Level, a.Last.Status
	}
	s.o.Events.Publish(e)
}

// stateHints reads from an agent's replay state where its next IMA list
// starts and the digest of the boot event log verified for it. The
// digest stays empty (send the log) until package appraise exports it.
func stateHints(state []byte) (int64, string) {
	return appraise.IMAOffset(state), appraise.EventLogSHA256(state)
}
