package report

// Keyrings is the running kernel's trust and blacklist keyrings, as the
// agent read them (/proc/keys, and each keyring's members with keyctl),
// and what they did to module verdicts: the kernel trusts for modules only
// the keys of .builtin_trusted_keys, .secondary_trusted_keys and
// .machine, and refuses what .blacklist names. A key's certificate cannot
// be read back from the kernel, only its description ("<subject>: <key
// id>"), so the agent matches the descriptions against the certificates
// it has (its policy's anchors, such as the kernel image's system list,
// and MokListRT when shim set MokListTrustedRT). Asserted: it is the
// running kernel's word.
type Keyrings struct {
	Section
	// Membership says how keyring membership was read: "keyctl" (each
	// keyring's members, the live host) or "proc_keys" (a captured tree:
	// only the blacklist hash keys /proc/keys lists count, and the trust
	// keyrings are unknown, so module anchors are left as configured).
	Membership string `json:"membership"`
	// Trusted are the asymmetric keys of the three trust keyrings;
	// Revoked those of .blacklist (its revocation certificates).
	Trusted []KeyringKey `json:"trusted"`
	Revoked []KeyringKey `json:"revoked"`
	// Blacklist are .blacklist's hash entries ("tbs:<hex>", "bin:<hex>"),
	// sorted, at most MaxBlacklistListed; BlacklistCount counts them all.
	Blacklist      []string `json:"blacklist"`
	BlacklistCount int      `json:"blacklist_count"`
	// Missing names the keyrings /proc/keys did not show.
	Missing []string `json:"missing"`
	// NotTrusted are certificates the agent would otherwise trust for
	// modules that no live trust keyring holds, or that .blacklist
	// revokes: they are not used as module anchors (Membership "keyctl"
	// only).
	NotTrusted []KeyringCertificate `json:"not_trusted"`
}

// MaxBlacklistListed bounds Keyrings.Blacklist.
const MaxBlacklistListed = 4096

// KeyringKey is one key of a keyring.
type KeyringKey struct {
	Keyring     string `json:"keyring"`
	Description string `json:"description"`
	// Algorithm is the key's subtype as /proc/keys shows it ("X509.rsa").
	Algorithm string `json:"algorithm"`
	// Certificate is the SHA-256 (of the DER) of the certificate the
	// agent matched to the key by its description; "" for a key no
	// certificate the agent has explains (unresolved: it cannot be an
	// anchor, since its certificate cannot be read back).
	Certificate string `json:"certificate"`
}

// KeyringCertificate names a certificate.
type KeyringCertificate struct {
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
}

// The keyrings (KeyringKey.Keyring, Keyrings.Missing).
const (
	KeyringBuiltin   = ".builtin_trusted_keys"
	KeyringSecondary = ".secondary_trusted_keys"
	KeyringMachine   = ".machine"
	KeyringBlacklist = ".blacklist"
)

// Keyring membership sources (Keyrings.Membership).
const (
	MembershipKeyctl   = "keyctl"
	MembershipProcKeys = "proc_keys"
)

var keyringNames = enum(KeyringBuiltin, KeyringSecondary, KeyringMachine, KeyringBlacklist)

// blacklistHash accepts a .blacklist description as the kernel vets it
// (blacklist_vet_description): tbs: or bin:, then an even number of hex
// digits, 2 to 128.
var blacklistHash = &vocab{pattern: "^(tbs|bin):([0-9a-f]{2}){1,64}$", match: func(s string) bool {
	if len(s) < 6 || (s[:4] != "tbs:" && s[:4] != "bin:") {
		return false
	}
	h := s[4:]
	if len(h)%2 != 0 || len(h) > 128 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}}
