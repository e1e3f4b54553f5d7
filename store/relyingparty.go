package store

import (
	"slices"
	"time"
)

// Relying-party scopes: what a relying party's token lets it do.
const (
	// ScopeVerify: POST /v1/verify (the background-check model).
	ScopeVerify = "verify"
	// ScopeFeed: GET /v1/feed (level changes, approvals and revocations).
	ScopeFeed = "feed"
)

// Scopes returns every relying-party scope, sorted.
func Scopes() []string { return []string{ScopeFeed, ScopeVerify} }

// ValidScope reports whether s is a relying-party scope.
func ValidScope(s string) bool { return slices.Contains(Scopes(), s) }

// RelyingParty is a relying party's credential: a name (its identity,
// the aud of the session reports it is given) and scopes, reached by the
// SHA-256 of its bearer token. The token itself is never stored.
type RelyingParty struct {
	Name string `json:"name"`
	// TokenHash is SHA-256 of the bearer token (32 bytes).
	TokenHash []byte `json:"-"`
	// Scopes are sorted, each ScopeVerify or ScopeFeed.
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
}

// Has reports whether the relying party holds scope.
func (rp *RelyingParty) Has(scope string) bool { return slices.Contains(rp.Scopes, scope) }
