package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave"
)

// PathProof is the local socket's proof resource: POST a ProofRequest,
// get a ProofAnswer.
const PathProof = "/v1/proof"

// ProofRequest is what a local client asks a proof of possession for.
type ProofRequest struct {
	// Audience is the relying party (the proof's aud; required, and the
	// session report is asked for it).
	Audience string `json:"aud"`
	// Nonce is the relying party's nonce, when it gave one.
	Nonce string `json:"nonce,omitempty"`
	// Method and URL bind the proof to an HTTP request (htm, htu): both
	// or neither. The URL's query and fragment are dropped.
	Method string `json:"htm,omitempty"`
	URL    string `json:"htu,omitempty"`
}

// ProofAnswer is the session report and a fresh proof of possession for
// it, signed by the enclave's report key.
type ProofAnswer struct {
	AgentID string `json:"agent_id"`
	// SessionReport is the session report (an EAR JWT) whose cnf is the
	// report key and whose aud names the request's audience.
	SessionReport string `json:"session_report"`
	// Proof is the proof (a vigil-pop+jwt JWS) binding the report (ath),
	// the audience, the nonce and the request.
	Proof string `json:"proof"`
	// Enclave is the key that signed the proof: "tpm", or "software" (a
	// key the agent process holds: lower assurance, as the report's
	// level says).
	Enclave string `json:"enclave"`
	// Level is the report's level; Expires its exp.
	Level   int       `json:"level"`
	Expires time.Time `json:"expires"`
}

// ErrProofRequest is a ProofRequest that is not one (the socket answers
// 400 bad-request).
var ErrProofRequest = errors.New("proof request")

// ErrNoReport: the agent holds no session report it could prove for, and
// could not get one (not yet enrolled and approved, or the service is
// unreachable; the socket answers 503 unavailable).
var ErrNoReport = errors.New("no session report to prove for")

// ErrAudienceLimit: the agent already asks its reports for
// api.MaxAudiences audiences (the socket answers 400 bad-request).
var ErrAudienceLimit = errors.New("the session report names as many audiences as it may")

// reportMargin is how long before its exp a report is renewed before a
// proof is made for it: the relying party should receive a live one.
const reportMargin = 30 * time.Second

// maxNonce bounds a proof request's nonce.
const maxNonce = 512

// Prove answers a ProofRequest: the latest session report, renewed first
// (one attestation round) when it does not name the audience or expires
// within 30 s, and a proof over it signed by the enclave's report key
// through enclave.SignMessage. An audience new to the agent is asked for
// in every later round too.
func (a *Agent) Prove(ctx context.Context, req ProofRequest) (*ProofAnswer, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	htu := ""
	if req.URL != "" {
		htu, _ = ear.NormalizeURL(req.URL)
	}
	res := a.Latest()
	if res == nil || !slices.Contains(res.Audience, req.Audience) || time.Now().Add(reportMargin).After(res.Expires) {
		a.mu.Lock()
		err := a.addAudience(req.Audience)
		a.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if _, err := a.AttestOnce(ctx); err != nil {
			return nil, fmt.Errorf("%w for %q: attesting: %w", ErrNoReport, req.Audience, err)
		}
		if res = a.Latest(); res == nil || !slices.Contains(res.Audience, req.Audience) {
			return nil, fmt.Errorf("%w for %q", ErrNoReport, req.Audience)
		}
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	e := a.o.Enclave
	proof, err := ear.SignProof(ctx, e.ReportPublic(), ear.ProofClaims{
		Audience: req.Audience, Nonce: req.Nonce, Method: req.Method, URL: htu,
		IssuedAt: time.Now().Unix(), ID: base64.RawURLEncoding.EncodeToString(jti), ReportHash: ear.ReportHash(res.Token),
	}, func(ctx context.Context, m []byte) ([]byte, error) { return enclave.SignMessage(ctx, e, m) })
	if err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	a.log.Info("proof of possession", "aud", req.Audience, "htm", req.Method, "htu", htu, "enclave", e.Kind())
	return &ProofAnswer{AgentID: res.AgentID, SessionReport: res.Token, Proof: proof, Enclave: string(e.Kind()), Level: res.Level, Expires: res.Expires}, nil
}

func (r *ProofRequest) check() error {
	if !api.ValidAudience(r.Audience) {
		return fmt.Errorf("%w: aud %.60q: want 1–%d visible ASCII characters", ErrProofRequest, r.Audience, api.MaxAudienceLen)
	}
	if len(r.Nonce) > maxNonce {
		return fmt.Errorf("%w: a nonce of %d bytes, at most %d", ErrProofRequest, len(r.Nonce), maxNonce)
	}
	if (r.Method == "") != (r.URL == "") {
		return fmt.Errorf("%w: htm and htu go together", ErrProofRequest)
	}
	if r.Method != "" {
		for _, c := range []byte(r.Method) {
			if c < 'A' || c > 'Z' {
				return fmt.Errorf("%w: htm %.20q is not an HTTP method in capitals", ErrProofRequest, r.Method)
			}
		}
		if len(r.Method) > 16 {
			return fmt.Errorf("%w: htm %.20q is too long", ErrProofRequest, r.Method)
		}
		if _, err := ear.NormalizeURL(r.URL); err != nil || len(r.URL) > 2048 {
			return fmt.Errorf("%w: htu: %v", ErrProofRequest, err)
		}
	}
	return nil
}

// addAudience adds aud to the audiences every report is asked for (a.mu
// held, or the agent not yet shared).
func (a *Agent) addAudience(aud string) error {
	if !api.ValidAudience(aud) {
		return fmt.Errorf("audience %.60q: want 1–%d visible ASCII characters", aud, api.MaxAudienceLen)
	}
	i, found := slices.BinarySearch(a.audiences, aud)
	if found {
		return nil
	}
	if len(a.audiences) >= api.MaxAudiences {
		return fmt.Errorf("%w (%d): %q is not added", ErrAudienceLimit, api.MaxAudiences, aud)
	}
	a.audiences = slices.Insert(a.audiences, i, aud)
	return nil
}

// RequestProof asks the agent serving the socket at path for a proof
// (POST PathProof): what `vigil agent prove` and local clients do. The
// agent's refusal is a *ProblemError (503 unavailable: no report to
// prove for; 400 bad-request).
func RequestProof(ctx context.Context, path string, req ProofRequest) (*ProofAnswer, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer hc.CloseIdleConnections()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+PathProof, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(r)
	if err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	var ans ProofAnswer
	if err := readResponse(resp, &ans); err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	if ans.SessionReport == "" || ans.Proof == "" {
		return nil, fmt.Errorf("agent socket %s: %w: no session report or proof", path, ErrResponse)
	}
	return &ans, nil
}
