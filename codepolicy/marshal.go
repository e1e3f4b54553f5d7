package codepolicy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Marshal writes the policy as YAML in a canonical form: every list sorted
// and deduplicated (order never matters to a decision), values normalised,
// defaults written out. Comments of a hand-written file are not kept.
func (p *Policy) Marshal() ([]byte, error) {
	p.index()
	return marshalYAML(p.canonical())
}

func marshalYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Digest returns "sha256:" and the hex SHA-256 of the canonical policy: the
// Marshal output with issuer and subject names in canonical form (so that
// equal names written differently give one digest) and the trust paths
// replaced by the SHA-256 of each anchor certificate's DER. Moving the
// policy and its anchor files leaves the digest unchanged; changing an
// anchor changes it.
func (p *Policy) Digest() string {
	p.index()
	c := p.canonical()
	c.Trust = nil
	for i := range c.Revocations {
		c.Revocations[i].Issuer = canonicalDNText(c.Revocations[i].Issuer)
	}
	for i := range c.AllowSigners {
		c.AllowSigners[i].Subject = canonicalDNText(c.AllowSigners[i].Subject)
		c.AllowSigners[i].Issuer = canonicalDNText(c.AllowSigners[i].Issuer)
	}
	sort.SliceStable(c.Revocations, func(i, j int) bool {
		return revSortKey(&c.Revocations[i]) < revSortKey(&c.Revocations[j])
	})
	sort.SliceStable(c.AllowSigners, func(i, j int) bool { return signerSortKey(&c.AllowSigners[i]) < signerSortKey(&c.AllowSigners[j]) })
	b, err := marshalYAML(c)
	if err != nil {
		panic("codepolicy: marshal: " + err.Error()) // plain strings and slices: cannot happen
	}
	var fps []string
	for _, a := range p.anchors {
		h := sha256.Sum256(a.Raw)
		fps = append(fps, hex.EncodeToString(h[:]))
	}
	sort.Strings(fps)
	h := sha256.New()
	h.Write(b)
	h.Write([]byte("anchors_sha256:\n"))
	for _, f := range fps {
		h.Write([]byte("- " + f + "\n"))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func sortedUnique(in []string) []string {
	if in == nil {
		return nil
	}
	out := append([]string{}, in...)
	sort.Strings(out)
	j := 0
	for i, s := range out {
		if i == 0 || s != out[j-1] {
			out[j] = s
			j++
		}
	}
	return out[:j]
}

// canonical returns a sorted, deduplicated copy of the exported fields.
func (p *Policy) canonical() *Policy {
	c := &Policy{
		Name:         p.Name,
		Version:      p.Version,
		Description:  p.Description,
		Trust:        sortedUnique(p.Trust),
		RequireEKU:   sortedUnique(p.RequireEKU),
		MinHash:      p.MinHash,
		IgnoreExpiry: p.IgnoreExpiry,
	}
	if c.RequireEKU == nil {
		c.RequireEKU = []string{"codeSigning"}
	}
	for _, dk := range denyKinds {
		*dk.field(&c.Deny) = sortedUnique(*dk.field(&p.Deny))
	}

	// Revocations: drop exact duplicates (same certificate, revoked_at and
	// reason; the first comment wins), then sort.
	seen := map[string]bool{}
	ix := newIndex()
	for _, r := range p.Revocations {
		_, k, err := ix.revIdentity(&r)
		if err != nil {
			k = r.Issuer + "\x00" + r.Serial
		}
		ek := exactKey(revForm(&r)+k, &r)
		if seen[ek] {
			continue
		}
		seen[ek] = true
		c.Revocations = append(c.Revocations, r)
	}
	sort.SliceStable(c.Revocations, func(i, j int) bool {
		return revSortKey(&c.Revocations[i]) < revSortKey(&c.Revocations[j])
	})

	seenS := map[string]bool{}
	for _, s := range p.AllowSigners {
		k := signerKey(&s)
		if seenS[k] {
			continue
		}
		seenS[k] = true
		c.AllowSigners = append(c.AllowSigners, s)
	}
	sort.SliceStable(c.AllowSigners, func(i, j int) bool { return signerSortKey(&c.AllowSigners[i]) < signerSortKey(&c.AllowSigners[j]) })
	return c
}

func signerSortKey(s *Signer) string {
	return strings.Join([]string{s.Subject, s.Issuer, s.TBSSHA256, s.SPKISHA256, s.Comment}, "\x00")
}

func revForm(r *Revocation) string {
	switch {
	case r.Issuer != "":
		return "s"
	case r.TBSSHA256 != "":
		return "t"
	}
	return "k"
}

func revSortKey(r *Revocation) string {
	at := ""
	if r.RevokedAt != nil {
		at = r.RevokedAt.UTC().Format(time.RFC3339Nano)
	}
	// Serials sort numerically: shorter hex first.
	serial := strings.Repeat(" ", max(0, 256-len(r.Serial))) + r.Serial
	return strings.Join([]string{revForm(r), r.Issuer, serial, r.TBSSHA256, r.SPKISHA256, at, r.Reason, r.Comment}, "\x00")
}

// signerKey identifies an allow_signers entry by what it matches.
func signerKey(s *Signer) string {
	subj, iss := s.Subject, s.Issuer
	if k, err := parseDN(subj); err == nil && subj != "" {
		subj = string(k)
	}
	if k, err := parseDN(iss); err == nil && iss != "" {
		iss = string(k)
	}
	return strings.Join([]string{subj, iss, s.TBSSHA256, s.SPKISHA256}, "\x00")
}
