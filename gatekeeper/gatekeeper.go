// Package gatekeeper admits HTTP requests by the health of the host that
// makes them: each request carries a Vigil session report
// (Authorization: Vigil <report>) and a proof of possession of the
// report's key, signed by the host's TPM for this request (Vigil-PoP:
// <proof>, RFC 9449-shaped). A route requires a minimum level,
// trust-vector claims and a maximum report age; the report's audience
// and the proof's method and URL must be the request's. The verified
// claims reach the handler through the request's context (FromContext).
// A refusal is an RFC 9457 problem with a stable Code.
//
// The same checks serve as middleware (Gatekeeper.Require), in the
// conditional-access reverse proxy `vigil gate` (Gate), and as an nginx
// auth_request endpoint (Gate.AuthHandler). A Feed, when given, refuses a
// host at once when the service revokes it or its level drops, before its
// report expires. See docs/relying-parties.md.
package gatekeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	veraison "github.com/veraison/ear"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/verdict"
)

// Request headers.
const (
	// HeaderAuthorization carries the session report: "Vigil <report>".
	HeaderAuthorization = "Authorization"
	// Scheme is the Authorization scheme of a session report.
	Scheme = "Vigil"
	// HeaderProof carries the proof of possession.
	HeaderProof = "Vigil-PoP"
	// maxHeader bounds the report and the proof as read from headers.
	maxHeader = 32 << 10
)

// Tier requirements of a trust-vector claim (Policy.TrustVector).
const (
	// TierAffirming: the claim is affirming (2–31).
	TierAffirming = verdict.Affirming
	// TierWarning: the claim is affirming or warning (2–95).
	TierWarning = verdict.Warning
)

// TrustClaims returns the EAR trust-vector claim names, sorted.
func TrustClaims() []string {
	var out []string
	for k := range (veraison.TrustVector{}).AsMap() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Policy is what a route requires of a request's host.
type Policy struct {
	// MinLevel is the least security level (0–4) of the report and, when
	// a feed is followed, of the host's latest level.
	MinLevel int `yaml:"min-level"`
	// TrustVector maps EAR trust-vector claims (TrustClaims) to the tier
	// each must reach: TierAffirming or TierWarning.
	TrustVector map[string]string `yaml:"trust-vector"`
	// MaxAge bounds how long ago the report was issued, with ear.Leeway
	// (0: until it expires).
	MaxAge time.Duration `yaml:"max-age"`
}

// requirement is p as package ear checks it (Verified.Require).
func (p Policy) requirement() ear.Requirement {
	return ear.Requirement{MinLevel: p.MinLevel, TrustVector: p.TrustVector, MaxAge: p.MaxAge}
}

// Validate checks a policy.
func (p Policy) Validate() error {
	if p.MinLevel < 0 || p.MinLevel > 4 {
		return fmt.Errorf("min-level %d, want 0 to 4", p.MinLevel)
	}
	if p.MaxAge < 0 {
		return fmt.Errorf("negative max-age %v", p.MaxAge)
	}
	known := TrustClaims()
	for c, tier := range p.TrustVector {
		if !containsString(known, c) {
			return fmt.Errorf("trust-vector claim %q, want one of %s", c, strings.Join(known, ", "))
		}
		if tier != TierAffirming && tier != TierWarning {
			return fmt.Errorf("trust-vector %s: tier %q, want affirming or warning", c, tier)
		}
	}
	return nil
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Options configure a Gatekeeper.
type Options struct {
	// Audience is the relying party's name (required): proofs must be
	// for it, and a report that names audiences must name it.
	Audience string
	// RequireReportAudience refuses reports issued for no audience
	// (ear.ReportAudience).
	RequireReportAudience bool
	// Keys verify the reports (required): CAKeys or a JWKS.
	Keys Keys
	// Replay remembers admitted proofs (an ear.MemoryReplayCache when
	// nil). Replicas of one relying party need a shared one.
	Replay ear.ReplayCache
	// Feed, when set, refuses hosts it says are revoked or fallen below
	// a route's level, and everyone while it is lost beyond its grace.
	Feed *Feed
	// ProofMaxAge bounds a proof's age (ear.DefaultProofMaxAge).
	ProofMaxAge time.Duration
	// PublicURL is the scheme and host clients address (for example
	// https://app.example.com): a proof's htu is checked against it and
	// the request's path. Empty: the request's own Host, with https when
	// the connection is TLS.
	PublicURL string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger logs refusals at debug level (discard when nil).
	Logger *slog.Logger
}

// Gatekeeper checks requests. Its methods are safe for concurrent use.
type Gatekeeper struct {
	o      Options
	public *url.URL
	log    *slog.Logger
}

// New checks the options.
func New(o Options) (*Gatekeeper, error) {
	if o.Audience == "" || o.Keys == nil {
		return nil, errors.New("gatekeeper: an audience and keys are required")
	}
	if o.Replay == nil {
		o.Replay = ear.NewMemoryReplayCache(0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gatekeeper{o: o, log: o.Logger}
	if o.PublicURL != "" {
		u, err := url.Parse(o.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("gatekeeper: public URL %q, want scheme://host[:port]", o.PublicURL)
		}
		g.public = u
	}
	return g, nil
}

// Admitted is a request the gatekeeper let through.
type Admitted struct {
	// Report is the verified session report, Proof the verified proof.
	Report *ear.Verified
	Proof  *ear.Proof
	// Level is the level admitted on: the report's, or the feed's when
	// lower.
	Level int
}

type admittedKey struct{}

// FromContext returns the admission of a request the middleware let
// through (nil otherwise).
func FromContext(ctx context.Context) *Admitted {
	a, _ := ctx.Value(admittedKey{}).(*Admitted)
	return a
}

// WithAdmitted returns ctx carrying a.
func WithAdmitted(ctx context.Context, a *Admitted) context.Context {
	return context.WithValue(ctx, admittedKey{}, a)
}

// Require is middleware: next runs only for requests that meet p, with
// the admission in their context; the others get the problem. An invalid
// p (Policy.Validate) panics when the route is built, as
// regexp.MustCompile does: it is the program's mistake, not a request's.
func (g *Gatekeeper) Require(p Policy, next http.Handler) http.Handler {
	if err := p.Validate(); err != nil {
		panic("gatekeeper: Require: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ref := g.Check(r.Context(), r.Header, r.Method, g.RequestURL(r), p)
		if ref != nil {
			WriteProblem(w, r, ref.Code, ref.Detail)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithAdmitted(r.Context(), a)))
	})
}

// RequestURL is the URL a client addressed r to, as a proof's htu names
// it: PublicURL (or r's Host and TLS) and r's path.
func (g *Gatekeeper) RequestURL(r *http.Request) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if g.public != nil {
		scheme, host = g.public.Scheme, g.public.Host
	}
	return (&url.URL{Scheme: scheme, Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath}).String()
}

// Check decides a request from its headers, method and URL (the URL the
// client addressed) under p. The order: the feed's health, the headers,
// the report (by Keys), the proof (ear.VerifyProof: key, ath, audience,
// method, URL, age, replay), the route's level, trust vector and age
// (ear.Verified.Require), then the feed's word on the host.
func (g *Gatekeeper) Check(ctx context.Context, h http.Header, method, reqURL string, p Policy) (*Admitted, *Refusal) {
	now := g.o.Now()
	if g.o.Feed != nil {
		if ref := g.o.Feed.Healthy(now); ref != nil {
			return nil, ref
		}
	}
	report, proof, ref := credentials(h)
	if ref != nil {
		return nil, ref
	}
	v, err := g.o.Keys.Verify(ctx, report, now)
	if err != nil {
		return nil, refusal(err)
	}
	if proof == "" {
		return nil, refuse(Code(ear.ProofMissing), "no "+HeaderProof+" header: a session report alone is a bearer token")
	}
	pr, err := ear.VerifyProof(ctx, proof, v, ear.ProofExpect{
		Audience: g.o.Audience, Method: method, URL: reqURL, Now: now, MaxAge: g.o.ProofMaxAge,
		RequireReportAudience: g.o.RequireReportAudience,
	}, g.o.Replay)
	if err != nil {
		return nil, refusal(err)
	}
	if err := v.Require(p.requirement(), now); err != nil {
		return nil, refusal(err)
	}
	c := &v.Claims
	level := c.Level
	if g.o.Feed != nil {
		if s, ok := g.o.Feed.Standing(c.AgentID); ok {
			if s.Revoked {
				return nil, refuse(AgentRevoked, "the service revoked agent "+c.AgentID)
			}
			if s.Level >= 0 && s.Level < level {
				level = s.Level
			}
			if level < p.MinLevel {
				return nil, refuse(LevelDropped, fmt.Sprintf("agent %s is now at level %d, the route requires %d", c.AgentID, level, p.MinLevel))
			}
		}
	}
	return &Admitted{Report: v, Proof: pr, Level: level}, nil
}

// credentials reads the report and the proof from the headers: exactly
// one Authorization: Vigil <report>, at most one Vigil-PoP.
func credentials(h http.Header) (report, proof string, ref *Refusal) {
	auth := h.Values(HeaderAuthorization)
	var vigil []string
	for _, a := range auth {
		scheme, rest, _ := strings.Cut(a, " ")
		if strings.EqualFold(scheme, Scheme) {
			vigil = append(vigil, strings.TrimSpace(rest))
		}
	}
	switch {
	case len(vigil) == 0:
		return "", "", refuse(TokenMissing, "no Authorization: Vigil <session report> header")
	case len(vigil) > 1:
		return "", "", refuse(HeaderMalformed, "more than one Vigil Authorization header")
	case vigil[0] == "" || len(vigil[0]) > maxHeader:
		return "", "", refuse(HeaderMalformed, "the Vigil Authorization header's report is empty or too long")
	}
	proofs := h.Values(HeaderProof)
	switch {
	case len(proofs) > 1:
		return "", "", refuse(HeaderMalformed, "more than one "+HeaderProof+" header")
	case len(proofs) == 1 && (len(proofs[0]) > maxHeader || strings.TrimSpace(proofs[0]) == ""):
		return "", "", refuse(HeaderMalformed, "the "+HeaderProof+" header is empty or too long")
	case len(proofs) == 1:
		proof = strings.TrimSpace(proofs[0])
	}
	return vigil[0], proof, nil
}

// refusal turns a Keys or ear error into a refusal.
func refusal(err error) *Refusal {
	var ref *Refusal
	if errors.As(err, &ref) {
		return ref
	}
	if c := ear.Of(err); c != "" {
		if _, ok := problems[Code(c)]; ok {
			return refuse(Code(c), err.Error())
		}
	}
	return refuse(Internal, err.Error())
}
