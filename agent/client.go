package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/evidence"
)

// MaxResponse bounds every response body the client reads: 1 MiB, far
// above a session report with its certificate chain and failures.
const MaxResponse = 1 << 20

// DefaultTimeout bounds one request, from dialling to the last byte of
// the response.
const DefaultTimeout = 30 * time.Second

// Version is the agent's version in its User-Agent (vigil-agent/Version):
// the module version of the build, "devel" for a build from a checkout.
var Version = buildVersion()

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == "github.com/vigil-attest/vigil" &&
		bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// pemType is the media type of a PEM answer (the service CA).
const pemType = "application/x-pem-file"

// ErrResponse is a response the client cannot use: not JSON, too large,
// trailing data, or missing what the API promises.
var ErrResponse = errors.New("malformed response from the service")

// ProblemError is the service's refusal: an RFC 9457 problem (Code set),
// or an HTTP error without one (Code empty; Detail is the start of the
// body). Test it with errors.As.
type ProblemError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the problem's stable code (api.Code*).
	Code   string
	Detail string
	// RetryAfter is the response's Retry-After, when it gave one in
	// seconds (429, 503).
	RetryAfter time.Duration
}

func (e *ProblemError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "service answered %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	return b.String()
}

// Temporary reports whether the same request may succeed later without a
// change on the agent's side: rate limits, timeouts and server errors.
func (e *ProblemError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// IsProblem reports whether err is a ProblemError with one of codes.
func IsProblem(err error, codes ...string) bool {
	var pe *ProblemError
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if pe.Code == c {
			return true
		}
	}
	return false
}

// ClientOptions configure NewClient.
type ClientOptions struct {
	// CAFile is a PEM file of CA certificates to trust for the service's
	// TLS certificate instead of the system roots (the service's
	// development CA, /.well-known/vigil-ca.pem).
	CAFile string
	// RootCAs, when set, are the trusted roots (tests); CAFile is added.
	RootCAs *x509.CertPool
	// Timeout bounds each request; 0 means DefaultTimeout.
	Timeout time.Duration
	// AdminToken is the admin API's bearer token, sent only by the admin
	// methods (ListAgents, Agent, Approve, Revoke).
	AdminToken string
}

// Client speaks the attestation service's API (package api). It never
// follows redirects and reads at most MaxResponse bytes of a response. Its
// methods are safe for concurrent use.
type Client struct {
	base       *url.URL
	http       *http.Client
	userAgent  string
	adminToken string
}

// NewClient returns a client of the service at baseURL (http or https,
// no query).
func NewClient(baseURL string, o ClientOptions) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("service URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("service URL %q: want http(s)://HOST[:PORT][/PATH]", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	roots := o.RootCAs
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		if roots == nil {
			roots = x509.NewCertPool()
		} else {
			roots = roots.Clone()
		}
		if !roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", o.CAFile)
		}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	return &Client{
		base: u,
		http: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		userAgent:  "vigil-agent/" + Version,
		adminToken: o.AdminToken,
	}, nil
}

// URL is the service's base URL.
func (c *Client) URL() string { return c.base.String() }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Enroll posts the agent's keys (api.PathEnroll).
func (c *Client) Enroll(ctx context.Context, req *api.EnrollRequest) (*api.EnrollResponse, error) {
	var out api.EnrollResponse
	if err := c.do(ctx, call{method: http.MethodPost, path: api.PathEnroll, contentType: "application/json", body: req}, &out); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if out.Status == "" {
		return nil, fmt.Errorf("enroll: %w: no status", ErrResponse)
	}
	return &out, nil
}

// Activate answers the credential-activation challenge
// (api.PathActivate); the response says where enrollment stands now.
func (c *Client) Activate(ctx context.Context, req *api.ActivateRequest) (*api.EnrollResponse, error) {
	var out api.EnrollResponse
	if err := c.do(ctx, call{method: http.MethodPost, path: api.PathActivate, contentType: "application/json", body: req}, &out); err != nil {
		return nil, fmt.Errorf("activate: %w", err)
	}
	if out.Status == "" {
		return nil, fmt.Errorf("activate: %w: no status", ErrResponse)
	}
	return &out, nil
}

// Challenge asks for a fresh nonce for agentID (api.PathChallenge)
// without a key proof: the service answers every valid ID with a bare
// nonce (no replay hints).
func (c *Client) Challenge(ctx context.Context, agentID string) (*api.Challenge, error) {
	return c.ChallengeProved(ctx, agentID, nil)
}

// ChallengeProved asks for a fresh nonce for agentID with a key proof
// (evidence.ProveKey for api.ChallengePurpose): the service then answers
// with the agent's replay hints, or says it is pending or revoked. A nil
// proof is Challenge.
func (c *Client) ChallengeProved(ctx context.Context, agentID string, proof *evidence.KeyProof) (*api.Challenge, error) {
	var out api.Challenge
	if err := c.do(ctx, call{method: http.MethodPost, path: api.PathChallenge, id: agentID, contentType: "application/json", body: api.ChallengeRequest{Proof: proof}}, &out); err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	if out.Nonce == "" || out.IMAOffset < 0 {
		return nil, fmt.Errorf("challenge: %w: no nonce or a negative IMA offset", ErrResponse)
	}
	return &out, nil
}

// Attest posts evidence for agentID (api.PathAttest) and returns the
// appraisal with its session report, issued for audience (its aud) when
// given.
func (c *Client) Attest(ctx context.Context, agentID string, ev *evidence.Evidence, audience ...string) (*api.AttestResponse, error) {
	var out api.AttestResponse
	var q url.Values
	if len(audience) > 0 {
		q = url.Values{api.QueryAudience: audience}
	}
	if err := c.do(ctx, call{method: http.MethodPost, path: api.PathAttest, id: agentID, query: q, contentType: evidence.MediaType, body: ev}, &out); err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	if out.Status == "" {
		return nil, fmt.Errorf("attest: %w: no status", ErrResponse)
	}
	return &out, nil
}

// ServiceCA fetches the service CA certificate that signs the session
// reports (api.PathCA, PEM). Over an untrusted channel this is trust on
// first use: the agent pins what it gets (Agent.Enroll).
func (c *Client) ServiceCA(ctx context.Context) ([]byte, error) {
	var out pemBody
	if err := c.do(ctx, call{method: http.MethodGet, path: api.PathCA}, &out); err != nil {
		return nil, fmt.Errorf("service CA: %w", err)
	}
	return out, nil
}

// pemBody is a PEM answer (application/x-pem-file) as is.
type pemBody []byte

// call is one request: method and path ({id} replaced by id), an optional
// query, and for POST a body sent as contentType. admin sends the admin
// bearer token.
type call struct {
	method, path, id string
	query            url.Values
	contentType      string
	body             any
	admin            bool
}

// do sends the call and decodes a 2xx JSON answer into out; any other
// answer is a *ProblemError.
func (c *Client) do(ctx context.Context, k call, out any) error {
	path := k.path
	if strings.Contains(path, "{id}") {
		if err := ValidateID(k.id); err != nil {
			return err
		}
		path = strings.Replace(path, "{id}", url.PathEscape(k.id), 1)
	}
	var rd io.Reader
	if k.method != http.MethodGet {
		var raw []byte
		var err error
		if ev, ok := k.body.(*evidence.Evidence); ok {
			raw, err = ev.Encode()
		} else {
			raw, err = json.Marshal(k.body)
		}
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(raw)
	}
	u := *c.base
	u.Path += path
	u.RawQuery = k.query.Encode()
	req, err := http.NewRequestWithContext(ctx, k.method, u.String(), rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", k.contentType)
	}
	if k.admin {
		if c.adminToken == "" {
			return errors.New("no admin token (--admin-token-file)")
		}
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	accept := "application/json, application/problem+json"
	if _, ok := out.(*pemBody); ok {
		accept = pemType + ", application/problem+json"
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readResponse(resp, out)
}

// readResponse reads at most MaxResponse bytes of a response and decodes
// a 2xx JSON answer into out; any other status is a *ProblemError.
func readResponse(resp *http.Response, out any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if len(b) > MaxResponse {
		return fmt.Errorf("%w: response exceeds %d bytes", ErrResponse, MaxResponse)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return problemOf(resp, mt, b)
	}
	if out == nil && resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if p, ok := out.(*pemBody); ok {
		if mt != pemType {
			return fmt.Errorf("%w: %d with content type %q, want %s", ErrResponse, resp.StatusCode, clip(mt), pemType)
		}
		*p = b
		return nil
	}
	if mt != "application/json" {
		return fmt.Errorf("%w: %d with content type %q", ErrResponse, resp.StatusCode, clip(mt))
	}
	if err := decodeStrict(b, out); err != nil {
		return fmt.Errorf("%w: %v", ErrResponse, err)
	}
	return nil
}

// decodeStrict decodes exactly one JSON value. Unknown fields are
// accepted: the service may add fields to its answers (the API grows by
// addition), and the agent acts only on those it knows.
func decodeStrict(b []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(out); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// problemOf turns an error response into a *ProblemError.
func problemOf(resp *http.Response, mediaType string, body []byte) *ProblemError {
	pe := &ProblemError{Status: resp.StatusCode}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		pe.RetryAfter = time.Duration(min(s, 3600)) * time.Second
	}
	var p api.Problem
	if mediaType == "application/problem+json" && decodeStrict(body, &p) == nil && p.Code != "" {
		pe.Code, pe.Detail = p.Code, p.Detail
		if pe.Detail == "" {
			pe.Detail = p.Title
		}
		pe.Detail = clip(pe.Detail)
		return pe
	}
	pe.Detail = clip(strings.TrimSpace(string(body)))
	if pe.Detail == "" {
		pe.Detail = http.StatusText(resp.StatusCode)
	}
	return pe
}

// clip keeps a server-chosen string short and printable for logs.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}
