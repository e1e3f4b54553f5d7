package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/store"
)

// admin guards an operator endpoint with the bearer token: constant-time
// comparison (of digests, so the length does not leak either), and 401
// for everyone when no token is configured.
func (s *Server) admin(h handlerFunc) http.HandlerFunc {
	want := sha256.Sum256([]byte(s.o.AdminToken))
	enabled := s.o.AdminToken != ""
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !enabled || !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil admin"`)
			if !enabled {
				return fail(api.CodeUnauthorized, "the admin API is disabled (no admin token configured)")
			}
			return fail(api.CodeUnauthorized, "a valid admin bearer token is required")
		}
		return h(w, r)
	})
}

// apiAgent is the admin API's view of an agent.
func apiAgent(a *store.Agent) api.Agent {
	out := api.Agent{
		ID: a.ID, Enclave: a.Enclave, Status: string(a.Status), StatusReason: a.StatusReason,
		EKHash: a.EKHash, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, Level: -1,
	}
	if a.Last != nil {
		t := a.Last.Time
		out.Level, out.ResultStatus, out.AttestedAt = a.Last.Level, a.Last.Status, &t
	}
	return out
}

// apiResult is the admin API's view of a result.
func apiResult(r *store.Result) api.Result {
	out := api.Result{
		ID: r.ID, Time: r.Time, Level: r.Level, Status: r.Status,
		PolicyID: r.PolicyID, PolicyDigest: r.PolicyDigest, Token: r.Token,
		Failures: []appraise.Failure{},
	}
	if len(r.Failures) > 0 {
		if err := json.Unmarshal(r.Failures, &out.Failures); err != nil {
			out.Failures = []appraise.Failure{{Claim: "result.failures", Reason: "unreadable", Detail: err.Error()}}
		}
	}
	return out
}

// listAgents: GET /v1/agents?status=&after=&limit=.
func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	o := store.ListOptions{Status: store.Status(q.Get("status")), After: q.Get("after"), Limit: 100}
	switch o.Status {
	case "", store.Activating, store.Pending, store.Approved, store.Revoked:
	default:
		return fail(api.CodeBadRequest, fmt.Sprintf("status %q; want activating, pending, approved or revoked", o.Status))
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return fail(api.CodeBadRequest, "limit must be 1 to 1000")
		}
		o.Limit = n
	}
	agents, err := s.o.Store.ListAgents(r.Context(), o)
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("list_agents").Inc()
		return storeFailure("list_agents", err)
	}
	out := api.AgentList{Agents: make([]api.Agent, 0, len(agents))}
	for _, a := range agents {
		out.Agents = append(out.Agents, apiAgent(a))
	}
	if len(agents) == o.Limit {
		out.Next = agents[len(agents)-1].ID
	}
	return writeJSON(w, http.StatusOK, out)
}

// getAgent: GET /v1/agents/{id}?results=N.
func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	n := DefaultResultsShown
	if l := r.URL.Query().Get("results"); l != "" {
		if n, err = strconv.Atoi(l); err != nil || n < 0 || n > 1000 {
			return fail(api.CodeBadRequest, "results must be 0 to 1000")
		}
	}
	a, err := s.getAgentRow(r, id)
	if err != nil {
		return err
	}
	out := api.AgentDetail{Agent: apiAgent(a), Results: []api.Result{}}
	if n > 0 {
		res, err := s.o.Store.Results(r.Context(), id, n)
		if err != nil {
			s.metrics.storeErrors.WithLabelValues("results").Inc()
			return storeFailure("results", err)
		}
		for _, x := range res {
			out.Results = append(out.Results, apiResult(x))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// getAgentRow reads an agent: unknown-agent when there is none.
func (s *Server) getAgentRow(r *http.Request, id string) (*store.Agent, error) {
	a, err := s.o.Store.GetAgent(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(api.CodeUnknownAgent, "no agent "+strconv.Quote(id)+" is enrolled")
	}
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("get_agent").Inc()
		return nil, storeFailure("get_agent", err)
	}
	return a, nil
}

// approve: POST /v1/agents/{id}/approve. A pending agent becomes
// approved; an approved one stays so. A revoked agent stays revoked, and
// one still activating cannot be approved: its AK is not yet proven to
// share a TPM with its EK.
func (s *Server) approve(w http.ResponseWriter, r *http.Request) error {
	return s.adminStatus(w, r, store.Approved)
}

// revoke: POST /v1/agents/{id}/revoke. Every later request of the agent
// is refused on every replica (each reads the agent row), a result not
// yet saved is refused too (SaveResult is conditional on approval), and
// it may not enroll again.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	return s.adminStatus(w, r, store.Revoked)
}

// maxStatusTries bounds how often adminStatus reads the agent again when
// its status changed under it (each change moves it forward: activating,
// pending, approved, revoked).
const maxStatusTries = 5

// adminStatus sets the agent's status to to by compare-and-set from the
// status it read, reading again when another change landed first: a
// revoke always ends revoked, and an approve that loses to a revoke is
// refused (agent-revoked), never undoing it.
func (s *Server) adminStatus(w http.ResponseWriter, r *http.Request, to store.Status) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	var req api.AdminRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if len(req.Reason) > 1024 {
		return fail(api.CodeBadRequest, "the reason exceeds 1024 bytes")
	}
	reason := "approved by operator"
	if to == store.Revoked {
		reason = "revoked by operator"
	}
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	for try := 1; ; try++ {
		a, err := s.getAgentRow(r, id)
		if err != nil {
			return err
		}
		if a.Status == to {
			return writeJSON(w, http.StatusOK, apiAgent(a))
		}
		switch {
		case a.Status == store.Revoked:
			return fail(api.CodeAgentRevoked, "a revoked agent cannot be approved")
		case to == store.Approved && a.Status == store.Activating:
			return fail(api.CodeEnrollConflict, "the agent has not completed credential activation; it cannot be approved yet")
		}
		err = s.o.Store.SetStatus(r.Context(), id, store.StatusChange{From: a.Status, To: to, Reason: reason, At: s.now().UTC()})
		switch {
		case err == nil:
			s.log.Info("agent status set by operator", "agent", id, "from", a.Status, "to", to, "reason", reason)
			s.statusChanged(a, to)
			if a, err = s.getAgentRow(r, id); err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, apiAgent(a))
		case errors.Is(err, store.ErrStatusChanged) && try < maxStatusTries:
			continue
		case errors.Is(err, store.ErrNotFound):
			return fail(api.CodeUnknownAgent, "no agent "+strconv.Quote(id)+" is enrolled")
		default:
			s.metrics.storeErrors.WithLabelValues("set_status").Inc()
			return storeFailure("set_status", err)
		}
	}
}

// events serves the event stream (admin token required).
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	if s.o.EventsHandler == nil {
		return fail(api.CodeNotFound, "the event stream is not enabled")
	}
	s.stream(w, r, s.o.EventsHandler)
	return nil
}

// stream serves an event stream with h: it outlives the server's write
// timeout, and ends when the server shuts down.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.draining, cancel)()
	h.ServeHTTP(w, r.WithContext(ctx))
}
