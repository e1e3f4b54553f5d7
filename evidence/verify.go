package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/report"
)

// MinNonce is the shortest verifier nonce Verify accepts.
const MinNonce = 8

// BootPCRs is the highest PCR index the firmware event log accounts
// for: the firmware (0–7) and the boot loader (8, 9) log every extension
// of these. A quoted boot PCR the log does not extend must still hold its
// initial value, so a log cut before a PCR's events does not pass.
const BootPCRs = 9

// IMAPCR is the PCR the IMA list replays to.
const IMAPCR = ima.MeasurementPCR

// Options are the verifier's expectations.
type Options struct {
	// Nonce is the nonce the verifier issued for this evidence (at least
	// MinNonce bytes). Required.
	Nonce []byte
	// AK is the enrolled attestation key (*ecdsa.PublicKey or
	// *rsa.PublicKey). Without it TPM evidence is never valid
	// (ak-unknown); software evidence needs none.
	AK crypto.PublicKey
	// AKPublic, when set, is the enrolled AK's TPMT_PUBLIC, the one whose
	// Name credential activation bound to the EK: ak.public must be
	// these exact bytes. Without it the AK's attributes are as the agent
	// states them.
	AKPublic []byte
	// Enclave, when set, is the only enclave kind accepted
	// (enclave-mismatch otherwise). When empty both are accepted and
	// Result.Enclave says which one the evidence is: TPM evidence
	// rewritten as software evidence then verifies as software evidence,
	// whose level is low.
	Enclave enclave.Kind
	// IMAState is the replay state saved from the last verified round of
	// this agent: the IMA list in the evidence must start at its Offset.
	// Nil means the list starts at offset 0. It is not modified.
	IMAState *ima.State
	// Now is the verification time recorded in the result; zero means
	// time.Now().
	Now time.Time
	// Quote is the PCR selection TPM evidence must quote; the zero value
	// is DefaultQuotePolicy.
	Quote QuotePolicy
	// IMAFiles lists every file the verified IMA list measured in
	// Result.Attested.IMA.Files (path, digest, template).
	IMAFiles bool
	// Cache, when set, keeps the boot facts derived from event logs
	// verified before: a fleet booted alike derives them once.
	Cache *Cache
}

// QuotePolicy is the SHA-256 PCR selection the verifier requires of a
// TPM quote (docs/attestation-policy.md, "Required quote selection").
// Evidence that quotes fewer is pcr-selection-insufficient.
type QuotePolicy struct {
	// Boot are required always: the PCRs the firmware and the boot loader
	// extend (default 0–9).
	Boot []int `json:"boot"`
	// IMA are required when the evidence carries an IMA list or the
	// report says IMA is active (default 10).
	IMA []int `json:"ima"`
	// MOK are required when the event log has shim's PCR 14
	// measurements (default 14).
	MOK []int `json:"mok"`
}

// DefaultQuotePolicy is SHA-256 PCRs 0–9, plus 10 with IMA, plus 14 with
// shim's MOK measurements.
var DefaultQuotePolicy = QuotePolicy{Boot: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, IMA: []int{IMAPCR}, MOK: []int{MOKPCR}}

// MOKPCR is the PCR shim measures MokList, MokListX and MokListTrusted
// into.
const MOKPCR = 14

func (q QuotePolicy) orDefault() QuotePolicy {
	if q.Boot == nil && q.IMA == nil && q.MOK == nil {
		return DefaultQuotePolicy
	}
	return q
}

// Clock is the TPM's clock and firmware version, from the quote.
type Clock struct {
	// Clock is the TPM's time in milliseconds while powered.
	Clock uint64 `json:"clock"`
	// ResetCount counts TPM resets (reboots) since the last
	// TPM2_Clear; RestartCount counts restarts (hibernation) since the
	// last reset.
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`
	// Safe means no larger Clock value was ever reported.
	Safe bool `json:"safe"`
	// FirmwareVersion is the TPM vendor's firmware version.
	FirmwareVersion uint64 `json:"firmware_version"`
}

// Result is the outcome of Verify. Fail closed: everything but Reasons,
// Messages, Enclave and Time is set only when Valid.
type Result struct {
	// Valid is true when every check passed.
	Valid bool `json:"valid"`
	// Enclave is the evidence's enclave ("tpm" or "software"; "" when
	// neither). Software evidence never proves more than possession of
	// the report key, whatever the verifier expected.
	Enclave enclave.Kind `json:"enclave"`
	// Reasons are the failed checks, sorted and without duplicates;
	// empty when Valid.
	Reasons []Reason `json:"reasons"`
	// Messages say what failed, for people.
	Messages []string `json:"messages,omitempty"`
	// Time is when the evidence was verified (Options.Now).
	Time time.Time `json:"time"`
	// Report is the verified runtime report.
	Report *report.Report `json:"-"`
	// ReportKey is the verified report key (for a TPM, certified by the
	// AK): what a session report's cnf claim binds to.
	ReportKey crypto.PublicKey `json:"-"`
	// Clock is the TPM clock of the quote (TPM evidence).
	Clock *Clock `json:"clock,omitempty"`
	// PCRs are the quoted PCR values: bank → index → lowercase hex (TPM
	// evidence).
	PCRs map[string]map[int]string `json:"pcrs,omitempty"`
	// EventLogVerified is true when the firmware event log was present
	// and replays to every quoted PCR it accounts for (at least one).
	EventLogVerified bool `json:"event_log_verified"`
	// IMAVerified is true when a prefix of the IMA list, replayed from
	// Options.IMAState, gives the quoted SHA-256 PCR 10.
	IMAVerified bool `json:"ima_verified"`
	// IMAState is the replay state after that prefix, to save for the
	// agent's next round (its Offset is where the next list starts).
	IMAState *ima.State `json:"-"`
	// EventLogDetail says why the event log did not verify ("" when it
	// did, or when there was none).
	EventLogDetail string `json:"event_log_detail,omitempty"`
	// Attested are the facts derived from the verified logs.
	Attested Facts `json:"attested"`
}

func (r *Result) fail(reason Reason, format string, args ...any) {
	r.Reasons = append(r.Reasons, reason)
	r.Messages = append(r.Messages, string(reason)+": "+fmt.Sprintf(format, args...))
}

// finish sorts the reasons and, unless the result is valid, clears
// everything the evidence would have proven.
func (r *Result) finish() {
	sort.Slice(r.Reasons, func(i, j int) bool { return r.Reasons[i] < r.Reasons[j] })
	r.Reasons = slices.Compact(r.Reasons)
	if r.Reasons == nil {
		r.Reasons = []Reason{}
	}
	r.Valid = len(r.Reasons) == 0
	if !r.Valid {
		r.Report, r.ReportKey, r.Clock, r.PCRs, r.IMAState = nil, nil, nil, nil, nil
		r.EventLogVerified, r.IMAVerified = false, false
		r.Attested = Facts{}
	}
}

// Verify checks evidence offline against the verifier's expectations. It
// never panics and never returns Valid unless every check passed: the
// report signature over Binding(nonce, report), the report's form and,
// for a TPM, the AK, the certification of the report key and the quote
// (both bound to the same binding), the PCR digest, and the event log
// and IMA list replayed to the quoted PCRs.
func Verify(ctx context.Context, ev *Evidence, o Options) (res *Result) {
	res = &Result{Time: o.Now}
	if res.Time.IsZero() {
		res.Time = time.Now()
	}
	defer func() {
		if p := recover(); p != nil {
			res.fail(Malformed, "internal error: %v", p)
			res.finish()
		}
	}()
	v := &verifier{ctx: ctx, ev: ev, o: o, res: res}
	v.run()
	res.finish()
	return res
}

type verifier struct {
	ctx context.Context
	ev  *Evidence
	o   Options
	res *Result

	bind []byte
	// ak is the key the TPM signatures are checked with: the enrolled
	// AK, or (ak-unknown) the evidence's own, for the messages.
	ak crypto.PublicKey
	// pcrs are the quoted values once the quote's signature and PCR
	// digest verify: bank → index → value.
	pcrs map[eventlog.Alg]map[int][]byte
}

func (v *verifier) fail(reason Reason, format string, args ...any) {
	v.res.fail(reason, format, args...)
}

func (v *verifier) canceled() bool {
	if err := v.ctx.Err(); err != nil {
		v.fail(Canceled, "%v", err)
		return true
	}
	return false
}

func (v *verifier) run() {
	ev := v.ev
	if ev == nil {
		v.fail(Malformed, "no evidence")
		return
	}
	if ev.Version != Version {
		v.fail(UnsupportedVersion, "version %q, want %q", ev.Version, Version)
		return
	}
	kind := enclave.Kind(ev.Enclave)
	if kind != enclave.TPM && kind != enclave.Software {
		v.fail(EnclaveMismatch, "enclave %q is neither %q nor %q", ev.Enclave, enclave.TPM, enclave.Software)
		return
	}
	v.res.Enclave = kind
	if v.o.Enclave != "" && v.o.Enclave != kind {
		v.fail(EnclaveMismatch, "%s evidence, and the verifier requires %s", kind, v.o.Enclave)
	}
	if v.canceled() {
		return
	}

	nonce := v.o.Nonce
	switch evNonce, err := hex.DecodeString(ev.Nonce); {
	case err != nil || len(evNonce) == 0:
		v.fail(Malformed, "nonce %.40q is not hex", ev.Nonce)
	case len(v.o.Nonce) < MinNonce:
		v.fail(NonceMismatch, "the verifier's nonce has %d bytes, fewer than %d", len(v.o.Nonce), MinNonce)
		nonce = evNonce
	case subtle.ConstantTimeCompare(evNonce, v.o.Nonce) != 1:
		v.fail(NonceMismatch, "the evidence is for nonce %.40s…, not the verifier's", ev.Nonce)
		// The bindings are checked with the evidence's own nonce, so that
		// a replay is told apart from tampering.
		nonce = evNonce
	}
	v.bind = Binding(nonce, ev.Report)

	if rep, err := checkReport(ev.Report); err != nil {
		v.fail(ReportMalformed, "%v", err)
	} else {
		v.res.Report = rep
	}

	rk, err := parsePublicPEM(ev.ReportKey.Public)
	if err != nil {
		v.fail(Malformed, "report_key.public: %v", err)
	} else {
		if err := keyStrength(rk); err != nil {
			v.fail(ReportKeyAttributes, "report key: %v", err)
		}
		if err := verifyReportSignature(rk, v.bind, ev.ReportSignature); err != nil {
			v.fail(BadReportSignature, "%v", err)
		}
		v.res.ReportKey = rk
	}

	if kind == enclave.Software {
		v.software()
		return
	}
	if !v.tpmShape() || v.canceled() {
		return
	}
	v.akCheck()
	v.quote()
	v.certify(rk)
	if v.pcrs == nil || v.canceled() {
		return
	}
	v.requireSelection()
	v.eventLog()
	if v.canceled() {
		return
	}
	v.imaLog()
}

// software checks that software evidence claims nothing a TPM would
// prove.
func (v *verifier) software() {
	ev := v.ev
	var extra []string
	if ev.Quote != nil {
		extra = append(extra, "quote")
	}
	if ev.AK != nil {
		extra = append(extra, "ak")
	}
	if ev.EK != nil {
		extra = append(extra, "ek")
	}
	if ev.EKCert != nil {
		extra = append(extra, "ek_cert")
	}
	if ev.ReportKey.TPMPublic != nil {
		extra = append(extra, "report_key.tpm_public")
	}
	if ev.ReportKey.CertifyInfo != nil {
		extra = append(extra, "report_key.certify_info")
	}
	if ev.ReportKey.CertifySignature != nil {
		extra = append(extra, "report_key.certify_signature")
	}
	if len(extra) > 0 {
		v.fail(EnclaveMismatch, "software evidence with TPM fields: %v", extra)
	}
}

// tpmShape checks that TPM evidence has every TPM field.
func (v *verifier) tpmShape() bool {
	ev := v.ev
	var missing []string
	if ev.Quote == nil {
		missing = append(missing, "quote")
	}
	if ev.AK == nil {
		missing = append(missing, "ak")
	}
	if len(ev.ReportKey.TPMPublic) == 0 {
		missing = append(missing, "report_key.tpm_public")
	}
	if len(ev.ReportKey.CertifyInfo) == 0 {
		missing = append(missing, "report_key.certify_info")
	}
	if len(ev.ReportKey.CertifySignature) == 0 {
		missing = append(missing, "report_key.certify_signature")
	}
	if len(missing) > 0 {
		v.fail(EnclaveMismatch, "TPM evidence without %v", missing)
		return false
	}
	return true
}

type equaler interface{ Equal(crypto.PublicKey) bool }

func sameKey(a, b crypto.PublicKey) bool {
	e, ok := a.(equaler)
	return ok && b != nil && e.Equal(b)
}

func (v *verifier) akCheck() {
	ak := v.ev.AK
	var tk crypto.PublicKey
	tp, err := decodePublic(ak.Public)
	if err != nil {
		v.fail(Malformed, "ak.public: %v", err)
	} else {
		tk = tp.key
	}
	pk, err := parsePublicPEM(ak.PEM)
	if err != nil {
		v.fail(Malformed, "ak.pem: %v", err)
	}
	if tk != nil && pk != nil && !sameKey(tk, pk) {
		v.fail(AKMismatch, "ak.public and ak.pem are different keys")
	}
	if tp != nil {
		if err := objectAttributes(tp, true); err != nil {
			v.fail(AKAttributes, "AK: %v", err)
		}
	}
	if v.o.AKPublic != nil && !bytes.Equal(v.o.AKPublic, ak.Public) {
		v.fail(AKMismatch, "ak.public is not the enrolled AK's TPMT_PUBLIC")
	}
	evKey := tk
	if evKey == nil {
		evKey = pk
	}
	enrolled, valid := v.o.AK, true
	switch k := enrolled.(type) {
	case *ecdsa.PublicKey:
		if k == nil {
			enrolled = nil
		} else if _, err := k.Bytes(); err != nil {
			valid = false
		}
	case *rsa.PublicKey:
		if k == nil {
			enrolled = nil
		} else {
			valid = k.N != nil && k.N.Sign() > 0
		}
	}
	switch enrolled.(type) {
	case nil:
		v.fail(AKUnknown, "TPM evidence, and no enrolled AK to verify it with")
		v.ak = evKey
	case *ecdsa.PublicKey, *rsa.PublicKey:
		if !valid {
			v.fail(AKMismatch, "the enrolled AK is not a valid key")
			return
		}
		v.ak = v.o.AK
		if (tk != nil && !sameKey(v.o.AK, tk)) || (pk != nil && !sameKey(v.o.AK, pk)) {
			v.fail(AKMismatch, "the evidence's AK is not the enrolled AK")
		}
	default:
		v.fail(AKMismatch, "the enrolled AK is a %T, not an ECDSA or RSA key", v.o.AK)
	}
}

// objectAttributes checks a TPM key's attributes: TPM-generated, never
// leaving its TPM and parent, a signing key, restricted (an AK) or not
// (the report key), and of sufficient strength.
func objectAttributes(p *public, restricted bool) error {
	a := p.attrs
	var bad []string
	if a&attrFixedTPM == 0 {
		bad = append(bad, "fixedTPM clear")
	}
	if a&attrFixedParent == 0 {
		bad = append(bad, "fixedParent clear")
	}
	if a&attrSensitiveDataOrigin == 0 {
		bad = append(bad, "sensitiveDataOrigin clear")
	}
	if a&attrSign == 0 {
		bad = append(bad, "sign clear")
	}
	if a&attrDecrypt != 0 {
		bad = append(bad, "decrypt set")
	}
	if (a&attrRestricted != 0) != restricted {
		bad = append(bad, fmt.Sprintf("restricted %v, want %v", a&attrRestricted != 0, restricted))
	}
	if err := keyStrength(p.key); err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		return fmt.Errorf("%v", bad)
	}
	return nil
}

// attestReason maps a decodeAttest error to its reason.
func attestReason(err error) Reason {
	switch {
	case errors.Is(err, errBadMagic):
		return BadMagic
	case errors.Is(err, errAttestType):
		return BadAttestType
	}
	return Malformed
}

func (v *verifier) quote() {
	q := v.ev.Quote
	att, err := decodeAttest(q.Attest, tpm2.TPMSTAttestQuote)
	if err != nil {
		v.fail(attestReason(err), "quote.attest: %v", err)
	}
	sig, err := decodeSignature(q.Signature)
	if err != nil {
		v.fail(Malformed, "quote.signature: %v", err)
	}
	var h crypto.Hash
	sigOK := false
	if sig != nil && v.ak != nil {
		if h, err = verifyTPMSignature(v.ak, sig, q.Attest); err != nil {
			v.fail(BadQuoteSignature, "quote: %v", err)
		} else {
			sigOK = true
		}
	}
	if att == nil {
		return
	}
	if !bytes.Equal(att.extraData, v.bind) {
		v.fail(QuoteBindingMismatch, "the quote's extraData is not the binding of this nonce and report")
	}
	clock := att.clock
	v.res.Clock = &clock
	sel, err := quoteSelection(att.pcrSelect)
	if err != nil {
		v.fail(PCRSelectionMismatch, "%v", err)
		return
	}
	if !sameSelection(sel, q.PCRSelection) {
		v.fail(PCRSelectionMismatch, "the quote selects %s, the evidence says %v", sel, q.PCRSelection)
		return
	}
	vals, reason, err := pcrValues(sel, q.PCRs)
	if err != nil {
		v.fail(reason, "%v", err)
		return
	}
	if !sigOK {
		// The PCR digest's hash is the signing scheme's; without a
		// verified signature the values prove nothing anyway.
		return
	}
	hh := h.New()
	for _, b := range sel {
		for _, i := range b.pcrs {
			hh.Write(vals[b.alg][i])
		}
	}
	if !bytes.Equal(hh.Sum(nil), att.pcrDigest) {
		v.fail(PCRDigestMismatch, "the PCR values do not hash to the quote's PCR digest")
		return
	}
	v.pcrs = vals
	v.res.PCRs = make(map[string]map[int]string, len(vals))
	for _, b := range sel {
		m := make(map[int]string, len(b.pcrs))
		for _, i := range b.pcrs {
			m[i] = hex.EncodeToString(vals[b.alg][i])
		}
		v.res.PCRs[b.alg.String()] = m
	}
}

// bankSelection is one bank of a quote's PCR selection, in quote order.
type bankSelection struct {
	alg  eventlog.Alg
	pcrs []int
}

type selection []bankSelection

func (s selection) String() string {
	var b bytes.Buffer
	for i, bs := range s {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%v", bs.alg, bs.pcrs)
	}
	return b.String()
}

// quoteSelection turns a TPML_PCR_SELECTION into banks and indexes, in
// the order the PCR digest hashes them. Banks with no PCR selected are
// left out; a bank listed twice or of an unknown size is refused.
func quoteSelection(l []pcrSelect) (selection, error) {
	var out selection
	seen := map[eventlog.Alg]bool{}
	for _, s := range l {
		alg := eventlog.Alg(s.hash)
		if alg.Size() == 0 {
			return nil, fmt.Errorf("the quote selects bank 0x%04x, which has no known digest size", uint16(s.hash))
		}
		if seen[alg] {
			return nil, fmt.Errorf("the quote selects bank %s twice", alg)
		}
		seen[alg] = true
		var pcrs []int
		for i, b := range s.bitmap {
			for bit := 0; bit < 8; bit++ {
				if b&(1<<bit) != 0 {
					pcrs = append(pcrs, i*8+bit)
				}
			}
		}
		if len(pcrs) > 0 {
			out = append(out, bankSelection{alg, pcrs})
		}
	}
	return out, nil
}

// sameSelection compares a quote's selection with the evidence's
// pcr_selection (banks with no index count as absent).
func sameSelection(sel selection, ev map[string][]int) bool {
	n := 0
	for _, idx := range ev {
		if len(idx) > 0 {
			n++
		}
	}
	if n != len(sel) {
		return false
	}
	for _, b := range sel {
		if !slices.Equal(ev[b.alg.String()], b.pcrs) {
			return false
		}
	}
	return true
}

// pcrValues decodes the evidence's PCR values, which must be exactly the
// selected ones.
func pcrValues(sel selection, ev map[string]map[string]string) (map[eventlog.Alg]map[int][]byte, Reason, error) {
	out := make(map[eventlog.Alg]map[int][]byte, len(sel))
	n := 0
	for _, vals := range ev {
		if len(vals) > 0 {
			n++
		}
	}
	if n != len(sel) {
		return nil, PCRSelectionMismatch, fmt.Errorf("pcrs holds %d banks, the quote selects %d", n, len(sel))
	}
	for _, b := range sel {
		vals := ev[b.alg.String()]
		if len(vals) != len(b.pcrs) {
			return nil, PCRSelectionMismatch, fmt.Errorf("pcrs holds %d %s values, the quote selects %d", len(vals), b.alg, len(b.pcrs))
		}
		m := make(map[int][]byte, len(b.pcrs))
		for _, i := range b.pcrs {
			s, ok := vals[strconv.Itoa(i)]
			if !ok {
				return nil, PCRSelectionMismatch, fmt.Errorf("pcrs has no value for %s PCR %d", b.alg, i)
			}
			d, err := hex.DecodeString(s)
			if err != nil || len(d) != b.alg.Size() {
				return nil, Malformed, fmt.Errorf("pcrs: %s PCR %d is not %d bytes of hex", b.alg, i, b.alg.Size())
			}
			m[i] = d
		}
		out[b.alg] = m
	}
	return out, "", nil
}

func (v *verifier) certify(rk crypto.PublicKey) {
	k := v.ev.ReportKey
	att, err := decodeAttest(k.CertifyInfo, tpm2.TPMSTAttestCertify)
	if err != nil {
		v.fail(attestReason(err), "report_key.certify_info: %v", err)
	}
	sig, err := decodeSignature(k.CertifySignature)
	if err != nil {
		v.fail(Malformed, "report_key.certify_signature: %v", err)
	}
	if sig != nil && v.ak != nil {
		if _, err := verifyTPMSignature(v.ak, sig, k.CertifyInfo); err != nil {
			v.fail(BadCertifySignature, "certification: %v", err)
		}
	}
	tp, err := decodePublic(k.TPMPublic)
	if err != nil {
		v.fail(Malformed, "report_key.tpm_public: %v", err)
	} else {
		if rk != nil && !sameKey(rk, tp.key) {
			v.fail(ReportKeyMismatch, "report_key.tpm_public and report_key.public are different keys")
		}
		if err := objectAttributes(tp, false); err != nil {
			v.fail(ReportKeyAttributes, "report key: %v", err)
		}
	}
	if att == nil {
		return
	}
	if !bytes.Equal(att.extraData, v.bind) {
		v.fail(CertifyBindingMismatch, "the certification's extraData is not the binding of this nonce and report")
	}
	if tp == nil {
		return
	}
	name, err := ObjectName(k.TPMPublic)
	switch {
	case err != nil:
		v.fail(CertifyNameMismatch, "%v", err)
	case tp.nameAlg == tpm2.TPMAlgSHA1:
		v.fail(CertifyNameMismatch, "the report key's Name uses SHA-1")
	case !bytes.Equal(att.name, name):
		v.fail(CertifyNameMismatch, "the certification certifies %x, not the report key %x", att.name, name)
	}
}

// verifyReportSignature checks the report key's signature over the
// binding: ASN.1 ECDSA, or RSASSA-PKCS1-v1_5 with SHA-256 (the binding
// is the digest).
func verifyReportSignature(k crypto.PublicKey, bind, sig []byte) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, bind, sig) {
			return errors.New("the report signature does not verify with the report key")
		}
		return nil
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, bind, sig); err != nil {
			return fmt.Errorf("the report signature does not verify with the report key: %v", err)
		}
		return nil
	}
	return fmt.Errorf("report key of type %T", k)
}

// checkReport parses the report and checks that its bytes are exactly
// the canonical (RFC 8785) encoding of a runtime report of
// report.Version: no unknown claim, no claim missing, no member out of
// order or repeated, no other spelling of a value. report.ParseReport
// checks all of it in one pass: the bytes are canonical JSON, and they
// are what report.Report.Canonical writes for the report they decode
// to.
func checkReport(b []byte) (*report.Report, error) {
	if len(b) == 0 {
		return nil, errors.New("no report")
	}
	r, err := report.ParseReport(b)
	if err != nil {
		return nil, fmt.Errorf("report: %v", err)
	}
	if r.Version != report.Version {
		return nil, fmt.Errorf("report version %q, want %q", r.Version, report.Version)
	}
	return r, nil
}

// requireSelection checks that the quote selects the SHA-256 PCRs the
// verifier requires (Options.Quote): the boot PCRs always, the IMA PCR
// when IMA is used. The MOK PCR is checked with the event log.
func (v *verifier) requireSelection() {
	q := v.o.Quote.orDefault()
	need := slices.Clone(q.Boot)
	rep := v.res.Report
	if v.ev.IMALog != nil || (rep != nil && rep.IMA.Status == report.StatusOK) {
		need = append(need, q.IMA...)
	}
	v.requirePCRs(need, "")
}

func (v *verifier) requirePCRs(need []int, why string) {
	quoted := v.pcrs[eventlog.AlgSHA256]
	var missing []int
	for _, i := range need {
		if _, ok := quoted[i]; !ok && !slices.Contains(missing, i) {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		v.fail(PCRSelectionInsufficient, "the quote does not select SHA-256 PCRs %v%s, which the verifier requires", missing, why)
	}
}

// eventLog replays the firmware event log to the quoted PCRs. Every
// quoted PCR the log extends, and every quoted boot PCR, must equal the
// replay (event-log-mismatch otherwise). The log counts as verified
// only when, in addition, the quote selected every required PCR the log
// extends, the log has a firmware's structure and its boot PCRs were
// extended at all; then the boot facts are derived from it.
func (v *verifier) eventLog() {
	l := v.ev.EventLog
	if l == nil {
		return
	}
	unverified := func(format string, args ...any) {
		v.res.EventLogDetail = fmt.Sprintf(format, args...)
		v.res.Messages = append(v.res.Messages, "event log not verified: "+v.res.EventLogDetail)
	}
	if l.Offset != 0 {
		v.fail(EventLogMalformed, "event_log.offset is %d: the firmware log is sent whole", l.Offset)
		return
	}
	log, err := eventlog.Parse(l.Data)
	if err != nil {
		v.fail(EventLogMalformed, "%v", err)
		return
	}
	q := v.o.Quote.orDefault()
	required := slices.Clone(q.Boot)
	for i := range log.Events {
		if e := &log.Events[i]; e.Type != eventlog.EvNoAction && slices.Contains(q.MOK, int(e.PCR)) {
			required = append(required, q.MOK...)
			v.requirePCRs(q.MOK, " (the event log holds shim's MOK measurements)")
			break
		}
	}
	var banks []eventlog.Alg
	for _, a := range log.Banks() {
		if v.pcrs[a] != nil && a.New() != nil {
			banks = append(banks, a)
		}
	}
	if len(banks) == 0 {
		unverified("it has no bank the quote selects")
		return
	}
	replayed := replayBanks(log, banks)
	bad := 0
	for _, a := range banks {
		quoted := v.pcrs[a]
		idx := make([]int, 0, len(quoted))
		for i := range quoted {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		for _, i := range idx {
			got, ok := replayed[a][i]
			if !ok {
				if i > BootPCRs {
					continue
				}
				got = make([]byte, a.Size())
			}
			if !bytes.Equal(got, quoted[i]) {
				bad++
				v.fail(EventLogMismatch, "%s PCR %d: the log replays to %x, the quote says %x", a, i, got, quoted[i])
			}
		}
	}
	if bad > 0 {
		return
	}
	sha := v.pcrs[eventlog.AlgSHA256]
	if sha == nil || replayed[eventlog.AlgSHA256] == nil {
		unverified("the log has no SHA-256 bank the quote selects")
		return
	}
	var checked []int
	for _, i := range required {
		if _, ok := sha[i]; !ok {
			unverified("the quote does not select the required SHA-256 PCR %d", i)
			return
		}
		if !slices.Contains(checked, i) {
			checked = append(checked, i)
		}
	}
	extended := false
	for i := 0; i <= BootPCRs; i++ {
		if _, ok := replayed[eventlog.AlgSHA256][i]; ok {
			extended = true
		}
	}
	if !extended {
		unverified("the log extends no boot PCR: no boot was measured")
		return
	}
	why, facts := v.o.Cache.boot(l.Data, log, checked)
	if why != "" {
		unverified("%s", why)
		return
	}
	v.res.EventLogVerified = true
	v.res.Attested.Boot = facts
}

// replayBanks replays the log like eventlog.Log.Replay, for the given
// banks only: a quote needs one, a log often carries three.
func replayBanks(l *eventlog.Log, banks []eventlog.Alg) map[eventlog.Alg]map[int][]byte {
	out := make(map[eventlog.Alg]map[int][]byte, len(banks))
	for _, a := range banks {
		out[a] = map[int][]byte{}
	}
	var locality byte
	start := 0
	if l.SpecID != nil {
		start = 1
	}
	var buf [2 * eventlog.MaxDigestSize]byte
	for _, a := range banks {
		h := a.New()
		pcrs := out[a]
		size := a.Size()
		locality = 0
		for i := start; i < len(l.Events); i++ {
			e := &l.Events[i]
			if e.Type == eventlog.EvNoAction {
				if e.PCR == 0 && isStartupLocality(e) {
					locality = e.Data[len(e.Data)-1]
				}
				continue
			}
			d := e.Digest(a)
			if d == nil {
				continue
			}
			v, ok := pcrs[int(e.PCR)]
			if !ok {
				v = make([]byte, size, eventlog.MaxDigestSize)
				if e.PCR == 0 {
					v[size-1] = locality
				}
			}
			if a == eventlog.AlgSHA256 {
				s := sha256.Sum256(append(append(buf[:0], v...), d...))
				pcrs[int(e.PCR)] = append(v[:0], s[:]...)
				continue
			}
			h.Reset()
			h.Write(v)
			h.Write(d)
			pcrs[int(e.PCR)] = h.Sum(v[:0])
		}
	}
	return out
}

var startupLocality = []byte("StartupLocality\x00")

// isStartupLocality is eventlog's test for the EV_NO_ACTION
// StartupLocality event (the signature and one byte).
func isStartupLocality(e *eventlog.Event) bool {
	return len(e.Data) == len(startupLocality)+1 && bytes.HasPrefix(e.Data, startupLocality)
}

// ctxReader stops a long replay when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (v *verifier) imaLog() {
	l := v.ev.IMALog
	if l == nil {
		return
	}
	st := ima.State{}
	if v.o.IMAState != nil {
		st = v.o.IMAState.Clone()
	}
	if l.Offset != st.Offset {
		v.fail(IMAOffsetMismatch, "ima_log.offset is %d, the saved state ends at %d", l.Offset, st.Offset)
		return
	}
	target := v.pcrs[eventlog.AlgSHA256][IMAPCR]
	if target == nil {
		v.res.Messages = append(v.res.Messages, "IMA list not verified: the quote does not select SHA-256 PCR 10")
		return
	}
	// The quote proves only the SHA-256 bank: replay that bank alone
	// (a saved state from a full replay goes on in full).
	c := imaCollector{withFiles: v.o.IMAFiles}
	mode := ima.Options{SHA256Only: st.Entries == 0 || st.SHA256Only, Visit: c.visit}
	ok, err := ima.ReplayUntil(ctxReader{v.ctx, bytes.NewReader(l.Data)}, &st, crypto.SHA256, IMAPCR, target, mode)
	switch {
	case errors.Is(err, ima.ErrStateMismatch):
		v.fail(IMAOffsetMismatch, "%v", err)
	case err != nil && v.ctx.Err() != nil:
		v.fail(Canceled, "%v", err)
	case err != nil:
		v.fail(IMAMalformed, "%v", err)
	case !ok:
		v.fail(IMAMismatch, "no prefix of the IMA list (%d entries from offset %d) replays to the quoted SHA-256 PCR 10 %x", st.Entries, l.Offset, target)
	default:
		v.res.IMAVerified = true
		v.res.IMAState = &st
		f := &IMAFacts{Entries: st.Entries, BootAggregate: st.BootAggregate,
			Modules: sortedKeys(c.modules), Firmware: sortedKeys(c.firmware), Files: c.files}
		if f.Files == nil {
			f.Files = []IMAFile{}
		}
		ba := bootAggregate(v.pcrs[eventlog.AlgSHA256])
		f.BootAggregateMatches = ba != "" && st.BootAggregate == ba
		v.res.Attested.IMA = f
	}
}

// CheckAK checks an attestation key's TPMT_PUBLIC with the rule Verify
// applies (ak-attributes: a restricted, TPM-generated, non-duplicable
// signing key of sufficient strength) and, as credential activation
// needs its Name, a SHA-256/384/512 name algorithm. It returns the key.
// The service calls it at enrollment, so that no agent is enrolled with
// an AK its evidence would then fail on.
func CheckAK(tpmPublic []byte) (crypto.PublicKey, error) {
	p, err := decodePublic(tpmPublic)
	if err != nil {
		return nil, err
	}
	if err := objectAttributes(p, true); err != nil {
		return nil, err
	}
	switch p.nameAlg {
	case tpm2.TPMAlgSHA256, tpm2.TPMAlgSHA384, tpm2.TPMAlgSHA512:
	default:
		return nil, errors.New("the name algorithm is not SHA-256, SHA-384 or SHA-512")
	}
	return p.key, nil
}
