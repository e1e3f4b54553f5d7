package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/token"
)

// approvedAgent reads the path's agent and refuses it unless approved.
func (s *Server) approvedAgent(r *http.Request, id string) (*store.Agent, error) {
	a, err := s.getAgentRow(r, id)
	if err != nil {
		return nil, err
	}
	switch a.Status {
	case store.Approved:
		return a, nil
	case store.Revoked:
		return nil, fail(api.CodeAgentRevoked, "the agent is revoked")
	default:
		return nil, fail(api.CodeAgentPending, "the agent is "+string(a.Status)+", not approved")
	}
}

// challenge: POST /v1/agents/{id}/challenge. The body, if any, is
// ignored beyond its size.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	if err := s.rateLimit(w, id); err != nil {
		return err
	}
	a, err := s.approvedAgent(r, id)
	if err != nil {
		return err
	}
	n, exp, err := s.nonces.mint(id, s.now())
	if err != nil {
		return failWith(api.CodeInternal, "internal error", err)
	}
	c := api.Challenge{Nonce: hex.EncodeToString(n), ExpiresAt: exp}
	c.IMAOffset, c.EventLogSHA256 = stateHints(a.State)
	return writeJSON(w, http.StatusOK, c)
}

// attest: POST /v1/agents/{id}/attest with the evidence as the body.
func (s *Server) attest(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	if err := s.rateLimit(w, id); err != nil {
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
	nonce, err := hex.DecodeString(ev.Nonce)
	if err != nil {
		return fail(api.CodeNonceInvalid, "the evidence's nonce is not hex")
	}
	expires, code := s.nonces.check(nonce, id, s.now())
	if code != "" {
		return fail(code, nonceDetail[code])
	}
	a, err := s.approvedAgent(r, id)
	if err != nil {
		return err
	}
	nh := sha256.Sum256(nonce)
	if err := s.o.Store.UseNonce(r.Context(), nh[:], id, expires); err != nil {
		if errors.Is(err, store.ErrNonceUsed) {
			return fail(api.CodeNonceReplayed, nonceDetail[api.CodeNonceReplayed])
		}
		s.metrics.storeErrors.WithLabelValues("use_nonce").Inc()
		return storeFailure("use_nonce", err)
	}
	req := &appraise.Request{Agent: appraise.Agent{ID: a.ID, Enclave: a.Enclave}, Nonce: nonce, Evidence: ev, State: a.State}
	if err := enrolledKeys(a, &req.Agent); err != nil {
		return failWith(api.CodeInternal, "internal error", err)
	}
	start := time.Now()
	out, err := s.o.Appraiser.Appraise(r.Context(), req)
	s.metrics.appraisal.Observe(time.Since(start).Seconds())
	if err != nil {
		if rc := r.Context().Err(); rc != nil {
			return storeFailure("appraise", rc)
		}
		return failWith(api.CodeInternal, "internal error", fmt.Errorf("appraising evidence of agent %s: %w", id, err))
	}
	if out == nil {
		return failWith(api.CodeInternal, "internal error", fmt.Errorf("appraising evidence of agent %s: no outcome", id))
	}
	failures := out.Failures
	if failures == nil {
		failures = []appraise.Failure{}
	}
	claims := &token.Claims{
		AgentID: id, Nonce: nonce, Level: out.Level, Status: out.Status, TrustVector: out.TrustVector,
		Failures: failures, PolicyID: out.PolicyID, PolicyDigest: out.PolicyDigest,
		ContentVersion: out.ContentVersion, ReportKey: out.ReportKey,
	}
	tok, err := s.o.Issuer.Issue(r.Context(), claims)
	if err != nil {
		if rc := r.Context().Err(); rc != nil {
			return storeFailure("issue", rc)
		}
		return failWith(api.CodeInternal, "internal error", fmt.Errorf("signing the session report of agent %s: %w", id, err))
	}
	fj, err := json.Marshal(failures)
	if err != nil {
		return failWith(api.CodeInternal, "internal error", err)
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
				return fail(api.CodeAgentRevoked, "the agent was revoked while its evidence was appraised; no result was stored")
			}
			return fail(api.CodeAgentPending, "the agent is "+string(se.Status)+", not approved; no result was stored")
		}
		s.metrics.storeErrors.WithLabelValues("save_result").Inc()
		if errors.Is(err, store.ErrNotFound) {
			return fail(api.CodeUnknownAgent, "the agent is no longer enrolled")
		}
		return storeFailure("save_result", err)
	}
	s.metrics.attested(out.Level, out.Status)
	s.levelEvent(a, res)
	state := out.State
	if state == nil {
		state = a.State
	}
	resp := api.AttestResponse{
		AgentID: id, ResultID: res.ID, Level: out.Level, Status: out.Status,
		Failures: failures, Token: tok,
	}
	resp.IMAOffset, _ = stateHints(state)
	return writeJSON(w, http.StatusOK, resp)
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
