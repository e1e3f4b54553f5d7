package token

import (
	"errors"
	"fmt"
)

// Reason is a stable, machine-readable code that says why a session report
// was rejected. The codes are part of Vigil's public contract: never
// rename one, add new ones instead.
type Reason string

// The reason codes of Verify and VerifyJWKS, in the order the checks run:
// the first failing check decides.
const (
	// Malformed: not a compact JWS of at most MaxSize bytes, a segment is
	// not strict base64url, the header or the claims are not JSON of the
	// expected types, the header carries "crit", or the x5c chain does not
	// parse.
	Malformed Reason = "malformed"
	// BadAlg: the header's alg is not ES256 (none, HS256, RS256, …), or
	// the signer's key is not a P-256 key.
	BadAlg Reason = "bad-alg"
	// UnknownKey: the header's kid names no key of the JWKS (VerifyJWKS
	// only; fetch the JWKS again).
	UnknownKey Reason = "unknown-key"
	// BadSignature: the signature segment is not a 64-byte ES256
	// signature, or it does not verify with the signer's key over the
	// header and claims as sent.
	BadSignature Reason = "bad-signature"
	// HighS: the signature verifies, but its s is above n/2: it is the
	// high-S twin (r, n−s) of the signature Vigil made, a second string
	// for the same token. Vigil signs low-S only.
	HighS Reason = "high-s"
	// UntrustedChain: the x5c chain does not lead to the given roots at
	// the token's iat, or its leaf is not a signing certificate (a CA, no
	// digitalSignature key usage, or an extended key usage such as TLS).
	UntrustedChain Reason = "untrusted-chain"
	// Expired: now is past exp (or past the signing certificate's
	// NotAfter), beyond the leeway.
	Expired Reason = "expired"
	// NotYetValid: iat (or nbf, or the signing certificate's NotBefore)
	// is later than now, beyond the leeway.
	NotYetValid Reason = "not-yet-valid"
	// MissingClaim: a claim a session report always has is absent: iat,
	// exp, sub, eat_profile, ear.verifier-id, vigil.level, or the
	// "vigil" submod with its ear.status.
	MissingClaim Reason = "missing-claim"
)

// The reason codes of Verified.Expect, in the order its checks run: the
// report verified but is not the one the caller asked for.
const (
	// WrongSubject: sub names another agent.
	WrongSubject Reason = "wrong-sub"
	// WrongNonce: eat_nonce is absent or another challenge's.
	WrongNonce Reason = "wrong-nonce"
	// WrongKey: cnf is absent or binds another key than the caller's
	// report key.
	WrongKey Reason = "wrong-cnf"
)

// AllReasons returns every reason code, sorted.
func AllReasons() []Reason {
	return []Reason{BadAlg, BadSignature, Expired, HighS, Malformed, MissingClaim, NotYetValid, UnknownKey, UntrustedChain, WrongKey, WrongNonce, WrongSubject}
}

// Error is a rejected session report: why (Reason) and what exactly.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return "session report " + string(e.Reason) + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason code of an error from Verify, VerifyJWKS or
// Verified.Expect (also when wrapped), and "" for nil or any other error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func fail(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}
