// Package integrity is Vigil's code-integrity engine. For a file it decides
// whether the code may load: it finds the signatures (Authenticode in a PE
// or EFI image, the appended signature of a Linux kernel module, or a
// detached CMS signature next to any other file), checks each one's
// cryptography, trust chain, timestamps, revocation and the policy's block
// lists, and returns a Verdict naming the signer and the exact reasons.
//
// The engine is a library: the CLI (vigil verify, scan, inspect) and the
// agent call it. It knows nothing of flags or output formats.
package integrity

import (
	"slices"
	"time"

	"github.com/vigil-attest/vigil/sbat"

	"github.com/vigil-attest/vigil/reason"
)

// Format is the kind of signed container a file holds.
type Format string

// Formats.
const (
	FormatPE      Format = "pe"
	FormatKmod    Format = "kmod"
	FormatCMS     Format = "cms"
	FormatUnknown Format = "unknown"
)

// Verdict is the decision for one file. Its JSON field names are stable.
type Verdict struct {
	Path    string        `json:"path"`
	Format  Format        `json:"format"`
	Allowed bool          `json:"allowed"`
	Reasons []reason.Code `json:"reasons"`
	// SHA256 is the hash of the whole file as stored.
	SHA256       string        `json:"sha256"`
	Authentihash *Authentihash `json:"authentihash,omitempty"`
	Signatures   []Signature   `json:"signatures"`
	// Size is the file size in bytes.
	Size int64 `json:"size"`
	// DenyRules names the deny-list entries that matched.
	DenyRules []string `json:"deny_rules,omitempty"`
	// Error is a human-readable message for malformed input or I/O errors.
	Error string `json:"error,omitempty"`
	// PolicyDigest identifies the policy the verdict was made under.
	PolicyDigest string `json:"policy_digest,omitempty"`
	// SBAT is a boot image's .sbat section, as shim reads it (PE files
	// that have one).
	SBAT []sbat.Entry `json:"sbat,omitempty"`
}

// Authentihash holds the Authenticode image hashes of a PE file, as used by
// block lists. SHA1 is computed only when needed: a signature uses SHA-1,
// the policy denies by authentihash_sha1, or Options.Detail is set.
type Authentihash struct {
	SHA1   string `json:"sha1,omitempty"`
	SHA256 string `json:"sha256"`
}

// Signature is the result for one signature of a file.
type Signature struct {
	// Index numbers the signatures of a file in order: certificate-table
	// entries in file order, each followed by its nested signatures.
	Index int `json:"index"`
	// Nested is true for a signature nested inside another
	// (1.3.6.1.4.1.311.2.4.1).
	Nested bool `json:"nested"`
	// Entry is the certificate-table entry (PE) the signature came from.
	Entry int `json:"entry"`
	// DigestAlgorithm and Digest are what the signature covers: the
	// Authenticode image hash for PE files, the module content hash for
	// modules, the file hash for detached signatures.
	DigestAlgorithm string  `json:"digest_algorithm"`
	Digest          string  `json:"digest"`
	Signer          *Signer `json:"signer"`
	// Timestamp is the trusted timestamp's time, or null.
	Timestamp     *time.Time `json:"timestamp"`
	TimestampKind string     `json:"timestamp_kind,omitempty"`
	// Chain lists the subjects from the signer to the anchor when a chain
	// was built.
	Chain   []string      `json:"chain,omitempty"`
	Valid   bool          `json:"valid"`
	Reasons []reason.Code `json:"reasons"`
	// Messages explain the reasons in words.
	Messages []string `json:"messages,omitempty"`
	// PageHashes reports whether page hashes were present and checked.
	PageHashes bool `json:"page_hashes,omitempty"`
	// Certificates lists the certificates the signature carries (only with
	// Options.Detail, as vigil inspect asks).
	Certificates []Certificate `json:"certificates,omitempty"`
}

// Certificate describes one certificate for inspection.
type Certificate struct {
	Subject            string    `json:"subject"`
	Issuer             string    `json:"issuer"`
	Serial             string    `json:"serial"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	SignatureAlgorithm string    `json:"signature_algorithm"`
	SHA256             string    `json:"sha256"`
	TBSSHA256          string    `json:"tbs_sha256"`
	EKU                []string  `json:"eku,omitempty"`
}

// Signer identifies the author of a signature.
type Signer struct {
	Subject   string `json:"subject"`
	Issuer    string `json:"issuer"`
	Serial    string `json:"serial"`
	TBSSHA256 string `json:"tbs_sha256"`
}

func (s *Signature) fail(c reason.Code, err error) {
	s.Reasons = appendCode(s.Reasons, c)
	if err != nil {
		s.Messages = append(s.Messages, err.Error())
	}
}

func appendCode(cs []reason.Code, c reason.Code) []reason.Code {
	if slices.Contains(cs, c) {
		return cs
	}
	return append(cs, c)
}
