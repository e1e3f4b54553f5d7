package efi

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
)

// Revocation kinds: what one revocation names, whatever holds it (the
// firmware's dbx, shim's MokListX, the kernel's .blacklist keyring, or a
// Vigil code policy). A revocation is the pair of a kind and a lower-case
// hex value, written "kind:value" (RevocationKey).
const (
	// RevokeImageSHA256 and RevokeImageSHA1: an image's Authenticode
	// hash (dbx EFI_CERT_SHA256/SHA1; the policy's deny.authentihash_*;
	// a .blacklist "bin:" entry the kernel applies to PE images).
	RevokeImageSHA256 = "image_sha256"
	RevokeImageSHA1   = "image_sha1"
	// RevokeCertTBSSHA*: a certificate by the hash of its TBSCertificate
	// (dbx EFI_CERT_X509 entries, by the SHA-256 of their TBS, and
	// EFI_CERT_X509_SHA*; the policy's tbs_sha256 revocations and
	// deny.signer_tbs_*; .blacklist "tbs:" entries).
	RevokeCertTBSSHA1   = "cert_tbs_sha1"
	RevokeCertTBSSHA256 = "cert_tbs_sha256"
	RevokeCertTBSSHA384 = "cert_tbs_sha384"
	RevokeCertTBSSHA512 = "cert_tbs_sha512"
	// RevokeSignedContentSHA256: a kernel module's signed content (the
	// policy's deny.signed_content_sha256; a .blacklist "bin:" entry).
	RevokeSignedContentSHA256 = "signed_content_sha256"
)

// RevocationKinds lists every kind, sorted.
func RevocationKinds() []string {
	return []string{RevokeCertTBSSHA1, RevokeCertTBSSHA256, RevokeCertTBSSHA384, RevokeCertTBSSHA512,
		RevokeImageSHA1, RevokeImageSHA256, RevokeSignedContentSHA256}
}

// RevocationKey is a revocation's "kind:value" form.
func RevocationKey(kind, value string) string { return kind + ":" + value }

// Revokes returns what a forbidden database's entries revoke, as the
// platform that reads that database applies them, as sorted, distinct
// RevocationKeys. mokx selects shim's reading of MokListX, which uses only
// EFI_CERT_SHA256 and EFI_CERT_X509 entries (shim.c check_denylist); the
// firmware's dbx (EDK II IsForbiddenByDbx) uses SHA-256 and SHA-1 image
// hashes, certificates and certificate hashes. An X.509 entry revokes its
// certificate by the SHA-256 of its TBSCertificate, as Vigil's policy
// names certificates; an entry that does not parse revokes nothing that
// can be named. A certificate-hash entry revokes its certificate whatever
// its TimeOfRevocation (the time only spares signatures timestamped
// before it).
func Revokes(entries []Entry, mokx bool) []string {
	seen := map[string]bool{}
	add := func(kind string, b []byte) { seen[RevocationKey(kind, hex.EncodeToString(b))] = true }
	for _, e := range entries {
		switch e.Type {
		case CertSHA256:
			if e.Hash != nil {
				add(RevokeImageSHA256, e.Hash)
			}
		case CertX509:
			if e.Certificate != nil {
				h := sha256.Sum256(e.Certificate.RawTBSCertificate)
				add(RevokeCertTBSSHA256, h[:])
			}
		}
		if mokx {
			continue
		}
		switch e.Type {
		case CertSHA1:
			if e.Hash != nil {
				add(RevokeImageSHA1, e.Hash)
			}
		case CertX509SHA256:
			if e.Hash != nil {
				add(RevokeCertTBSSHA256, e.Hash)
			}
		case CertX509SHA384:
			if e.Hash != nil {
				add(RevokeCertTBSSHA384, e.Hash)
			}
		case CertX509SHA512:
			if e.Hash != nil {
				add(RevokeCertTBSSHA512, e.Hash)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
