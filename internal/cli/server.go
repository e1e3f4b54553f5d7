package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vigil-attest/vigil/events"
	"github.com/vigil-attest/vigil/service"
)

// serviceOptions are the attestation service's flags (vigil server, and
// the service half of vigil up).
type serviceOptions struct {
	c                 service.Config
	webhooks          []string
	webhookSecretFile string
}

func (o *serviceOptions) addFlags(fs *pflag.FlagSet, listen string) {
	c := &o.c
	fs.StringVar(&c.Listen, "listen", listen, "address to serve on")
	fs.StringVar(&c.DataDir, "data", "vigil-data", "data directory: SQLite database, secrets key, admin token, development TLS CA")
	fs.StringVar(&c.DB, "db", "", "database: sqlite:///path.db, a *.db path, or postgres://… (default DATA/vigil.db)")
	fs.IntVar(&c.DBConns, "db-conns", 0, "maximum database connections (0: the store's default)")
	fs.BoolVar(&c.DBSyncFull, "db-sync-full", false, "SQLite: fsync every commit, so results survive power loss (default: survive a process crash; about 3x the write rate)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate (PEM); without it a development CA in DATA/tls issues one")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key (PEM)")
	fs.BoolVar(&c.InsecureHTTP, "insecure-http", false, "serve plain HTTP (the protocol stays sound; TLS is defence in depth)")
	fs.StringSliceVar(&c.Hosts, "host", nil, "extra DNS names or IPs for the development TLS certificate")
	fs.StringVar(&c.PolicyDir, "policy-dir", "", "directory of the Rego attestation policy files and data.json (default: the embedded policy)")
	fs.DurationVar(&c.PolicyReload, "policy-reload", 10*time.Second, "how often --policy-dir is checked for changes")
	fs.StringSliceVar(&c.EKRoots, "ek-roots", nil, "PEM files of TPM manufacturer root CAs: EKs certified by them are approved")
	fs.StringSliceVar(&c.EKIntermediates, "ek-intermediates", nil, "PEM files of TPM manufacturer issuing CAs")
	fs.StringSliceVar(&c.EKAllowlist, "ek-allow", nil, "SHA-256 (hex) of EK public areas approved without a certificate")
	fs.StringVar(&c.Software, "software", "deny", "software agents: deny, pending (an operator approves) or auto")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "admin API bearer token file (default DATA/admin-token, created 0600)")
	fs.StringVar(&c.SecretsKeyFile, "secrets-key-file", "", "file (0600) holding the key that seals the CA, signing and nonce keys in the database: 64 hex digits, the same on every replica (default DATA/secrets-key, created when absent)")
	fs.StringVar(&c.SecretsKey, "secrets-key", "", "that key itself, 64 hex digits; set it as $VIGIL_SECRETS_KEY rather than as a flag, which ps shows")
	fs.StringVar(&c.CACert, "ca-cert", "", "session-report CA certificate (PEM); default: made once and kept in the store")
	fs.StringVar(&c.CAKey, "ca-key", "", "session-report CA private key (PEM)")
	fs.StringVar(&c.Issuer, "issuer", "", "session reports' iss claim, the same on every replica (default: urn:vigil:ca: and the base64url SHA-256 of the report CA's public key)")
	fs.DurationVar(&c.NonceTTL, "nonce-ttl", 0, "challenge lifetime (default 2m)")
	fs.DurationVar(&c.TokenValidity, "token-validity", 0, "session report lifetime (default 10m)")
	fs.DurationVar(&c.KeyLifetime, "key-lifetime", 0, "how long a signing key signs before rotation (default 24h)")
	fs.DurationVar(&c.Retention, "retention", 30*24*time.Hour, "delete results older than this (each agent keeps its latest); 0 keeps all")
	fs.Float64Var(&c.Rate, "rate", 0, "requests per second per agent (default 5; negative disables)")
	fs.IntVar(&c.Burst, "burst", 0, "per-agent burst (default 10)")
	fs.Float64Var(&c.ClientRate, "client-rate", 0, "requests per second per client address, IPv6 per /64 (default 100; negative disables, e.g. behind a proxy)")
	fs.IntVar(&c.ClientBurst, "client-burst", 0, "per-client burst (default 200)")
	fs.DurationVar(&c.NonceSkew, "nonce-skew", 0, "clock margin of single-use nonces; replica clocks may differ by less than twice it (default 1m)")
	fs.StringVar(&c.MetricsAuth, "metrics-auth", "public", "who may read /metrics: public or admin (the admin token)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics on this address (plain HTTP) instead of --listen")
	fs.DurationVar(&c.ActivationTTL, "enroll-activation-ttl", 0, "an enrollment not activated within this is gone, its ID free (default 15m; negative never expires)")
	fs.DurationVar(&c.PendingTTL, "enroll-pending-ttl", 0, "an agent pending approval longer than this is gone, its ID free (default 168h; negative never expires)")
	fs.IntVar(&c.MaxEnrollPerSource, "enroll-max-per-client", 0, "unfinished enrollments (activating or pending) allowed from one client address or IPv6 /64 (default 32; negative: no bound)")
	fs.IntVar(&c.MaxUnfinished, "enroll-max-unfinished", 0, "unfinished enrollments allowed in all (default 10000; negative: no bound)")
	fs.BoolVar(&c.AllowEKReuse, "allow-ek-reuse", false, "let one EK enroll under several agent IDs (default: one EK holds one agent ID)")
	fs.StringSliceVar(&o.webhooks, "webhook", nil, "URL receiving level and status changes (repeatable)")
	fs.StringVar(&o.webhookSecretFile, "webhook-secret-file", "", "file holding the webhooks' HMAC secret (at least 16 bytes)")
}

// config resolves the webhooks and the logger into the service config.
func (o *serviceOptions) config(g *globalOptions) (service.Config, error) {
	c := o.c
	c.Logger = g.logger
	if len(o.webhooks) > 0 {
		if o.webhookSecretFile == "" {
			return c, usageErr("--webhook needs --webhook-secret-file")
		}
		b, err := os.ReadFile(o.webhookSecretFile)
		if err != nil {
			return c, usageErr("--webhook-secret-file: %v", err)
		}
		secret := []byte(strings.TrimSpace(string(b)))
		for _, u := range o.webhooks {
			c.Webhooks = append(c.Webhooks, events.Webhook{URL: u, Secret: secret})
		}
	}
	return c, nil
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func newServerCmd(g *globalOptions) *cobra.Command {
	o := &serviceOptions{}
	c := &cobra.Command{
		Use:   "server",
		Short: "Run the attestation service",
		Long: `Run the attestation service: enrollment with TPM credential activation,
challenge–response attestation, appraisal by Rego policy into a security level
(0–4), and session reports as EAR JWTs signed by a key that chains to the
service CA (/.well-known/vigil-ca.pem, /.well-known/jwks.json).

State lives in SQLite (default, DATA/vigil.db) or PostgreSQL (--db postgres://…;
several replicas may share one database). Configuration comes from the YAML file
(--config; keys are flag names), then VIGIL_* environment variables, then flags.
See docs/server.md.`,
		Example: `  vigil server --data /var/lib/vigil --listen 0.0.0.0:8443 --ek-roots /etc/vigil/ek-roots.pem
  vigil server --db postgres://vigil@db/vigil --tls-cert tls.pem --tls-key tls.key --software pending
  vigil server --config /etc/vigil/server.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(g)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			defer service.TuneRuntime()()
			s, err := service.Open(ctx, cfg)
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			defer s.Close()
			g.logger.Info("serving", "url", s.URL(), "db", dbName(cfg), "policy", s.Policies.Current().ID,
				"tls_ca", s.TLSCAFile, "software", cfg.Software)
			fmt.Fprintf(g.stderr, "vigil server: serving %s\n", s.URL())
			if err := s.Serve(ctx); err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			return nil
		},
	}
	o.addFlags(c.Flags(), "127.0.0.1:8443")
	return c
}

// dbName is the database for logs, without credentials.
func dbName(c service.Config) string {
	if strings.HasPrefix(c.DB, "postgres") {
		return "postgresql"
	}
	return "sqlite"
}
