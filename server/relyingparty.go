package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/store"
)

// RelyingPartyTokenPrefix starts every relying-party bearer token, so
// that a leaked one is recognisable (secret scanners) and never mistaken
// for the admin token.
const RelyingPartyTokenPrefix = "vigil_rp_"

type rpKey struct{}

// relyingPartyOf is the authenticated relying party of a request that
// passed relyingParty.
func relyingPartyOf(ctx context.Context) *store.RelyingParty {
	rp, _ := ctx.Value(rpKey{}).(*store.RelyingParty)
	return rp
}

// relyingParty guards a relying party's endpoint: a bearer token whose
// SHA-256 the store knows (unauthorized otherwise, also for the admin
// token, which is no relying party's), carrying scope (scope-missing
// otherwise). The store is read by the token's hash, so the token itself
// is compared by the database index, never kept.
func (s *Server) relyingParty(scope string, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.HasPrefix(tok, RelyingPartyTokenPrefix) || len(tok) > 256 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil relying party"`)
			return fail(api.CodeUnauthorized, "a relying party's bearer token is required (vigil admin rp create)")
		}
		hash := sha256.Sum256([]byte(tok))
		rp, err := s.o.Store.RelyingPartyByToken(r.Context(), hash[:])
		if errors.Is(err, store.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil relying party", error="invalid_token"`)
			return fail(api.CodeUnauthorized, "the relying-party token is not known to the service")
		}
		if err != nil {
			s.metrics.storeErrors.WithLabelValues("relying_party").Inc()
			return storeFailure("relying_party", err)
		}
		if !rp.Has(scope) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil relying party", error="insufficient_scope", scope="`+scope+`"`)
			return fail(api.CodeScopeMissing, fmt.Sprintf("relying party %q lacks the scope %q", rp.Name, scope))
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), rpKey{}, rp)))
	}
}

// verify: POST /v1/verify, the background-check model. A relying party
// (scope verify) forwards the evidence its client made for a challenge
// the relying party obtained (PathChallenge) and names that challenge's
// nonce; the evidence goes through the whole attestation flow
// (appraiseEvidence: bound to the agent's enrolled keys, single use),
// and the answer's session report has the relying party as its aud.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, s.o.MaxEvidence+s.o.MaxBody, false, "application/json")
	if err != nil {
		return err
	}
	var req api.VerifyRequest
	if err := strictJSON(body, &req); err != nil {
		return err
	}
	setAgent(r, req.AgentID)
	if err := validAgentID(req.AgentID); err != nil {
		return err
	}
	if len(req.Evidence) == 0 {
		return fail(api.CodeBadRequest, "evidence is required")
	}
	ev, err := evidence.Decode(req.Evidence)
	if err != nil {
		return fail(api.CodeBadRequest, "the evidence does not decode: "+err.Error())
	}
	want, err := hex.DecodeString(req.Nonce)
	if err != nil || len(want) == 0 {
		return fail(api.CodeNonceInvalid, "nonce must be the challenge's hex nonce")
	}
	if got, err := hex.DecodeString(ev.Nonce); err != nil || !slices.Equal(got, want) {
		return fail(api.CodeNonceMismatch, "the evidence answers another challenge than the relying party's nonce")
	}
	rp := relyingPartyOf(r.Context())
	at, err := s.appraiseEvidence(w, r, req.AgentID, ev, []string{rp.Name})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.VerifyResponse{
		AgentID: req.AgentID, ResultID: at.result.ID, Level: at.out.Level, Status: at.out.Status,
		Failures: at.failures, Audience: rp.Name, Token: at.token,
	})
}

// feed serves the relying parties' event stream (scope feed): the
// events of FeedHandler (level changes, approvals, revocations), with
// Last-Event-ID.
func (s *Server) feed(w http.ResponseWriter, r *http.Request) error {
	if s.o.FeedHandler == nil {
		return fail(api.CodeNotFound, "the relying parties' feed is not enabled")
	}
	s.stream(w, r, s.o.FeedHandler)
	return nil
}

// apiRelyingParty is the admin API's view of a relying party.
func apiRelyingParty(rp *store.RelyingParty) api.RelyingParty {
	return api.RelyingParty{Name: rp.Name, Scopes: rp.Scopes, CreatedAt: rp.CreatedAt}
}

// createRelyingParty: POST /v1/relying-parties (admin). The answer holds
// the bearer token, once: the store keeps its SHA-256.
func (s *Server) createRelyingParty(w http.ResponseWriter, r *http.Request) error {
	var req api.RelyingPartyRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if !api.ValidRelyingPartyName(req.Name) {
		return fail(api.CodeBadRequest, "a relying-party name is 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
	}
	if len(req.Scopes) == 0 {
		return fail(api.CodeBadRequest, "scopes: want at least one of "+strings.Join(store.Scopes(), ", "))
	}
	for _, sc := range req.Scopes {
		if !store.ValidScope(sc) {
			return fail(api.CodeBadRequest, fmt.Sprintf("scope %q; want %s", sc, strings.Join(store.Scopes(), ", ")))
		}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return failWith(api.CodeInternal, "internal error", err)
	}
	tok := RelyingPartyTokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	hash := sha256.Sum256([]byte(tok))
	rp := &store.RelyingParty{Name: req.Name, TokenHash: hash[:], Scopes: req.Scopes, CreatedAt: s.now().UTC()}
	if err := s.o.Store.CreateRelyingParty(r.Context(), rp); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fail(api.CodeRelyingPartyExists, "a relying party "+strconv.Quote(req.Name)+" exists")
		}
		s.metrics.storeErrors.WithLabelValues("create_relying_party").Inc()
		return storeFailure("create_relying_party", err)
	}
	s.log.Info("relying party created by operator", "relying_party", rp.Name, "scopes", rp.Scopes)
	out := apiRelyingParty(rp)
	out.Token = tok
	return writeJSON(w, http.StatusCreated, out)
}

// listRelyingParties: GET /v1/relying-parties (admin).
func (s *Server) listRelyingParties(w http.ResponseWriter, r *http.Request) error {
	rps, err := s.o.Store.RelyingParties(r.Context())
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("relying_parties").Inc()
		return storeFailure("relying_parties", err)
	}
	out := api.RelyingPartyList{RelyingParties: make([]api.RelyingParty, 0, len(rps))}
	for _, rp := range rps {
		out.RelyingParties = append(out.RelyingParties, apiRelyingParty(rp))
	}
	return writeJSON(w, http.StatusOK, out)
}

// deleteRelyingParty: DELETE /v1/relying-parties/{name} (admin); its
// token stops working at once on every replica.
func (s *Server) deleteRelyingParty(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if !api.ValidRelyingPartyName(name) {
		return fail(api.CodeBadRequest, "invalid relying-party name")
	}
	if err := s.o.Store.DeleteRelyingParty(r.Context(), name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fail(api.CodeUnknownRelyingParty, "no relying party "+strconv.Quote(name))
		}
		s.metrics.storeErrors.WithLabelValues("delete_relying_party").Inc()
		return storeFailure("delete_relying_party", err)
	}
	s.log.Info("relying party deleted by operator", "relying_party", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
