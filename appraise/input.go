package appraise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/veraison/ear"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/measure"
)

// reuse says which logs were taken as verified from the saved state
// instead of from the evidence.
type reuse struct {
	eventLog bool
	ima      bool
	// imaRestarted says why the IMA replay restarted (a new boot), "".
	imaRestarted string
	// boot is the attested boot facts' policy value (the boot cache's),
	// nil to convert res.Attested.Boot here.
	boot ast.Value
	// sections, when set, converts the report through the section cache.
	sections *sectionCache
}

// buildInput makes the policy input (docs/attestation-policy.md): input.agent,
// input.evidence (the evidence.Result JSON plus event_log_reused and
// ima_reused), input.report (the verified report, only when valid) and
// input.reference. It is built as an ast.Value directly, so nothing is
// marshalled twice. It also returns the revocations it judged
// (input.revocations, Outcome.Revocations).
func buildInput(agentID string, agentEnclave enclave.Kind, res *evidence.Result, ru reuse, report []byte, ref ast.Value) (ast.Value, *Revocations, error) {
	kv := [][2]*ast.Term{
		{ast.StringTerm("agent"), ast.ObjectTerm(
			[2]*ast.Term{ast.StringTerm("id"), ast.StringTerm(agentID)},
			[2]*ast.Term{ast.StringTerm("enclave"), ast.StringTerm(string(agentEnclave))},
		)},
		{ast.StringTerm("evidence"), ast.NewTerm(evidenceValue(res, ru))},
		{ast.StringTerm("reference"), ast.NewTerm(ref)},
	}
	av, err := attestedValue(&res.Attested, ru.boot)
	if err != nil {
		return nil, nil, fmt.Errorf("attested facts: %w", err)
	}
	kv = append(kv, [2]*ast.Term{ast.StringTerm("attested"), ast.NewTerm(av)})
	prov := provenanceOf(res)
	pv := make([][2]*ast.Term, 0, len(prov))
	for k, v := range prov {
		pv = append(pv, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)})
	}
	kv = append(kv, [2]*ast.Term{ast.StringTerm("provenance"), ast.ObjectTerm(pv...)})
	var rv ast.Value
	if res.Valid {
		var err error
		if ru.sections != nil {
			rv, err = ru.sections.reportValue(report)
		} else {
			rv, err = jsonValue(report)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("report: %w", err)
		}
		kv = append(kv, [2]*ast.Term{ast.StringTerm("report"), ast.NewTerm(rv)})
	}
	revs := revocationsOf(rv, res.Attested.Boot, ref)
	kv = append(kv, [2]*ast.Term{ast.StringTerm("revocations"), ast.NewTerm(revs.value())})
	return ast.NewObject(kv...), revs, nil
}

// evidenceValue is res as its JSON encoding reads, plus the reuse flags.
func evidenceValue(res *evidence.Result, ru reuse) ast.Value {
	str := func(ss []string) *ast.Term {
		ts := make([]*ast.Term, len(ss))
		for i, s := range ss {
			ts[i] = ast.StringTerm(s)
		}
		return ast.ArrayTerm(ts...)
	}
	reasons := make([]string, len(res.Reasons))
	for i, r := range res.Reasons {
		reasons[i] = string(r)
	}
	kv := [][2]*ast.Term{
		{ast.StringTerm("valid"), ast.BooleanTerm(res.Valid)},
		{ast.StringTerm("enclave"), ast.StringTerm(string(res.Enclave))},
		{ast.StringTerm("reasons"), str(reasons)},
		{ast.StringTerm("time"), ast.StringTerm(res.Time.Format(time.RFC3339Nano))},
		{ast.StringTerm("event_log_verified"), ast.BooleanTerm(res.EventLogVerified)},
		{ast.StringTerm("ima_verified"), ast.BooleanTerm(res.IMAVerified)},
		{ast.StringTerm("event_log_reused"), ast.BooleanTerm(ru.eventLog)},
		{ast.StringTerm("ima_reused"), ast.BooleanTerm(ru.ima)},
		{ast.StringTerm("event_log_detail"), ast.StringTerm(res.EventLogDetail)},
		{ast.StringTerm("ima_restarted"), ast.StringTerm(ru.imaRestarted)},
	}
	if len(res.Messages) > 0 {
		kv = append(kv, [2]*ast.Term{ast.StringTerm("messages"), str(res.Messages)})
	}
	if c := res.Clock; c != nil {
		kv = append(kv, [2]*ast.Term{ast.StringTerm("clock"), ast.ObjectTerm(
			[2]*ast.Term{ast.StringTerm("clock"), ast.UIntNumberTerm(c.Clock)},
			[2]*ast.Term{ast.StringTerm("reset_count"), ast.UIntNumberTerm(uint64(c.ResetCount))},
			[2]*ast.Term{ast.StringTerm("restart_count"), ast.UIntNumberTerm(uint64(c.RestartCount))},
			[2]*ast.Term{ast.StringTerm("safe"), ast.BooleanTerm(c.Safe)},
			[2]*ast.Term{ast.StringTerm("firmware_version"), ast.UIntNumberTerm(c.FirmwareVersion)},
		)})
	}
	if len(res.PCRs) > 0 {
		banks := make([][2]*ast.Term, 0, len(res.PCRs))
		for bank, pcrs := range res.PCRs {
			vals := make([][2]*ast.Term, 0, len(pcrs))
			for i, v := range pcrs {
				vals = append(vals, [2]*ast.Term{ast.StringTerm(strconv.Itoa(i)), ast.StringTerm(v)})
			}
			banks = append(banks, [2]*ast.Term{ast.StringTerm(bank), ast.ObjectTerm(vals...)})
		}
		kv = append(kv, [2]*ast.Term{ast.StringTerm("pcrs"), ast.ObjectTerm(banks...)})
	}
	return ast.NewObject(kv...)
}

// attestedValue is input.attested: the verifier's facts as their JSON
// encoding reads, null where nothing verified. boot, when set, is the
// boot facts' value already converted (the boot cache's).
func attestedValue(f *evidence.Facts, boot ast.Value) (ast.Value, error) {
	bt, it := ast.NullTerm(), ast.NullTerm()
	switch {
	case boot != nil:
		bt = ast.NewTerm(boot)
	case f.Boot != nil:
		b, err := json.Marshal(f.Boot)
		if err != nil {
			return nil, err
		}
		v, err := jsonValue(b)
		if err != nil {
			return nil, err
		}
		bt = ast.NewTerm(v)
	}
	if f.IMA != nil {
		b, err := json.Marshal(f.IMA)
		if err != nil {
			return nil, err
		}
		v, err := jsonValue(b)
		if err != nil {
			return nil, err
		}
		it = ast.NewTerm(v)
	}
	return ast.NewObject([2]*ast.Term{ast.StringTerm("boot"), bt}, [2]*ast.Term{ast.StringTerm("ima"), it}), nil
}

// policyVerdict is what the policy returned, checked.
type policyVerdict struct {
	level       int
	failures    []Failure
	trustVector map[string]int
	provenance  map[string]string
}

// trustClaims are the AR4SI trust vector's claim names, as ear encodes
// them.
var trustClaims = func() map[string]bool {
	m := map[string]bool{}
	for k := range (ear.TrustVector{}).AsMap() {
		m[k] = true
	}
	return m
}()

// ErrPolicyResult is wrapped by every error about the policy's output:
// none, or not of the documented form. The appraisal fails closed (the
// caller answers 500; no token is issued).
var ErrPolicyResult = errors.New("policy result")

// eval runs the prepared query and checks its result. The result stays
// an ast.Value (no conversion to Go maps): parseVerdict reads it.
func (pol *Policy) eval(ctx context.Context, input ast.Value) (*policyVerdict, error) {
	rs, err := pol.query.Eval(ctx, rego.EvalParsedInput(input), rego.EvalGenerateJSON(keepTerm))
	if err != nil {
		return nil, fmt.Errorf("policy %s evaluation: %w", pol.ID, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("%w: %s is undefined", ErrPolicyResult, Query)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("%w: %s: result of type %T", ErrPolicyResult, Query, rs[0].Expressions[0].Value)
	}
	v, err := parseVerdict(t.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrPolicyResult, Query, err)
	}
	return v, nil
}

func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

var (
	keyLevel       = ast.StringTerm("level")
	keyFailures    = ast.StringTerm("failures")
	keyTrustVector = ast.StringTerm("trust_vector")
	keyProvenance  = ast.StringTerm("provenance")
)

// provenanceTiers are the values a provenance may take.
var provenanceTiers = map[string]bool{"attested": true, "corroborated": true, "asserted": true}

func parseVerdict(x ast.Value) (*policyVerdict, error) {
	obj, ok := x.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("not an object but %v", ast.ValueName(x))
	}
	var bad error
	obj.Foreach(func(k, _ *ast.Term) {
		if bad == nil && !k.Equal(keyLevel) && !k.Equal(keyFailures) && !k.Equal(keyTrustVector) && !k.Equal(keyProvenance) {
			bad = fmt.Errorf("unknown member %v", k)
		}
	})
	if bad != nil {
		return nil, bad
	}
	v := &policyVerdict{trustVector: map[string]int{}}
	lt := obj.Get(keyLevel)
	lvl, ok := termInt(lt)
	if !ok || lvl < LevelUntrusted || lvl > MaxLevel {
		return nil, fmt.Errorf("level %v is not an integer from %d to %d", lt, LevelUntrusted, MaxLevel)
	}
	v.level = lvl
	var items []*ast.Term
	switch fs := termValue(obj.Get(keyFailures)).(type) {
	case ast.Set:
		items = fs.Slice()
	case *ast.Array:
		fs.Foreach(func(t *ast.Term) { items = append(items, t) })
	default:
		return nil, fmt.Errorf("failures is not an array or a set: %v", obj.Get(keyFailures))
	}
	for i, f := range items {
		fl, err := parseFailure(f.Value)
		if err != nil {
			return nil, fmt.Errorf("failures[%d]: %w", i, err)
		}
		v.failures = append(v.failures, fl)
	}
	tv, ok := termValue(obj.Get(keyTrustVector)).(ast.Object)
	if !ok {
		return nil, fmt.Errorf("trust_vector is not an object: %v", obj.Get(keyTrustVector))
	}
	tv.Foreach(func(k, val *ast.Term) {
		if bad != nil {
			return
		}
		name, ok := k.Value.(ast.String)
		if !ok || !trustClaims[string(name)] {
			bad = fmt.Errorf("trust_vector: %v is not an AR4SI claim", k)
			return
		}
		n, ok := termInt(val)
		if !ok || n < math.MinInt8 || n > math.MaxInt8 {
			bad = fmt.Errorf("trust_vector.%s: %v is not an integer from -128 to 127", name, val)
			return
		}
		if n != 0 { // 0 is "no claim" (ear.NoClaim): left out
			v.trustVector[string(name)] = n
		}
	})
	if bad != nil {
		return nil, bad
	}
	if pt := obj.Get(keyProvenance); pt != nil {
		po, ok := pt.Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("provenance is not an object: %v", pt)
		}
		v.provenance = map[string]string{}
		po.Foreach(func(k, val *ast.Term) {
			name, ok1 := k.Value.(ast.String)
			tier, ok2 := termString(val)
			if bad == nil && (!ok1 || !ok2 || !provenanceTiers[tier]) {
				bad = fmt.Errorf("provenance: %v: %v is not attested, corroborated or asserted", k, val)
				return
			}
			v.provenance[string(name)] = tier
		})
		if bad != nil {
			return nil, bad
		}
	}
	return v, nil
}

func parseFailure(x ast.Value) (Failure, error) {
	var fl Failure
	fo, ok := x.(ast.Object)
	if !ok {
		return fl, errors.New("not an object")
	}
	var bad error
	fo.Foreach(func(k, val *ast.Term) {
		if bad != nil {
			return
		}
		ok := true
		key, _ := k.Value.(ast.String)
		switch key {
		case "claim":
			fl.Claim, ok = termString(val)
		case "reason":
			fl.Reason, ok = termString(val)
		case "detail":
			fl.Detail, ok = termString(val)
		case "provenance":
			fl.Provenance, ok = termString(val)
			ok = ok && provenanceTiers[fl.Provenance]
		case "level":
			fl.Level, ok = termInt(val)
			ok = ok && fl.Level >= 1 && fl.Level <= MaxLevel
		default:
			bad = fmt.Errorf("unknown member %v", k)
			return
		}
		if !ok {
			bad = fmt.Errorf("%s: %v is not valid", key, val)
		}
	})
	if bad != nil {
		return fl, bad
	}
	if fl.Claim == "" || fl.Reason == "" || fl.Level == 0 {
		return fl, fmt.Errorf("claim, reason and level (1 to %d) are required", MaxLevel)
	}
	return fl, nil
}

func termValue(t *ast.Term) ast.Value {
	if t == nil {
		return nil
	}
	return t.Value
}

func termString(t *ast.Term) (string, bool) {
	s, ok := termValue(t).(ast.String)
	return string(s), ok
}

// termInt reads an integral number (at most 32 bits).
func termInt(t *ast.Term) (int, bool) {
	n, ok := termValue(t).(ast.Number)
	if !ok {
		return 0, false
	}
	if i, ok := n.Int64(); ok && i >= math.MinInt32 && i <= math.MaxInt32 {
		return int(i), true
	}
	return 0, false
}

// sortFailures orders failures by claim, reason, detail, then level, and
// drops exact duplicates.
func sortFailures(fs []Failure) []Failure {
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Claim != b.Claim {
			return a.Claim < b.Claim
		}
		if a.Reason != b.Reason {
			return a.Reason < b.Reason
		}
		if a.Detail != b.Detail {
			return a.Detail < b.Detail
		}
		return a.Level < b.Level
	})
	out := fs[:0]
	for i, f := range fs {
		if i == 0 || f != fs[i-1] {
			out = append(out, f)
		}
	}
	if out == nil {
		out = []Failure{}
	}
	return out
}

// smoke is a built-in input Compile evaluates a new policy on.
type smoke struct {
	name  string
	input func(ref ast.Value) (ast.Value, error)
}

func smokeInputs() []smoke {
	return []smoke{
		{"invalid evidence", func(ref ast.Value) (ast.Value, error) {
			res := &evidence.Result{Enclave: enclave.TPM, Reasons: []evidence.Reason{evidence.NonceMismatch}}
			in, _, err := buildInput("smoke-test", enclave.TPM, res, reuse{}, nil, ref)
			return in, err
		}},
		{"valid software evidence of an empty host", func(ref ast.Value) (ast.Value, error) {
			r := &measure.Report{Version: measure.Version, Inputs: map[string]string{}}
			for _, s := range r.Sections() {
				s.Status = measure.StatusUnavailable
			}
			doc, err := r.Canonical()
			if err != nil {
				return nil, err
			}
			res := &evidence.Result{Valid: true, Enclave: enclave.Software, Reasons: []evidence.Reason{}}
			in, _, err := buildInput("smoke-test", enclave.Software, res, reuse{}, doc, ref)
			return in, err
		}},
	}
}
