// Package api is the attestation service's HTTP protocol: paths, request
// and response bodies and problem codes, shared by the server (package
// server), the agent (package agent) and the admin CLI. The OpenAPI 3
// description (openapi.json, served at /openapi.json) documents the same
// types; a test keeps the two in step.
package api

import (
	"time"

	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/verdict"
)

// Paths. {id} is the agent ID.
const (
	PathEnroll    = "/v1/enroll"
	PathActivate  = "/v1/enroll/activate"
	PathChallenge = "/v1/agents/{id}/challenge"
	PathAttest    = "/v1/agents/{id}/attest"
	PathAgents    = "/v1/agents"
	PathAgent     = "/v1/agents/{id}"
	PathApprove   = "/v1/agents/{id}/approve"
	PathRevoke    = "/v1/agents/{id}/revoke"
	PathEvents    = "/v1/events"
	// PathVerify and PathFeed are the relying parties' (a relying-party
	// token with the scope verify or feed); PathRelyingParties and
	// PathRelyingParty the operator's (admin token).
	PathVerify         = "/v1/verify"
	PathFeed           = "/v1/feed"
	PathRelyingParties = "/v1/relying-parties"
	PathRelyingParty   = "/v1/relying-parties/{name}"
	PathJWKS           = "/.well-known/jwks.json"
	PathCA             = "/.well-known/vigil-ca.pem"
	PathOpenAPI        = "/openapi.json"
	PathMetrics        = "/metrics"
	PathHealthz        = "/healthz"
	PathReadyz         = "/readyz"
)

// MaxAgentID is the longest agent ID; IDs match [A-Za-z0-9._-]{1,128}.
const MaxAgentID = 128

// EnrollRequest registers an agent's keys. A TPM agent sends its EK (and
// the EK certificate when the TPM holds one) and its AK; a software agent
// sends its report key.
type EnrollRequest struct {
	AgentID string `json:"agent_id"`
	// Enclave is "tpm" or "software".
	Enclave string `json:"enclave"`
	// EKPublic and AKPublic are TPMT_PUBLIC bytes; EKCert is DER.
	EKPublic []byte `json:"ek_public,omitempty"`
	EKCert   []byte `json:"ek_cert,omitempty"`
	AKPublic []byte `json:"ak_public,omitempty"`
	// ReportKeyPEM is the software agent's report key (PKIX PEM).
	ReportKeyPEM string `json:"report_key_pem,omitempty"`
}

// EnrollResponse says where enrollment stands. For a TPM agent in status
// "activating" it carries the credential to activate with the EK and AK
// (TPM2_ActivateCredential); the agent posts the recovered secret to
// PathActivate.
type EnrollResponse struct {
	AgentID string `json:"agent_id"`
	// Status is "activating", "pending" or "approved".
	Status          string `json:"status"`
	CredentialBlob  []byte `json:"credential_blob,omitempty"`
	EncryptedSecret []byte `json:"encrypted_secret,omitempty"`
}

// ActivateRequest answers the credential-activation challenge.
type ActivateRequest struct {
	AgentID string `json:"agent_id"`
	Secret  []byte `json:"secret"`
}

// ChallengeRequest is PathChallenge's body; it may be empty or absent.
type ChallengeRequest struct {
	// Proof, when present and valid, proves that the caller holds the
	// agent's enrolled key: an evidence.KeyProof for ChallengePurpose
	// and the path's agent ID, made at most ProofMaxAge before or after
	// the service's clock. Only then does the answer carry the replay
	// hints (IMAOffset, EventLogSHA256) and tell a pending or revoked
	// agent its status. Without it, or when it does not verify, every
	// valid agent ID (unknown, pending, revoked or approved) gets a bare
	// nonce: the answer says nothing about the ID, and the nonce is
	// redeemable only with evidence signed by the agent's enrolled key.
	Proof *evidence.KeyProof `json:"proof,omitempty"`
}

// ChallengePurpose is the purpose a challenge request's key proof signs.
const ChallengePurpose = "challenge"

// ProofMaxAge is how far a key proof's time may be from the service's
// clock.
const ProofMaxAge = 5 * time.Minute

// Challenge is a fresh nonce for one attestation by one agent.
type Challenge struct {
	// Nonce is hex; single use, bound to the agent, valid until
	// ExpiresAt on every replica.
	Nonce     string    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
	// IMAOffset is where the agent's IMA list should start (the
	// service's replay state).
	IMAOffset int64 `json:"ima_offset"`
	// EventLogSHA256 is the SHA-256 (hex) of the boot event log the
	// service has verified for this agent; when the agent's log has the
	// same digest it may leave the log out. Empty: send it.
	EventLogSHA256 string `json:"event_log_sha256,omitempty"`
	// Authenticated is true when the request's key proof verified: the
	// hints above are the agent's. False: no hints (IMAOffset 0, send
	// every log whole).
	Authenticated bool `json:"authenticated,omitempty"`
}

// AttestResponse is the appraisal of one evidence.
type AttestResponse struct {
	AgentID  string            `json:"agent_id"`
	ResultID int64             `json:"result_id"`
	Level    int               `json:"level"`
	Status   string            `json:"status"`
	Failures []verdict.Failure `json:"failures"`
	// Token is the session report: an EAR JWT (ES256, x5c).
	Token string `json:"token"`
	// IMAOffset is where the next IMA list should start.
	IMAOffset int64 `json:"ima_offset"`
}

// Agent is an agent as the admin API shows it.
type Agent struct {
	ID           string    `json:"id"`
	Enclave      string    `json:"enclave"`
	Status       string    `json:"status"`
	StatusReason string    `json:"status_reason,omitempty"`
	EKHash       string    `json:"ek_hash,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Level, ResultStatus and AttestedAt are the latest result's (Level
	// -1 before the first one).
	Level        int        `json:"level"`
	ResultStatus string     `json:"result_status,omitempty"`
	AttestedAt   *time.Time `json:"attested_at,omitempty"`
}

// AgentList is PathAgents' response; Next is the cursor for the next page
// ("" at the end).
type AgentList struct {
	Agents []Agent `json:"agents"`
	Next   string  `json:"next,omitempty"`
}

// AgentDetail is PathAgent's response.
type AgentDetail struct {
	Agent
	Results []Result `json:"results"`
}

// Result is one stored appraisal.
type Result struct {
	ID           int64             `json:"id"`
	Time         time.Time         `json:"time"`
	Level        int               `json:"level"`
	Status       string            `json:"status"`
	Failures     []verdict.Failure `json:"failures"`
	PolicyID     string            `json:"policy_id"`
	PolicyDigest string            `json:"policy_digest"`
	Token        string            `json:"token,omitempty"`
}

// AdminRequest carries an operator's reason for approve and revoke.
type AdminRequest struct {
	Reason string `json:"reason,omitempty"`
}

// Event is what webhooks and the SSE stream carry when an agent's level
// or status changes.
type Event struct {
	// ID increases per service instance; Type is "agent.level" or
	// "agent.status".
	ID      int64     `json:"id"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	AgentID string    `json:"agent_id"`
	// Level and Status are the new values; Previous* the old ones (-1 /
	// "" when none).
	Level          int    `json:"level"`
	PreviousLevel  int    `json:"previous_level"`
	Status         string `json:"status"`
	PreviousStatus string `json:"previous_status,omitempty"`
	ResultID       int64  `json:"result_id,omitempty"`
}

// Event types.
const (
	EventLevel  = "agent.level"
	EventStatus = "agent.status"
)

// Problem is an RFC 9457 problem detail (application/problem+json).
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Code is the stable, machine-readable reason.
	Code string `json:"code"`
}

// ProblemType is the type URI prefix; the code is appended.
const ProblemType = "https://vigil-attest.dev/problems/"

// Problem codes. They are part of the public contract: never rename one.
const (
	CodeBadRequest          = "bad-request"           // 400: body not JSON, unknown field, trailing data
	CodeTooLarge            = "body-too-large"        // 413
	CodeUnsupportedMedia    = "unsupported-media"     // 415
	CodeInvalidAgentID      = "invalid-agent-id"      // 400
	CodeInvalidEnrollment   = "invalid-enrollment"    // 400: keys do not parse, AK not restricted, …
	CodeEKUntrusted         = "ek-untrusted"          // 403: EK certificate present but does not chain
	CodeSoftwareNotAllowed  = "software-not-allowed"  // 403
	CodeEnrollConflict      = "enrollment-conflict"   // 409: the ID is enrolled with other keys
	CodeEKInUse             = "ek-in-use"             // 409: the EK is enrolled under another agent ID
	CodeEnrollLimited       = "enrollment-limited"    // 429: too many unfinished enrollments from this client, or in all
	CodeActivationFailed    = "activation-failed"     // 403: wrong secret
	CodeNotActivating       = "not-activating"        // 409
	CodeUnknownAgent        = "unknown-agent"         // 404: no such agent, or (attest) evidence not signed by its enrolled key: unknown, pending, revoked and outsider look alike
	CodeAgentRevoked        = "agent-revoked"         // 403
	CodeAgentPending        = "agent-pending"         // 403: not approved yet
	CodeNonceInvalid        = "nonce-invalid"         // 400: not a nonce of this service (garbage, bad MAC)
	CodeNonceExpired        = "nonce-expired"         // 400
	CodeNonceWrongAgent     = "nonce-wrong-agent"     // 400: issued to another agent
	CodeNonceReplayed       = "nonce-replayed"        // 409: already used
	CodeRateLimited         = "rate-limited"          // 429
	CodeUnauthorized        = "unauthorized"          // 401: admin API without a valid token
	CodeNotFound            = "not-found"             // 404: no such path
	CodeMethodNotAllowed    = "method-not-allowed"    // 405
	CodeUnavailable         = "unavailable"           // 503: the database is failing
	CodeInternal            = "internal"              // 500
	CodeTimeout             = "timeout"               // 503: the request took too long
	CodeScopeMissing        = "scope-missing"         // 403: the relying-party token does not carry the endpoint's scope
	CodeNonceMismatch       = "nonce-mismatch"        // 400: the evidence answers another challenge than the relying party's
	CodeRelyingPartyExists  = "relying-party-exists"  // 409: a relying party of that name exists
	CodeUnknownRelyingParty = "unknown-relying-party" // 404: no relying party of that name
)

// ValidAgentID reports whether id is an agent ID: 1 to MaxAgentID of
// A-Z a-z 0-9 . _ -, and not "." or ".." (an ID is a path segment).
func ValidAgentID(id string) bool {
	if len(id) == 0 || len(id) > MaxAgentID || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// QueryAudience is the attest request's query parameter naming, once per
// audience, the relying parties the session report is for (its "aud"):
// POST /v1/agents/{id}/attest?aud=https://bank.example&aud=edr.
const QueryAudience = "aud"

// MaxAudiences is the most audiences one session report names, and
// MaxAudienceLen the longest audience (ear.MaxAudiences: a test holds
// them equal).
const (
	MaxAudiences   = 16
	MaxAudienceLen = 256
)

// ValidAudience checks an audience: 1 to MaxAudienceLen visible ASCII
// characters (a URL or a name; no spaces or control characters).
func ValidAudience(a string) bool {
	if len(a) == 0 || len(a) > MaxAudienceLen {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] < 0x21 || a[i] > 0x7e {
			return false
		}
	}
	return true
}
