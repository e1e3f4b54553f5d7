package codepolicy

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vigil-attest/vigil/efi"
)

// ExportStats reports what an exporter wrote and what of the policy the
// target format cannot express. Its JSON form is what `vigil policy export
// --output json` prints.
type ExportStats struct {
	// Target is the format: "dbx", "mokx", "blacklist-hashes",
	// "revocation-keys" or "modprobe".
	Target string `json:"target"`
	// Written counts the entries written, per kind of entry of the target
	// ("sha256", "x509", "x509_sha256", "tbs", "bin", "certificate"...).
	Written map[string]int `json:"written"`
	// NotExported counts policy entries the target cannot hold, per policy
	// key and reason ("deny.sha256: a file hash, not an image hash").
	NotExported map[string]int `json:"not_exported"`
	// Warnings are notes for the operator.
	Warnings []string `json:"warnings,omitempty"`
}

func newExportStats(target string) ExportStats {
	return ExportStats{Target: target, Written: map[string]int{}, NotExported: map[string]int{}}
}

// TotalWritten sums Written.
func (s *ExportStats) TotalWritten() int {
	n := 0
	for _, v := range s.Written {
		n += v
	}
	return n
}

// ErrNothingToExport is returned when the policy holds nothing the target
// format can express and an empty output would be invalid or misleading.
var ErrNothingToExport = errors.New("the policy holds nothing this format can express")

// ExportSignatureDatabase writes the policy's revocations and image
// denials as EFI_SIGNATURE_LISTs (raw, as efi-updatevar -f and
// sign-efi-sig-list take them), every entry owned by owner. target is
// "dbx" (firmware's forbidden database; EDK II IsForbiddenByDbx) or "mokx"
// (shim's MokListX, where shim reads only SHA-256 image hashes and X.509
// certificates: shim.c check_denylist). The mapping is the inverse of
// ImportSignatureDatabase:
//
//   - deny.authentihash_sha256 → EFI_CERT_SHA256; deny.authentihash_sha1 →
//     EFI_CERT_SHA1 (dbx only: shim does not read SHA-1 from MokListX);
//   - a revocation that keeps its certificate, without revoked_at (or with
//     a compromise reason) → EFI_CERT_X509, the certificate itself;
//   - any other revocation by tbs_sha256 → EFI_CERT_X509_SHA256 with
//     TimeOfRevocation = revoked_at (zero when it has none or a compromise
//     reason: revoked at all times) (dbx only);
//   - deny.signer_tbs_sha256/_sha384/_sha512 → EFI_CERT_X509_SHA256/384/512
//     with a zero TimeOfRevocation (dbx only).
//
// Not expressible, and counted in NotExported: deny.sha256 (a whole-file
// hash; firmware matches Authenticode image hashes), deny.signer_tbs_sha1
// (no UEFI type), deny.signed_content_sha256 (a kernel module hash),
// revocations by issuer and serial or by spki_sha256 (dbx holds
// certificates or TBS hashes), and in mokx everything but SHA-256 hashes
// and certificates. Lists are in a stable order: SHA-256, SHA-1, X.509,
// X509_SHA256, X509_SHA384, X509_SHA512, values sorted.
//
// mokx also writes deny.sha256 (whole-file hashes) as EFI_CERT_SHA256: the
// Debian kernel refuses a module whose file hash is in MokListXRT (see
// above); deny.signed_content_sha256 is not one it matches.
func ExportSignatureDatabase(p *Policy, target string, owner efi.GUID) ([]byte, ExportStats, error) {
	st := newExportStats(target)
	if p == nil || p.ix == nil {
		return nil, st, errNotValidated
	}
	if target != "dbx" && target != "mokx" {
		return nil, st, fmt.Errorf("export: signature database target %q (want dbx or mokx)", target)
	}
	dbx := target == "dbx"
	hashes := func(vals []string) [][]byte {
		var out [][]byte
		for _, v := range sortedUnique(vals) {
			b, _ := hex.DecodeString(v)
			out = append(out, b)
		}
		return out
	}
	var lists []efi.SignatureList
	add := func(t efi.GUID, data [][]byte) {
		if len(data) > 0 {
			l := efi.HashList(t, owner, data...)
			lists = append(lists, l)
			st.Written[efi.TypeName(t)] += len(data)
		}
	}
	if dbx {
		add(efi.CertSHA256, hashes(p.Deny.AuthentihashSHA256))
	} else {
		// mokx: also the whole-file hashes. Debian's kernel loads
		// MokListXRT's SHA-256 entries into .blacklist and refuses a
		// module whose whole file (signature included) has one
		// (kernel/module/signing.c mod_is_hash_blacklisted, Debian's
		// db-mok-keyring patches); to shim they are image hashes no
		// image has.
		add(efi.CertSHA256, hashes(append(slices.Clone(p.Deny.AuthentihashSHA256), p.Deny.SHA256...)))
	}
	if dbx {
		add(efi.CertSHA1, hashes(p.Deny.AuthentihashSHA1))
	} else if n := len(sortedUnique(p.Deny.AuthentihashSHA1)); n > 0 {
		st.NotExported["deny.authentihash_sha1: shim reads no SHA-1 from MokListX"] += n
	}

	// Revocations: certificates first, then TBS hashes with their times.
	type certHash struct {
		tbs []byte
		at  efi.Time
	}
	var certs [][]byte
	seenCert := map[string]bool{}
	var certHashes []certHash
	seenHash := map[string]bool{}
	for i := range p.Revocations {
		r := &p.Revocations[i]
		switch {
		case r.TBSSHA256 == "" && r.SPKISHA256 != "":
			st.NotExported["revocations (spki_sha256): dbx holds certificates or TBS hashes"]++
			continue
		case r.TBSSHA256 == "":
			st.NotExported["revocations (issuer and serial): dbx holds certificates or TBS hashes"]++
			continue
		}
		if r.Certificate != "" && r.rejectsAll() {
			c, err := parseOnePEMCertificate(r.Certificate)
			if err != nil { // Validate checked it
				return nil, st, fmt.Errorf("export: revocation %s: %w", r.TBSSHA256, err)
			}
			if !seenCert[string(c.Raw)] {
				seenCert[string(c.Raw)] = true
				certs = append(certs, c.Raw)
			}
			continue
		}
		if !dbx {
			st.NotExported["revocations (tbs_sha256 without the certificate, or with revoked_at): shim reads no certificate hashes from MokListX"]++
			continue
		}
		var at efi.Time
		if !r.rejectsAll() {
			at = efiTime(*r.RevokedAt)
		}
		tbs, _ := hex.DecodeString(r.TBSSHA256)
		k := string(tbs)
		if seenHash[k] {
			// Several entries for one certificate: keep the strictest, the
			// one the policy applies.
			continue
		}
		seenHash[k] = true
		if best := p.index().revByTBS[k]; best != nil && !best.rejectsAll() {
			at = efiTime(*best.RevokedAt)
		} else if best != nil {
			at = efi.Time{}
		}
		certHashes = append(certHashes, certHash{tbs, at})
	}
	sort.Slice(certs, func(i, j int) bool { return bytes.Compare(certs[i], certs[j]) < 0 })
	for _, c := range certs {
		lists = append(lists, efi.X509List(owner, c))
		st.Written["x509"]++
	}
	sort.Slice(certHashes, func(i, j int) bool { return bytes.Compare(certHashes[i].tbs, certHashes[j].tbs) < 0 })
	var ch [][]byte
	for _, c := range certHashes {
		ch = append(ch, efi.CertHashData(c.tbs, c.at))
	}
	add(efi.CertX509SHA256, ch)

	for _, d := range []struct {
		t    efi.GUID
		vals []string
		key  string
	}{
		{efi.CertX509SHA256, p.Deny.SignerTBSSHA256, "signer_tbs_sha256"},
		{efi.CertX509SHA384, p.Deny.SignerTBSSHA384, "signer_tbs_sha384"},
		{efi.CertX509SHA512, p.Deny.SignerTBSSHA512, "signer_tbs_sha512"},
	} {
		if !dbx {
			if n := len(sortedUnique(d.vals)); n > 0 {
				st.NotExported["deny."+d.key+": shim reads no certificate hashes from MokListX"] += n
			}
			continue
		}
		var data [][]byte
		for _, h := range hashes(d.vals) {
			if d.t == efi.CertX509SHA256 && seenHash[string(h)] {
				continue // already written from a revocation (zero time is no stricter than a deny)
			}
			data = append(data, efi.CertHashData(h, efi.Time{}))
		}
		add(d.t, data)
	}
	notExp := func(vals []string, why string) {
		if n := len(sortedUnique(vals)); n > 0 {
			st.NotExported[why] += n
		}
	}
	if dbx {
		notExp(p.Deny.SHA256, "deny.sha256: a whole-file hash; firmware matches Authenticode image hashes")
	}
	notExp(p.Deny.SignerTBSSHA1, "deny.signer_tbs_sha1: UEFI has no X509_SHA1 type")
	notExp(p.Deny.SignedContentSHA256, "deny.signed_content_sha256: a kernel module hash (export --to blacklist-hashes)")
	if len(lists) == 0 {
		return nil, st, ErrNothingToExport
	}
	out, err := efi.AppendSignatureLists(nil, lists...)
	if err != nil {
		return nil, st, fmt.Errorf("export: %w", err)
	}
	return out, st, nil
}

// efiTime converts t to the EFI_TIME of a TimeOfRevocation, in UTC.
func efiTime(t time.Time) efi.Time {
	t = t.UTC()
	return efi.Time{Year: uint16(t.Year()), Month: uint8(t.Month()), Day: uint8(t.Day()),
		Hour: uint8(t.Hour()), Minute: uint8(t.Minute()), Second: uint8(t.Second()),
		Nanosecond: uint32(t.Nanosecond())}
}

// ExportBlacklistHashes writes the file CONFIG_SYSTEM_BLACKLIST_HASH_LIST
// names: the kernel's compiled-in blacklist. certs/Makefile checks it with
// certs/check-blacklist-hashes.awk (records separated by ",", each a
// quoted "tbs:" or "bin:" prefix and lower-case hex of at most 128
// digits) and appends ", NULL" before certs/blacklist_hashes.c includes it
// into an array, so entries are separated by commas with none after the
// last. The kernel (certs/blacklist.c) matches "tbs:" against the hash of
// a certificate's TBSCertificate, computed with the certificate's own
// signature digest (crypto/asymmetric_keys/x509_public_key.c,
// x509_get_sig_params). A "bin:" hash is matched by two different
// checks, over different bytes: Debian's module loader (the distro patch
// "MODSIGN: checking the blacklisted hash before loading a kernel
// module", mod_is_hash_blacklisted(mod, wholelen)) hashes the whole
// module as loaded, signature included, and refuses it ("Module hash … is
// blacklisted"); IMA appraisal of a module with an appended signature
// (ima_check_blacklist) hashes the signed content. A real Debian 6.1
// kernel refused a module by its whole-file hash and loaded it with only
// its signed-content hash listed (internal/testvm TestRealRevocation).
//
// Written: deny.signer_tbs_sha1/256/384/512 and every revocation by
// tbs_sha256 → "tbs:" (the kernel keeps no revocation time: a revoked_at
// is dropped, which is stricter; module signatures carry no timestamp, so
// the policy would reject them all the same); deny.sha256 (whole files,
// for the module loader: it matches a module stored uncompressed, since
// the kernel hashes the decompressed bytes) and deny.signed_content_sha256
// (for IMA) → "bin:". A revocation by tbs_sha256 without its certificate matches in
// the kernel only a certificate signed with a SHA-256 algorithm; with the
// certificate, the hash is recomputed with its signature digest. Not
// expressible: issuer and serial or spki_sha256 revocations, image and
// file hashes. An empty list is ErrNothingToExport: the kernel's build
// wants CONFIG_SYSTEM_BLACKLIST_HASH_LIST unset then.
func ExportBlacklistHashes(p *Policy) ([]byte, ExportStats, error) {
	st := newExportStats("blacklist-hashes")
	if p == nil || p.ix == nil {
		return nil, st, errNotValidated
	}
	set := map[string]bool{}
	var tbs, bin []string
	addTBS := func(h string) {
		if !set["tbs:"+h] {
			set["tbs:"+h] = true
			tbs = append(tbs, h)
		}
	}
	for _, l := range [][]string{p.Deny.SignerTBSSHA1, p.Deny.SignerTBSSHA256, p.Deny.SignerTBSSHA384, p.Deny.SignerTBSSHA512} {
		for _, h := range l {
			addTBS(h)
		}
	}
	warnedAlg := false
	for i := range p.Revocations {
		r := &p.Revocations[i]
		switch {
		case r.TBSSHA256 == "" && r.SPKISHA256 != "":
			st.NotExported["revocations (spki_sha256): the kernel blacklists TBS hashes"]++
			continue
		case r.TBSSHA256 == "":
			st.NotExported["revocations (issuer and serial): the kernel blacklists TBS hashes"]++
			continue
		}
		if r.Certificate != "" {
			if c, err := parseOnePEMCertificate(r.Certificate); err == nil {
				if h, ok := sigDigest(c); ok {
					d := h.New()
					d.Write(c.RawTBSCertificate)
					addTBS(hex.EncodeToString(d.Sum(nil)))
					continue
				}
			}
		}
		if !warnedAlg {
			warnedAlg = true
			st.Warnings = append(st.Warnings, "a tbs_sha256 revocation without its certificate is written as is: the kernel matches it only for a certificate signed with a SHA-256 algorithm")
		}
		addTBS(r.TBSSHA256)
	}
	for _, l := range [][]string{p.Deny.SHA256, p.Deny.SignedContentSHA256} {
		for _, h := range l {
			if !set["bin:"+h] {
				set["bin:"+h] = true
				bin = append(bin, h)
			}
		}
	}
	sort.Strings(tbs)
	sort.Strings(bin)
	var lines []string
	for _, h := range tbs {
		lines = append(lines, `"tbs:`+h+`"`)
	}
	for _, h := range bin {
		lines = append(lines, `"bin:`+h+`"`)
	}
	st.Written["tbs"], st.Written["bin"] = len(tbs), len(bin)
	for _, l := range [][]string{p.Deny.AuthentihashSHA1, p.Deny.AuthentihashSHA256} {
		if n := len(sortedUnique(l)); n > 0 {
			st.NotExported["deny.authentihash_*: PE image hashes, not kernel blacklist hashes"] += n
		}
	}
	if len(lines) == 0 {
		return nil, st, ErrNothingToExport
	}
	return []byte(strings.Join(lines, ",\n") + "\n"), st, nil
}

// sigDigest is the digest the kernel hashes a certificate's TBS with: the
// one of its signature algorithm.
func sigDigest(c *x509.Certificate) (crypto.Hash, bool) {
	switch c.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		return crypto.SHA1, true
	case x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		return crypto.SHA256, true
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		return crypto.SHA384, true
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

// ExportRevocationKeys writes the PEM file CONFIG_SYSTEM_REVOCATION_KEYS
// names (certs/revocation_certificates.S): the certificates the policy
// revokes and holds, sorted by DER. The kernel refuses a PKCS#7 signed by
// one of them (certs/system_keyring.c, is_key_on_revocation_list). Only
// revocations that keep the certificate (those imported from a dbx or
// MokListX X.509 entry) can be written; the others name the certificate
// by a hash or by issuer and serial, from which no certificate can be
// rebuilt, and are counted in NotExported. An empty file is
// ErrNothingToExport.
func ExportRevocationKeys(p *Policy) ([]byte, ExportStats, error) {
	st := newExportStats("revocation-keys")
	if p == nil || p.ix == nil {
		return nil, st, errNotValidated
	}
	var ders [][]byte
	seen := map[string]bool{}
	for i := range p.Revocations {
		r := &p.Revocations[i]
		if r.Certificate == "" {
			st.NotExported["revocations without the certificate"]++
			continue
		}
		c, err := parseOnePEMCertificate(r.Certificate)
		if err != nil {
			return nil, st, fmt.Errorf("export: revocation %s: %w", r.TBSSHA256, err)
		}
		if !r.rejectsAll() {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s: revoked_at dropped; the kernel rejects every signature by a revocation key", c.Subject))
		}
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			ders = append(ders, c.Raw)
		}
	}
	sort.Slice(ders, func(i, j int) bool { return bytes.Compare(ders[i], ders[j]) < 0 })
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	st.Written["certificate"] = len(ders)
	if len(ders) == 0 {
		return nil, st, ErrNothingToExport
	}
	return out, st, nil
}

// ExportModprobe writes a modprobe.d(5) block list: for each module the
// policy denies by name, "blacklist NAME" (no alias loading) and "install
// NAME /bin/false" (no explicit loading either). The policy has no rule
// that names a module: its module denials are by hash (deny.sha256,
// deny.signed_content_sha256) and by signer. So the file holds only its
// header, says so, and every module denial is counted in NotExported; the
// kernel blacklist (export --to blacklist-hashes) is what enforces them.
func ExportModprobe(p *Policy) ([]byte, ExportStats, error) {
	st := newExportStats("modprobe")
	if p == nil || p.ix == nil {
		return nil, st, errNotValidated
	}
	for _, l := range []struct {
		key  string
		vals []string
	}{{"deny.sha256", p.Deny.SHA256}, {"deny.signed_content_sha256", p.Deny.SignedContentSHA256}} {
		if n := len(sortedUnique(l.vals)); n > 0 {
			st.NotExported[l.key+": a hash names no module"] += n
		}
	}
	st.Written["module"] = 0
	st.Warnings = append(st.Warnings, "the policy names no modules (its denials are by hash and signer): the block list is empty; use --to blacklist-hashes")
	out := "# modprobe.d block list written by vigil policy export.\n" +
		"# The policy names no modules: its module denials are by hash and by signer,\n" +
		"# which modprobe cannot apply. See the kernel blacklist (--to blacklist-hashes).\n"
	return []byte(out), st, nil
}
