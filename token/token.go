// Package token issues Vigil's session reports: EAR (draft-ietf-rats-ear)
// attestation results built with github.com/veraison/ear, signed ES256 as
// a JWT whose x5c header chains to the service's report CA, under signing
// keys it rotates and publishes as a JWKS. Verifying them is package
// ear's, which relying parties import alone.
package token
