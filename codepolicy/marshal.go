package codepolicy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"sort"
	"strconv"
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
	n := encodeNode(reflect.ValueOf(v))
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeNode builds the YAML node tree of the policy structs, driven by
// their yaml tags (the decoder's mirror). It does not go through
// yaml.v3's Node.Encode, which loses a leading line break of a string.
func encodeNode(v reflect.Value) *yaml.Node {
	for v.Kind() == reflect.Pointer && v.Type().Elem() != timeType {
		v = v.Elem()
	}
	switch {
	case v.Kind() == reflect.Pointer: // *time.Time
		t := v.Interface().(*time.Time)
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!timestamp", Value: t.UTC().Format(time.RFC3339Nano)}
	case v.Kind() == reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			fv := v.Field(i)
			if opts == "omitempty" && isEmptyValue(fv) {
				continue
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, encodeNode(fv))
		}
		return m
	case v.Kind() == reflect.Slice:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if v.Len() == 0 {
			seq.Style = yaml.FlowStyle
		}
		for i := 0; i < v.Len(); i++ {
			seq.Content = append(seq.Content, encodeNode(v.Index(i)))
		}
		return seq
	case v.Kind() == reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	default:
		s := v.String()
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
		// Double quotes represent any string exactly; yaml.v3's block
		// scalars do not (a leading line break is lost).
		if strings.IndexFunc(s, func(r rune) bool {
			return r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 || r == '\ufeff'
		}) >= 0 {
			n.Style = yaml.DoubleQuotedStyle
		}
		return n
	}
}

func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Pointer:
		return v.IsNil()
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() && !isEmptyValue(v.Field(i)) {
				return false
			}
		}
		return true
	}
	return false
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
	sortRevocations(c.Revocations)
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
		SbatLevel:    p.SbatLevel,
	}
	for _, t := range p.TimestampAuthorities {
		c.TimestampAuthorities = append(c.TimestampAuthorities, TimestampAuthority{SPKISHA256: t.SPKISHA256})
	}
	sort.Slice(c.TimestampAuthorities, func(i, j int) bool {
		return c.TimestampAuthorities[i].SPKISHA256 < c.TimestampAuthorities[j].SPKISHA256
	})
	if c.RequireEKU == nil {
		c.RequireEKU = []string{"codeSigning"}
	}
	for _, dk := range denyKinds {
		*dk.field(&c.Deny) = sortedUnique(*dk.field(&p.Deny))
	}
	c.Deny.SignerFiles = canonicalSignerFiles(p.Deny.SignerFiles)
	c.Verity = Verity{DMRootHash: sortedUnique(p.Verity.DMRootHash), FSDigest: sortedUnique(p.Verity.FSDigest)}

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
	sortRevocations(c.Revocations)

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

// sortRevocations sorts by revSortKey, computing each key once.
func sortRevocations(rs []Revocation) {
	type keyed struct {
		key string
		r   Revocation
	}
	ks := make([]keyed, len(rs))
	for i := range rs {
		ks[i] = keyed{revSortKey(&rs[i]), rs[i]}
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	for i := range ks {
		rs[i] = ks[i].r
	}
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
