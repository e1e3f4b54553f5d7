// Package store is the attestation service's persistent state: enrolled
// agents, their replay state and results history, single-use nonces and
// the service's keys. One interface, two back ends in package
// store/sqlstore: embedded SQLite (the default, pure Go) and PostgreSQL
// (several replicas on one database). Every method is safe for concurrent
// use, and every write that returns nil is durable.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Errors a Store returns; callers test them with errors.Is.
var (
	// ErrNotFound: no such agent (or key).
	ErrNotFound = errors.New("store: not found")
	// ErrExists: an agent with this ID is already enrolled.
	ErrExists = errors.New("store: already exists")
	// ErrNonceUsed: the nonce was already used (a replay), on this
	// replica or another one.
	ErrNonceUsed = errors.New("store: nonce already used")
	// ErrStatusChanged: a compare-and-set of an agent's status
	// (SetStatus) found another status than the expected one: someone
	// else changed it first. The error is a *StatusError naming the
	// status found.
	ErrStatusChanged = errors.New("store: agent status changed")
	// ErrNotApproved: SaveResult found the agent no longer approved (an
	// operator revoked it while its evidence was being appraised); nothing
	// was written. The error is a *StatusError naming the status found.
	ErrNotApproved = errors.New("store: agent not approved")
	// ErrEKInUse: the agent's EK (EKHash) already holds another agent ID
	// that finished credential activation, and neither agent has
	// EKShared. A unique index enforces it, so replicas cannot race it.
	ErrEKInUse = errors.New("store: EK enrolled under another agent ID")
	// ErrEnrollLimit: CreateAgent of an unfinished agent (activating or
	// pending) would exceed EnrollLimits; nothing was written. The error
	// is a *LimitError naming the limit.
	ErrEnrollLimit = errors.New("store: too many unfinished enrollments")
	// ErrUnavailable wraps every failure of the database itself
	// (connection refused, disk full, timeout): the service answers 503
	// and the caller may retry. Other errors are the caller's fault.
	ErrUnavailable = errors.New("store: database unavailable")
)

// Status is an agent's enrollment state.
type Status string

const (
	// Activating: enrolled, credential activation not yet answered.
	Activating Status = "activating"
	// Pending: activated (or software), waiting for an operator's
	// `vigil admin approve`.
	Pending Status = "pending"
	// Approved: may attest.
	Approved Status = "approved"
	// Revoked: refused at once, and may not enroll again.
	Revoked Status = "revoked"
)

// Unfinished reports whether s is an enrollment not yet finished
// (activating or pending): what EnrollLimits bound and Expiry removes.
func (s Status) Unfinished() bool { return s == Activating || s == Pending }

// CanChange reports whether an agent's status may go from one status to
// another (an allow-list): activating to anything (including activating
// again), pending to approved or revoked, approved to revoked. Nothing
// leaves revoked: revocation is final.
func CanChange(from, to Status) bool {
	switch from {
	case Activating:
		return to == Activating || to == Pending || to == Approved || to == Revoked
	case Pending:
		return to == Approved || to == Revoked
	case Approved:
		return to == Revoked
	}
	return false
}

// StatusError is ErrStatusChanged or ErrNotApproved with the status the
// store found.
type StatusError struct {
	AgentID string
	// Status is the agent's status when the store looked.
	Status Status
	// Err is ErrStatusChanged or ErrNotApproved.
	Err error
}

func (e *StatusError) Error() string {
	return e.Err.Error() + ": agent " + e.AgentID + " is " + string(e.Status)
}

func (e *StatusError) Unwrap() error { return e.Err }

// LimitError is ErrEnrollLimit naming the limit reached.
type LimitError struct {
	// PerSource is true when the limit is EnrollLimits.PerSource (the
	// agent's EnrolledFrom), false for EnrollLimits.Total.
	PerSource bool
	// Limit is the limit's value.
	Limit int
}

func (e *LimitError) Error() string {
	if e.PerSource {
		return fmt.Sprintf("%v: %d from one source", ErrEnrollLimit, e.Limit)
	}
	return fmt.Sprintf("%v: %d in total", ErrEnrollLimit, e.Limit)
}

func (e *LimitError) Unwrap() error { return ErrEnrollLimit }

// EnrollLimits bound unfinished enrollments (activating or pending) at
// CreateAgent; a zero field is no limit. They count the agents already
// stored (by every replica) and refuse the new one at the limit.
type EnrollLimits struct {
	// PerSource caps the unfinished agents with the new agent's
	// EnrolledFrom.
	PerSource int
	// Total caps every unfinished agent.
	Total int
}

// StatusChange is a compare-and-set of an agent's status.
type StatusChange struct {
	// From is the status the agent must have; To the one it gets
	// (CanChange(From, To) must hold).
	From, To Status
	// Reason says why (the agent's StatusReason).
	Reason string
	// At is the time of the change (UpdatedAt); now when zero.
	At time.Time
}

// Expiry names the unfinished enrollments ExpireEnrollments deletes: the
// agents activating whose UpdatedAt is before Activating, and those
// pending whose UpdatedAt is before Pending. A zero time expires none of
// that status. When ID is set, only that agent is considered.
type Expiry struct {
	ID         string
	Activating time.Time
	Pending    time.Time
}

// Covers reports whether e expires a (its status and age; not e.ID).
func (e Expiry) Covers(a *Agent) bool {
	switch a.Status {
	case Activating:
		return !e.Activating.IsZero() && a.UpdatedAt.Before(e.Activating)
	case Pending:
		return !e.Pending.IsZero() && a.UpdatedAt.Before(e.Pending)
	}
	return false
}

// Agent is an enrolled agent and what the service keeps about it.
type Agent struct {
	ID string `json:"id"`
	// Enclave is "tpm" or "software".
	Enclave string `json:"enclave"`
	Status  Status `json:"status"`
	// StatusReason says why the status was set (approval rule, operator).
	StatusReason string `json:"status_reason,omitempty"`
	// EKPublic is the EK's TPMT_PUBLIC, EKCert its certificate (DER, may
	// be empty), EKHash the SHA-256 of EKPublic, lowercase hex (TPM).
	EKPublic []byte `json:"ek_public,omitempty"`
	EKCert   []byte `json:"ek_cert,omitempty"`
	EKHash   string `json:"ek_hash,omitempty"`
	// EKShared, when true, lets this agent's EK hold other agent IDs too
	// (an operator's choice); by default an EK holds one agent ID once
	// activation is done (ErrEKInUse).
	EKShared bool `json:"ek_shared,omitempty"`
	// AKPublic is the AK's TPMT_PUBLIC (TPM).
	AKPublic []byte `json:"ak_public,omitempty"`
	// KeyPEM is the AK (TPM) or the report key (software) as PEM.
	KeyPEM string `json:"key_pem"`
	// ActivationHash is SHA-256 of the credential-activation secret
	// while Activating; empty afterwards.
	ActivationHash []byte `json:"-"`
	// EnrolledFrom names the client that enrolled the agent (the
	// service's rendering of its network address): EnrollLimits.PerSource
	// counts by it.
	EnrolledFrom string    `json:"enrolled_from,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	// UpdatedAt is when the status last changed (or CreatedAt).
	UpdatedAt time.Time `json:"updated_at"`
	// Last is the latest result's summary; nil before the first one.
	Last *Summary `json:"last,omitempty"`
	// State is the appraiser's opaque per-agent replay state (IMA offset
	// and PCR, verified boot log); nil before the first valid result.
	State []byte `json:"-"`
}

// Summary is a result without its token: what the fleet view shows.
type Summary struct {
	Level  int       `json:"level"`
	Status string    `json:"status"`
	Time   time.Time `json:"time"`
}

// Result is one appraisal of one agent's evidence.
type Result struct {
	// ID is assigned by SaveResult (increasing per store).
	ID      int64     `json:"id"`
	AgentID string    `json:"agent_id"`
	Time    time.Time `json:"time"`
	Level   int       `json:"level"`
	// Status is the EAR status: "affirming", "warning",
	// "contraindicated" or "none".
	Status string `json:"status"`
	// Failures is the JSON array of failing claims.
	Failures json.RawMessage `json:"failures"`
	// PolicyID and PolicyDigest name the policy judged under.
	PolicyID     string `json:"policy_id"`
	PolicyDigest string `json:"policy_digest"`
	// Token is the signed session report (EAR JWT).
	Token string `json:"token"`
}

// ListOptions filter ListAgents.
type ListOptions struct {
	// Status, when set, lists only agents in it.
	Status Status
	// EKHash, when set, lists only agents with this EK.
	EKHash string
	// After is a cursor: agents with ID > After, in ID order.
	After string
	// Limit caps the rows (0 means 100, at most 1000).
	Limit int
}

// SigningKey is a session-report signing key: its certificate chains to
// the service CA.
type SigningKey struct {
	// KID is the JWK key ID (RFC 7638 thumbprint).
	KID string
	// CertDER is the key's certificate; KeyDER its PKCS#8 private key.
	CertDER []byte
	KeyDER  []byte
	// NotAfter is when the certificate expires; the key signs until
	// RetireAt and is published (JWKS) until NotAfter.
	CreatedAt time.Time
	RetireAt  time.Time
	NotAfter  time.Time
}

// Store is the service's persistent state.
type Store interface {
	// CreateAgent records a new agent: ErrExists when the ID is taken,
	// ErrEKInUse when a.Status is past activating and the EK holds
	// another ID, ErrEnrollLimit (a *LimitError) when a is unfinished and
	// lim is reached. The ID is checked before the limits, so that an
	// agent enrolling again is told its ID exists.
	CreateAgent(ctx context.Context, a *Agent, lim EnrollLimits) error
	// GetAgent returns an agent; ErrNotFound when unknown.
	GetAgent(ctx context.Context, id string) (*Agent, error)
	// ListAgents lists agents in ID order.
	ListAgents(ctx context.Context, o ListOptions) ([]*Agent, error)
	// SetStatus changes an agent's status from c.From to c.To in one
	// conditional write (compare-and-set), and clears ActivationHash
	// unless c.To is Activating. It fails with ErrNotFound when the agent
	// is unknown, ErrStatusChanged (a *StatusError) when its status is not
	// c.From, ErrEKInUse when leaving Activating would give its EK a
	// second agent ID, and a plain error when !CanChange(c.From, c.To).
	SetStatus(ctx context.Context, id string, c StatusChange) error
	// ExpireEnrollments deletes the unfinished enrollments e names and
	// returns how many.
	ExpireEnrollments(ctx context.Context, e Expiry) (int64, error)
	// UseNonce records a nonce (its hash) as used until expires;
	// ErrNonceUsed when it was recorded before, by any replica. It does
	// not check expires: callers refuse expired nonces themselves.
	UseNonce(ctx context.Context, hash []byte, agentID string, expires time.Time) error
	// SaveResult stores r (setting r.ID, and r.Time to now when zero),
	// and in the same transaction the agent's Last summary and, when
	// state is not nil, its State, all on condition that the agent is
	// approved, checked in the same write: ErrNotApproved (a *StatusError)
	// when it is not, ErrNotFound when it is unknown, and nothing written
	// either way.
	SaveResult(ctx context.Context, r *Result, state []byte) error
	// Results returns an agent's latest results, newest first (by ID):
	// at most limit, where 0 means 100 and more than 1000 means 1000. An
	// unknown agent has none (no error).
	Results(ctx context.Context, agentID string, limit int) ([]*Result, error)
	// Prune deletes results older than before (keeping each agent's
	// latest) and nonces expired before now; it returns how many rows.
	Prune(ctx context.Context, before, now time.Time) (int64, error)
	// Secret returns the named service secret, creating it with create
	// on first use; replicas racing on creation all get the same value.
	Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)
	// AddSigningKey stores a new signing key.
	AddSigningKey(ctx context.Context, k *SigningKey) error
	// SigningKeys returns the keys whose certificate has not expired at
	// now (NotAfter >= now), newest first.
	SigningKeys(ctx context.Context, now time.Time) ([]*SigningKey, error)
	// CreateRelyingParty records a relying party's credential:
	// ErrExists when the name (or the token hash) is taken; a plain
	// error when the name is empty, the hash is not 32 bytes or a scope
	// is unknown. A zero CreatedAt is set to now.
	CreateRelyingParty(ctx context.Context, rp *RelyingParty) error
	// RelyingPartyByToken returns the relying party whose token hashes
	// to hash; ErrNotFound when none.
	RelyingPartyByToken(ctx context.Context, hash []byte) (*RelyingParty, error)
	// RelyingParties lists every relying party by name.
	RelyingParties(ctx context.Context) ([]*RelyingParty, error)
	// DeleteRelyingParty removes a relying party (its token stops
	// working at once); ErrNotFound when unknown.
	DeleteRelyingParty(ctx context.Context, name string) error
	// Ping checks the database answers (readiness).
	Ping(ctx context.Context) error
	Close() error
}
