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
	"fmt"
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

// Mode names the platform whose loading rules a verdict follows: Vigil
// says "allowed" when that platform would load the file and the policy
// permits it. docs/code-integrity.md lists each mode's rules and the source
// they follow.
type Mode string

// Modes.
const (
	// ModeKernel judges Linux kernel modules as kernel/module/signing.c and
	// crypto/asymmetric_keys/pkcs7_*.c do.
	ModeKernel Mode = "kernel"
	// ModeUEFI judges boot images as EDK2's DxeImageVerificationLib and
	// shim do: every certificate-table entry is tried, nested signatures
	// are not read, and validity periods are ignored.
	ModeUEFI Mode = "uefi"
	// ModeWindows judges PE files with Authenticode and kernel-mode code
	// signing semantics: the primary signature of the first entry decides.
	ModeWindows Mode = "windows"
	// ModeCMS judges a detached CMS signature over the whole file (and a
	// file in no platform format, which without one is unsigned).
	ModeCMS Mode = "cms"
)

// Modes lists every mode.
func Modes() []Mode { return []Mode{ModeKernel, ModeUEFI, ModeWindows, ModeCMS} }

// ParseMode returns the named mode; "" and "auto" give "" (by the file's
// kind).
func ParseMode(s string) (Mode, error) {
	if s == "" || s == "auto" {
		return "", nil
	}
	for _, m := range Modes() {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q (want auto, kernel, uefi, windows or cms)", s)
}

// fits reports whether mode m can judge a file of format f: the platform
// loads files of that kind. A PE image in uefi mode must also name an EFI
// subsystem, which the caller checks once the headers are parsed.
func (m Mode) fits(f Format) bool {
	switch m {
	case ModeKernel:
		return f == FormatKmod
	case ModeUEFI, ModeWindows:
		return f == FormatPE
	case ModeCMS:
		return f == FormatCMS || f == FormatUnknown
	}
	return false
}

// Verdict is the decision for one file. Its JSON field names are stable.
type Verdict struct {
	Path   string `json:"path"`
	Format Format `json:"format"`
	// Mode is the platform whose rules decided (empty only when the file
	// could not be read).
	Mode    Mode          `json:"mode,omitempty"`
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
	// Ignored is true for a signature the mode's platform does not read
	// (nested signatures in uefi mode; in windows mode, entries after the
	// first and nested signatures that do not stand in for a SHA-1
	// primary). Its reasons are its own and do not decide the file, except
	// a deny rule, which denies the file whatever signature names it.
	Ignored bool `json:"ignored,omitempty"`
	// Messages explain the reasons in words.
	Messages []string `json:"messages,omitempty"`
	// PageHashes reports whether page hashes were present and checked.
	PageHashes bool `json:"page_hashes,omitempty"`
	// Certificates lists the certificates the signature carries (only with
	// Options.Detail, as vigil inspect asks).
	Certificates []Certificate `json:"certificates,omitempty"`

	// signerFiles are the deny.signer_files rules whose signer part this
	// signature matches; the file's version resource decides (PE only).
	signerFiles []int
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
