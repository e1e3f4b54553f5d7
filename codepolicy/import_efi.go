package codepolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/vigil-attest/vigil/efi"
)

// ImportSignatureDatabase merges the entries of a revocation signature
// database into p: the data of dbx, or of shim's MokListX. source is "dbx"
// or "mokx"; it is the stats' Source and starts each entry's comment. data
// is in any form efi.ReadDatabase accepts: raw EFI_SIGNATURE_LISTs, an
// efivarfs file (4-byte attribute prefix) or an authenticated update
// (EFI_VARIABLE_AUTHENTICATION_2 header, stripped as firmware strips it;
// its PKCS#7 signature is verified against the KEK with VerifyUpdate, and
// otherwise the stats warn that it was not).
//
// Entries map onto the policy's kinds as firmware (EDK II
// DxeImageVerificationLib, IsForbiddenByDbx and IsSignatureFoundInDatabase)
// and shim (check_db_hash, check_db_cert) apply them:
//
//   - EFI_CERT_SHA256, EFI_CERT_SHA1: the Authenticode hash of an image →
//     deny.authentihash_sha256, deny.authentihash_sha1.
//   - EFI_CERT_X509: a certificate; firmware refuses an image whose
//     signature verifies through it, i.e. whose chain holds it → a
//     revocation by tbs_sha256 (the certificate's TBSCertificate hash),
//     with no revoked_at, keeping the certificate. The TBS hash is the
//     whole certificate less its outer signature: it names exactly the
//     certificate the firmware compares, and also catches a copy whose
//     signature bytes were re-encoded (an ECDSA signature can be), which a
//     hash of the DER would miss. An SPKI hash would revoke every other
//     certificate of the key too, which firmware does not.
//   - EFI_CERT_X509_SHA256: the hash of a TBSCertificate and its
//     TimeOfRevocation → a revocation by tbs_sha256, with revoked_at the
//     TimeOfRevocation when it is not zero (UEFI 2.10 §32.4.1: a signature
//     timestamped before that time stays valid; EDK II PassTimestampCheck),
//     none when it is zero (revoked at all times).
//   - EFI_CERT_X509_SHA384, _SHA512 with a zero TimeOfRevocation →
//     deny.signer_tbs_sha384, _sha512 (revocations are by SHA-256 only, and
//     a deny applies to every certificate of every chain, as here).
//
// Skipped and counted, by reason: "x509-sha384-revocation-time" and
// "x509-sha512-revocation-time" (a timed revocation the policy cannot hold
// by that hash), "image-hash-sha224", "image-hash-sha384",
// "image-hash-sha512" (the engine computes SHA-1 and SHA-256 Authenticode
// hashes only), "type-rsa2048", "type-rsa2048_sha1", "type-rsa2048_sha256"
// (raw keys and signatures, which no image check uses), "unknown-type",
// "malformed-certificate", "malformed-revocation-time".
//
// A database that does not parse is an error and the policy is unchanged.
func ImportSignatureDatabase(p *Policy, data []byte, source string, opts ...DatabaseOption) (ImportStats, error) {
	st := newStats(source)
	if p == nil || p.ix == nil {
		return st, errNotValidated
	}
	var o dbOptions
	for _, f := range opts {
		f(&o)
	}
	if len(o.kek) > 0 {
		if source != "dbx" {
			return st, fmt.Errorf("%s: only a dbx update is signed by a KEK", source)
		}
		if err := verifyUpdate(data, o.kek); err != nil {
			return st, fmt.Errorf("%s: %w", source, err)
		}
		st.Verified = true
	}
	lists, form, err := efi.ReadDatabase(data)
	if err != nil {
		return st, fmt.Errorf("%s: %w", source, err)
	}
	if form == efi.FormAuthenticated && !st.Verified {
		st.Warnings = append(st.Warnings, "authenticated update: the EFI_VARIABLE_AUTHENTICATION_2 signature was not verified (give the KEK to verify it)")
	}
	var deny []pendingDeny
	var revs []Revocation
	for _, e := range efi.Entries(lists) {
		st.Read++
		comment := fmt.Sprintf("%s list %d entry %d, owner %s", source, e.List, e.Index, e.Owner)
		switch e.Type {
		case efi.CertSHA256:
			deny = append(deny, pendingDeny{dkAuthSHA256, hex.EncodeToString(e.Hash)})
		case efi.CertSHA1:
			deny = append(deny, pendingDeny{dkAuthSHA1, hex.EncodeToString(e.Hash)})
		case efi.CertX509:
			if e.Certificate == nil {
				st.skip("malformed-certificate")
				continue
			}
			h := sha256.Sum256(e.Certificate.RawTBSCertificate)
			revs = append(revs, Revocation{
				TBSSHA256:   hex.EncodeToString(h[:]),
				Comment:     comment + ", " + e.Certificate.Subject.String(),
				Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Certificate.Raw})),
			})
		case efi.CertX509SHA256:
			r := Revocation{TBSSHA256: hex.EncodeToString(e.Hash), Comment: comment}
			if e.Revocation == nil {
				st.skip("malformed-revocation-time")
				continue
			}
			if !e.Revocation.IsZero() {
				t, err := e.Revocation.Time()
				if err != nil {
					st.skip("malformed-revocation-time")
					continue
				}
				r.RevokedAt = &t
			}
			revs = append(revs, r)
		case efi.CertX509SHA384, efi.CertX509SHA512:
			name := efi.TypeName(e.Type)
			if e.Revocation == nil || !e.Revocation.IsZero() {
				st.skip(nameSkip(name) + "-revocation-time")
				continue
			}
			kind, _ := tbsKindBySize(len(e.Hash))
			deny = append(deny, pendingDeny{kind, hex.EncodeToString(e.Hash)})
		case efi.CertSHA224, efi.CertSHA384, efi.CertSHA512:
			st.skip("image-hash-" + efi.TypeName(e.Type))
		case efi.CertRSA2048, efi.CertRSA2048SHA1, efi.CertRSA2048SHA256:
			st.skip("type-" + efi.TypeName(e.Type))
		default:
			st.skip("unknown-type")
		}
	}
	p.mergeDeny(&st, deny)
	p.mergeRevocations(&st, revs)
	return st, nil
}

// nameSkip turns "x509_sha384" into "x509-sha384".
func nameSkip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == '_' {
			b[i] = '-'
		}
	}
	return string(b)
}
