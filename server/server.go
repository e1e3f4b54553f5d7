// Package server is the attestation service's HTTP API, the engine of
// `vigil server`: enrollment with TPM credential activation, stateless
// MAC'd single-use challenges, evidence appraisal with session reports
// (EAR tokens), the admin API, events, metrics and health. The wire
// contract (paths, bodies, problem codes) is package api; the state lives
// in a store.Store, so several replicas on one PostgreSQL database serve
// the same fleet.
//
// Every error is an RFC 9457 problem (application/problem+json) with a
// stable code from package api, including unknown paths, wrong methods,
// timeouts and recovered panics.
package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/store"
)

// Software-agent admission modes (Options.Software).
const (
	// SoftwareDeny refuses software agents (software-not-allowed).
	SoftwareDeny = "deny"
	// SoftwarePending admits them as pending, for an operator to approve.
	SoftwarePending = "pending"
	// SoftwareAuto approves them at once (their results say "software"
	// and never reach a hardware-rooted level).
	SoftwareAuto = "auto"
)

// Defaults of Options.
const (
	DefaultNonceTTL       = 2 * time.Minute
	DefaultMaxEvidence    = 4 << 20
	DefaultMaxBody        = 64 << 10
	DefaultRate           = 5
	DefaultBurst          = 10
	DefaultClientRate     = 100
	DefaultClientBurst    = 200
	DefaultNonceSkew      = time.Minute
	DefaultRequestTimeout = 30 * time.Second
	DefaultResultsShown   = 20
	// DefaultActivationTTL is how long an enrollment may stay activating,
	// DefaultPendingTTL how long an agent may wait for approval.
	DefaultActivationTTL = 15 * time.Minute
	DefaultPendingTTL    = 7 * 24 * time.Hour
	// DefaultMaxEnrollPerSource bounds the unfinished enrollments from
	// one client, DefaultMaxUnfinished those from everyone.
	DefaultMaxEnrollPerSource = 32
	DefaultMaxUnfinished      = 10000
	// NonceKeyName is the store secret holding the nonce key when
	// Options.NonceKey is empty: every replica on one database shares it.
	NonceKeyName = "nonce-key"
)

// Appraiser judges evidence; *appraise.Appraiser is the one.
type Appraiser interface {
	Appraise(ctx context.Context, r *appraise.Request) (*appraise.Outcome, error)
}

// Issuer signs session reports and publishes its keys; *token.Issuer is
// the one. Issue fills in the claims' times and issuer.
type Issuer interface {
	Issue(ctx context.Context, c *ear.Claims) (string, error)
	JWKS() ([]byte, error)
	CAPEM() []byte
}

// Publisher receives the events of level and status changes; an
// *events.Bus is one. Publish must not block.
type Publisher interface {
	Publish(api.Event)
}

// Options configure a Server. Store, Appraiser and Issuer are required.
type Options struct {
	Store     store.Store
	Appraiser Appraiser
	Issuer    Issuer
	// Events receives level and status changes; EventsHandler serves
	// PathEvents (the SSE stream, admin token required). Both optional.
	Events        Publisher
	EventsHandler http.Handler
	// FeedHandler serves PathFeed to relying parties (scope feed):
	// events.Bus.FeedHandler, level changes, approvals and revocations.
	// Optional.
	FeedHandler http.Handler
	// Logger gets the access log and errors; slog.Default() when nil.
	Logger *slog.Logger
	// NonceKey MACs challenges (at least 32 bytes); when empty it is the
	// store secret NonceKeyName, shared by every replica.
	NonceKey []byte
	// NonceTTL is how long a challenge is valid (DefaultNonceTTL).
	NonceTTL time.Duration
	// EKRoots are the TPM manufacturers' root CAs and EKIntermediates
	// their issuing CAs: an EK certificate must chain to a root
	// (ek-untrusted otherwise) and then approves the agent after
	// credential activation. With no roots, EK certificates are not
	// checked and approval rests on the allowlist or an operator.
	EKRoots         []*x509.Certificate
	EKIntermediates []*x509.Certificate
	// EKAllowlist holds SHA-256 (hex) of EK TPMT_PUBLIC bytes whose
	// agents are approved after credential activation.
	EKAllowlist []string
	// Software is the admission of software agents: SoftwareDeny (the
	// default), SoftwarePending or SoftwareAuto.
	Software string
	// ActivationTTL is how long an enrollment may stay activating
	// (DefaultActivationTTL), PendingTTL how long an agent may stay
	// pending, waiting for an operator (DefaultPendingTTL), both counted
	// from the last status change. Past it the enrollment is gone: its ID
	// is free to enroll again, and the maintenance loop deletes it. A
	// negative value never expires.
	ActivationTTL time.Duration
	PendingTTL    time.Duration
	// MaxEnrollPerSource bounds the unfinished enrollments (activating or
	// pending) from one client address, an IPv6 address counting by its
	// /64 (DefaultMaxEnrollPerSource); MaxUnfinished bounds them all
	// (DefaultMaxUnfinished). Past a bound, enrollment answers 429
	// enrollment-limited. A negative value is no bound.
	MaxEnrollPerSource int
	MaxUnfinished      int
	// AllowEKReuse lets one EK enroll under several agent IDs. By default
	// an EK holds one agent ID once activated (refused: ek-in-use), and a
	// revoked agent's EK cannot come back under another ID.
	AllowEKReuse bool
	// AdminToken is the bearer token of the admin API (agents, approve,
	// revoke, events); empty disables that API (401).
	AdminToken string
	// MaxEvidence bounds an evidence body (DefaultMaxEvidence), MaxBody
	// every other body (DefaultMaxBody).
	MaxEvidence int64
	MaxBody     int64
	// Rate and Burst are each agent's token bucket for enrollment and
	// for attestations proven to be the agent's (DefaultRate per second,
	// DefaultBurst); a negative Rate disables the limit. Challenges never
	// spend it: anyone may ask for one.
	Rate  float64
	Burst int
	// ClientRate and ClientBurst are each client address's token bucket
	// (IPv6 by /64) for enrollment, activation, challenges and
	// attestations, taken before any work (DefaultClientRate,
	// DefaultClientBurst); a negative ClientRate disables it. Behind a
	// proxy or a NAT every agent shares the proxy's address: raise it or
	// disable it there.
	ClientRate  float64
	ClientBurst int
	// NonceSkew is the clock margin of single use (DefaultNonceSkew): a
	// nonce is refused from NonceSkew before its encoded expiry on, and
	// its record is pruned only NonceSkew after it, so replicas whose
	// clocks differ by less than 2 × NonceSkew cannot accept a nonce
	// twice.
	NonceSkew time.Duration
	// MetricsAuth is who may read /metrics: MetricsPublic (default) or
	// MetricsAdmin (the admin token). MetricsSeparate takes /metrics off
	// Handler (404 there): serve MetricsHandler on a listener of its own.
	MetricsAuth     string
	MetricsSeparate bool
	// RequestTimeout bounds each request's work (DefaultRequestTimeout);
	// past it the answer is 503 timeout.
	RequestTimeout time.Duration
	// Retention deletes results older than it (each agent keeps its
	// latest); 0 keeps them all. Expired nonce records are deleted
	// either way. PruneInterval is how often (default Retention/10,
	// between 1 minute and 1 hour).
	Retention     time.Duration
	PruneInterval time.Duration
	// TLS, when set, makes Run serve HTTPS. The protocol's security never
	// depends on it.
	TLS *tls.Config
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Server is the attestation service. Its methods are safe for concurrent
// use.
type Server struct {
	o       Options
	log     *slog.Logger
	nonces  *nonces
	mux     *http.ServeMux
	handler http.Handler
	metrics *metrics
	limiter *limiter
	// clients is the per-client-address limiter.
	clients *limiter
	// decoy is a key nobody holds: unknown agents' proofs and evidence
	// are checked against it, so that they cost what known ones do.
	decoy crypto.PublicKey
	// metricsHTTP serves /metrics (MetricsHandler).
	metricsHTTP http.Handler
	// ready caches the readiness write probe.
	ready readiness
	allow map[string]bool
	now   func() time.Time
	// activationKey derives credential-activation secrets.
	activationKey []byte
	// draining ends when Run begins its shutdown: it ends the event
	// streams, which would otherwise hold the shutdown up.
	draining context.Context
	drain    context.CancelFunc
}

// New checks the options, loads the nonce key and builds the handler.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Store == nil || o.Appraiser == nil || o.Issuer == nil {
		return nil, errors.New("server: Store, Appraiser and Issuer are required")
	}
	switch o.Software {
	case "":
		o.Software = SoftwareDeny
	case SoftwareDeny, SoftwarePending, SoftwareAuto:
	default:
		return nil, fmt.Errorf("server: software mode %q, want deny, pending or auto", o.Software)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NonceTTL <= 0 {
		o.NonceTTL = DefaultNonceTTL
	}
	if o.MaxEvidence <= 0 {
		o.MaxEvidence = DefaultMaxEvidence
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.ClientRate == 0 {
		o.ClientRate = DefaultClientRate
	}
	if o.ClientBurst <= 0 {
		o.ClientBurst = DefaultClientBurst
	}
	if o.NonceSkew == 0 {
		o.NonceSkew = DefaultNonceSkew
	}
	switch o.MetricsAuth {
	case "":
		o.MetricsAuth = MetricsPublic
	case MetricsPublic, MetricsAdmin:
	default:
		return nil, fmt.Errorf("server: metrics auth %q, want public or admin", o.MetricsAuth)
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Retention < 0 {
		return nil, fmt.Errorf("server: negative retention %v", o.Retention)
	}
	if o.ActivationTTL == 0 {
		o.ActivationTTL = DefaultActivationTTL
	}
	if o.PendingTTL == 0 {
		o.PendingTTL = DefaultPendingTTL
	}
	if o.MaxEnrollPerSource == 0 {
		o.MaxEnrollPerSource = DefaultMaxEnrollPerSource
	}
	if o.MaxUnfinished == 0 {
		o.MaxUnfinished = DefaultMaxUnfinished
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = min(max(o.Retention/10, time.Minute), time.Hour)
	}
	key := o.NonceKey
	if len(key) == 0 {
		var err error
		key, err = o.Store.Secret(ctx, NonceKeyName, func() ([]byte, error) {
			k := make([]byte, 32)
			_, err := rand.Read(k)
			return k, err
		})
		if err != nil {
			return nil, fmt.Errorf("server: loading the nonce key from the store: %w", err)
		}
	}
	n, err := newNonces(key, o.NonceTTL, o.NonceSkew)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{o: o, log: o.Logger, nonces: n, now: o.Now, allow: map[string]bool{}}
	s.draining, s.drain = context.WithCancel(context.Background())
	for _, h := range o.EKAllowlist {
		s.allow[strings.ToLower(strings.TrimSpace(h))] = true
	}
	ak := sha256.Sum256(append([]byte("vigil activation key\x00"), key...))
	s.activationKey = ak[:]
	s.limiter = newLimiter(o.Rate, o.Burst)
	s.clients = newLimiter(o.ClientRate, o.ClientBurst)
	s.metrics = newMetrics(func() int { return s.limiter.size() + s.clients.size() })
	decoy, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("server: decoy key: %w", err)
	}
	s.decoy = &decoy.PublicKey
	s.metricsHTTP = s.metricsHandler()
	s.routes()
	return s, nil
}

// Handler is the service's HTTP handler: every route, wrapped in the
// access log, metrics, request timeout and panic recovery.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves on ln until ctx ends, then shuts down gracefully (in-flight
// requests get up to 10 seconds). It also runs the maintenance loop
// (retention, the agents gauge, the rate limiter's sweep). It returns nil
// after a shutdown caused by ctx.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	if s.o.TLS != nil {
		ln = tls.NewListener(ln, s.o.TLS)
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.o.RequestTimeout + 10*time.Second,
		WriteTimeout:      s.o.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	mctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.Maintain(mctx) })
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.drain()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = hs.Shutdown(sctx)
		cancel()
		if err != nil {
			hs.Close()
		}
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	stop()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Maintain runs the background work until ctx ends: pruning results past
// the retention, expired nonce records and expired enrollments
// (ActivationTTL, PendingTTL), refreshing the agents gauge
// and sweeping idle rate-limit buckets. Run calls it; call it yourself
// when serving Handler some other way.
func (s *Server) Maintain(ctx context.Context) {
	s.maintain(ctx)
	prune := time.NewTicker(s.o.PruneInterval)
	defer prune.Stop()
	gauge := time.NewTicker(time.Minute)
	defer gauge.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			s.prune(ctx)
		case <-gauge.C:
			s.refreshAgents(ctx)
			s.limiter.sweep(s.now())
			s.clients.sweep(s.now())
		}
	}
}

func (s *Server) maintain(ctx context.Context) {
	s.prune(ctx)
	s.refreshAgents(ctx)
}

// prune deletes results past the retention, expired nonces and expired
// enrollments.
func (s *Server) prune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	s.expireEnrollments(ctx, "")
	now := s.now()
	before := time.Time{}
	if s.o.Retention > 0 {
		before = now.Add(-s.o.Retention)
	}
	// Nonce records go NonceSkew after their expiry (see nonces).
	n, err := s.o.Store.Prune(ctx, before, now.Add(-s.o.NonceSkew))
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.storeErrors.WithLabelValues("prune").Inc()
			s.log.Warn("pruning the store", "err", err)
		}
		return
	}
	s.metrics.pruned.Add(float64(n))
	if n > 0 {
		s.log.Info("pruned the store", "rows", n, "before", before)
	}
}

// refreshAgents counts the enrolled agents by status for the gauge.
func (s *Server) refreshAgents(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	counts := map[store.Status]int{store.Activating: 0, store.Pending: 0, store.Approved: 0, store.Revoked: 0}
	after := ""
	for {
		page, err := s.o.Store.ListAgents(ctx, store.ListOptions{After: after, Limit: 1000})
		if err != nil {
			if ctx.Err() == nil {
				s.metrics.storeErrors.WithLabelValues("list_agents").Inc()
				s.log.Warn("counting agents", "err", err)
			}
			return
		}
		for _, a := range page {
			counts[a.Status]++
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	for st, n := range counts {
		s.metrics.agents.WithLabelValues(string(st)).Set(float64(n))
	}
}
