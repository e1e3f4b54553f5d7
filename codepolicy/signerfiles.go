package codepolicy

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/vigil-attest/vigil/versioninfo"
)

// SignerFile is a deny rule on a signer narrowed by file attributes, as
// WDAC's signer rules with a FileAttribRef evaluate: a PE file is denied
// when one of its signatures carries or chains through the certificate
// whose TBSCertificate hashes to TBS (with the hash its length names, as
// WDAC's CertRoot Type="TBS"), whose signer's subject common name is
// Publisher (when set, WDAC's CertPublisher), and the file's version
// resource names FileName as its OriginalFilename (case-insensitive, when
// set) with a file version (VS_FIXEDFILEINFO) from MinVersion to
// MaxVersion (each bound when set, inclusive). At least one file
// attribute is set: a signer alone is deny.signer_tbs_*.
type SignerFile struct {
	TBS        string `yaml:"tbs"`
	Publisher  string `yaml:"publisher,omitempty"`
	FileName   string `yaml:"file_name,omitempty"`
	MinVersion string `yaml:"min_version,omitempty"`
	MaxVersion string `yaml:"max_version,omitempty"`
	Comment    string `yaml:"comment,omitempty"`
}

// signerFileRule is a SignerFile compiled.
type signerFileRule struct {
	index    int
	tbs      []byte
	min, max *versioninfo.Version
}

// compileSignerFile validates s (normalising its hash) and compiles it.
func compileSignerFile(s *SignerFile, i int) (signerFileRule, error) {
	r := signerFileRule{index: i}
	n := len(hexSeparators.Replace(strings.TrimSpace(s.TBS))) / 2
	if _, ok := tbsKindBySize(n); !ok {
		return r, &fieldError{"tbs", fmt.Sprintf("%q is not a SHA-1, SHA-256, SHA-384 or SHA-512 hash", s.TBS)}
	}
	h, raw, err := normHex(s.TBS, n)
	if err != nil {
		return r, &fieldError{"tbs", err.Error()}
	}
	s.TBS, r.tbs = h, raw
	for _, b := range []struct {
		field string
		val   string
		dst   **versioninfo.Version
	}{{"min_version", s.MinVersion, &r.min}, {"max_version", s.MaxVersion, &r.max}} {
		if b.val == "" {
			continue
		}
		v, err := versioninfo.ParseVersion(b.val)
		if err != nil {
			return r, &fieldError{b.field, err.Error()}
		}
		*b.dst = &v
	}
	if r.min != nil && r.max != nil && r.min.Compare(*r.max) > 0 {
		return r, &fieldError{"min_version", fmt.Sprintf("%s is above max_version %s", s.MinVersion, s.MaxVersion)}
	}
	if s.FileName == "" && r.min == nil && r.max == nil {
		return r, &fieldError{"file_name", "a signer_files rule needs file_name, min_version or max_version (a signer alone is signer_tbs_*)"}
	}
	return r, nil
}

// SignerFileCandidates returns the signer_files rules (indexes into
// Deny.SignerFiles) whose signer part matches: one of certs (what a
// signature carries and its chain) has the rule's TBS hash, and, when the
// rule names a publisher, leaf's subject common name is it. Whether the
// file's attributes match is MatchSignerFile's.
func (p *Policy) SignerFileCandidates(leaf *x509.Certificate, certs []*x509.Certificate) []int {
	ix := p.index()
	if len(ix.signerFiles) == 0 {
		return nil
	}
	sums := map[string]bool{}
	for _, c := range certs {
		if c == nil {
			continue
		}
		t := c.RawTBSCertificate
		h1, h256, h384, h512 := sha1.Sum(t), sha256.Sum256(t), sha512.Sum384(t), sha512.Sum512(t)
		for _, s := range [][]byte{h1[:], h256[:], h384[:], h512[:]} {
			sums[string(s)] = true
		}
	}
	var out []int
	for _, r := range ix.signerFiles {
		if !sums[string(r.tbs)] {
			continue
		}
		if pub := p.Deny.SignerFiles[r.index].Publisher; pub != "" && (leaf == nil || leaf.Subject.CommonName != pub) {
			continue
		}
		out = append(out, r.index)
	}
	return out
}

// MatchSignerFile reports whether rule i's file attributes match one of
// a file's version resources (none: the file has no version resource,
// and no rule with file attributes matches it, as in WDAC). A resource
// without fixed info has version 0.0.0.0. It returns the rule's name for
// the verdict.
func (p *Policy) MatchSignerFile(i int, infos []*versioninfo.Info) (rule string, matched bool) {
	ix := p.index()
	var r *signerFileRule
	for k := range ix.signerFiles {
		if ix.signerFiles[k].index == i {
			r = &ix.signerFiles[k]
		}
	}
	if r == nil {
		return "", false
	}
	s := &p.Deny.SignerFiles[i]
	for _, in := range infos {
		if s.FileName != "" {
			ok := false
			for _, n := range in.Values("OriginalFilename") {
				if strings.EqualFold(n, s.FileName) {
					ok = true
				}
			}
			if !ok {
				continue
			}
		}
		if r.min != nil && in.FileVersion.Compare(*r.min) < 0 || r.max != nil && in.FileVersion.Compare(*r.max) > 0 {
			continue
		}
		return fmt.Sprintf("deny.signer_files[%d]: tbs %s%s, file %q version %s", i, hex.EncodeToString(r.tbs), publisherNote(s.Publisher), strings.Join(in.Values("OriginalFilename"), ","), in.FileVersion), true
	}
	return "", false
}

func publisherNote(p string) string {
	if p == "" {
		return ""
	}
	return fmt.Sprintf(", publisher %q", p)
}

// signerFileKey identifies a rule for deduplication (the comment aside).
func signerFileKey(s *SignerFile) string {
	return strings.Join([]string{s.TBS, s.Publisher, strings.ToLower(s.FileName), s.MinVersion, s.MaxVersion}, "\x00")
}

// canonicalSignerFiles sorts and deduplicates rules (the first comment
// wins).
func canonicalSignerFiles(in []SignerFile) []SignerFile {
	seen := map[string]bool{}
	var out []SignerFile
	for _, s := range in {
		k := signerFileKey(&s)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return signerFileKey(&out[i]) < signerFileKey(&out[j]) })
	return out
}

// mergeSignerFiles adds rules, counting additions and duplicates; a rule
// that does not compile is an error and nothing is added.
func (p *Policy) mergeSignerFiles(st *ImportStats, rules []SignerFile) error {
	have := map[string]bool{}
	for i := range p.Deny.SignerFiles {
		have[signerFileKey(&p.Deny.SignerFiles[i])] = true
	}
	var add []SignerFile
	var compiled []signerFileRule
	for i, r := range rules {
		idx := len(p.Deny.SignerFiles) + len(add)
		c, err := compileSignerFile(&r, idx)
		if err != nil {
			return fmt.Errorf("signer rule %d (%s): %w", i, r.Comment, err)
		}
		k := signerFileKey(&r)
		if have[k] {
			st.Duplicates++
			continue
		}
		have[k] = true
		add = append(add, r)
		compiled = append(compiled, c)
	}
	p.Deny.SignerFiles = append(p.Deny.SignerFiles, add...)
	p.ix.signerFiles = append(p.ix.signerFiles, compiled...)
	if len(add) > 0 {
		st.Added["deny.signer_files"] += len(add)
	}
	return nil
}
