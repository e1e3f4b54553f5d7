package codepolicy

import (
	"errors"
	"sort"
	"strings"
)

// ImportStats reports what an importer did. Its JSON form is what
// `vigil policy import --output json` prints.
type ImportStats struct {
	// Source is the importer: "loldrivers", "wdac" or "crl".
	Source string `json:"source"`
	// Read counts the source's records: CSV rows (LOLDrivers), file rules
	// and signers (WDAC), revoked-certificate entries (CRL).
	Read int `json:"read"`
	// Added counts new policy entries per key, such as "deny.sha256" or
	// "revocations".
	Added map[string]int `json:"added"`
	// Duplicates counts values that were already in the policy or repeated
	// in the source.
	Duplicates int `json:"duplicates"`
	// Skipped counts values or records not imported; SkippedReasons breaks
	// it down by reason.
	Skipped        int            `json:"skipped"`
	SkippedReasons map[string]int `json:"skipped_reasons"`
	// Verified is set when ImportCRL checked the CRL's signature.
	Verified bool `json:"verified"`
	// Warnings are notes for the operator.
	Warnings []string `json:"warnings,omitempty"`
}

// TotalAdded sums Added.
func (s *ImportStats) TotalAdded() int {
	n := 0
	for _, v := range s.Added {
		n += v
	}
	return n
}

// AddedKeys returns the keys of Added, sorted.
func (s *ImportStats) AddedKeys() []string { return sortedKeys(s.Added) }

func newStats(source string) ImportStats {
	return ImportStats{Source: source, Added: map[string]int{}, SkippedReasons: map[string]int{}}
}

func (s *ImportStats) skip(reason string) {
	s.Skipped++
	s.SkippedReasons[reason]++
}

var errNotValidated = errors.New("codepolicy: import into a Policy that was never validated (use Parse, Load, Default or Validate)")

// pendingDeny collects block-list values before they are merged, so that a
// failed import leaves the policy untouched.
type pendingDeny struct {
	kind int
	hex  string
}

// mergeDeny adds values to the policy's deny lists, counting additions and
// duplicates.
func (p *Policy) mergeDeny(st *ImportStats, vals []pendingDeny) {
	for _, v := range vals {
		h, raw, err := normHex(v.hex, denyKinds[v.kind].size)
		if err != nil { // callers validate; never happens
			st.skip("malformed-hash")
			continue
		}
		m := p.ix.deny[v.kind]
		if _, ok := m[string(raw)]; ok {
			st.Duplicates++
			continue
		}
		m[string(raw)] = struct{}{}
		list := denyKinds[v.kind].field(&p.Deny)
		*list = append(*list, h)
		st.Added["deny."+denyKinds[v.kind].key]++
	}
}

// mergeRevocations adds revocation entries, counting additions and exact
// duplicates. An entry for a certificate already listed with a different
// revoked_at or reason is added too; lookups use the strictest.
func (p *Policy) mergeRevocations(st *ImportStats, revs []Revocation) {
	for _, r := range revs {
		if err := p.ix.normRevocation(&r); err != nil {
			st.skip("malformed-entry")
			continue
		}
		dup, err := p.ix.insertRevocation(&r)
		if err != nil {
			st.skip("malformed-entry")
			continue
		}
		if dup {
			st.Duplicates++
			continue
		}
		p.Revocations = append(p.Revocations, r)
		st.Added["revocations"]++
	}
}

// hexKindBySize maps a digest length to the signer TBS list of that length.
func tbsKindBySize(n int) (int, bool) {
	switch n {
	case 20:
		return dkTBSSHA1, true
	case 32:
		return dkTBSSHA256, true
	case 48:
		return dkTBSSHA384, true
	case 64:
		return dkTBSSHA512, true
	}
	return 0, false
}

// isHex reports whether s is non-empty hex of exactly n bytes.
func isHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}
