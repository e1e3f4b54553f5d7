package gatekeeper

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultHeaderPrefix is the prefix of the claims headers the gate
// forwards (and of every client header it strips).
const DefaultHeaderPrefix = "Vigil-"

// Headers the auth_request endpoint reads (nginx sets them).
const (
	HeaderOriginalMethod = "X-Original-Method"
	HeaderOriginalURI    = "X-Original-URI"
	// HeaderRefusal carries the refusal's code on the auth_request
	// endpoint's 401 and 403 (nginx discards the body): auth_request_set
	// $vigil_refusal $upstream_http_vigil_refusal.
	HeaderRefusal = "Vigil-Refusal"
)

// Route is a path prefix and what it requires.
type Route struct {
	// Path is a prefix of the request path, matched at a segment
	// boundary ("/api" takes /api and /api/x, not /apix); the longest
	// match wins.
	Path string `yaml:"path"`
	// Methods, when set, restrict the route to these methods.
	Methods []string `yaml:"methods"`
	Policy  `yaml:",inline"`
}

// Config is `vigil gate`'s configuration (YAML keys are the flag names).
type Config struct {
	// Listen is the reverse proxy's address (Upstream required), and
	// AuthListen the nginx auth_request endpoint's: at least one.
	Listen     string `yaml:"listen"`
	AuthListen string `yaml:"auth-listen"`
	// Upstream is the URL the proxy forwards admitted requests to.
	Upstream string `yaml:"upstream"`
	// Audience is this relying party's name (Options.Audience).
	Audience string `yaml:"audience"`
	// RequireReportAudience: Options.RequireReportAudience.
	RequireReportAudience bool `yaml:"require-report-audience"`
	// PublicURL is what clients address (Options.PublicURL).
	PublicURL string `yaml:"public-url"`
	// CA is the report CA file (PEM); JWKSURL the service's JWKS
	// instead (exactly one of them).
	CA      string `yaml:"ca"`
	JWKSURL string `yaml:"jwks-url"`
	// FeedURL is the service's /v1/feed and RPTokenFile the file holding
	// a feed-scoped relying-party token; FeedGrace is FeedOptions.Grace.
	FeedURL     string        `yaml:"feed-url"`
	RPTokenFile string        `yaml:"rp-token-file"`
	FeedGrace   time.Duration `yaml:"feed-grace"`
	// ProofMaxAge: Options.ProofMaxAge.
	ProofMaxAge time.Duration `yaml:"proof-max-age"`
	// HeaderPrefix names the forwarded claims headers
	// (DefaultHeaderPrefix).
	HeaderPrefix string `yaml:"header-prefix"`
	// Routes are the admitted paths; a request no route takes is refused
	// (NoRoute).
	Routes []Route `yaml:"routes"`
}

// Validate checks a configuration.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Listen == "" && c.AuthListen == "" {
		bad("listen or auth-listen is required")
	}
	if c.Listen != "" && c.Upstream == "" {
		bad("listen needs an upstream")
	}
	if c.Upstream != "" {
		if u, err := url.Parse(c.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("upstream %q: want an http(s) URL", c.Upstream)
		}
	}
	if c.Audience == "" {
		bad("audience is required: this relying party's name, the aud of its proofs")
	}
	if (c.CA == "") == (c.JWKSURL == "") {
		bad("exactly one of ca and jwks-url is required")
	}
	if (c.FeedURL == "") != (c.RPTokenFile == "") {
		bad("feed-url and rp-token-file go together")
	}
	if c.HeaderPrefix != "" && (!strings.HasSuffix(c.HeaderPrefix, "-") || strings.ContainsAny(c.HeaderPrefix, " :\r\n")) {
		bad("header-prefix %q: want a token ending in '-'", c.HeaderPrefix)
	}
	if len(c.Routes) == 0 {
		bad("no routes: the gate admits nothing")
	}
	seen := map[string]bool{}
	for i, r := range c.Routes {
		if !strings.HasPrefix(r.Path, "/") {
			bad("routes[%d]: path %q must start with /", i, r.Path)
		}
		for _, m := range r.Methods {
			if m == "" || strings.ToUpper(m) != m {
				bad("routes[%d]: method %q must be upper case", i, m)
			}
		}
		key := r.Path + " " + strings.Join(r.Methods, ",")
		if seen[key] {
			bad("routes[%d]: %s is listed twice", i, key)
		}
		seen[key] = true
		if err := r.Policy.Validate(); err != nil {
			bad("routes[%d] (%s): %v", i, r.Path, err)
		}
	}
	return errors.Join(errs...)
}

// GateOptions are what a Gate takes beside its Config.
type GateOptions struct {
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Client fetches the JWKS and follows the feed (defaults when nil).
	Client *http.Client
	// Roots, when set, replace the Config.CA file (tests, embedding).
	Roots *x509.CertPool
}

// Gate is the conditional-access reverse proxy and auth_request endpoint.
type Gate struct {
	cfg    Config
	gk     *Gatekeeper
	feed   *Feed
	proxy  *httputil.ReverseProxy
	prefix string
	log    *slog.Logger
}

// NewGate builds a gate from a validated configuration.
func NewGate(cfg Config, o GateOptions) (*Gate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gatekeeper: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gate{cfg: cfg, prefix: cfg.HeaderPrefix, log: o.Logger}
	if g.prefix == "" {
		g.prefix = DefaultHeaderPrefix
	}
	var keys Keys
	switch {
	case o.Roots != nil:
		keys = CAKeys(o.Roots)
	case cfg.CA != "":
		k, err := LoadCA(cfg.CA)
		if err != nil {
			return nil, err
		}
		keys = k
	default:
		keys = NewJWKS(cfg.JWKSURL, JWKSOptions{Client: o.Client})
	}
	if cfg.FeedURL != "" {
		b, err := os.ReadFile(cfg.RPTokenFile)
		if err != nil {
			return nil, fmt.Errorf("gatekeeper: rp-token-file: %w", err)
		}
		var client *http.Client
		if o.Client != nil {
			client = &http.Client{Transport: o.Client.Transport}
		}
		f, err := NewFeed(FeedOptions{URL: cfg.FeedURL, Token: strings.TrimSpace(string(b)), Client: client,
			Grace: cfg.FeedGrace, Logger: o.Logger, Now: o.Now})
		if err != nil {
			return nil, err
		}
		g.feed = f
	}
	gk, err := New(Options{
		Audience: cfg.Audience, RequireReportAudience: cfg.RequireReportAudience, Keys: keys, Feed: g.feed,
		ProofMaxAge: cfg.ProofMaxAge, PublicURL: cfg.PublicURL, Now: o.Now, Logger: o.Logger,
	})
	if err != nil {
		return nil, err
	}
	g.gk = gk
	if cfg.Upstream != "" {
		up, _ := url.Parse(cfg.Upstream)
		g.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(up)
				pr.SetXForwarded()
				g.StripIdentity(pr.Out.Header)
				if a := FromContext(pr.In.Context()); a != nil {
					g.SetClaims(pr.Out.Header, a)
				}
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				g.log.Warn("gate: the upstream failed", "err", err, "path", r.URL.Path)
				WriteProblem(w, r, UpstreamUnavailable, "the upstream did not answer")
			},
			ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		}
	}
	return g, nil
}

// Feed is the gate's feed (nil without feed-url).
func (g *Gate) Feed() *Feed { return g.feed }

// route returns the policy of the longest route taking path and method.
func (g *Gate) route(method, path string) (*Route, bool) {
	var best *Route
	for i := range g.cfg.Routes {
		r := &g.cfg.Routes[i]
		if len(r.Methods) > 0 && !containsString(r.Methods, method) {
			continue
		}
		p := strings.TrimSuffix(r.Path, "/")
		if path != p && !strings.HasPrefix(path, p+"/") && r.Path != "/" {
			continue
		}
		if best == nil || len(r.Path) > len(best.Path) {
			best = r
		}
	}
	return best, best != nil
}

// decide runs the route's checks.
func (g *Gate) decide(ctx context.Context, h http.Header, method, path, reqURL string) (*Admitted, *Refusal) {
	rt, ok := g.route(method, path)
	if !ok {
		return nil, refuse(NoRoute, fmt.Sprintf("no route takes %s %s", method, path))
	}
	return g.gk.Check(ctx, h, method, reqURL, rt.Policy)
}

// ProxyHandler is the reverse proxy: admitted requests reach the upstream
// without the client's identity headers and with the verified claims.
func (g *Gate) ProxyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ref := g.decide(r.Context(), r.Header, r.Method, r.URL.Path, g.gk.RequestURL(r))
		if ref != nil {
			g.log.Info("gate: refused", "code", ref.Code, "method", r.Method, "path", r.URL.Path, "detail", ref.Detail)
			WriteProblem(w, r, ref.Code, ref.Detail)
			return
		}
		g.log.Debug("gate: admitted", "agent", a.Report.Claims.AgentID, "level", a.Level, "method", r.Method, "path", r.URL.Path)
		g.proxy.ServeHTTP(w, r.WithContext(WithAdmitted(r.Context(), a)))
	})
}

// AuthHandler is the nginx auth_request endpoint: it decides the request
// nginx names in X-Original-Method and X-Original-URI, with the client's
// headers nginx passes, and answers 204 with the claims headers, or 401
// or 403 (nginx accepts no other refusal) with Vigil-Refusal: <code> and
// the problem. It trusts those headers: only nginx may reach it.
func (g *Gate) AuthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, uri := r.Header.Get(HeaderOriginalMethod), r.Header.Get(HeaderOriginalURI)
		u, err := url.ParseRequestURI(uri)
		if method == "" || err != nil {
			g.authRefuse(w, r, refuse(AuthRequestMalformed, "X-Original-Method and X-Original-URI (the request URI) are required"))
			return
		}
		orig := &http.Request{Method: method, URL: u, Host: r.Host, TLS: r.TLS, Header: r.Header}
		a, ref := g.decide(r.Context(), r.Header, method, u.Path, g.gk.RequestURL(orig))
		if ref != nil {
			g.log.Info("gate: refused (auth_request)", "code", ref.Code, "method", method, "path", u.Path, "detail", ref.Detail)
			g.authRefuse(w, r, ref)
			return
		}
		g.SetClaims(w.Header(), a)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

func (g *Gate) authRefuse(w http.ResponseWriter, r *http.Request, ref *Refusal) {
	w.Header().Set(HeaderRefusal, string(ref.Code))
	st := ref.Code.Status()
	if st != http.StatusUnauthorized && st < 500 {
		// nginx takes 401 and 403 as refusals and anything else as its
		// own error: every other client error is a 403.
		st = http.StatusForbidden
	}
	writeProblem(w, r, ref.Code, ref.Detail, st)
}

// StripIdentity removes what a client might pass as identity: every
// header under the gate's prefix (Vigil-Agent, Vigil-Level, Vigil-PoP, …)
// and the Authorization headers of the Vigil scheme.
func (g *Gate) StripIdentity(h http.Header) {
	for k := range h {
		if len(k) >= len(g.prefix) && strings.EqualFold(k[:len(g.prefix)], g.prefix) {
			delete(h, k)
		}
	}
	if auth := h.Values(HeaderAuthorization); len(auth) > 0 {
		var keep []string
		for _, a := range auth {
			scheme, _, _ := strings.Cut(a, " ")
			if !strings.EqualFold(scheme, Scheme) {
				keep = append(keep, a)
			}
		}
		if len(keep) == 0 {
			h.Del(HeaderAuthorization)
		} else {
			h[HeaderAuthorization] = keep
		}
	}
}

// Claims headers, after the prefix.
const (
	ClaimAgent      = "Agent"
	ClaimLevel      = "Level"
	ClaimStatus     = "Status"
	ClaimEK         = "EK-SHA256"
	ClaimKey        = "Key-Thumbprint"
	ClaimIssuedAt   = "Report-Issued-At"
	ClaimTrust      = "Trust-Vector"
	ClaimIssuer     = "Issuer"
	ClaimPolicyHash = "Policy-Digest"
)

// SetClaims sets the verified claims as headers under the prefix.
func (g *Gate) SetClaims(h http.Header, a *Admitted) {
	c := &a.Report.Claims
	set := func(name, v string) {
		if v != "" && !strings.ContainsAny(v, "\r\n") {
			h.Set(g.prefix+name, v)
		}
	}
	set(ClaimAgent, c.AgentID)
	set(ClaimLevel, strconv.Itoa(a.Level))
	set(ClaimStatus, c.Status)
	set(ClaimEK, c.EKSHA256)
	set(ClaimKey, a.Proof.Thumbprint)
	set(ClaimIssuedAt, c.IssuedAt.UTC().Format(time.RFC3339))
	set(ClaimIssuer, c.Issuer)
	set(ClaimPolicyHash, c.PolicyDigest)
	var tv []string
	for k, v := range c.TrustVector {
		tv = append(tv, k+"="+strconv.Itoa(v))
	}
	sort.Strings(tv)
	set(ClaimTrust, strings.Join(tv, ","))
}

// Run serves the proxy on Listen and the auth_request endpoint on
// AuthListen (whichever are set) and follows the feed, until ctx ends;
// then it shuts down gracefully. ready, when not nil, gets the
// listeners' addresses once they listen (proxy first; "" when unset).
func (g *Gate) Run(ctx context.Context, ready func(proxy, auth string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if g.feed != nil {
		wg.Go(func() { g.feed.Run(ctx) })
	}
	var servers []*http.Server
	addrs := [2]string{}
	errc := make(chan error, 2)
	for i, l := range []struct {
		addr string
		h    func() http.Handler
	}{{g.cfg.Listen, g.ProxyHandler}, {g.cfg.AuthListen, g.AuthHandler}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("gate: listening on %s: %w", l.addr, err)
		}
		addrs[i] = ln.Addr().String()
		hs := &http.Server{
			Handler: l.h(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 128 << 10, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		}
		servers = append(servers, hs)
		go func() { errc <- hs.Serve(ln) }()
	}
	if ready != nil {
		ready(addrs[0], addrs[1])
	}
	g.log.Info("gate: serving", "proxy", addrs[0], "auth", addrs[1], "upstream", g.cfg.Upstream, "audience", g.cfg.Audience)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	for _, hs := range servers {
		if serr := hs.Shutdown(sctx); serr != nil {
			hs.Close()
		}
	}
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
