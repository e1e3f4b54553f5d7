package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/trust"
	"github.com/vigil-attest/vigil/verdict"
)

func newTokenCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "token",
		Short: "Session reports, as a relying party sees them",
		Long: `A session report is the signed EAR token the attestation service issues for a
host: its level, trust vector, failures, and the host's report key (cnf). A
relying party verifies it offline against the service's report CA (served at
/.well-known/vigil-ca.pem) or its JWKS (/.well-known/jwks.json), together with
a proof of possession signed by the host's TPM. See docs/session-report.md.`,
	}
	c.AddCommand(newTokenVerifyCmd(g))
	return c
}

// tokenVerifyOptions are `vigil token verify`'s flags.
type tokenVerifyOptions struct {
	CA       string
	JWKS     string
	Proof    string
	Aud      string
	Nonce    string
	Method   string
	URL      string
	MinLevel int
	MaxAge   time.Duration
	Output   string
	// RequireAud refuses a report naming no audience (with --aud).
	RequireAud bool
}

// tokenVerifyOutput is what `vigil token verify -o json` prints; stable
// for scripts.
type tokenVerifyOutput struct {
	// Valid is true when every check held (exit 0).
	Valid bool `json:"valid"`
	// Code is the refusal's stable code (ear.Code), Detail its words.
	Code   string `json:"code,omitempty"`
	Detail string `json:"detail,omitempty"`
	// The report's claims, when its signature verified.
	AgentID     string            `json:"agent_id,omitempty"`
	Level       *int              `json:"level,omitempty"`
	LevelName   string            `json:"level_name,omitempty"`
	Status      string            `json:"status,omitempty"`
	Issuer      string            `json:"issuer,omitempty"`
	Audience    []string          `json:"audience,omitempty"`
	IssuedAt    *time.Time        `json:"issued_at,omitempty"`
	Expires     *time.Time        `json:"expires,omitempty"`
	EKSHA256    string            `json:"ek_sha256,omitempty"`
	KID         string            `json:"kid,omitempty"`
	TrustVector map[string]int    `json:"trust_vector,omitempty"`
	Provenance  map[string]string `json:"provenance,omitempty"`
	Failures    []verdict.Failure `json:"failures,omitempty"`
	// Proof is the proof of possession, when --proof was given and it
	// held.
	Proof *proofOutput `json:"proof,omitempty"`
}

type proofOutput struct {
	Thumbprint string `json:"thumbprint"`
	Alg        string `json:"alg"`
	JTI        string `json:"jti"`
	IssuedAt   int64  `json:"iat"`
}

func newTokenVerifyCmd(g *globalOptions) *cobra.Command {
	o := &tokenVerifyOptions{}
	c := &cobra.Command{
		Use:   "verify [FILE|-]",
		Short: "Verify a session report offline, optionally with its proof of possession",
		Long: `Verify a session report (a file, or standard input when FILE is - or absent)
against the service's report CA (--ca, a PEM file) or its JWKS (--jwks, a file or
an http(s) URL): the ES256 signature, the x5c chain to the CA (with --ca), the
times, the claims. Then, as a relying party admits it: --min-level, --max-age
(since iat) and --aud (the report's aud must name it when it carries one).

With --proof, the proof of possession (a vigil-pop+jwt JWS, as 'vigil agent
prove' prints it) must be signed by the report's cnf key, hash this report
(ath), and carry --aud, --nonce and, when given, --htm and --htu; it must be at
most 60 s old.

Exit codes: 0 the report (and proof) hold, 1 refused (the reason code is
printed, and is "code" in JSON), 2 usage or I/O error.`,
		Example: `  vigil token verify --ca vigil-ca.pem report.jwt
  curl -s https://vigil.example/.well-known/vigil-ca.pem > ca.pem
  vigil agent prove --aud https://bank.example --nonce N -o json > p.json
  jq -r .session_report p.json | vigil token verify --ca ca.pem --min-level 2 \
      --proof <(jq -r .proof p.json) --aud https://bank.example --nonce N -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := "-"
			if len(args) == 1 {
				in = args[0]
			}
			return o.run(cmd.Context(), g, cmd.InOrStdin(), in)
		},
	}
	f := c.Flags()
	f.StringVar(&o.CA, "ca", "", "the service's report CA (PEM), as served at /.well-known/vigil-ca.pem")
	f.StringVar(&o.JWKS, "jwks", "", "the service's JWKS: a file, or an http(s) URL such as https://vigil.example/.well-known/jwks.json")
	f.StringVar(&o.Proof, "proof", "", "a proof of possession (file) to check with the report (needs --aud)")
	f.StringVar(&o.Aud, "aud", "", "this relying party's name: the proof's aud, and the report's aud when it names any")
	f.BoolVar(&o.RequireAud, "require-aud", false, "refuse a report that names no audience (with --aud)")
	f.StringVar(&o.Nonce, "nonce", "", "the nonce this relying party gave the client (with --proof)")
	f.StringVar(&o.Method, "htm", "", "the HTTP method the proof must be bound to (with --htu)")
	f.StringVar(&o.URL, "htu", "", "the HTTP URL the proof must be bound to (with --htm)")
	f.IntVar(&o.MinLevel, "min-level", 0, "the lowest level admitted (0-4)")
	f.DurationVar(&o.MaxAge, "max-age", 0, "the oldest report admitted, since its iat (e.g. 5m; 0: up to its exp)")
	f.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	return c
}

// maxJWKSFetch bounds fetching a JWKS URL.
const maxJWKSFetch = 10 * time.Second

func (o *tokenVerifyOptions) run(ctx context.Context, g *globalOptions, stdin io.Reader, in string) error {
	if o.Output != "text" && o.Output != "json" {
		return usageErr("--output must be text or json")
	}
	if (o.CA == "") == (o.JWKS == "") {
		return usageErr("give --ca or --jwks (one of them)")
	}
	if o.MinLevel < 0 || o.MinLevel > int(verdict.MaxLevel) {
		return usageErr("--min-level %d: want 0-%d", o.MinLevel, int(verdict.MaxLevel))
	}
	if o.MaxAge < 0 {
		return usageErr("--max-age: negative")
	}
	if o.Proof != "" && o.Aud == "" {
		return usageErr("--proof needs --aud")
	}
	if o.Proof == "" && (o.Nonce != "" || o.Method != "" || o.URL != "") {
		return usageErr("--nonce, --htm and --htu go with --proof")
	}
	if (o.Method == "") != (o.URL == "") {
		return usageErr("--htm and --htu go together")
	}
	if o.RequireAud && o.Aud == "" {
		return usageErr("--require-aud needs --aud")
	}
	if in == "-" && o.Proof == "-" {
		return usageErr("the report and --proof cannot both come from standard input")
	}
	tok, err := readInput(stdin, in, ear.MaxSize)
	if err != nil {
		return &exitError{code: ExitUsage, err: err}
	}
	var proof string
	if o.Proof != "" {
		if proof, err = readInput(stdin, o.Proof, ear.MaxProofSize); err != nil {
			return &exitError{code: ExitUsage, err: fmt.Errorf("--proof: %w", err)}
		}
	}
	now := time.Now()
	var v *ear.Verified
	if o.CA != "" {
		certs, cerr := trust.LoadCertificates(o.CA)
		if cerr != nil {
			return usageErr("--ca: %v", cerr)
		}
		roots := x509.NewCertPool()
		for _, c := range certs {
			roots.AddCert(c)
		}
		v, err = ear.Verify(tok, roots, now)
	} else {
		jwks, jerr := loadJWKS(ctx, o.JWKS)
		if jerr != nil {
			return usageErr("--jwks: %v", jerr)
		}
		v, err = ear.VerifyJWKS(tok, jwks, now)
		if err != nil && ear.Of(err) == "" {
			return usageErr("--jwks: %v", err)
		}
	}
	out := tokenVerifyOutput{}
	if err == nil {
		out.fill(v)
		err = v.Require(ear.Requirement{MinLevel: o.MinLevel, MaxAge: o.MaxAge}, now)
	}
	if err == nil && o.Aud != "" && (len(v.Claims.Audience) > 0 || o.RequireAud) {
		err = v.Require(ear.Requirement{Audience: o.Aud}, now)
	}
	if err == nil && o.Proof != "" {
		var p *ear.Proof
		p, err = ear.VerifyProof(ctx, proof, v, ear.ProofExpect{
			Audience: o.Aud, Nonce: o.Nonce, Method: o.Method, URL: o.URL, Now: now, RequireReportAudience: o.RequireAud,
		}, ear.NewMemoryReplayCache(1))
		if err == nil {
			out.Proof = &proofOutput{Thumbprint: p.Thumbprint, Alg: p.Alg, JTI: p.Claims.ID, IssuedAt: p.Claims.IssuedAt}
		}
	}
	if err != nil && ear.Of(err) == "" {
		return usageErr("%v", err)
	}
	out.Valid = err == nil
	if err != nil {
		out.Code, out.Detail = string(ear.Of(err)), err.Error()
	}
	return o.print(g.stdout, &out)
}

func (out *tokenVerifyOutput) fill(v *ear.Verified) {
	c := &v.Claims
	lvl := c.Level
	iat, exp := c.IssuedAt.UTC(), c.Expiry.UTC()
	out.AgentID, out.Level, out.LevelName, out.Status = c.AgentID, &lvl, verdict.Level(c.Level).String(), c.Status
	out.Issuer, out.Audience, out.IssuedAt, out.Expires = c.Issuer, c.Audience, &iat, &exp
	out.EKSHA256, out.KID, out.TrustVector, out.Provenance, out.Failures = c.EKSHA256, v.KID, c.TrustVector, c.Provenance, c.Failures
}

func (o *tokenVerifyOptions) print(w io.Writer, out *tokenVerifyOutput) error {
	if o.Output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
	} else {
		if out.Level != nil {
			fmt.Fprintf(w, "session report of %s: level %d (%s), %s, issued %s by %s, expires %s\n",
				out.AgentID, *out.Level, out.LevelName, out.Status, out.IssuedAt.Format(time.RFC3339), out.Issuer, out.Expires.Format(time.RFC3339))
			if len(out.Audience) > 0 {
				fmt.Fprintf(w, "  for: %s\n", strings.Join(out.Audience, ", "))
			}
			for _, f := range out.Failures {
				fmt.Fprintf(w, "  %s: %s (caps below level %d)\n", f.Claim, f.Reason, f.Level)
			}
		}
		if out.Proof != nil {
			fmt.Fprintf(w, "proof of possession: %s by key %s, jti %s\n", out.Proof.Alg, out.Proof.Thumbprint, out.Proof.JTI)
		}
		if out.Valid {
			fmt.Fprintln(w, "valid")
		} else {
			fmt.Fprintf(w, "refused: %s: %s\n", out.Code, out.Detail)
		}
	}
	if !out.Valid {
		return &exitError{code: ExitDenied}
	}
	return nil
}

// readInput reads a token or proof from a file, or stdin for "-", at
// most max bytes, without surrounding white space.
func readInput(stdin io.Reader, path string, max int64) (string, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > max {
		return "", fmt.Errorf("%s: more than %d bytes", path, max)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return s, nil
}

// loadJWKS reads a JWKS file, or fetches an http(s) URL.
func loadJWKS(ctx context.Context, src string) ([]byte, error) {
	if !strings.HasPrefix(src, "https://") && !strings.HasPrefix(src, "http://") {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	ctx, cancel := context.WithTimeout(ctx, maxJWKSFetch)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", src, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, ear.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > ear.MaxSize {
		return nil, errors.New("the JWKS exceeds 1 MiB")
	}
	return b, nil
}
