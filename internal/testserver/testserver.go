// Package testserver starts a complete attestation service for tests:
// a real store (SQLite in the test's temporary directory by default, or a
// storetest database), the default Rego policy, a real token issuer and
// event bus, served over HTTP on 127.0.0.1. Stop and Restart bring it
// down and up again on the same database, for tests that a restart keeps
// every acknowledged result.
package testserver

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/events"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/storetest"
	"github.com/vigil-attest/vigil/token"
)

// Options select the service. The zero value is a service on a fresh
// SQLite database that admits software agents at once.
type Options struct {
	// DB is the database: Start opens a handle on it, Restart closes
	// that handle and opens a new one. Default storetest.NewSQLite(t).
	// Store, when set instead, is used as is (Restart keeps it).
	DB    *storetest.DB
	Store store.Store
	// Software is the software-agent mode; default server.SoftwareAuto.
	Software string
	// AdminToken defaults to a random token.
	AdminToken string
	// EKRoots, EKIntermediates and EKAllowlist are the TPM approval
	// rules (see server.Options).
	EKRoots, EKIntermediates []*x509.Certificate
	EKAllowlist              []string
	// Policies default to appraise.Default.
	Policies *appraise.Policies
	// NonceKey and NonceTTL: see server.Options (by default the key is
	// the store's, shared by every service on the same database).
	NonceKey []byte
	NonceTTL time.Duration
	// Rate and Burst are the per-agent rate limit; Rate 0 disables it
	// (unlike server.Options) so that tests may hammer one agent.
	Rate  float64
	Burst int
	// ClientRate and ClientBurst are the per-client-address limit; like
	// Rate, 0 disables it (every test client is 127.0.0.1).
	ClientRate  float64
	ClientBurst int
	// Now is the clock of the server, the appraiser and the issuer.
	Now func() time.Time
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Configure, when set, adjusts the server options last.
	Configure func(*server.Options)
}

// Service is a running attestation service.
type Service struct {
	// URL is the base URL (http://127.0.0.1:PORT); it stays the same
	// across Restart.
	URL string
	// AdminToken is the admin API's bearer token.
	AdminToken string
	// CA is the service CA that session reports chain to; CAPool holds
	// it for token verification.
	CA     *x509.Certificate
	CAPool *x509.CertPool
	// Server, Store, Issuer, Appraiser and Events are the running parts
	// (replaced by Restart).
	Server    *server.Server
	Store     store.Store
	Issuer    *token.Issuer
	Appraiser *appraise.Appraiser
	Events    *events.Bus
	// Client is a plain HTTP client with a timeout.
	Client *http.Client

	t      testing.TB
	o      Options
	addr   string
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
	owned  store.Store // opened from o.DB, closed by Stop
}

// Start starts a service; it stops when the test ends.
func Start(t testing.TB, o Options) *Service {
	t.Helper()
	if o.Software == "" {
		o.Software = server.SoftwareAuto
	}
	if o.AdminToken == "" {
		b := make([]byte, 16)
		rand.Read(b)
		o.AdminToken = hex.EncodeToString(b)
	}
	if o.Store == nil && o.DB == nil {
		o.DB = storetest.NewSQLite(t)
	}
	if o.Rate == 0 {
		o.Rate = -1
	}
	if o.ClientRate == 0 {
		o.ClientRate = -1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Policies == nil {
		p, err := appraise.Default(context.Background())
		if err != nil {
			t.Fatalf("testserver: loading the default policy: %v", err)
		}
		o.Policies = p
	}
	s := &Service{t: t, o: o, AdminToken: o.AdminToken, Client: &http.Client{Timeout: 30 * time.Second}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	s.addr = ln.Addr().String()
	s.URL = "http://" + s.addr
	s.start(ln)
	t.Cleanup(s.Stop)
	return s
}

func (s *Service) start(ln net.Listener) {
	t, o := s.t, s.o
	t.Helper()
	ctx := context.Background()
	st := o.Store
	if st == nil {
		h := o.DB.Open(t)
		s.owned, st = h, h
	}
	iss, err := token.NewIssuer(ctx, st, token.Options{Now: o.Now, Logger: o.Logger})
	if err != nil {
		ln.Close()
		t.Fatalf("testserver: token issuer: %v", err)
	}
	ap := appraise.New(o.Policies, appraise.Options{Now: o.Now})
	bus := events.New(events.Options{Logger: o.Logger})
	so := server.Options{
		Store: st, Appraiser: ap, Issuer: iss, Events: bus, EventsHandler: bus.Handler(), FeedHandler: bus.FeedHandler(), Logger: o.Logger,
		NonceKey: o.NonceKey, NonceTTL: o.NonceTTL, EKRoots: o.EKRoots, EKIntermediates: o.EKIntermediates,
		EKAllowlist: o.EKAllowlist, Software: o.Software, AdminToken: o.AdminToken,
		Rate: o.Rate, Burst: o.Burst, ClientRate: o.ClientRate, ClientBurst: o.ClientBurst, Now: o.Now,
	}
	if o.Configure != nil {
		o.Configure(&so)
	}
	srv, err := server.New(ctx, so)
	if err != nil {
		ln.Close()
		bus.Close()
		t.Fatalf("testserver: %v", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx, ln) }()
	s.mu.Lock()
	s.Server, s.Store, s.Issuer, s.Appraiser, s.Events = srv, st, iss, ap, bus
	s.CA = iss.CA()
	s.CAPool = x509.NewCertPool()
	s.CAPool.AddCert(s.CA)
	s.cancel, s.done = cancel, done
	s.mu.Unlock()
}

// Stop shuts the service down gracefully and closes the store handle it
// opened. Stopping a stopped service does nothing.
func (s *Service) Stop() {
	s.mu.Lock()
	cancel, done, bus, owned := s.cancel, s.done, s.Events, s.owned
	s.cancel, s.done, s.owned = nil, nil, nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil {
		s.t.Errorf("testserver: %v", err)
	}
	bus.Close()
	if owned != nil {
		owned.Close()
	}
}

// Restart stops the service and starts a new one on the same database
// (a new handle when it came from Options.DB) at the same address.
func (s *Service) Restart() {
	s.t.Helper()
	s.Stop()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("testserver: listening again on %s: %v", s.addr, err)
	}
	s.start(ln)
}
