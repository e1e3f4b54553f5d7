package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/vigil-attest/vigil/gatekeeper"
)

// gateOptions are `vigil gate`'s flags; the routes come from the config
// file alone.
type gateOptions struct {
	c gatekeeper.Config
}

func (o *gateOptions) addFlags(fs *pflag.FlagSet) {
	c := &o.c
	fs.StringVar(&c.Listen, "listen", "", "the reverse proxy's address (needs --upstream), e.g. 127.0.0.1:8080")
	fs.StringVar(&c.AuthListen, "auth-listen", "", "the nginx auth_request endpoint's address (loopback: it trusts X-Original-URI)")
	fs.StringVar(&c.Upstream, "upstream", "", "the HTTP service the proxy forwards admitted requests to")
	fs.StringVar(&c.Audience, "audience", "", "this relying party's name: the aud its clients' proofs (and reports) must name")
	fs.BoolVar(&c.RequireReportAudience, "require-report-audience", false, "refuse session reports issued for no audience")
	fs.StringVar(&c.PublicURL, "public-url", "", "scheme://host[:port] clients address (proofs' htu); default: the request's Host")
	fs.StringVar(&c.CA, "ca", "", "the service's report CA (PEM, /.well-known/vigil-ca.pem): verify reports offline")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "the service's JWKS (…/.well-known/jwks.json), cached and fetched again on an unknown kid")
	fs.StringVar(&c.FeedURL, "feed-url", "", "the service's relying-party feed (…/v1/feed): refuse revoked hosts and dropped levels at once")
	fs.StringVar(&c.RPTokenFile, "rp-token-file", "", "file holding a relying-party token with the scope feed (vigil admin rp create NAME --scope feed)")
	fs.DurationVar(&c.FeedGrace, "feed-grace", 0, "refuse everyone (feed-unavailable) once the feed has been lost this long (default 30s)")
	fs.DurationVar(&c.ProofMaxAge, "proof-max-age", 0, "how old a proof may be (default 60s)")
	fs.StringVar(&c.HeaderPrefix, "header-prefix", "", "prefix of the forwarded claims headers, stripped from clients (default Vigil-)")
}

// gateFile is the config file as the gate reads it: every key a flag's
// (or a global flag's) name, plus routes; any other key is an error.
type gateFile struct {
	gatekeeper.Config `yaml:",inline"`
	LogLevel          string `yaml:"log-level"`
	LogJSON           bool   `yaml:"log-json"`
}

// routes reads the config file's routes strictly (unknown keys are
// errors); the scalar keys already reached the flags (applyConfig).
func gateRoutes(path string) ([]gatekeeper.Route, error) {
	if path == "" {
		path = os.Getenv("VIGIL_CONFIG")
	}
	if path == "" {
		return nil, errors.New("no config file: the routes live in --config (see docs/relying-parties.md)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f gateFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return f.Routes, nil
}

func newGateCmd(g *globalOptions) *cobra.Command {
	o := &gateOptions{}
	c := &cobra.Command{
		Use:   "gate",
		Short: "Conditional-access reverse proxy and nginx auth_request endpoint",
		Long: `Admit HTTP requests by the health of the host that makes them. Each request
carries the host's session report (Authorization: Vigil <report>) and a proof of
possession of the report's key, signed by its TPM for this request
(Vigil-PoP: <proof>; vigil agent prove, or the agent socket's POST /v1/proof).
Per route: a minimum level, trust-vector claims and a maximum report age.

As a proxy (--listen, --upstream) it strips client-supplied identity headers
(everything under Vigil-) and forwards the verified claims as Vigil-Agent,
Vigil-Level, Vigil-Status, Vigil-EK-SHA256, Vigil-Key-Thumbprint,
Vigil-Trust-Vector, …. As an nginx auth_request endpoint (--auth-listen) it
answers 204 with those headers, or 401/403 with Vigil-Refusal: <code>.
With --feed-url it refuses a host the moment the service revokes it or its
level drops, before its report expires.

The routes live in the config file (--config), with any of the flags above:

  listen: 127.0.0.1:8080
  upstream: http://127.0.0.1:9000
  audience: app.example.com
  ca: /etc/vigil/report-ca.pem
  feed-url: https://vigil.example.com:8443/v1/feed
  rp-token-file: /etc/vigil/gate.token
  routes:
    - path: /
      min-level: 2
    - path: /admin
      methods: [POST]
      min-level: 3
      max-age: 5m
      trust-vector: {executables: affirming}

Unknown keys are errors. Refusals are RFC 9457 problems with stable codes; see
docs/relying-parties.md.`,
		Example: `  vigil gate --config /etc/vigil/gate.yaml
  VIGIL_UPSTREAM=http://127.0.0.1:9000 vigil gate --config gate.yaml --listen :8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			routes, err := gateRoutes(g.Config)
			if err != nil {
				return usageErr("%v", err)
			}
			cfg := o.c
			cfg.Routes = routes
			gate, err := gatekeeper.NewGate(cfg, gatekeeper.GateOptions{Logger: g.logger})
			if err != nil {
				return usageErr("%v", err)
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			err = gate.Run(ctx, func(proxy, auth string) {
				if proxy != "" {
					fmt.Fprintf(g.stderr, "vigil gate: proxy on %s to %s\n", proxy, cfg.Upstream)
				}
				if auth != "" {
					fmt.Fprintf(g.stderr, "vigil gate: auth_request endpoint on %s\n", auth)
				}
			})
			if err != nil {
				return usageErr("%v", err)
			}
			return nil
		},
	}
	o.addFlags(c.Flags())
	return c
}
