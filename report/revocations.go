package report

// Revocations says which of the code policy's revocations the host
// enforces by itself, and which it does not yet. Vigil denies every
// revocation at once wherever it judges (files, and the modules of an
// attested host); the host's own platform enforces one only once it is in
// the firmware's dbx, shim's MokListX or the kernel's .blacklist keyring,
// which for dbx and MokListX takes a reboot. This section is the agent's
// reading of those stores (asserted); the appraisal re-derives what it can
// from the attested boot (docs/attestation-policy.md).
type Revocations struct {
	Section
	// Enforced are the policy's revocations some store of the host holds;
	// Pending those a store could hold but none does. Each list holds at
	// most MaxRevocationsListed entries (sorted by kind then value);
	// EnforcedCount and PendingCount count them all.
	Enforced      []HostRevocation `json:"enforced"`
	Pending       []HostRevocation `json:"pending"`
	EnforcedCount int              `json:"enforced_count"`
	PendingCount  int              `json:"pending_count"`
	// VigilOnly counts the policy's entries no host store can hold (file
	// hashes, revocations by issuer and serial or by key): only Vigil
	// enforces them.
	VigilOnly int `json:"vigil_only"`
}

// MaxRevocationsListed bounds Revocations.Enforced and Pending.
const MaxRevocationsListed = 4096

// HostRevocation is one revocation of the code policy and where the host
// holds it.
type HostRevocation struct {
	// Kind and Value name it (efi.RevocationKinds; lower-case hex).
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// Targets are the stores that can hold it: "dbx", "mokx",
	// "blacklist". At are those that do, as the agent read them: dbx
	// from efivarfs (the database the firmware applies at the next boot),
	// mokx from shim's MokListXRT (the one shim applied this boot),
	// blacklist from the live .blacklist keyring.
	Targets []string `json:"targets"`
	At      []string `json:"at"`
}

// RevocationKinds are the kinds of HostRevocation.Kind: efi.RevocationKinds
// (efi's tests hold the two equal; this package links no parser).
var RevocationKinds = []string{"cert_tbs_sha1", "cert_tbs_sha256", "cert_tbs_sha384", "cert_tbs_sha512",
	"image_sha1", "image_sha256", "signed_content_sha256"}

// The stores a host enforces revocations in (HostRevocation.Targets, At).
const (
	StoreDBX       = "dbx"
	StoreMokX      = "mokx"
	StoreBlacklist = "blacklist"
)

var revocationStores = enum(StoreDBX, StoreMokX, StoreBlacklist)

// hexDigest accepts a lower-case hex digest of 20 to 64 bytes.
var hexDigest = &vocab{pattern: "^[0-9a-f]{40,128}$", match: isHexDigest}

func isHexDigest(s string) bool {
	if len(s) < 40 || len(s) > 128 || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// RevocationTargets are the stores that can hold a revocation of kind
// (with the certificate itself for a cert_tbs_sha256: MokListX holds
// certificates, not their hashes), in the order dbx, mokx, blacklist;
// nil for an unknown kind. It is what `vigil policy export` can write to
// each store:
//
//   - image_sha256: dbx and MokListX EFI_CERT_SHA256, a .blacklist "bin:"
//     entry (the kernel's check of PE images);
//   - image_sha1: dbx EFI_CERT_SHA1;
//   - cert_tbs_sha256: dbx (X.509 or EFI_CERT_X509_SHA256), .blacklist
//     "tbs:", and MokListX when the certificate is known;
//   - cert_tbs_sha384, cert_tbs_sha512: dbx EFI_CERT_X509_SHA384/512 and
//     .blacklist; cert_tbs_sha1: .blacklist only;
//   - signed_content_sha256: .blacklist "bin:" only.
func RevocationTargets(kind string, withCertificate bool) []string {
	switch kind {
	case "image_sha256":
		return []string{StoreDBX, StoreMokX, StoreBlacklist}
	case "image_sha1":
		return []string{StoreDBX}
	case "cert_tbs_sha256":
		if withCertificate {
			return []string{StoreDBX, StoreMokX, StoreBlacklist}
		}
		return []string{StoreDBX, StoreBlacklist}
	case "cert_tbs_sha384", "cert_tbs_sha512":
		return []string{StoreDBX, StoreBlacklist}
	case "cert_tbs_sha1", "signed_content_sha256":
		return []string{StoreBlacklist}
	}
	return nil
}
