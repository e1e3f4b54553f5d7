// Package codepolicy is Vigil's code-integrity signing policy: which
// certificates are trust anchors, which extended key usages and hash
// strengths a signature needs, which certificates are revoked, and which
// files and signers are blocked. It also imports block lists (LOLDrivers,
// WDAC deny policies, CRLs) into a policy.
//
// The package holds the data model and pure decision helpers; the
// verification engine (package integrity) calls them. It prints nothing.
//
// A Policy is read-only once Parse, Load, Default or Validate has returned,
// and is then safe for concurrent use. The importers change it and must not
// run concurrently with lookups. After changing exported fields by hand, call
// Validate: lookups use indexes built from the fields at that time.
//
// docs/policy.md is the operator's reference for the file format and its
// semantics.
package codepolicy

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-attest/vigil/sbat"

	"github.com/vigil-attest/vigil/trust"

	"gopkg.in/yaml.v3"
)

// Policy is a code-integrity policy. The exported fields are the YAML file;
// after Parse they hold normalised values (hex in lower case without
// separators, EKU names in their canonical spelling, defaults filled in).
type Policy struct {
	// Name, Version and Description are free text for operators and
	// provenance; they do not change decisions.
	Name        string `yaml:"name,omitempty"`
	Version     string `yaml:"version,omitempty"`
	Description string `yaml:"description,omitempty"`
	// Trust lists files of trust anchors (PEM, possibly several
	// certificates each, or DER), relative to the policy file's directory.
	Trust []string `yaml:"trust,omitempty"`
	// RequireEKU lists extended key usages the signer must carry, by name
	// or dotted OID. nil means the default [codeSigning]; an empty list,
	// or [any], means no requirement.
	RequireEKU []string `yaml:"require_eku"`
	// MinHash is the weakest digest accepted: sha1, sha256 (default),
	// sha384 or sha512.
	MinHash string `yaml:"min_hash"`
	// IgnoreExpiry skips certificate validity periods, as UEFI firmware does.
	IgnoreExpiry bool `yaml:"ignore_expiry"`
	// Revocations lists revoked certificates.
	Revocations []Revocation `yaml:"revocations,omitempty"`
	// Deny lists blocked files and signers.
	Deny Deny `yaml:"deny,omitempty"`
	// AllowSigners, when not empty, restricts the signer (leaf) certificate
	// to those matching one of the entries.
	AllowSigners []Signer `yaml:"allow_signers,omitempty"`
	// TimestampAuthorities names TSAs by their public key: a timestamp by
	// one counts even when it is the code signer's own key or a key of its
	// chain, or a legacy countersigner without the timeStamping EKU. Its
	// certificate must still chain to an anchor and not be revoked, and
	// its time must not be later than the check time.
	TimestampAuthorities []TimestampAuthority `yaml:"timestamp_authorities,omitempty"`
	// SbatLevel is an SbatLevel as shim reads it (the text of shim's
	// SbatLevel variable, "sbat,1,2022052400\ngrub,2\n"): a boot image
	// whose .sbat section names a component at a lower generation is
	// denied sbat-revoked, as shim refuses it. Empty: no SBAT revocation.
	SbatLevel string `yaml:"sbat_level,omitempty"`
	// Verity names code by dm-verity root hash and fs-verity digest, for
	// `vigil policy export --to ipe`.
	Verity Verity `yaml:"verity,omitempty"`

	baseDir string
	anchors []*x509.Certificate
	ix      *index
}

// TimestampAuthority names a TSA the policy trusts by the SHA-256 of its
// certificate's SubjectPublicKeyInfo (lower-case hex).
type TimestampAuthority struct {
	SPKISHA256 string `yaml:"spki_sha256"`
	Comment    string `yaml:"comment,omitempty"`
}

// Revocation is one revoked certificate. It names the certificate in exactly
// one way: Issuer and Serial together, TBSSHA256, or SPKISHA256 (the last
// revokes every certificate for that public key).
type Revocation struct {
	Issuer     string `yaml:"issuer,omitempty"`
	Serial     string `yaml:"serial,omitempty"`
	TBSSHA256  string `yaml:"tbs_sha256,omitempty"`
	SPKISHA256 string `yaml:"spki_sha256,omitempty"`
	// RevokedAt is when the revocation took effect. Without it every
	// signature by the certificate is rejected.
	RevokedAt *time.Time `yaml:"revoked_at,omitempty"`
	// Reason is an RFC 5280 CRLReason name such as keyCompromise.
	Reason  string `yaml:"reason,omitempty"`
	Comment string `yaml:"comment,omitempty"`
	// Certificate is the revoked certificate itself, PEM, when the source
	// held it (a dbx or MokListX EFI_CERT_X509 entry). It goes with
	// tbs_sha256, which must be the SHA-256 of its TBSCertificate; matching
	// still uses tbs_sha256. It lets `vigil policy export` write the
	// certificate back (dbx X.509 entries, revocation-keys PEM).
	Certificate string `yaml:"certificate,omitempty"`
}

// Deny holds block lists, as lower-case hex.
type Deny struct {
	SHA256             []string `yaml:"sha256,omitempty"`              // SHA-256 of the whole file
	AuthentihashSHA1   []string `yaml:"authentihash_sha1,omitempty"`   // Authenticode (PE image) hash, SHA-1
	AuthentihashSHA256 []string `yaml:"authentihash_sha256,omitempty"` // Authenticode (PE image) hash, SHA-256
	// Signer TBS hashes: the hash of a certificate's DER TBSCertificate, as
	// WDAC's CertRoot Type="TBS". WDAC picks the hash by the certificate's
	// signature algorithm, hence four lengths.
	SignerTBSSHA1   []string `yaml:"signer_tbs_sha1,omitempty"`
	SignerTBSSHA256 []string `yaml:"signer_tbs_sha256,omitempty"`
	SignerTBSSHA384 []string `yaml:"signer_tbs_sha384,omitempty"`
	SignerTBSSHA512 []string `yaml:"signer_tbs_sha512,omitempty"`
	// SignedContentSHA256 lists SHA-256 digests of a kernel module's
	// signed content: the decompressed module from its first byte up to
	// the PKCS#7, the hash the kernel's blacklist matches as "bin:"
	// (certs/blacklist.c, is_module_hash_blacklisted, called by
	// kernel/module/signing.c). It matches however the module is
	// compressed or its PKCS#7 padded or re-signed.
	SignedContentSHA256 []string `yaml:"signed_content_sha256,omitempty"`
	// SignerFiles deny a signer's files by their version resource's name
	// and version (WDAC signer rules with file attributes).
	SignerFiles []SignerFile `yaml:"signer_files,omitempty"`
}

// Signer is an allow_signers entry. Every field that is set must match the
// signer certificate; at least one must be set.
type Signer struct {
	Subject    string `yaml:"subject,omitempty"`
	Issuer     string `yaml:"issuer,omitempty"`
	TBSSHA256  string `yaml:"tbs_sha256,omitempty"`
	SPKISHA256 string `yaml:"spki_sha256,omitempty"`
	Comment    string `yaml:"comment,omitempty"`
}

// ParseError is a policy error: where (file, line, key path such as
// "revocations[2].serial") and what.
type ParseError struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxErrors caps how many problems one Parse reports.
const maxErrors = 20

//go:embed default.yaml
var defaultYAML []byte

// Default returns Vigil's built-in policy: no trust anchors (so nothing
// verifies until anchors are added), require_eku [codeSigning], min_hash
// sha256, expiry checked, no revocations or block lists.
func Default() *Policy {
	p, err := Parse(defaultYAML, "")
	if err != nil {
		panic("codepolicy: built-in default policy: " + err.Error())
	}
	return p
}

// Load reads and validates the policy file at path. Relative trust paths are
// resolved against the file's directory. Errors name the file, line and key.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(data, filepath.Dir(path), path)
}

// Parse reads and validates a policy. Relative trust paths are resolved
// against baseDir ("" means the working directory).
func Parse(data []byte, baseDir string) (*Policy, error) {
	return parse(data, baseDir, "")
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlError(file string, err error) error {
	msg := err.Error()
	pe := &ParseError{File: file, Msg: msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		pe.Line, _ = strconv.Atoi(m[1])
		pe.Msg = "YAML syntax: " + m[2]
	}
	return pe
}

// safeDecode runs one yaml.v3 Decode. yaml.v3 has panicked on hostile input
// before, and a policy may come from a bundle, so a panic becomes an error.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

func parse(data []byte, baseDir, file string) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := safeDecode(dec, &root); err != nil && err != io.EOF {
		return nil, yamlError(file, err)
	}
	for { // further documents must be empty ("---" at the end is fine)
		var extra yaml.Node
		err := safeDecode(dec, &extra)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, yamlError(file, err)
		}
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			return nil, &ParseError{File: file, Line: extra.Content[0].Line, Msg: "more than one YAML document"}
		}
	}
	p := &Policy{baseDir: baseDir}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		if !isNull(doc) {
			if doc.Kind != yaml.MappingNode {
				return nil, &ParseError{File: file, Line: doc.Line, Msg: "a policy is a YAML mapping (key: value lines)"}
			}
			if err := decodeNode(doc, p); err != nil {
				var pe *ParseError
				if errors.As(err, &pe) {
					pe.File = file
				}
				return nil, err
			}
		}
	}
	if err := p.compile(&root, file); err != nil {
		return nil, err
	}
	return p, nil
}

// Validate checks and normalises the exported fields, reloads the trust
// anchors and rebuilds the lookup indexes. Parse and Load call it; call it
// again after changing fields by hand.
func (p *Policy) Validate() error {
	return p.compile(nil, "")
}

// problems collects validation errors.
type problems struct {
	root *yaml.Node
	file string
	errs []error
}

func (ps *problems) add(key, format string, args ...any) {
	if len(ps.errs) == maxErrors {
		ps.errs = append(ps.errs, &ParseError{File: ps.file, Msg: "too many errors; stopping"})
	}
	if len(ps.errs) > maxErrors {
		return
	}
	ps.errs = append(ps.errs, &ParseError{File: ps.file, Line: lineOf(ps.root, key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) err() error {
	if len(ps.errs) == 1 {
		return ps.errs[0]
	}
	return errors.Join(ps.errs...)
}

// compile validates, normalises and indexes the policy.
func (p *Policy) compile(root *yaml.Node, file string) error {
	ps := &problems{root: root, file: file}
	ix := newIndex()

	// require_eku
	if p.RequireEKU == nil {
		p.RequireEKU = []string{"codeSigning"}
	}
	for i, e := range p.RequireEKU {
		key := fmt.Sprintf("require_eku[%d]", i)
		name, oid, err := resolveEKU(e)
		if err != nil {
			ps.add(key, "%v", err)
			continue
		}
		p.RequireEKU[i] = name
		if oid == nil {
			if len(p.RequireEKU) > 1 {
				ps.add(key, "\"any\" means no EKU requirement and cannot be combined with other EKUs")
			}
			continue
		}
		if !containsOID(ix.ekus, oid) {
			ix.ekus = append(ix.ekus, oid)
		}
	}

	// min_hash
	if p.MinHash == "" {
		p.MinHash = "sha256"
	}
	if h, name, ok := hashByName(p.MinHash); ok {
		ix.minHash, p.MinHash = h, name
	} else {
		ps.add("min_hash", "%q is not one of sha1, sha256, sha384, sha512", p.MinHash)
	}

	// timestamp_authorities
	ix.tsas = map[string]bool{}
	for i, t := range p.TimestampAuthorities {
		norm, b, err := normHex(t.SPKISHA256, sha256.Size)
		if err != nil {
			ps.add(fmt.Sprintf("timestamp_authorities[%d].spki_sha256", i), "%v", err)
			continue
		}
		p.TimestampAuthorities[i].SPKISHA256 = norm
		ix.tsas[string(b)] = true
	}

	// sbat_level
	if p.SbatLevel != "" {
		l, err := sbat.ParseLevel([]byte(p.SbatLevel))
		if err != nil {
			ps.add("sbat_level", "%v", err)
		}
		ix.sbat = l
	}

	// trust
	anchors, seen := []*x509.Certificate(nil), map[string]bool{}
	for i, t := range p.Trust {
		key := fmt.Sprintf("trust[%d]", i)
		if strings.TrimSpace(t) == "" {
			ps.add(key, "empty path")
			continue
		}
		path := t
		if !filepath.IsAbs(path) {
			path = filepath.Join(p.baseDir, path)
		}
		certs, err := trust.LoadCertificates(path)
		if err != nil {
			ps.add(key, "%v", err)
			continue
		}
		for _, c := range certs {
			if !seen[string(c.Raw)] {
				seen[string(c.Raw)] = true
				anchors = append(anchors, c)
			}
		}
	}

	// revocations
	for i := range p.Revocations {
		r := &p.Revocations[i]
		key := fmt.Sprintf("revocations[%d]", i)
		if err := ix.normRevocation(r); err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				ps.add(key+"."+fe.field, "%s", fe.msg)
			} else {
				ps.add(key, "%v", err)
			}
			continue
		}
		if err := ix.addRevocation(r); err != nil {
			ps.add(key, "%v", err)
		}
	}

	// deny
	for k, dk := range denyKinds {
		list := dk.field(&p.Deny)
		for i, v := range *list {
			key := fmt.Sprintf("deny.%s[%d]", dk.key, i)
			h, raw, err := normHex(v, dk.size)
			if err != nil {
				ps.add(key, "%v", err)
				continue
			}
			(*list)[i] = h
			ix.deny[k][string(raw)] = struct{}{}
		}
	}

	for i := range p.Deny.SignerFiles {
		r, err := compileSignerFile(&p.Deny.SignerFiles[i], i)
		if err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				ps.add(fmt.Sprintf("deny.signer_files[%d].%s", i, fe.field), "%s", fe.msg)
			} else {
				ps.add(fmt.Sprintf("deny.signer_files[%d]", i), "%v", err)
			}
			continue
		}
		ix.signerFiles = append(ix.signerFiles, r)
	}

	p.compileVerity(ps)

	// allow_signers
	for i := range p.AllowSigners {
		s := &p.AllowSigners[i]
		key := fmt.Sprintf("allow_signers[%d]", i)
		rule, err := compileSigner(s)
		if err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				ps.add(key+"."+fe.field, "%s", fe.msg)
			} else {
				ps.add(key, "%v", err)
			}
			continue
		}
		ix.allow = append(ix.allow, rule)
	}

	if len(ps.errs) > 0 {
		return ps.err()
	}
	p.anchors, p.ix = anchors, ix
	return nil
}

// fieldError is a problem with one field of a list entry.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func ferr(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

func containsOID(list []asn1.ObjectIdentifier, o asn1.ObjectIdentifier) bool {
	for _, x := range list {
		if x.Equal(o) {
			return true
		}
	}
	return false
}

var hashNames = []struct {
	name string
	h    crypto.Hash
}{{"sha1", crypto.SHA1}, {"sha256", crypto.SHA256}, {"sha384", crypto.SHA384}, {"sha512", crypto.SHA512}}

// hashByName accepts sha256, SHA256, sha-256 and so on.
func hashByName(s string) (crypto.Hash, string, bool) {
	t := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "")
	for _, n := range hashNames {
		if n.name == t {
			return n.h, n.name, true
		}
	}
	return 0, "", false
}

// hashRank orders the digests min_hash accepts; 0 for others.
func hashRank(h crypto.Hash) int {
	for i, n := range hashNames {
		if n.h == h {
			return i + 1
		}
	}
	return 0
}

// normHex normalises a hex digest of size bytes: case-insensitive, with
// optional ':' or ' ' separators.
var hexSeparators = strings.NewReplacer(":", "", " ", "")

func normHex(s string, size int) (string, []byte, error) {
	t := strings.ToLower(hexSeparators.Replace(strings.TrimSpace(s)))
	raw, err := hex.DecodeString(t)
	if err != nil || len(raw) != size {
		return "", nil, fmt.Errorf("%q is not a %s (%d hex digits)", s, digestName(size), 2*size)
	}
	return t, raw, nil
}

func digestName(size int) string {
	switch size {
	case 20:
		return "SHA-1 hash"
	case 32:
		return "SHA-256 hash"
	case 48:
		return "SHA-384 hash"
	case 64:
		return "SHA-512 hash"
	}
	return fmt.Sprintf("%d-byte value", size)
}

// normSerial normalises a hex serial number (colons, spaces and a 0x prefix
// allowed; leading zeros do not matter) to lower-case hex without leading
// zeros.
func normSerial(s string) (string, error) {
	t := strings.ToLower(hexSeparators.Replace(strings.TrimSpace(s)))
	t = strings.TrimPrefix(t, "0x")
	if t == "" || len(t) > 256 {
		return "", fmt.Errorf("%q is not a hex serial number", s)
	}
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || strings.ContainsAny(t, "+-_") {
		return "", fmt.Errorf("%q is not a hex serial number", s)
	}
	return n.Text(16), nil
}

// revocationReasons are the RFC 5280 CRLReason names by code.
var revocationReasons = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL",
	9: "privilegeWithdrawn", 10: "aACompromise",
}

func canonReason(s string) (string, bool) {
	for code, n := range revocationReasons {
		if strings.EqualFold(n, strings.TrimSpace(s)) && code != 8 {
			return n, true
		}
	}
	return "", false
}

func reasonNames() string {
	var names []string
	for code := 0; code <= 10; code++ {
		if n, ok := revocationReasons[code]; ok && code != 8 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// normRevocation validates and normalises one entry in place.
func (ix *index) normRevocation(r *Revocation) error {
	forms := 0
	if r.Issuer != "" || r.Serial != "" {
		forms++
		if r.Issuer == "" {
			return ferr("issuer", "serial needs issuer too")
		}
		if r.Serial == "" {
			return ferr("serial", "issuer needs serial too")
		}
		if _, err := ix.textKey(r.Issuer); err != nil {
			return ferr("issuer", "%v", err)
		}
		s, err := normSerial(r.Serial)
		if err != nil {
			return ferr("serial", "%v", err)
		}
		r.Serial = s
	}
	if r.TBSSHA256 != "" {
		forms++
		h, _, err := normHex(r.TBSSHA256, 32)
		if err != nil {
			return ferr("tbs_sha256", "%v", err)
		}
		r.TBSSHA256 = h
	}
	if r.SPKISHA256 != "" {
		forms++
		h, _, err := normHex(r.SPKISHA256, 32)
		if err != nil {
			return ferr("spki_sha256", "%v", err)
		}
		r.SPKISHA256 = h
	}
	if forms != 1 {
		return errors.New("name the certificate by exactly one of: issuer and serial, tbs_sha256, spki_sha256")
	}
	if r.Certificate != "" {
		if r.TBSSHA256 == "" {
			return ferr("certificate", "a certificate goes with tbs_sha256 (its TBSCertificate's SHA-256)")
		}
		c, err := parseOnePEMCertificate(r.Certificate)
		if err != nil {
			return ferr("certificate", "%v", err)
		}
		if h := sha256.Sum256(c.RawTBSCertificate); hex.EncodeToString(h[:]) != r.TBSSHA256 {
			return ferr("certificate", "its TBSCertificate's SHA-256 is %x, not tbs_sha256", h[:])
		}
	}
	if r.Reason != "" {
		n, ok := canonReason(r.Reason)
		if !ok {
			return ferr("reason", "%q is not a revocation reason (one of: %s)", r.Reason, reasonNames())
		}
		r.Reason = n
	}
	if r.RevokedAt != nil {
		t := r.RevokedAt.UTC()
		r.RevokedAt = &t
	}
	return nil
}

// parseOnePEMCertificate parses PEM text holding exactly one CERTIFICATE.
func parseOnePEMCertificate(s string) (*x509.Certificate, error) {
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM CERTIFICATE")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("more than one PEM block")
	}
	return x509.ParseCertificate(b.Bytes)
}

// compileSigner validates an allow_signers entry and builds its matcher.
func compileSigner(s *Signer) (allowRule, error) {
	var rule allowRule
	if s.Subject == "" && s.Issuer == "" && s.TBSSHA256 == "" && s.SPKISHA256 == "" {
		return rule, errors.New("set at least one of subject, issuer, tbs_sha256, spki_sha256")
	}
	if s.Subject != "" {
		k, err := parseDN(s.Subject)
		if err != nil {
			return rule, ferr("subject", "%v", err)
		}
		rule.subject, rule.hasSubject = k, true
	}
	if s.Issuer != "" {
		k, err := parseDN(s.Issuer)
		if err != nil {
			return rule, ferr("issuer", "%v", err)
		}
		rule.issuer, rule.hasIssuer = k, true
	}
	if s.TBSSHA256 != "" {
		h, raw, err := normHex(s.TBSSHA256, 32)
		if err != nil {
			return rule, ferr("tbs_sha256", "%v", err)
		}
		s.TBSSHA256, rule.tbs = h, string(raw)
	}
	if s.SPKISHA256 != "" {
		h, raw, err := normHex(s.SPKISHA256, 32)
		if err != nil {
			return rule, ferr("spki_sha256", "%v", err)
		}
		s.SPKISHA256, rule.spki = h, string(raw)
	}
	return rule, nil
}

// Anchors returns the trust anchors, deduplicated, in file order.
func (p *Policy) Anchors() []*x509.Certificate {
	p.index()
	return append([]*x509.Certificate(nil), p.anchors...)
}

// RequiredEKUs returns the OIDs of require_eku; none for [] or [any].
func (p *Policy) RequiredEKUs() []asn1.ObjectIdentifier {
	return append([]asn1.ObjectIdentifier(nil), p.index().ekus...)
}

// MinimumHash returns the weakest digest algorithm min_hash accepts.
func (p *Policy) MinimumHash() crypto.Hash {
	return p.index().minHash
}

// index returns the lookup indexes. Using a Policy that was never validated
// is a programming error, and failing loudly beats deciding on empty lists.
func (p *Policy) index() *index {
	if p.ix == nil {
		panic("codepolicy: Policy used before Parse, Load, Default or Validate")
	}
	return p.ix
}
