package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/tpm"
)

// maxTPMPublic bounds a TPMT_PUBLIC (an RSA-4096 key with a policy is
// under 700 bytes); maxEKCert bounds an EK certificate.
const (
	maxTPMPublic = 2048
	maxEKCert    = 16 << 10
)

// enroll: POST /v1/enroll.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) error {
	var req api.EnrollRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	setAgent(r, req.AgentID)
	if err := validAgentID(req.AgentID); err != nil {
		return err
	}
	if err := s.rateLimit(w, req.AgentID); err != nil {
		return err
	}
	var (
		a   *store.Agent
		err error
	)
	switch enclave.Kind(req.Enclave) {
	case enclave.TPM:
		a, err = s.tpmAgent(&req)
	case enclave.Software:
		a, err = s.softwareAgent(&req)
	default:
		return fail(api.CodeInvalidEnrollment, fmt.Sprintf("enclave %q; want tpm or software", req.Enclave))
	}
	if err != nil {
		return err
	}
	now := s.now().UTC()
	a.CreatedAt, a.UpdatedAt = now, now
	a.EnrolledFrom = clientSource(r)
	if a.EKHash != "" {
		a.EKShared = s.o.AllowEKReuse
		if err := s.ekFree(r, a); err != nil {
			return err
		}
	}
	return s.create(w, r, a, true)
}

// create records a new agent and answers its enrollment. When its ID is
// taken by an enrollment that expired, or a limit is reached while
// expired enrollments still count, those go and the new one is tried
// again (when retry, so once).
func (s *Server) create(w http.ResponseWriter, r *http.Request, a *store.Agent, retry bool) error {
	err := s.o.Store.CreateAgent(r.Context(), a, s.enrollLimits())
	var le *store.LimitError
	switch {
	case err == nil:
		s.log.Info("agent enrolled", "agent", a.ID, "enclave", a.Enclave, "status", a.Status, "reason", a.StatusReason, "from", a.EnrolledFrom)
		s.metrics.agents.WithLabelValues(string(a.Status)).Inc()
		s.statusEvent(&store.Agent{ID: a.ID}, a.Status)
		return s.enrolled(w, a, http.StatusCreated)
	case errors.Is(err, store.ErrExists):
		return s.reenroll(w, r, a, retry)
	case errors.As(err, &le) && retry && s.expireEnrollments(r.Context(), ""):
		// Expired enrollments still counted: they are gone now.
		return s.create(w, r, a, false)
	case errors.As(err, &le):
		s.log.Warn("enrollment refused: too many unfinished enrollments", "agent", a.ID, "from", a.EnrolledFrom, "per_source", le.PerSource, "limit", le.Limit)
		// Unfinished enrollments finish or expire; a retry within the
		// activation TTL may find room.
		w.Header().Set("Retry-After", "60")
		if le.PerSource {
			return fail(api.CodeEnrollLimited, fmt.Sprintf("this client has %d unfinished enrollments (activating or pending); finish or let them expire", le.Limit))
		}
		return fail(api.CodeEnrollLimited, "the service holds too many unfinished enrollments (activating or pending); retry later")
	case errors.Is(err, store.ErrEKInUse):
		return fail(api.CodeEKInUse, ekInUse)
	default:
		s.metrics.storeErrors.WithLabelValues("create_agent").Inc()
		return storeFailure("create_agent", err)
	}
}

const ekInUse = "this EK is enrolled under another agent ID; one EK holds one agent ID"

// ekFree refuses a's EK when it holds another agent ID that finished
// activation (any status past activating, revoked included), unless EK
// reuse is allowed. The store's unique index decides races at activation;
// this check answers the common case at enrollment, before any row.
func (s *Server) ekFree(r *http.Request, a *store.Agent) error {
	if s.o.AllowEKReuse {
		return nil
	}
	holders, err := s.o.Store.ListAgents(r.Context(), store.ListOptions{EKHash: a.EKHash, Limit: 1000})
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("list_agents").Inc()
		return storeFailure("list_agents", err)
	}
	for _, h := range holders {
		if h.ID != a.ID && h.Status != store.Activating {
			s.log.Warn("enrollment refused: EK enrolled under another agent ID", "agent", a.ID, "holder", h.ID, "from", a.EnrolledFrom)
			return fail(api.CodeEKInUse, ekInUse)
		}
	}
	return nil
}

// enrollLimits are the store's bounds on unfinished enrollments.
func (s *Server) enrollLimits() store.EnrollLimits {
	return store.EnrollLimits{PerSource: max(s.o.MaxEnrollPerSource, 0), Total: max(s.o.MaxUnfinished, 0)}
}

// expiry names the enrollments past their TTL now (only id's when set).
func (s *Server) expiry(id string) store.Expiry {
	now := s.now()
	e := store.Expiry{ID: id}
	if s.o.ActivationTTL > 0 {
		e.Activating = now.Add(-s.o.ActivationTTL)
	}
	if s.o.PendingTTL > 0 {
		e.Pending = now.Add(-s.o.PendingTTL)
	}
	return e
}

// expireEnrollments deletes the enrollments past their TTL (only id's
// when set) and reports whether any went.
func (s *Server) expireEnrollments(ctx context.Context, id string) bool {
	n, err := s.o.Store.ExpireEnrollments(ctx, s.expiry(id))
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.storeErrors.WithLabelValues("expire_enrollments").Inc()
			s.log.Warn("expiring enrollments", "err", err)
		}
		return false
	}
	if n > 0 {
		s.log.Info("expired unfinished enrollments", "agents", n, "agent", id)
	}
	return n > 0
}

// clientSource names r's client for the per-source enrollment bound: its
// IP address, or the /64 of an IPv6 address (one host's allotment), or
// the raw address when it is not IP (one source for a Unix socket).
// Behind a reverse proxy every client is the proxy.
func clientSource(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// reenroll answers an enrollment of a taken ID: the same keys are
// idempotent (the credential is issued again while activating), other
// keys a conflict, and a revoked agent is refused. An unfinished
// enrollment past its TTL is gone: it is deleted and, when retry, the new
// enrollment takes the ID.
func (s *Server) reenroll(w http.ResponseWriter, r *http.Request, want *store.Agent, retry bool) error {
	have, err := s.getAgentRow(r, want.ID)
	if err != nil {
		return err
	}
	if retry && s.expiry("").Covers(have) && s.expireEnrollments(r.Context(), have.ID) {
		return s.create(w, r, want, false)
	}
	if have.Status == store.Revoked {
		return fail(api.CodeAgentRevoked, "the agent is revoked and may not enroll again")
	}
	if have.Enclave != want.Enclave || !bytes.Equal(have.EKPublic, want.EKPublic) ||
		!bytes.Equal(have.AKPublic, want.AKPublic) || have.KeyPEM != want.KeyPEM {
		return fail(api.CodeEnrollConflict, "agent "+strconv.Quote(want.ID)+" is enrolled with other keys")
	}
	return s.enrolled(w, have, http.StatusOK)
}

// enrolled answers with where enrollment stands; an agent activating gets
// its credential (made afresh; the secret is the same, derived).
func (s *Server) enrolled(w http.ResponseWriter, a *store.Agent, status int) error {
	resp := api.EnrollResponse{AgentID: a.ID, Status: string(a.Status)}
	if a.Status == store.Activating {
		secret := s.activationSecret(a)
		name, err := tpm.Name(a.AKPublic)
		if err != nil {
			return failWith(api.CodeInternal, "internal error", fmt.Errorf("AK name of agent %s: %w", a.ID, err))
		}
		resp.CredentialBlob, resp.EncryptedSecret, err = tpm.MakeCredential(a.EKPublic, name, secret)
		if err != nil {
			return failWith(api.CodeInternal, "internal error", fmt.Errorf("making the credential of agent %s: %w", a.ID, err))
		}
	}
	return writeJSON(w, status, resp)
}

// activationSecret derives the credential-activation secret of an agent
// from the service key, its ID and its keys: unpredictable without the
// key (HMAC-SHA256 is a PRF), the same on every replica and for every
// re-enrollment with the same keys, so the stored hash still matches
// when the credential is issued again.
func (s *Server) activationSecret(a *store.Agent) []byte {
	m := hmac.New(sha256.New, s.activationKey)
	ek := sha256.Sum256(a.EKPublic)
	ak := sha256.Sum256(a.AKPublic)
	m.Write([]byte(a.ID))
	m.Write([]byte{0})
	m.Write(ek[:])
	m.Write(ak[:])
	return m.Sum(nil)
}

// tpmAgent checks a TPM enrollment and makes its agent record.
func (s *Server) tpmAgent(req *api.EnrollRequest) (*store.Agent, error) {
	if req.ReportKeyPEM != "" {
		return nil, fail(api.CodeInvalidEnrollment, "a TPM agent enrolls its EK and AK, not a report key (the AK certifies it in each evidence)")
	}
	if len(req.EKPublic) == 0 || len(req.AKPublic) == 0 {
		return nil, fail(api.CodeInvalidEnrollment, "a TPM agent sends ek_public and ak_public")
	}
	if len(req.EKPublic) > maxTPMPublic || len(req.AKPublic) > maxTPMPublic || len(req.EKCert) > maxEKCert {
		return nil, fail(api.CodeInvalidEnrollment, "a key or the EK certificate is too large")
	}
	ekPub, err := checkEK(req.EKPublic)
	if err != nil {
		return nil, err
	}
	akPub, err := checkAK(req.AKPublic)
	if err != nil {
		return nil, err
	}
	if len(req.EKCert) > 0 {
		cert, err := x509.ParseCertificate(req.EKCert)
		if err != nil {
			return nil, fail(api.CodeInvalidEnrollment, "the EK certificate does not parse: "+err.Error())
		}
		if len(s.o.EKRoots) > 0 {
			if err := tpm.VerifyEKCertificate(cert, ekPub, s.o.EKRoots, s.o.EKIntermediates...); err != nil {
				return nil, fail(api.CodeEKUntrusted, "the EK certificate does not verify: "+err.Error())
			}
		}
	}
	keyPEM, err := evidence.PublicKeyPEM(akPub)
	if err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "the AK cannot be encoded: "+err.Error())
	}
	ekHash := sha256.Sum256(req.EKPublic)
	a := &store.Agent{
		ID: req.AgentID, Enclave: string(enclave.TPM), Status: store.Activating,
		StatusReason: "credential activation pending",
		EKPublic:     req.EKPublic, EKCert: req.EKCert, EKHash: hex.EncodeToString(ekHash[:]),
		AKPublic: req.AKPublic, KeyPEM: keyPEM,
	}
	secret := s.activationSecret(a)
	h := sha256.Sum256(secret)
	a.ActivationHash = h[:]
	// Check now that a credential can be made for this EK, so that an
	// agent is never recorded with keys that cannot activate.
	name, err := tpm.Name(req.AKPublic)
	if err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "the AK's name cannot be computed: "+err.Error())
	}
	if _, _, err := tpm.MakeCredential(req.EKPublic, name, secret); err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "no credential can be made for this EK: "+err.Error())
	}
	return a, nil
}

// checkEK parses the EK: a restricted decryption (storage) key, as
// credential activation requires.
func checkEK(b []byte) (any, error) {
	p, err := tpm.ParsePublic(b)
	if err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "ek_public is not a TPMT_PUBLIC: "+err.Error())
	}
	at := p.ObjectAttributes
	if !at.Restricted || !at.Decrypt || at.SignEncrypt || !at.FixedTPM || !at.FixedParent {
		return nil, fail(api.CodeInvalidEnrollment, "ek_public is not an endorsement key (a fixed, restricted decryption key)")
	}
	pub, err := tpm.PublicKey(b)
	if err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "ek_public: "+err.Error())
	}
	return pub, nil
}

// checkAK parses the AK with the verifier's own rule (evidence.CheckAK).
func checkAK(b []byte) (any, error) {
	pub, err := evidence.CheckAK(b)
	if err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "ak_public is not a restricted signing key generated in the TPM: "+err.Error())
	}
	return pub, nil
}

// softwareAgent checks a software enrollment and makes its agent record.
func (s *Server) softwareAgent(req *api.EnrollRequest) (*store.Agent, error) {
	if s.o.Software == SoftwareDeny {
		return nil, fail(api.CodeSoftwareNotAllowed, "this service does not admit software agents")
	}
	if len(req.EKPublic) > 0 || len(req.EKCert) > 0 || len(req.AKPublic) > 0 {
		return nil, fail(api.CodeInvalidEnrollment, "a software agent has no EK or AK")
	}
	if req.ReportKeyPEM == "" {
		return nil, fail(api.CodeInvalidEnrollment, "a software agent sends report_key_pem")
	}
	pub, err := evidence.AKFromPEM([]byte(req.ReportKeyPEM))
	if err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "report_key_pem: "+err.Error())
	}
	if err := strongKey(pub); err != nil {
		return nil, err
	}
	keyPEM, err := evidence.PublicKeyPEM(pub)
	if err != nil {
		return nil, fail(api.CodeInvalidEnrollment, "report_key_pem cannot be encoded: "+err.Error())
	}
	a := &store.Agent{ID: req.AgentID, Enclave: string(enclave.Software), KeyPEM: keyPEM}
	if s.o.Software == SoftwareAuto {
		a.Status, a.StatusReason = store.Approved, "software agent approved by policy (software: auto)"
	} else {
		a.Status, a.StatusReason = store.Pending, "software agent awaiting operator approval"
	}
	return a, nil
}

// strongKey accepts ECDSA on a NIST P-256/384/521 curve and RSA of at
// least 2048 bits.
func strongKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
	}
	return fail(api.CodeInvalidEnrollment, "the report key is not ECDSA P-256/384/521 or RSA of at least 2048 bits")
}

// activate: POST /v1/enroll/activate.
func (s *Server) activate(w http.ResponseWriter, r *http.Request) error {
	var req api.ActivateRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	setAgent(r, req.AgentID)
	if err := validAgentID(req.AgentID); err != nil {
		return err
	}
	if err := s.rateLimit(w, req.AgentID); err != nil {
		return err
	}
	a, err := s.getAgentRow(r, req.AgentID)
	if err != nil {
		return err
	}
	switch {
	case a.Status == store.Revoked:
		return fail(api.CodeAgentRevoked, "the agent is revoked")
	case a.Status != store.Activating || len(a.ActivationHash) == 0:
		return fail(api.CodeNotActivating, "the agent is "+string(a.Status)+", not activating")
	}
	if s.expiry("").Covers(a) {
		s.expireEnrollments(r.Context(), a.ID)
		return fail(api.CodeUnknownAgent, "the enrollment expired before its credential was activated; enroll again")
	}
	got := sha256.Sum256(req.Secret)
	if subtle.ConstantTimeCompare(got[:], a.ActivationHash) != 1 {
		s.log.Warn("credential activation failed", "agent", a.ID)
		return fail(api.CodeActivationFailed, "the secret is not the credential's: the AK and the EK are not proven to share a TPM")
	}
	to, reason := s.approval(a)
	err = s.o.Store.SetStatus(r.Context(), a.ID, store.StatusChange{From: store.Activating, To: to, Reason: reason, At: s.now().UTC()})
	var se *store.StatusError
	switch {
	case err == nil:
	case errors.Is(err, store.ErrEKInUse):
		s.log.Warn("activation refused: EK enrolled under another agent ID", "agent", a.ID)
		return fail(api.CodeEKInUse, ekInUse)
	case errors.As(err, &se) && se.Status == store.Revoked:
		return fail(api.CodeAgentRevoked, "the agent was revoked")
	case errors.As(err, &se):
		return fail(api.CodeNotActivating, "the agent is "+string(se.Status)+", not activating")
	case errors.Is(err, store.ErrNotFound):
		return fail(api.CodeUnknownAgent, "no agent "+strconv.Quote(a.ID)+" is enrolled")
	default:
		s.metrics.storeErrors.WithLabelValues("set_status").Inc()
		return storeFailure("set_status", err)
	}
	s.log.Info("agent activated", "agent", a.ID, "status", to, "reason", reason)
	s.statusChanged(a, to)
	return writeJSON(w, http.StatusOK, api.EnrollResponse{AgentID: a.ID, Status: string(to)})
}

// approval decides an activated TPM agent's status: approved when its EK
// certificate chains to the manufacturer roots or its EK is on the
// allowlist, pending for an operator otherwise. It is decided at
// activation, under the configuration of that moment.
func (s *Server) approval(a *store.Agent) (store.Status, string) {
	if len(a.EKCert) > 0 && len(s.o.EKRoots) > 0 {
		cert, err := x509.ParseCertificate(a.EKCert)
		if err == nil {
			var ekPub any
			if ekPub, err = tpm.PublicKey(a.EKPublic); err == nil {
				err = tpm.VerifyEKCertificate(cert, ekPub, s.o.EKRoots, s.o.EKIntermediates...)
			}
		}
		if err == nil {
			return store.Approved, "credential activated; EK certificate chains to a manufacturer root"
		}
		s.log.Warn("EK certificate no longer verifies at activation", "agent", a.ID, "err", err)
	}
	if s.allow[a.EKHash] {
		return store.Approved, "credential activated; EK on the allowlist"
	}
	return store.Pending, "credential activated; awaiting operator approval (EK not verified by certificate or allowlist)"
}

// statusChanged counts and publishes an agent's status change.
func (s *Server) statusChanged(before *store.Agent, to store.Status) {
	s.metrics.agents.WithLabelValues(string(before.Status)).Dec()
	s.metrics.agents.WithLabelValues(string(to)).Inc()
	s.statusEvent(before, to)
}

// statusEvent publishes an agent's enrollment status change.
func (s *Server) statusEvent(before *store.Agent, to store.Status) {
	if s.o.Events == nil {
		return
	}
	e := api.Event{
		Type: api.EventStatus, Time: s.now().UTC(), AgentID: before.ID,
		Level: -1, PreviousLevel: -1, Status: string(to), PreviousStatus: string(before.Status),
	}
	if before.Last != nil {
		e.Level, e.PreviousLevel = before.Last.Level, before.Last.Level
	}
	s.o.Events.Publish(e)
}
