package appraise

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/tpm"
	"github.com/vigil-attest/vigil/verdict"
)

// ReportKeyUnknown is the failure reason (and the reason added to the
// verification result) when a software agent's evidence is signed by
// another report key than the enrolled one.
const ReportKeyUnknown evidence.Reason = "report-key-unknown"

// Failure reasons Go adds itself, whatever the policy says.
const (
	// ReasonSoftwareEnclave: the level was capped at 1 because the report
	// key is a software key.
	ReasonSoftwareEnclave = "software-enclave"
)

// Options configure an Appraiser.
type Options struct {
	// Now is the verification clock; nil means time.Now.
	Now func() time.Time
}

// Appraiser verifies evidence and judges it under the current policy.
// It is safe for concurrent use.
type Appraiser struct {
	p *Policies
	o Options
	// boots are recent boots' derived facts (derived once per boot), as
	// the replay state keeps them; logs are the verifier's, by log.
	boots bootCache
	logs  *evidence.Cache
	// sections are report sections converted for the policy before.
	sections sectionCache
}

// New returns an Appraiser judging under p's current policy.
func New(p *Policies, o Options) *Appraiser {
	return &Appraiser{p: p, o: o, logs: evidence.NewCache(0)}
}

// Policies returns the policies the appraiser judges under.
func (a *Appraiser) Policies() *Policies { return a.p }

// Appraise verifies req's evidence against the agent's enrolled keys and
// the issued nonce, evaluates the policy and returns the level, status,
// trust vector and failures. Invalid evidence is an Outcome at level 0,
// not an error. The error is for internal failures only — the policy did
// not evaluate or gave no well-formed result, the context ended, the
// request names no enrolled enclave — and then no result may be issued.
//
// The level is capped in Go whatever the policy says: invalid evidence is
// level 0, software evidence at most level 1, and no level exceeds a
// failure's Level-1.
func (a *Appraiser) Appraise(ctx context.Context, req *Request) (*Outcome, error) {
	pol := a.p.Current()
	if pol == nil {
		return nil, errors.New("appraise: no policy loaded")
	}
	kind := enclave.Kind(req.Agent.Enclave)
	if kind != enclave.TPM && kind != enclave.Software {
		return nil, fmt.Errorf("appraise: agent %q: enrolled enclave %q is neither %q nor %q", req.Agent.ID, req.Agent.Enclave, enclave.TPM, enclave.Software)
	}
	// A state that does not decode only costs the agent its logs'
	// increments: without it, the logs must come whole.
	st, imaSt, err := decodeState(req.State)
	if err != nil {
		st, imaSt = &replayState{V: stateVersion}, nil
	}
	o := evidence.Options{Nonce: req.Nonce, Enclave: kind, IMAState: imaSt, Quote: pol.quote, Cache: a.logs}
	if a.o.Now != nil {
		o.Now = a.o.Now()
	}
	if kind == enclave.TPM {
		o.AK, o.AKPublic = req.Agent.AK, req.Agent.AKPublic
		if o.AK == nil && len(o.AKPublic) > 0 {
			// A malformed enrolled AK stays nil: ak-unknown.
			o.AK, _ = tpm.PublicKey(o.AKPublic)
		}
	}
	ev := req.Evidence
	if ev != nil && ev.IMALog != nil && ev.IMALog.Offset == 0 {
		// A list from the start is replayed whole: after a reboot, or
		// when the agent lost its offset.
		o.IMAState = nil
	}
	res := evidence.Verify(ctx, ev, o)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("appraise: %w", err)
	}
	if res.Valid && kind == enclave.Software && !sameKey(req.Agent.ReportKey, res.ReportKey) {
		invalidate(res, ReportKeyUnknown, "the report key is not the agent's enrolled report key")
	}
	rec := a.recoverIMA(ctx, ev, o, res, st)
	if rec.restarted != "" {
		res = rec.res
	}

	ru := reuse{imaRestarted: rec.restarted, sections: &a.sections}
	newSt := &replayState{V: stateVersion, IMA: st.IMA, Boot: st.Boot, Clock: st.Clock}
	if res.Valid {
		quoted := res.PCRs["sha256"]
		if c := res.Clock; c != nil {
			newSt.Clock = &clockState{ResetCount: c.ResetCount, RestartCount: c.RestartCount}
		}
		switch {
		case ev.EventLog != nil && res.EventLogVerified:
			e, err := a.boots.fromFacts(res.Attested.Boot)
			if err != nil {
				return nil, fmt.Errorf("appraise: %w", err)
			}
			ru.boot = e.value
			if pcrs := bootPCRs(quoted); pcrs != nil {
				newSt.Boot = &bootState{LogSHA256: res.Attested.Boot.LogSHA256, PCRs: pcrs, Facts: e.raw}
			}
		case ev.EventLog == nil && st.Boot != nil && len(st.Boot.Facts) > 0 && res.Enclave == enclave.TPM:
			// The log verified in an earlier round of this boot: the
			// quoted boot PCRs (and shim's, when it measured) must be
			// the ones it replayed to. Facts that do not decode only
			// cost the agent its log: it sends it again.
			e, err := a.boots.fromState(st.Boot.Facts)
			_, mokQuoted := quoted[evidence.MOKPCR]
			shim := err == nil && e.facts.Shim != nil && e.facts.Shim.PCR14
			if pcrs := bootPCRs(quoted); err == nil && pcrs != nil && samePCRs(pcrs, st.Boot.PCRs) && (!shim || mokQuoted) {
				res.EventLogVerified, ru.eventLog = true, true
				res.Attested.Boot, ru.boot = e.facts, e.value
			} else {
				res.EventLogDetail = "the event log was left out, and the quoted boot PCRs are not those of the log verified before (a reboot): send it"
			}
		case ev.EventLog == nil:
			// Not a silently empty log: the host sent none (a firmware or
			// loader that hands the kernel no TCG log; its report's
			// measured_boot says why), and none of this boot is held.
			res.EventLogDetail = "the evidence has no firmware event log, and the service holds none for this boot (the host's report.measured_boot says why it sent none)"
		}
		switch {
		case rec.restarted != "":
			newSt.IMA = nil
		case res.IMAState != nil:
			newSt.IMA = fromIMA(res.IMAState)
			f := res.Attested.IMA
			if o.IMAState != nil && st.IMA != nil {
				// An increment: this boot's earlier rounds count too.
				f.Modules = mergeSorted(st.IMA.Modules, f.Modules)
				f.Firmware = mergeSorted(st.IMA.Firmware, f.Firmware)
			}
			newSt.IMA.Modules, newSt.IMA.Firmware = f.Modules, f.Firmware
		case ev.IMALog == nil && imaSt != nil && res.Enclave == enclave.TPM:
			if q, ok := quoted[evidence.IMAPCR]; ok && q == hex.EncodeToString(imaSt.SHA256[evidence.IMAPCR][:]) {
				res.IMAVerified, ru.ima = true, true
				ba := evidence.BootAggregate(quoted)
				res.Attested.IMA = &evidence.IMAFacts{
					Entries: imaSt.Entries, BootAggregate: imaSt.BootAggregate,
					BootAggregateMatches: ba != "" && imaSt.BootAggregate == ba,
					Modules:              nonNil(st.IMA.Modules), Firmware: nonNil(st.IMA.Firmware), Files: []evidence.IMAFile{},
				}
			}
		}
	}

	var report []byte
	if res.Valid {
		report = ev.Report
	}
	in, revs, err := buildInput(req.Agent.ID, kind, res, ru, report, pol.reference)
	if err != nil {
		return nil, fmt.Errorf("appraise: policy input: %w", err)
	}
	v, err := pol.eval(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("appraise: %w", err)
	}

	out := &Outcome{
		Level:          v.level,
		TrustVector:    v.trustVector,
		Failures:       v.failures,
		Provenance:     provenanceOf(res),
		PolicyID:       pol.ID,
		PolicyDigest:   pol.Digest,
		ContentVersion: pol.ContentVersion,
		Verification:   res,
		Revocations:    revs,
	}
	for k, p := range v.provenance {
		// The policy may say more about a claim (or name others).
		out.Provenance[k] = p
	}
	capLevel(out, res, kind)
	out.Failures = sortFailures(out.Failures)
	out.Status = StatusOf(out.Level)
	if res.Valid {
		out.ReportKey = res.ReportKey
	}
	if res.Valid || rec.reset {
		if rec.reset {
			// The agent's own evidence whose IMA list alone failed:
			// judged as it is (invalid), and its next list comes whole
			// instead of failing the same way every round.
			newSt.IMA = nil
		}
		b, err := encodeState(newSt)
		if err != nil {
			return nil, fmt.Errorf("appraise: replay state: %w", err)
		}
		out.State = b
	}
	return out, nil
}

// imaRecovery is what recoverIMA found.
type imaRecovery struct {
	// restarted says why the host booted anew since the saved state; res
	// is then the evidence verified without its IMA list, judged instead.
	restarted string
	res       *evidence.Result
	// reset: the evidence is the agent's own and only its IMA list
	// failed, without a new boot; the saved IMA replay is dropped.
	reset bool
}

// recoverIMA looks at evidence whose only failures are its IMA list's.
// It verifies it again without the list: when that is valid the evidence
// is the agent's own. If the quote shows a new boot since the saved
// state (the TPM's reset or restart count, or the boot PCRs, changed),
// the list was read from the old boot's offset: the round is judged
// without it and the replay restarts. Otherwise the round stays invalid
// and only the saved replay is dropped, so that the next round recovers.
func (a *Appraiser) recoverIMA(ctx context.Context, ev *evidence.Evidence, o evidence.Options, res *evidence.Result, st *replayState) imaRecovery {
	if res.Valid || ev == nil || ev.IMALog == nil || len(res.Reasons) == 0 {
		return imaRecovery{}
	}
	for _, r := range res.Reasons {
		if r != evidence.IMAMismatch && r != evidence.IMAOffsetMismatch && r != evidence.IMAMalformed {
			return imaRecovery{}
		}
	}
	without := *ev
	without.IMALog = nil
	r2 := evidence.Verify(ctx, &without, o)
	if !r2.Valid {
		return imaRecovery{}
	}
	why := ""
	switch c := r2.Clock; {
	case c != nil && st.Clock != nil && c.ResetCount != st.Clock.ResetCount:
		why = fmt.Sprintf("the TPM's reset count went from %d to %d", st.Clock.ResetCount, c.ResetCount)
	case c != nil && st.Clock != nil && c.RestartCount != st.Clock.RestartCount:
		why = fmt.Sprintf("the TPM's restart count went from %d to %d", st.Clock.RestartCount, c.RestartCount)
	case st.Boot != nil && !samePCRs(bootPCRs(r2.PCRs["sha256"]), st.Boot.PCRs):
		why = "the quoted boot PCRs changed"
	}
	if why == "" {
		return imaRecovery{reset: true}
	}
	r2.Messages = append(r2.Messages, "IMA list not verified: a new boot ("+why+"); the replay restarts from the start of the list")
	return imaRecovery{restarted: why, res: r2}
}

// mergeSorted merges two sorted, duplicate-free lists.
func mergeSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// capLevel applies the caps no policy can lift: invalid evidence is level
// 0 (each verification reason a failure), software evidence at most 1,
// and every failure caps the level below its own.
func capLevel(out *Outcome, res *evidence.Result, agentKind enclave.Kind) {
	has := func(reason string) bool {
		for _, f := range out.Failures {
			if f.Reason == reason {
				return true
			}
		}
		return false
	}
	if !res.Valid {
		for _, r := range res.Reasons {
			if !has(string(r)) {
				out.Failures = append(out.Failures, Failure{Claim: "evidence.valid", Reason: string(r), Level: 1})
			}
		}
		if len(res.Reasons) == 0 && len(out.Failures) == 0 {
			out.Failures = append(out.Failures, Failure{Claim: "evidence.valid", Reason: "evidence-invalid", Level: 1, Detail: "the evidence did not verify"})
		}
		// Every failure says what failed: an evidence reason's detail is
		// the verifier's message for it.
		for i := range out.Failures {
			f := &out.Failures[i]
			if f.Detail != "" || f.Claim != "evidence.valid" {
				continue
			}
			for _, m := range res.Messages {
				if d, ok := strings.CutPrefix(m, f.Reason+": "); ok {
					f.Detail = d
					break
				}
			}
		}
		out.Level = LevelUntrusted
		// The trust vector may not vouch for the instance.
		if out.TrustVector["instance-identity"] < 96 {
			out.TrustVector["instance-identity"] = 99 // ear.CryptoValidationFailedClaim
		}
	}
	if (res.Enclave != enclave.TPM || agentKind != enclave.TPM) && out.Level > LevelSoftware {
		out.Level = LevelSoftware
		if !has(ReasonSoftwareEnclave) {
			out.Failures = append(out.Failures, Failure{Claim: "evidence.enclave", Reason: ReasonSoftwareEnclave, Level: LevelHardware, Detail: "the report key is not held by a TPM"})
		}
	}
	if res.Enclave != enclave.TPM || agentKind != enclave.TPM || !res.Valid {
		if h, ok := out.TrustVector["hardware"]; ok && h >= 2 && h < 32 {
			delete(out.TrustVector, "hardware")
		}
	}
	for _, f := range out.Failures {
		if f.Level-1 < out.Level {
			out.Level = f.Level - 1
		}
	}
}

// StatusOf is the EAR status tier of a level: affirming (≥ 2), warning
// (1), contraindicated (0) (verdict.StatusOf).
func StatusOf(level int) string { return verdict.StatusOf(verdict.Level(level)) }

// invalidate turns a valid result invalid, clearing what it proved, as
// evidence.Verify does.
func invalidate(res *evidence.Result, r evidence.Reason, msg string) {
	res.Valid = false
	res.Reasons = append(res.Reasons, r)
	slices.Sort(res.Reasons)
	res.Messages = append(res.Messages, string(r)+": "+msg)
	res.Report, res.ReportKey, res.Clock, res.PCRs, res.IMAState = nil, nil, nil, nil, nil
	res.EventLogVerified, res.IMAVerified = false, false
}

// sameKey reports whether got is the enrolled key (a nil or typed-nil
// enrolled key matches nothing).
func sameKey(enrolled, got crypto.PublicKey) bool {
	switch k := enrolled.(type) {
	case *ecdsa.PublicKey:
		if k == nil {
			return false
		}
		if _, err := k.Bytes(); err != nil {
			return false
		}
		return k.Equal(got)
	case *rsa.PublicKey:
		return k != nil && k.N != nil && k.Equal(got)
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize && k.Equal(got)
	}
	return false
}

// bootPCRs returns the quoted SHA-256 PCRs 0–9, or nil unless all ten
// were quoted.
func bootPCRs(quoted map[int]string) map[string]string {
	out := make(map[string]string, evidence.BootPCRs+1)
	for i := 0; i <= evidence.BootPCRs; i++ {
		v, ok := quoted[i]
		if !ok {
			return nil
		}
		out[strconv.Itoa(i)] = v
	}
	return out
}

func samePCRs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// LevelName is a level's name in the brief: untrusted, software-rooted,
// hardware-rooted, measured-and-enforced, hardened (verdict.Level.String).
func LevelName(level int) string { return verdict.Level(level).String() }
