package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
)

// healthz says the process is alive; it touches nothing else.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness probes the store with this timeout, and writes at most once
// per readyProbeEvery (the answer in between is the last probe's).
const (
	readyTimeout    = 2 * time.Second
	readyProbeEvery = time.Second
	// readyProbeAgent names the probe's nonce records: no agent ID can
	// hold parentheses.
	readyProbeAgent = "(readyz)"
)

// readiness caches the write probe, so that a flood of /readyz cannot
// become a flood of writes.
type readiness struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// readyz says whether the service can serve: the store answers, it
// accepts writes (what saving a result needs) and a policy is loaded.
// 503 unavailable otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.o.Store.Ping(ctx); err != nil {
		s.metrics.storeErrors.WithLabelValues("ping").Inc()
		return failWith(api.CodeUnavailable, "the database does not answer", err)
	}
	if err := s.writeProbe(ctx); err != nil {
		return failWith(api.CodeUnavailable, "the database does not accept writes: results cannot be saved", err)
	}
	if p, ok := s.o.Appraiser.(interface{ Policies() *appraise.Policies }); ok {
		if ps := p.Policies(); ps == nil || ps.Current() == nil {
			return fail(api.CodeUnavailable, "no policy loaded")
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// writeProbe records a random, already expired nonce (the next prune
// deletes it): a write through the same store handle and transaction
// path as an attestation's, refused by a read-only, full or failing
// database alike.
func (s *Server) writeProbe(ctx context.Context) error {
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	now := time.Now()
	if !s.ready.at.IsZero() && now.Sub(s.ready.at) < readyProbeEvery && now.After(s.ready.at) {
		return s.ready.err
	}
	h := make([]byte, sha256.Size)
	if _, err := rand.Read(h); err != nil {
		return err
	}
	err := s.o.Store.UseNonce(ctx, h, readyProbeAgent, s.now().Add(-time.Hour))
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("write_probe").Inc()
	}
	s.ready.at, s.ready.err = now, err
	return err
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
