package ear

import (
	"errors"
	"fmt"
	"sort"
)

// Code is a stable, machine-readable code that says why a session report
// or a proof of possession was refused. The codes are part of Vigil's
// public contract: never rename one, add new ones instead.
type Code string

// The codes of Verify and VerifyJWKS, in the order the checks run: the
// first failing check decides.
const (
	// Malformed: not a compact JWS of at most MaxSize bytes, a segment is
	// not strict base64url, the header or the claims are not JSON of the
	// expected types, the header carries "crit", or the x5c chain does not
	// parse.
	Malformed Code = "malformed"
	// BadAlg: the header's alg is not ES256 (none, HS256, RS256, …), or
	// the signer's key is not a P-256 key.
	BadAlg Code = "bad-alg"
	// UnknownKey: the header's kid names no key of the JWKS (VerifyJWKS
	// only; fetch the JWKS again).
	UnknownKey Code = "unknown-key"
	// BadSignature: the signature segment is not a 64-byte ES256
	// signature, or it does not verify with the signer's key over the
	// header and claims as sent.
	BadSignature Code = "bad-signature"
	// HighS: the signature verifies, but its s is above n/2: it is the
	// high-S twin (r, n−s) of the signature Vigil made, a second string
	// for the same token. Vigil signs low-S only.
	HighS Code = "high-s"
	// UntrustedChain: the x5c chain does not lead to the given roots at
	// the token's iat, or its leaf is not a signing certificate (a CA, no
	// digitalSignature key usage, or an extended key usage such as TLS).
	UntrustedChain Code = "untrusted-chain"
	// Expired: now is past exp (or past the signing certificate's
	// NotAfter), beyond the leeway.
	Expired Code = "expired"
	// NotYetValid: iat (or nbf, or the signing certificate's NotBefore)
	// is later than now, beyond the leeway.
	NotYetValid Code = "not-yet-valid"
	// MissingClaim: a claim a session report always has is absent: iat,
	// exp, sub, eat_profile, ear.verifier-id, vigil.level, or the
	// "vigil" submod with its ear.status.
	MissingClaim Code = "missing-claim"
)

// The codes of Verified.Expect, in the order its checks run: the report
// verified but is not the one the caller asked for.
const (
	// WrongSubject: sub names another agent.
	WrongSubject Code = "wrong-sub"
	// WrongNonce: eat_nonce is absent or another challenge's.
	WrongNonce Code = "wrong-nonce"
	// WrongKey: cnf is absent or binds another key than the caller's
	// report key.
	WrongKey Code = "wrong-cnf"
)

// The codes of Verified.Require: the report is valid, but not what the
// relying party admits.
const (
	// LevelTooLow: the report's level is below Requirement.MinLevel.
	LevelTooLow Code = "level-too-low"
	// TrustVectorClaim: a trust-vector claim the relying party requires
	// is absent, or in a worse tier than it admits.
	TrustVectorClaim Code = "trust-vector"
	// TooOld: the report was issued longer ago than Requirement.MaxAge.
	TooOld Code = "too-old"
)

// The codes of VerifyProof, in the order its checks run. The session
// report's own codes (Expired above) apply to the report it accompanies.
const (
	// ProofMissing: no proof was presented.
	ProofMissing Code = "pop-missing"
	// ProofMalformed: not a compact JWS of at most MaxProofSize bytes, a
	// segment not strict base64url, a header or claims set that is not
	// JSON of the specified members and types (unknown members, crit, a
	// missing aud, iat, jti or ath), or a jwk that is not a public key
	// (private members are refused).
	ProofMalformed Code = "pop-malformed"
	// ProofWrongType: the header's typ is not "vigil-pop+jwt": the JWS is
	// not a proof (it may be a session report, or another signature of
	// the key presented as one).
	ProofWrongType Code = "pop-type"
	// ProofAlg: alg is not ES256 (P-256 jwk) or RS256 (RSA jwk of at
	// least 2048 bits), or does not fit the jwk.
	ProofAlg Code = "pop-alg"
	// ProofBadSignature: the signature does not verify with the header's
	// jwk, or (ES256) its s is above n/2.
	ProofBadSignature Code = "pop-bad-signature"
	// ProofKeyMismatch: the report binds no key (no cnf), or the proof's
	// jwk is another key than the report's cnf (RFC 7638 thumbprints
	// differ): the proof was signed by another enclave.
	ProofKeyMismatch Code = "pop-key-mismatch"
	// ProofATHMismatch: ath is not base64url(SHA-256(the session report
	// as presented)): the proof accompanies another report.
	ProofATHMismatch Code = "pop-ath-mismatch"
	// ProofAudience: aud is not the relying party's.
	ProofAudience Code = "pop-audience"
	// ReportAudience: the session report carries an aud that does not
	// name the relying party, or (ProofExpect.RequireReportAudience,
	// Requirement.Audience) it carries none.
	ReportAudience Code = "wrong-aud"
	// ProofNonce: nonce is not the relying party's nonce.
	ProofNonce Code = "pop-nonce"
	// ProofMethod: htm is not the request's method (or is present for a
	// proof not bound to a request, or absent for one that is).
	ProofMethod Code = "pop-htm"
	// ProofURL: htu is not the request's URL without query and fragment
	// (or present/absent as for htm).
	ProofURL Code = "pop-htu"
	// ProofStale: iat is older than the window (ProofExpect.MaxAge).
	ProofStale Code = "pop-stale"
	// ProofFuture: iat is later than now beyond ProofExpect.MaxSkew.
	ProofFuture Code = "pop-future"
	// ProofReplayed: the ReplayCache has seen this proof's jti for this
	// key within the window.
	ProofReplayed Code = "pop-replayed"
	// ProofReplayUnavailable: the ReplayCache could not record the proof
	// (MemoryReplayCache: it is full of unexpired entries); the proof is
	// refused rather than admitted unrecorded or an entry forgotten
	// early.
	ProofReplayUnavailable Code = "pop-replay-unavailable"
)

// All returns every code, sorted, for documentation.
func All() []Code {
	c := []Code{Malformed, BadAlg, UnknownKey, BadSignature, HighS, UntrustedChain, Expired, NotYetValid, MissingClaim,
		WrongSubject, WrongNonce, WrongKey, LevelTooLow, TrustVectorClaim, TooOld,
		ProofMissing, ProofMalformed, ProofWrongType, ProofAlg, ProofBadSignature, ProofKeyMismatch, ProofATHMismatch,
		ProofAudience, ReportAudience, ProofNonce, ProofMethod, ProofURL, ProofStale, ProofFuture, ProofReplayed, ProofReplayUnavailable}
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}

// Error is a refused session report or proof: why (Code) and what
// exactly.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string {
	what := "session report "
	if len(e.Code) > 4 && e.Code[:4] == "pop-" {
		what = "proof of possession "
	}
	return what + string(e.Code) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Of returns the code of an error from Verify, VerifyJWKS,
// Verified.Expect or VerifyProof (also when wrapped), and "" for nil or
// any other error.
func Of(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func fail(c Code, format string, args ...any) error {
	return &Error{Code: c, Err: fmt.Errorf(format, args...)}
}
