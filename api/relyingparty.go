package api

import (
	"encoding/json"
	"time"

	"github.com/vigil-attest/vigil/verdict"
)

// MaxRelyingPartyName is the longest relying-party name; names match
// the agent IDs' alphabet, [A-Za-z0-9._-]{1,128}.
const MaxRelyingPartyName = MaxAgentID

// ValidRelyingPartyName reports whether name is a relying-party name.
func ValidRelyingPartyName(name string) bool { return ValidAgentID(name) }

// RelyingPartyRequest creates a relying party (PathRelyingParties).
type RelyingPartyRequest struct {
	// Name is the relying party's identity: the aud of the session
	// reports PathVerify gives it.
	Name string `json:"name"`
	// Scopes are "verify" (PathVerify) and/or "feed" (PathFeed).
	Scopes []string `json:"scopes"`
}

// RelyingParty is a relying party as the admin API shows it. Token is
// set only in the answer that created it: the service keeps its SHA-256
// alone, and it cannot be shown again.
type RelyingParty struct {
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	Token     string    `json:"token,omitempty"`
}

// RelyingPartyList is the GET PathRelyingParties answer.
type RelyingPartyList struct {
	RelyingParties []RelyingParty `json:"relying_parties"`
}

// VerifyRequest is the background-check model's request (PathVerify): a
// relying party that holds no session report forwards the evidence its
// client made for Nonce, a challenge the relying party obtained from the
// service (PathChallenge of AgentID) and gave the client.
type VerifyRequest struct {
	AgentID string `json:"agent_id"`
	// Nonce is the challenge's nonce (hex) as the relying party got it:
	// the evidence must answer this one (nonce-mismatch otherwise).
	Nonce string `json:"nonce"`
	// Evidence is the client's evidence document (evidence.MediaType's
	// JSON), as it would be posted to PathAttest.
	Evidence json.RawMessage `json:"evidence"`
}

// VerifyResponse is the appraisal, with a session report whose aud is
// the calling relying party.
type VerifyResponse struct {
	AgentID  string            `json:"agent_id"`
	ResultID int64             `json:"result_id"`
	Level    int               `json:"level"`
	Status   string            `json:"status"`
	Failures []verdict.Failure `json:"failures"`
	// Audience is the calling relying party's name (the token's aud).
	Audience string `json:"audience"`
	// Token is the session report (EAR JWT, ES256, x5c).
	Token string `json:"token"`
}
