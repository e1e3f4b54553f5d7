package appraise

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/tpm"
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
}

// New returns an Appraiser judging under p's current policy.
func New(p *Policies, o Options) *Appraiser {
	return &Appraiser{p: p, o: o}
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
	o := evidence.Options{Nonce: req.Nonce, Enclave: kind, IMAState: imaSt}
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

	var ru reuse
	newSt := &replayState{V: stateVersion, IMA: st.IMA, Boot: st.Boot}
	if res.Valid {
		quoted := res.PCRs["sha256"]
		switch {
		case ev.EventLog != nil && res.EventLogVerified:
			if pcrs := bootPCRs(quoted); pcrs != nil {
				sum := sha256.Sum256(ev.EventLog.Data)
				newSt.Boot = &bootState{LogSHA256: hex.EncodeToString(sum[:]), PCRs: pcrs}
			}
		case ev.EventLog == nil && st.Boot != nil && res.Enclave == enclave.TPM:
			if pcrs := bootPCRs(quoted); pcrs != nil && samePCRs(pcrs, st.Boot.PCRs) {
				res.EventLogVerified, ru.eventLog = true, true
			}
		}
		switch {
		case res.IMAState != nil:
			newSt.IMA = fromIMA(res.IMAState)
		case ev.IMALog == nil && imaSt != nil && res.Enclave == enclave.TPM:
			if q, ok := quoted[evidence.IMAPCR]; ok && q == hex.EncodeToString(imaSt.SHA256[evidence.IMAPCR][:]) {
				res.IMAVerified, ru.ima = true, true
			}
		}
	}

	var report []byte
	if res.Valid {
		report = ev.Report
	}
	in, err := buildInput(req.Agent.ID, kind, res, ru, report, pol.reference)
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
		PolicyID:       pol.ID,
		PolicyDigest:   pol.Digest,
		ContentVersion: pol.ContentVersion,
		Verification:   res,
	}
	capLevel(out, res, kind)
	out.Failures = sortFailures(out.Failures)
	out.Status = StatusOf(out.Level)
	if res.Valid {
		out.ReportKey = res.ReportKey
		b, err := json.Marshal(newSt)
		if err != nil {
			return nil, fmt.Errorf("appraise: replay state: %w", err)
		}
		out.State = b
	}
	return out, nil
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
			out.Failures = append(out.Failures, Failure{Claim: "evidence.valid", Reason: "evidence-invalid", Level: 1})
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
// (1), contraindicated (0).
func StatusOf(level int) string {
	switch {
	case level >= LevelHardware:
		return statusAffirming
	case level == LevelSoftware:
		return statusWarning
	}
	return statusContraindicat
}

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
// hardware-rooted, measured-and-enforced, hardened.
func LevelName(level int) string {
	switch level {
	case LevelUntrusted:
		return "untrusted"
	case LevelSoftware:
		return "software-rooted"
	case LevelHardware:
		return "hardware-rooted"
	case LevelMeasured:
		return "measured-and-enforced"
	case LevelHardened:
		return "hardened"
	}
	return "level-" + strconv.Itoa(level)
}
