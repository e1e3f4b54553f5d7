// Package reason defines the stable, machine-readable codes that every
// code-integrity verdict uses to say why a file or signature was rejected.
//
// The codes are part of Vigil's public contract: they appear in JSON output,
// SARIF results and, later, in attestation results. Never rename one; add new
// codes instead.
package reason

import (
	"errors"
	"fmt"
	"sort"
)

// Code is a stable rejection reason.
type Code string

// The stable reason codes. Keep this list in sync with docs/code-integrity.md.
const (
	Unsigned          Code = "unsigned"           // no signature at all
	Malformed         Code = "malformed"          // the file or signature does not parse
	DigestMismatch    Code = "digest-mismatch"    // signed digest (or a page hash) differs from the computed one
	BadSignature      Code = "bad-signature"      // the cryptographic signature does not verify
	UntrustedChain    Code = "untrusted-chain"    // no path from the signer to a trust anchor
	WrongEKU          Code = "wrong-eku"          // a certificate lacks a required extended key usage
	WeakAlgorithm     Code = "weak-algorithm"     // digest or key weaker than the policy minimum
	Expired           Code = "expired"            // a certificate expired before the signing time
	NotYetValid       Code = "not-yet-valid"      // a certificate is not yet valid at the signing time
	Revoked           Code = "revoked"            // the signer or a chain certificate is revoked
	BlocklistedHash   Code = "blocklisted-hash"   // file or Authenticode hash on a deny list
	BlocklistedSigner Code = "blocklisted-signer" // signer certificate on a deny list
	SignerNotAllowed  Code = "signer-not-allowed" // policy restricts publishers and this one is not listed
	Unsupported       Code = "unsupported"        // a valid construct Vigil does not support
	BadTimestamp      Code = "bad-timestamp"      // a timestamp is present but does not verify
	NotFound          Code = "not-found"          // the file to judge does not exist (a loaded module with no file)
	Unreadable        Code = "unreadable"         // the file to judge exists but could not be read (permissions, not a regular file, an I/O error)

	// RFC 5280 path validation (trust.Build): a certificate that issues
	// another in the chain must be allowed to.
	IssuerNotCA              Code = "issuer-not-ca"              // an issuing certificate is not a CA: v1/v2, no basicConstraints, or cA FALSE
	IssuerNoKeyCertSign      Code = "issuer-no-keycertsign"      // an issuing CA has a keyUsage extension without keyCertSign
	PathLengthExceeded       Code = "path-length-exceeded"       // a CA's basicConstraints pathLenConstraint is exceeded
	UnknownCriticalExtension Code = "unknown-critical-extension" // a certificate of the chain has a critical extension Vigil does not process
)

// Timestamp and certificate-table codes (issue 12). self-timestamp and
// future-timestamp come with bad-timestamp, which names every refused
// timestamp that a signature needed.
const (
	SelfTimestamp   Code = "self-timestamp"        // a timestamp made by the code signer's own key or a key of its chain
	FutureTimestamp Code = "future-timestamp"      // a timestamp later than the check time
	BadCertTable    Code = "bad-certificate-table" // a PE certificate-table entry is not a supported Authenticode signature
	SbatRevoked     Code = "sbat-revoked"          // a boot image's .sbat section names a component generation the policy's sbat_level revokes (shim refuses it)
)

// All lists every code, sorted, for documentation and schema generation.
func All() []Code {
	c := []Code{Unsigned, Malformed, DigestMismatch, BadSignature, UntrustedChain, WrongEKU,
		WeakAlgorithm, Expired, NotYetValid, Revoked, BlocklistedHash, BlocklistedSigner,
		SignerNotAllowed, Unsupported, BadTimestamp, NotFound, Unreadable,
		IssuerNotCA, IssuerNoKeyCertSign, PathLengthExceeded, UnknownCriticalExtension,
		SelfTimestamp, FutureTimestamp, BadCertTable, SbatRevoked}
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}

// Error is an error that carries a reason code.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error with the given code and a formatted message.
func New(c Code, format string, args ...any) error {
	return &Error{Code: c, Err: fmt.Errorf(format, args...)}
}

// Wrap tags err with the code c. It returns nil when err is nil.
func Wrap(c Code, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: c, Err: err}
}

// Of returns the code carried by err, or def when err carries none.
func Of(err error, def Code) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return def
}
