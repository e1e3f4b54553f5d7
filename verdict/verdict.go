// Package verdict is the vocabulary of an appraisal's result that the
// appraiser, the API, the agent, the session report and relying parties
// share: the security levels, the EAR status tiers and the failing claim.
// It imports only the standard library, so that a package that reads a
// verdict (a relying party verifying a session report) does not link the
// appraiser, its policy engine or the collectors (internal/layers holds
// that).
package verdict

import "strconv"

// Level is a security level of the brief, 0–4. The default policy
// implements them; a policy may redefine what each requires.
type Level int

// The levels.
const (
	Untrusted Level = 0 // untrusted
	Software  Level = 1 // software-rooted
	Hardware  Level = 2 // hardware-rooted
	Measured  Level = 3 // measured-and-enforced
	Hardened  Level = 4 // hardened
	MaxLevel        = Hardened
)

// String is the level's name in the brief: untrusted, software-rooted,
// hardware-rooted, measured-and-enforced, hardened; "level-N" for a level
// out of range.
func (l Level) String() string {
	switch l {
	case Untrusted:
		return "untrusted"
	case Software:
		return "software-rooted"
	case Hardware:
		return "hardware-rooted"
	case Measured:
		return "measured-and-enforced"
	case Hardened:
		return "hardened"
	}
	return "level-" + strconv.Itoa(int(l))
}

// Valid reports whether l is a level: 0 to MaxLevel.
func (l Level) Valid() bool { return l >= Untrusted && l <= MaxLevel }

// The EAR status tiers (draft-ietf-rats-ear) a level maps to.
const (
	Affirming       = "affirming"
	Warning         = "warning"
	Contraindicated = "contraindicated"
)

// StatusOf is the EAR status tier of a level: affirming (≥ 2), warning
// (1), contraindicated (0 and below).
func StatusOf(l Level) string {
	switch {
	case l >= Hardware:
		return Affirming
	case l == Software:
		return Warning
	}
	return Contraindicated
}

// Failure is one failing claim: why the level is not higher.
type Failure struct {
	// Claim is the claim's path in the policy input, e.g.
	// "report.modules.hidden" or "evidence.signature".
	Claim string `json:"claim"`
	// Reason is a stable, machine-readable code, e.g. "hidden-module" or
	// an evidence.Reason such as "nonce-mismatch".
	Reason string `json:"reason"`
	// Level is the level this failure caps the result below (the result
	// is at most Level-1); 1 for contraindications.
	Level int `json:"level"`
	// Detail says what, for people (module name, PCR, …).
	Detail string `json:"detail,omitempty"`
	// Provenance says who vouches for the failing claim: "attested"
	// (the verifier derived it from TPM-signed data), "corroborated" (a
	// host claim an attested fact confirms) or "asserted" (the host's
	// word). Empty when the policy does not say.
	Provenance string `json:"provenance,omitempty"`
}
