package server

import (
	"context"
	"net/http"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
)

// healthz says the process is alive; it touches nothing else.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness probes the store with this timeout.
const readyTimeout = 2 * time.Second

// readyz says whether the service can serve: the store answers and a
// policy is loaded. 503 unavailable otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.o.Store.Ping(ctx); err != nil {
		s.metrics.storeErrors.WithLabelValues("ping").Inc()
		return failWith(api.CodeUnavailable, "the database does not answer", err)
	}
	if p, ok := s.o.Appraiser.(interface{ Policies() *appraise.Policies }); ok {
		if ps := p.Policies(); ps == nil || ps.Current() == nil {
			return fail(api.CodeUnavailable, "no policy loaded")
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// jwks serves the session-report signing keys (RFC 7517).
func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) error {
	b, err := s.o.Issuer.JWKS()
	if err != nil {
		return storeFailure("jwks", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=60")
	w.Write(b)
	return nil
}

// caPEM serves the service CA certificate.
func (s *Server) caPEM(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/x-pem-file")
	h.Set("Cache-Control", "public, max-age=300")
	w.Write(s.o.Issuer.CAPEM())
	return nil
}

// openAPI serves the API's OpenAPI 3 description.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	w.Write(api.OpenAPI)
	return nil
}
