package appraise

import (
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/report"
)

// Revocations is which revocations the host enforces by itself and which
// it does not yet (Outcome.Revocations; the policy's input.revocations).
// Vigil denies every revocation at once wherever it judges; the host's
// own firmware, shim and kernel enforce one only from the moment a store
// they read holds it, which for dbx and MokListX is the next boot. The
// entries are the report's (the code policy's revocations, as the agent
// sorted them) and the reference's required ones (reference.revocations
// .required), each judged again here:
//
//   - dbx counts when the dbx the firmware measured into PCR 7 holds it
//     (attested); the agent's efivarfs dbx is the one the next boot
//     applies, so it counts (asserted) only when no event log verified;
//   - mokx counts when the agent read it in MokListXRT and that list's
//     digest equals the MokListX digest shim measured into PCR 14
//     (corroborated: the list is the measured one, its entries the
//     agent's reading); asserted without shim's measurement; not at all
//     when the two digests differ;
//   - blacklist counts as the agent read the live .blacklist keyring
//     (asserted).
type Revocations struct {
	Enforced []RevocationStatus `json:"enforced"`
	Pending  []RevocationStatus `json:"pending"`
	// Reported is true when the report's revocations section was
	// measured (status ok). Truncated is set when the agent's lists were
	// cut to their bound (report.MaxRevocationsListed): the revocations
	// past it are not judged here.
	Reported  bool `json:"reported"`
	Truncated bool `json:"truncated"`
}

// RevocationStatus is one revocation.
type RevocationStatus struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// Targets are the stores that can hold it (report.RevocationTargets).
	Targets []string `json:"targets"`
	// At are the stores that hold it, each with who vouches for it.
	At []RevocationStore `json:"at"`
	// Required: reference.revocations.required lists it.
	Required bool `json:"required"`
}

// RevocationStore is a store that holds a revocation.
type RevocationStore struct {
	Store      string `json:"store"`
	Provenance string `json:"provenance"`
}

// revocationsOf judges the report's revocations section (rv, the report
// value; nil without a valid report) and the reference's required ones
// against the attested boot facts (nil when no log verified).
func revocationsOf(rv ast.Value, boot *evidence.BootFacts, ref ast.Value) *Revocations {
	out := &Revocations{Enforced: []RevocationStatus{}, Pending: []RevocationStatus{}}
	type entry struct {
		RevocationStatus
		claimed map[string]bool
	}
	byKey := map[string]*entry{}
	var order []string
	get := func(kind, value string) *entry {
		k := kind + ":" + value
		e := byKey[k]
		if e == nil {
			e = &entry{RevocationStatus: RevocationStatus{Kind: kind, Value: value, At: []RevocationStore{}}, claimed: map[string]bool{}}
			byKey[k] = e
			order = append(order, k)
		}
		return e
	}
	sec := objGet(rv, "revocations")
	mokxDigest := ""
	if objString(sec, "status") == string(report.StatusOK) {
		out.Reported = true
		for _, list := range []string{"enforced", "pending"} {
			n, _ := termInt(termOf(sec, list+"_count"))
			listed := 0
			forEach(objGet(sec, list), func(v ast.Value) {
				listed++
				kind, value := objString(v, "kind"), objString(v, "value")
				if report.RevocationTargets(kind, false) == nil || value == "" {
					return
				}
				e := get(kind, value)
				forEach(objGet(v, "targets"), func(t ast.Value) {
					if s, ok := t.(ast.String); ok && !contains(e.Targets, string(s)) {
						e.Targets = append(e.Targets, string(s))
					}
				})
				forEach(objGet(v, "at"), func(t ast.Value) {
					if s, ok := t.(ast.String); ok {
						e.claimed[string(s)] = true
					}
				})
			})
			if n > listed {
				out.Truncated = true
			}
		}
		mokxDigest = objString(objGet(objGet(rv, "secure_boot"), "mokx"), "digest")
	}
	forEach(objGet(objGet(ref, "revocations"), "required"), func(v ast.Value) {
		kind, value := objString(v, "kind"), strings.ToLower(objString(v, "value"))
		if value == "" {
			return
		}
		e := get(kind, value)
		e.Required = true
		for _, t := range report.RevocationTargets(kind, true) {
			if !contains(e.Targets, t) {
				e.Targets = append(e.Targets, t)
			}
		}
	})

	var dbx map[string]bool
	logVerified := boot != nil
	if boot != nil {
		if v := boot.Variables["dbx"]; v != nil {
			dbx = make(map[string]bool, len(v.Revokes))
			for _, k := range v.Revokes {
				dbx[k] = true
			}
		}
	}
	mokx := ""
	switch {
	case mokxDigest == "":
	case boot == nil || boot.Shim == nil || boot.Shim.MokListX == "":
		mokx = ProvenanceAsserted
	case boot.Shim.MokListX == mokxDigest:
		mokx = ProvenanceCorroborated
	}
	for _, k := range order {
		e := byKey[k]
		if contains(e.Targets, report.StoreDBX) {
			switch {
			case dbx[k]:
				e.At = append(e.At, RevocationStore{report.StoreDBX, ProvenanceAttested})
			case !logVerified && e.claimed[report.StoreDBX]:
				e.At = append(e.At, RevocationStore{report.StoreDBX, ProvenanceAsserted})
			}
		}
		if e.claimed[report.StoreMokX] && mokx != "" && contains(e.Targets, report.StoreMokX) {
			e.At = append(e.At, RevocationStore{report.StoreMokX, mokx})
		}
		if e.claimed[report.StoreBlacklist] && contains(e.Targets, report.StoreBlacklist) {
			e.At = append(e.At, RevocationStore{report.StoreBlacklist, ProvenanceAsserted})
		}
		sortStores(e.Targets)
		if len(e.At) > 0 {
			out.Enforced = append(out.Enforced, e.RevocationStatus)
		} else {
			out.Pending = append(out.Pending, e.RevocationStatus)
		}
	}
	for _, l := range [][]RevocationStatus{out.Enforced, out.Pending} {
		sort.Slice(l, func(i, j int) bool {
			if l[i].Kind != l[j].Kind {
				return l[i].Kind < l[j].Kind
			}
			return l[i].Value < l[j].Value
		})
	}
	return out
}

var storeOrder = map[string]int{report.StoreDBX: 0, report.StoreMokX: 1, report.StoreBlacklist: 2}

func sortStores(ss []string) {
	sort.Slice(ss, func(i, j int) bool { return storeOrder[ss[i]] < storeOrder[ss[j]] })
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// value is r as the policy reads it (input.revocations).
func (r *Revocations) value() ast.Value {
	str := func(ss []string) *ast.Term {
		ts := make([]*ast.Term, len(ss))
		for i, s := range ss {
			ts[i] = ast.StringTerm(s)
		}
		return ast.ArrayTerm(ts...)
	}
	list := func(l []RevocationStatus) *ast.Term {
		ts := make([]*ast.Term, len(l))
		for i, e := range l {
			at := make([]*ast.Term, len(e.At))
			for j, s := range e.At {
				at[j] = ast.ObjectTerm(
					[2]*ast.Term{ast.StringTerm("store"), ast.StringTerm(s.Store)},
					[2]*ast.Term{ast.StringTerm("provenance"), ast.StringTerm(s.Provenance)},
				)
			}
			ts[i] = ast.ObjectTerm(
				[2]*ast.Term{ast.StringTerm("kind"), ast.StringTerm(e.Kind)},
				[2]*ast.Term{ast.StringTerm("value"), ast.StringTerm(e.Value)},
				[2]*ast.Term{ast.StringTerm("targets"), str(e.Targets)},
				[2]*ast.Term{ast.StringTerm("at"), ast.ArrayTerm(at...)},
				[2]*ast.Term{ast.StringTerm("required"), ast.BooleanTerm(e.Required)},
			)
		}
		return ast.ArrayTerm(ts...)
	}
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("enforced"), list(r.Enforced)},
		[2]*ast.Term{ast.StringTerm("pending"), list(r.Pending)},
		[2]*ast.Term{ast.StringTerm("reported"), ast.BooleanTerm(r.Reported)},
		[2]*ast.Term{ast.StringTerm("truncated"), ast.BooleanTerm(r.Truncated)},
	)
}

// termOf is member k of object v, nil when v is not an object or has no k.
func termOf(v ast.Value, k string) *ast.Term {
	o, ok := v.(ast.Object)
	if !ok {
		return nil
	}
	return o.Get(ast.StringTerm(k))
}

func objGet(v ast.Value, k string) ast.Value { return termValue(termOf(v, k)) }

func objString(v ast.Value, k string) string {
	s, _ := termString(termOf(v, k))
	return s
}

func forEach(v ast.Value, f func(ast.Value)) {
	if a, ok := v.(*ast.Array); ok {
		a.Foreach(func(t *ast.Term) { f(t.Value) })
	}
}
