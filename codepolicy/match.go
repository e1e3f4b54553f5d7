package codepolicy

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-attest/vigil/sbat"
)

// denyKind describes one deny list.
type denyKind struct {
	key   string // YAML key under deny
	size  int    // digest length in bytes
	field func(*Deny) *[]string
}

// The deny lists, in index order.
const (
	dkSHA256 = iota
	dkAuthSHA1
	dkAuthSHA256
	dkTBSSHA1
	dkTBSSHA256
	dkTBSSHA384
	dkTBSSHA512
	dkSignedContentSHA256
	numDenyKinds
)

var denyKinds = [numDenyKinds]denyKind{
	dkSHA256:              {"sha256", 32, func(d *Deny) *[]string { return &d.SHA256 }},
	dkAuthSHA1:            {"authentihash_sha1", 20, func(d *Deny) *[]string { return &d.AuthentihashSHA1 }},
	dkAuthSHA256:          {"authentihash_sha256", 32, func(d *Deny) *[]string { return &d.AuthentihashSHA256 }},
	dkTBSSHA1:             {"signer_tbs_sha1", 20, func(d *Deny) *[]string { return &d.SignerTBSSHA1 }},
	dkTBSSHA256:           {"signer_tbs_sha256", 32, func(d *Deny) *[]string { return &d.SignerTBSSHA256 }},
	dkTBSSHA384:           {"signer_tbs_sha384", 48, func(d *Deny) *[]string { return &d.SignerTBSSHA384 }},
	dkTBSSHA512:           {"signer_tbs_sha512", 64, func(d *Deny) *[]string { return &d.SignerTBSSHA512 }},
	dkSignedContentSHA256: {"signed_content_sha256", 32, func(d *Deny) *[]string { return &d.SignedContentSHA256 }},
}

// index holds the resolved policy: maps keyed by raw digest bytes so that
// lookups stay O(1) however long the lists are.
type index struct {
	deny        [numDenyKinds]map[string]struct{}
	revBySerial map[string]*Revocation // issuer key + "\x00" + serial hex
	revByTBS    map[string]*Revocation // raw SHA-256 of the TBSCertificate
	revBySPKI   map[string]*Revocation // raw SHA-256 of the SubjectPublicKeyInfo
	revExact    map[string]struct{}    // identity + revoked_at + reason, for import dedup
	allow       []allowRule
	ekus        []asn1.ObjectIdentifier
	minHash     crypto.Hash
	sbat        *sbat.Level     // sbat_level, nil when none
	tsas        map[string]bool // raw SPKI SHA-256 of timestamp_authorities
	signerFiles []signerFileRule

	// Name caches: textual names seen while building (single-threaded),
	// and DER issuer names seen by lookups (concurrent, bounded).
	textDN     map[string]dnKey
	rawDN      sync.Map // "e" or "f" (exact or folded) + string(DER) → dnKey
	rawDNCount atomic.Int64
}

// maxRawDNCache bounds the lookup cache; a fleet has few distinct issuers.
const maxRawDNCache = 4096

// textKey parses a revocation's textual issuer name into its RFC 5280
// comparison key (parseDNFolded), with a cache.
func (ix *index) textKey(s string) (dnKey, error) {
	if k, ok := ix.textDN[s]; ok {
		return k, nil
	}
	k, err := parseDNFolded(s)
	if err != nil {
		return "", err
	}
	ix.textDN[s] = k
	return k, nil
}

// rawKey returns the key of a DER name, with a cache: the exact key
// (keyOfRawDN) for allow rules, or with fold the RFC 5280 comparison key
// (foldedKeyOfRawDN) for revocations.
func (ix *index) rawKey(der []byte, fold bool) (dnKey, error) {
	ck := "e" + string(der)
	if fold {
		ck = "f" + string(der)
	}
	if k, ok := ix.rawDN.Load(ck); ok {
		return k.(dnKey), nil
	}
	key := keyOfRawDN
	if fold {
		key = foldedKeyOfRawDN
	}
	k, err := key(der)
	if err != nil {
		return "", err
	}
	if ix.rawDNCount.Load() < maxRawDNCache {
		if _, loaded := ix.rawDN.LoadOrStore(ck, k); !loaded {
			ix.rawDNCount.Add(1)
		}
	}
	return k, nil
}

type allowRule struct {
	subject, issuer       dnKey
	hasSubject, hasIssuer bool
	tbs, spki             string // raw SHA-256, "" when not set
}

func newIndex() *index {
	ix := &index{
		revBySerial: map[string]*Revocation{},
		revByTBS:    map[string]*Revocation{},
		revBySPKI:   map[string]*Revocation{},
		revExact:    map[string]struct{}{},
		textDN:      map[string]dnKey{},
	}
	for i := range ix.deny {
		ix.deny[i] = map[string]struct{}{}
	}
	return ix
}

// revIdentity returns the map a normalised revocation is indexed in and its
// key there.
func (ix *index) revIdentity(r *Revocation) (map[string]*Revocation, string, error) {
	switch {
	case r.Issuer != "":
		k, err := ix.textKey(r.Issuer)
		if err != nil {
			return nil, "", err
		}
		return ix.revBySerial, string(k) + "\x00" + r.Serial, nil
	case r.TBSSHA256 != "":
		raw, _ := hex.DecodeString(r.TBSSHA256)
		return ix.revByTBS, string(raw), nil
	default:
		raw, _ := hex.DecodeString(r.SPKISHA256)
		return ix.revBySPKI, string(raw), nil
	}
}

func exactKey(identity string, r *Revocation) string {
	at := ""
	if r.RevokedAt != nil {
		at = r.RevokedAt.UTC().Format(time.RFC3339Nano)
	}
	return identity + "\x00" + at + "\x00" + r.Reason
}

// addRevocation indexes a normalised entry; it reports whether an identical
// entry (same certificate, revoked_at and reason) was already there.
func (ix *index) addRevocation(r *Revocation) error {
	_, err := ix.insertRevocation(r)
	return err
}

func (ix *index) insertRevocation(r *Revocation) (dup bool, err error) {
	m, k, err := ix.revIdentity(r)
	if err != nil {
		return false, err
	}
	c := *r
	if r.RevokedAt != nil {
		t := *r.RevokedAt
		c.RevokedAt = &t
	}
	ek := exactKey(revForm(r)+k, r)
	if _, ok := ix.revExact[ek]; ok {
		return true, nil
	}
	ix.revExact[ek] = struct{}{}
	if old := m[k]; old == nil || stricter(&c, old) {
		m[k] = &c
	}
	return false, nil
}

// compromised reports whether the reason says the key (or its CA) was
// compromised, so that no signature by it can be trusted, timestamped or not.
func (r *Revocation) compromised() bool {
	switch r.Reason {
	case "keyCompromise", "cACompromise", "aACompromise":
		return true
	}
	return false
}

// rejectsAll reports whether the entry rejects every signature.
func (r *Revocation) rejectsAll() bool {
	return r.RevokedAt == nil || r.compromised()
}

// stricter reports whether a rejects more signatures than b.
func stricter(a, b *Revocation) bool {
	if a.rejectsAll() != b.rejectsAll() {
		return a.rejectsAll()
	}
	if a.rejectsAll() {
		return false
	}
	return a.RevokedAt.Before(*b.RevokedAt)
}

// Rejects applies the revocation rule to a signature by the revoked
// certificate. trustedTimestamp is the time from a verified timestamp
// countersignature, or nil when there is none.
//
//   - No revoked_at: every signature is rejected.
//   - Reason keyCompromise, cACompromise or aACompromise: every signature is
//     rejected, even one timestamped before revoked_at (the key may have
//     been in other hands before the revocation was published).
//   - No trusted timestamp: rejected (the signing time is unknown).
//   - Otherwise a timestamp strictly before revoked_at keeps the signature
//     valid; at or after revoked_at rejects it.
//
// A nil Revocation rejects nothing.
func (r *Revocation) Rejects(trustedTimestamp *time.Time) bool {
	if r == nil {
		return false
	}
	if r.rejectsAll() || trustedTimestamp == nil {
		return true
	}
	return !trustedTimestamp.Before(*r.RevokedAt)
}

// Revocation returns the policy's revocation entry for cert, or nil. It
// matches issuer and serial number (the issuer compared as RFC 5280 7.1
// says: case-insensitive, white space folded), the SHA-256 of the TBSCertificate, and
// the SHA-256 of the SubjectPublicKeyInfo. When several entries match, it
// returns the strictest (one that rejects everything, else the earliest
// revoked_at). The engine checks every certificate of the chain. The result
// is a copy.
func (p *Policy) Revocation(cert *x509.Certificate) *Revocation {
	ix := p.index()
	if cert == nil {
		return nil
	}
	var best *Revocation
	consider := func(r *Revocation) {
		if r != nil && (best == nil || stricter(r, best)) {
			best = r
		}
	}
	if len(ix.revByTBS) > 0 {
		h := sha256.Sum256(cert.RawTBSCertificate)
		consider(ix.revByTBS[string(h[:])])
	}
	if len(ix.revBySPKI) > 0 {
		h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		consider(ix.revBySPKI[string(h[:])])
	}
	if len(ix.revBySerial) > 0 && cert.SerialNumber != nil {
		if k, err := ix.rawKey(cert.RawIssuer, true); err == nil {
			consider(ix.revBySerial[string(k)+"\x00"+cert.SerialNumber.Text(16)])
		}
	}
	if best == nil {
		return nil
	}
	c := *best
	return &c
}

// DenyHash checks a file's digests against the block lists: fileSHA256
// against deny.sha256, authSHA1 and authSHA256 (Authenticode hashes) against
// deny.authentihash_sha1 and deny.authentihash_sha256. Any may be nil. The
// rule names the list and the value, such as "deny.sha256:9f86…".
func (p *Policy) DenyHash(fileSHA256, authSHA1, authSHA256 []byte) (rule string, denied bool) {
	ix := p.index()
	for _, c := range []struct {
		kind int
		v    []byte
	}{{dkSHA256, fileSHA256}, {dkAuthSHA256, authSHA256}, {dkAuthSHA1, authSHA1}} {
		if c.v == nil {
			continue
		}
		if _, ok := ix.deny[c.kind][string(c.v)]; ok {
			return "deny." + denyKinds[c.kind].key + ":" + hex.EncodeToString(c.v), true
		}
	}
	return "", false
}

// NamedTSA reports whether the policy names c's key in
// timestamp_authorities.
func (p *Policy) NamedTSA(c *x509.Certificate) bool {
	if c == nil {
		return false
	}
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return p.index().tsas[string(s[:])]
}

// SbatRevoked returns the entries of a boot image's .sbat section that
// the policy's sbat_level revokes (none without one).
func (p *Policy) SbatRevoked(entries []sbat.Entry) []sbat.Entry {
	return p.index().sbat.Revoked(entries)
}

// DenySignedContent checks the SHA-256 of a kernel module's signed content
// (the decompressed module up to its PKCS#7, the kernel's blacklist "bin:"
// hash) against deny.signed_content_sha256. A nil sum matches nothing.
func (p *Policy) DenySignedContent(sum []byte) (rule string, denied bool) {
	if sum == nil {
		return "", false
	}
	if _, ok := p.index().deny[dkSignedContentSHA256][string(sum)]; ok {
		return "deny." + denyKinds[dkSignedContentSHA256].key + ":" + hex.EncodeToString(sum), true
	}
	return "", false
}

// DenySigner checks a certificate against the deny.signer_tbs_* lists: the
// SHA-1, SHA-256, SHA-384 and SHA-512 of its DER TBSCertificate. The engine
// checks every certificate of the chain, as WDAC does for CertRoot rules.
func (p *Policy) DenySigner(cert *x509.Certificate) (rule string, denied bool) {
	ix := p.index()
	if cert == nil {
		return "", false
	}
	tbs := cert.RawTBSCertificate
	for _, c := range []struct {
		kind int
		sum  func([]byte) []byte
	}{
		{dkTBSSHA256, func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }},
		{dkTBSSHA1, func(b []byte) []byte { h := sha1.Sum(b); return h[:] }},
		{dkTBSSHA384, func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }},
		{dkTBSSHA512, func(b []byte) []byte { h := sha512.Sum512(b); return h[:] }},
	} {
		if len(ix.deny[c.kind]) == 0 {
			continue
		}
		sum := c.sum(tbs)
		if _, ok := ix.deny[c.kind][string(sum)]; ok {
			return "deny." + denyKinds[c.kind].key + ":" + hex.EncodeToString(sum), true
		}
	}
	return "", false
}

// SignerAllowed reports whether the signer (leaf) certificate matches an
// allow_signers entry; it is true when allow_signers is empty.
func (p *Policy) SignerAllowed(cert *x509.Certificate) bool {
	ix := p.index()
	if len(ix.allow) == 0 {
		return true
	}
	if cert == nil {
		return false
	}
	var subj, iss dnKey
	var subjErr, issErr error
	subjDone, issDone := false, false
	var tbs, spki string
	for _, r := range ix.allow {
		if r.hasSubject {
			if !subjDone {
				subj, subjErr = ix.rawKey(cert.RawSubject, false)
				subjDone = true
			}
			if subjErr != nil || subj != r.subject {
				continue
			}
		}
		if r.hasIssuer {
			if !issDone {
				iss, issErr = ix.rawKey(cert.RawIssuer, false)
				issDone = true
			}
			if issErr != nil || iss != r.issuer {
				continue
			}
		}
		if r.tbs != "" {
			if tbs == "" {
				h := sha256.Sum256(cert.RawTBSCertificate)
				tbs = string(h[:])
			}
			if tbs != r.tbs {
				continue
			}
		}
		if r.spki != "" {
			if spki == "" {
				h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
				spki = string(h[:])
			}
			if spki != r.spki {
				continue
			}
		}
		return true
	}
	return false
}

// HashAllowed reports whether a signature's digest algorithm meets
// min_hash. Only SHA-1, SHA-256, SHA-384 and SHA-512 are ever accepted.
func (p *Policy) HashAllowed(h crypto.Hash) bool {
	r := hashRank(h)
	return r > 0 && r >= hashRank(p.index().minHash)
}
