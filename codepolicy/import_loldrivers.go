package codepolicy

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// LOLDrivers categories, as drivers.csv spells them.
const (
	LOLDriversVulnerable = "vulnerable driver"
	LOLDriversMalicious  = "malicious"
)

// lolColumns maps the drivers.csv columns Vigil imports to deny lists.
var lolColumns = []struct {
	column string
	kind   int
}{
	{"KnownVulnerableSamples_SHA256", dkSHA256},
	{"KnownVulnerableSamples_Authentihash_SHA256", dkAuthSHA256},
	{"KnownVulnerableSamples_Authentihash_SHA1", dkAuthSHA1},
}

// ImportLOLDrivers merges the LOLDrivers CSV (loldrivers.io's drivers.csv)
// into p's block lists: each sample's file SHA-256 into deny.sha256, its
// Authenticode SHA-256 and SHA-1 into deny.authentihash_sha256 and
// deny.authentihash_sha1. MD5 and file SHA-1 columns are not imported.
//
// categories selects rows by the Category column ("vulnerable driver",
// "malicious"; "vulnerable" is accepted for the first); nil or empty means
// both. Rows of other categories are skipped and counted. Malformed hashes
// are skipped and counted. The CSV carries no certificate data, so no signer
// is imported from it.
//
// On error the policy is unchanged.
func ImportLOLDrivers(p *Policy, r io.Reader, categories []string) (ImportStats, error) {
	st := newStats("loldrivers")
	if p == nil || p.ix == nil {
		return st, errNotValidated
	}
	want := map[string]bool{}
	for _, c := range categories {
		c = strings.ToLower(strings.TrimSpace(c))
		if c == "vulnerable" {
			c = LOLDriversVulnerable
		}
		if c != "" {
			want[c] = true
		}
	}
	if len(want) == 0 {
		want[LOLDriversVulnerable], want[LOLDriversMalicious] = true, true
	}
	matched := map[string]int{}

	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return st, errors.New("loldrivers: empty input")
		}
		return st, fmt.Errorf("loldrivers: reading the header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	need := []string{"Category"}
	for _, c := range lolColumns {
		need = append(need, c.column)
	}
	for _, n := range need {
		if _, ok := col[n]; !ok {
			return st, fmt.Errorf("loldrivers: no %q column: not a LOLDrivers drivers.csv", n)
		}
	}
	field := func(rec []string, name string) string {
		if i := col[name]; i < len(rec) {
			return rec[i]
		}
		return ""
	}

	var pending []pendingDeny
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("loldrivers: %w", err)
		}
		st.Read++
		cat := strings.ToLower(strings.TrimSpace(field(rec, "Category")))
		if !want[cat] {
			st.skip("category-not-selected")
			continue
		}
		matched[cat]++
		for _, c := range lolColumns {
			size := denyKinds[c.kind].size
			for _, v := range splitList(field(rec, c.column)) {
				if !isHex(v, size) {
					st.skip("malformed-hash")
					continue
				}
				pending = append(pending, pendingDeny{c.kind, v})
			}
		}
	}
	for _, c := range sortedKeys(want) {
		if matched[c] == 0 {
			st.Warnings = append(st.Warnings, fmt.Sprintf("no row has category %q", c))
		}
	}
	p.mergeDeny(&st, pending)
	return st, nil
}
