// Package service assembles a running attestation service from its
// configuration: the store (SQLite or PostgreSQL), the Rego policies
// (reloaded without restart), the session-report issuer, the event bus
// (webhooks and SSE), the HTTP server and its TLS. `vigil server`, `vigil
// up` and `vigil bench attest --local` start the service through Open, so
// there is one way to build it.
package service

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/devca"
	"github.com/vigil-attest/vigil/events"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/seal"
	"github.com/vigil-attest/vigil/store/sqlstore"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/trust"
)

// DefaultSecretsKeyFile is the secrets key's file in the data directory.
const DefaultSecretsKeyFile = "secrets-key"

// Config is the service's configuration. The zero value with DataDir set
// is a working development service: SQLite in DataDir, the default
// policy, a development TLS CA, an admin token file.
type Config struct {
	// Listen is the address (default 127.0.0.1:8443).
	Listen string
	// DataDir holds the SQLite database, the secrets key, the admin
	// token and the development TLS material (default ./vigil-data).
	DataDir string
	// DB is the database: "sqlite:///path.db", a *.db path, or a
	// postgres:// URL. Default: DataDir/vigil.db.
	DB string
	// DBConns caps the database connections (0: the store's default).
	DBConns int
	// DBSyncFull (SQLite) fsyncs every commit (synchronous=FULL): results
	// survive power loss, not only a crash of the process, at about a
	// third of the write rate.
	DBSyncFull bool
	// TLSCert and TLSKey are the server's certificate and key (PEM).
	// Without them a development CA in DataDir/tls issues one, unless
	// InsecureHTTP serves plain HTTP (the protocol stays sound: every
	// message that matters is signed and nonce-bound).
	TLSCert, TLSKey string
	InsecureHTTP    bool
	// Hosts are extra names for the development certificate.
	Hosts []string
	// PolicyDir is a directory of Rego policy files (and data.json);
	// empty means the embedded default policy. PolicyReload is how
	// often the directory is checked for changes (default 10s).
	PolicyDir    string
	PolicyReload time.Duration
	// EKRoots and EKIntermediates are PEM files of TPM manufacturer CA
	// certificates; EKAllowlist are SHA-256 (hex) of EK TPMT_PUBLICs.
	EKRoots         []string
	EKIntermediates []string
	EKAllowlist     []string
	// Software admits software agents: "deny" (default), "pending" or
	// "auto".
	Software string
	// AdminToken is the admin API's bearer token; when empty it is read
	// from AdminTokenFile (default DataDir/admin-token), created with a
	// random token (0600) when absent.
	AdminToken     string
	AdminTokenFile string
	// SecretsKey (64 hex digits; $VIGIL_SECRETS_KEY) or SecretsKeyFile
	// is the key that seals the CA key, the signing keys and the nonce
	// key in the database. Without either, DataDir/secrets-key is used,
	// created (0600) with a new key when absent. Every replica on one
	// database needs the same key: Open fails (seal.WrongKey) when the
	// database was sealed under another. A named SecretsKeyFile must
	// exist.
	SecretsKey     string
	SecretsKeyFile string
	// CACert and CAKey are the session-report CA (PEM files); without
	// them the service makes one and keeps it in the store.
	CACert, CAKey string
	// Issuer is the session reports' "iss", one name for every replica
	// (default ear.IssuerOf(the report CA): "urn:vigil:ca:" and the
	// base64url SHA-256 of its public key).
	Issuer string
	// NonceTTL, TokenValidity, KeyLifetime, Retention: see server and
	// token Options (0 means their defaults; Retention 0 keeps results).
	NonceTTL      time.Duration
	TokenValidity time.Duration
	KeyLifetime   time.Duration
	Retention     time.Duration
	// Rate and Burst are the per-agent rate limit (0: defaults; Rate < 0
	// disables it).
	Rate  float64
	Burst int
	// ClientRate and ClientBurst are the per-client-address limit (0:
	// defaults; ClientRate < 0 disables it, as behind a proxy or NAT).
	ClientRate  float64
	ClientBurst int
	// NonceSkew is the clock margin of single use across replicas (0:
	// server.DefaultNonceSkew).
	NonceSkew time.Duration
	// MetricsAuth is who may read /metrics: "public" (default) or
	// "admin" (the admin token). MetricsListen, when set, serves
	// /metrics on that address only (plain HTTP), not on Listen.
	MetricsAuth   string
	MetricsListen string
	// ActivationTTL, PendingTTL, MaxEnrollPerSource, MaxUnfinished and
	// AllowEKReuse govern enrollment: see server.Options (0 means their
	// defaults; a negative value never expires or never bounds).
	ActivationTTL      time.Duration
	PendingTTL         time.Duration
	MaxEnrollPerSource int
	MaxUnfinished      int
	AllowEKReuse       bool
	// Webhooks receive level and status changes.
	Webhooks []events.Webhook
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Service is an assembled, not yet serving, attestation service.
type Service struct {
	Config    Config
	Server    *server.Server
	Store     store.Store
	Issuer    *token.Issuer
	Policies  *appraise.Policies
	Appraiser *appraise.Appraiser
	Events    *events.Bus
	// AdminToken is the admin API's token.
	AdminToken string
	// TLS is the server's TLS configuration (nil for plain HTTP), and
	// TLSCAFile the development CA's file agents should trust ("" when
	// the certificate was configured).
	TLS       *tls.Config
	TLSCAFile string
	// TLSPool holds the development CA, for in-process clients.
	TLSPool *x509.CertPool

	ln     net.Listener
	mln    net.Listener // Config.MetricsListen's
	cancel context.CancelFunc
}

// Open builds the service and binds its listener (so URL is known and a
// port in use fails here).
func Open(ctx context.Context, c Config) (_ *Service, err error) {
	if c.DataDir == "" {
		c.DataDir = "vigil-data"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Software == "" {
		c.Software = server.SoftwareDeny
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	s := &Service{Config: c}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	dsn := c.DB
	if dsn == "" {
		dsn = "sqlite://" + filepath.Join(c.DataDir, "vigil.db")
	}
	key, keySource, removeKey, err := secretsKey(c)
	if err != nil {
		return nil, err
	}
	st, err := sqlstore.Open(ctx, dsn, sqlstore.Options{MaxConns: c.DBConns, SyncFull: c.DBSyncFull, SecretsKey: key, Logger: c.Logger})
	if err != nil {
		if seal.Of(err) == seal.WrongKey {
			// Leave no key file behind that this start made for nothing.
			removeKey()
		}
		return nil, fmt.Errorf("database: %w (secrets key %s from %s)", err, key.ID(), keySource)
	}
	s.Store = st
	if c.PolicyDir != "" {
		s.Policies, err = appraise.LoadDir(ctx, c.PolicyDir)
	} else {
		s.Policies, err = appraise.Default(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	s.Policies.Logger = c.Logger
	s.Appraiser = appraise.New(s.Policies, appraise.Options{})

	if s.AdminToken, err = adminToken(c); err != nil {
		return nil, err
	}
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	if s.ln, err = net.Listen("tcp", c.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if c.MetricsListen != "" {
		if s.mln, err = net.Listen("tcp", c.MetricsListen); err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("metrics listen: %w", err)
		}
	}
	// Issuer empty: the issuer derives iss from the report CA, the same
	// on every replica (never this replica's URL).
	to := token.Options{Issuer: c.Issuer, Validity: c.TokenValidity, KeyLifetime: c.KeyLifetime, Logger: c.Logger}
	if c.CACert != "" || c.CAKey != "" {
		if to.CA, to.CAKey, err = loadCA(c.CACert, c.CAKey); err != nil {
			return nil, err
		}
	}
	if s.Issuer, err = token.NewIssuer(ctx, st, to); err != nil {
		return nil, fmt.Errorf("session-report issuer: %w", err)
	}
	for _, w := range c.Webhooks {
		if err := w.Validate(); err != nil {
			return nil, fmt.Errorf("webhook %s: %w", w.URL, err)
		}
	}
	s.Events = events.New(events.Options{Webhooks: c.Webhooks, Logger: c.Logger})
	so := server.Options{
		Store: st, Appraiser: s.Appraiser, Issuer: s.Issuer,
		Events: s.Events, EventsHandler: s.Events.Handler(), FeedHandler: s.Events.FeedHandler(), Logger: c.Logger,
		NonceTTL: c.NonceTTL, EKAllowlist: c.EKAllowlist, Software: c.Software,
		AdminToken: s.AdminToken, Rate: c.Rate, Burst: c.Burst, Retention: c.Retention, TLS: s.TLS,
		ClientRate: c.ClientRate, ClientBurst: c.ClientBurst, NonceSkew: c.NonceSkew,
		MetricsAuth: c.MetricsAuth, MetricsSeparate: c.MetricsListen != "",
		ActivationTTL: c.ActivationTTL, PendingTTL: c.PendingTTL, MaxEnrollPerSource: c.MaxEnrollPerSource,
		MaxUnfinished: c.MaxUnfinished, AllowEKReuse: c.AllowEKReuse,
	}
	if so.EKRoots, err = trust.LoadCertificateFiles(c.EKRoots); err != nil {
		return nil, fmt.Errorf("EK roots: %w", err)
	}
	if so.EKIntermediates, err = trust.LoadCertificateFiles(c.EKIntermediates); err != nil {
		return nil, fmt.Errorf("EK intermediates: %w", err)
	}
	if s.Server, err = server.New(ctx, so); err != nil {
		return nil, err
	}
	return s, nil
}

// URL is the service's base URL.
func (s *Service) URL() string {
	scheme := "https"
	if s.TLS == nil {
		scheme = "http"
	}
	addr := s.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, fmt.Sprint(addr.Port)))
}

// Serve serves until ctx ends, watching the policy directory for changes.
func (s *Service) Serve(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	if s.Config.PolicyDir != "" {
		every := s.Config.PolicyReload
		if every <= 0 {
			every = 10 * time.Second
		}
		go s.Policies.Watch(ctx, every)
	}
	if s.mln != nil {
		ms := &http.Server{Handler: s.Server.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(s.Config.Logger.Handler(), slog.LevelWarn)}
		go ms.Serve(s.mln)
		defer ms.Close()
	}
	return s.Server.Run(ctx, s.ln)
}

// MetricsAddr is the address of Config.MetricsListen's listener (nil
// without one).
func (s *Service) MetricsAddr() net.Addr {
	if s.mln == nil {
		return nil
	}
	return s.mln.Addr()
}

// Close releases the store and the event bus (after Serve returned).
func (s *Service) Close() error {
	var errs []error
	if s.cancel != nil {
		s.cancel()
	}
	if s.Events != nil {
		errs = append(errs, s.Events.Close())
	}
	if s.Store != nil {
		errs = append(errs, s.Store.Close())
	}
	if s.ln != nil && s.Server == nil {
		s.ln.Close()
	}
	if s.mln != nil && s.Server == nil {
		s.mln.Close()
	}
	return errors.Join(errs...)
}

func (s *Service) setupTLS() error {
	c := s.Config
	switch {
	case c.InsecureHTTP:
		return nil
	case c.TLSCert != "" || c.TLSKey != "":
		pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		return nil
	}
	hosts := append([]string(nil), c.Hosts...)
	if h, _, err := net.SplitHostPort(c.Listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	m, err := devca.Ensure(filepath.Join(c.DataDir, "tls"), hosts)
	if err != nil {
		return err
	}
	s.TLS, s.TLSCAFile, s.TLSPool = m.Config, m.CAPath, m.Pool
	return nil
}

// adminToken returns the configured token, or the token file's, creating
// it when absent.
func adminToken(c Config) (string, error) {
	if c.AdminToken != "" {
		return c.AdminToken, nil
	}
	path := c.AdminTokenFile
	if path == "" {
		path = filepath.Join(c.DataDir, "admin-token")
	}
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("admin token %s: shorter than 16 characters", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	r := make([]byte, 24)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(r)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return tok, nil
}

// secretsKey resolves the key that seals the store's secrets: the
// configured key, the configured file, or DataDir/secrets-key (made when
// absent). It returns where the key came from, and a func that removes
// the key file when this call created it.
func secretsKey(c Config) (_ *seal.Key, source string, remove func(), _ error) {
	remove = func() {}
	switch {
	case c.SecretsKey != "" && c.SecretsKeyFile != "":
		return nil, "", remove, errors.New("secrets key: give the key or the key file, not both")
	case c.SecretsKey != "":
		k, err := seal.ParseKey(c.SecretsKey)
		if err != nil {
			return nil, "", remove, fmt.Errorf("secrets key (configuration): %w", err)
		}
		return k, "the configuration", remove, nil
	case c.SecretsKeyFile != "":
		k, err := seal.LoadKeyFile(c.SecretsKeyFile)
		if err != nil {
			return nil, "", remove, fmt.Errorf("secrets key: %w", err)
		}
		return k, c.SecretsKeyFile, remove, nil
	}
	path := filepath.Join(c.DataDir, DefaultSecretsKeyFile)
	k, created, err := seal.EnsureKeyFile(path)
	if err != nil {
		return nil, "", remove, fmt.Errorf("secrets key: %w", err)
	}
	if created {
		c.Logger.Warn("created a new secrets key: it seals the CA, signing and nonce keys in the database; keep it with the database's backups, and give every replica the same key",
			"path", path, "key_id", k.ID())
		remove = func() { os.Remove(path) }
	}
	return k, path, remove, nil
}

func loadCA(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("session-report CA: %w", err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("session-report CA: %w", err)
	}
	k, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !c.IsCA {
		return nil, nil, errors.New("session-report CA: the certificate is not a CA or its key cannot sign")
	}
	return c, k, nil
}
