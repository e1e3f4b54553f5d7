package evidence

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"
)

var (
	seedOnce sync.Once
	seedList []*fixture
)

// seeds are valid evidence of each enclave and AK algorithm, built once
// per process.
func seeds(tb testing.TB) []*fixture {
	seedOnce.Do(func() {
		list := []*fixture{newFixture(tb, fixtureOptions{software: true})}
		for _, alg := range []akAlg{akECDSA, akRSASSA, akRSAPSS} {
			fx := newFixture(tb, fixtureOptions{alg: alg, logs: true, imaN: 20})
			fx.opts.AKPublic = fx.tpm.akPub
			list = append(list, fx)
		}
		for _, fx := range list {
			if r := Verify(context.Background(), fx.ev, fx.opts); !r.Valid {
				tb.Fatalf("seed invalid: %v", r.Messages)
			}
		}
		seedList = list
	})
	if len(seedList) != 4 {
		tb.Fatal("no fuzz seeds")
	}
	return seedList
}

// FuzzDecode: any document Decode accepts encodes and decodes again to
// the same evidence, Verify never panics on it, and it is valid only if
// it carries a seed's report for the seed's nonce.
func FuzzDecode(f *testing.F) {
	for _, fx := range seeds(f) {
		b, err := fx.ev.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":"vigil.evidence.v1","enclave":"tpm","nonce":"00","report":"","report_signature":"","report_key":{"public":""},"quote":{"attest":"","signature":"","pcr_selection":{"sha256":[0]},"pcrs":{"sha256":{"0":"00"}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if enc2, _ := ev2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatal("encode/decode is not stable")
		}
		for _, fx := range seeds(t) {
			r := Verify(context.Background(), ev, fx.opts)
			if r.Valid != (len(r.Reasons) == 0) {
				t.Fatalf("Valid=%v with reasons %v", r.Valid, r.Reasons)
			}
			if r.Valid && !fromSeed(t, ev) {
				t.Fatalf("valid with a report or report key of no seed: %s", b)
			}
		}
	})
}

// fromSeed says whether ev carries the report and report key of a seed.
func fromSeed(t *testing.T, ev *Evidence) bool {
	k, err := parsePublicPEM(ev.ReportKey.Public)
	if err != nil {
		return false
	}
	for _, fx := range seeds(t) {
		sk, _ := parsePublicPEM(fx.ev.ReportKey.Public)
		if bytes.Equal(ev.Report, fx.ev.Report) && sameKey(k, sk) {
			return true
		}
	}
	return false
}

// copyEvidence deep-copies evidence (faster than through JSON).
func copyEvidence(ev *Evidence) *Evidence {
	c := *ev
	c.Report = bytes.Clone(ev.Report)
	c.ReportSignature = bytes.Clone(ev.ReportSignature)
	c.ReportKey.TPMPublic = bytes.Clone(ev.ReportKey.TPMPublic)
	c.ReportKey.CertifyInfo = bytes.Clone(ev.ReportKey.CertifyInfo)
	c.ReportKey.CertifySignature = bytes.Clone(ev.ReportKey.CertifySignature)
	if ev.Quote != nil {
		q := *ev.Quote
		q.Attest, q.Signature = bytes.Clone(q.Attest), bytes.Clone(q.Signature)
		q.PCRSelection = map[string][]int{}
		for k, v := range ev.Quote.PCRSelection {
			q.PCRSelection[k] = slices.Clone(v)
		}
		q.PCRs = map[string]map[string]string{}
		for k, v := range ev.Quote.PCRs {
			q.PCRs[k] = maps.Clone(v)
		}
		c.Quote = &q
	}
	if ev.AK != nil {
		a := *ev.AK
		a.Public = bytes.Clone(a.Public)
		c.AK = &a
	}
	if ev.EventLog != nil {
		l := *ev.EventLog
		l.Data = bytes.Clone(l.Data)
		c.EventLog = &l
	}
	if ev.IMALog != nil {
		l := *ev.IMALog
		l.Data = bytes.Clone(l.Data)
		c.IMALog = &l
	}
	return &c
}

// mutateBytes changes b: mode 0 xors the byte at pos with val (never 0),
// 1 truncates at pos, 2 replaces b with extra.
func mutateBytes(b []byte, mode uint8, pos uint16, val uint8, extra []byte) []byte {
	switch mode % 3 {
	case 0:
		if len(b) == 0 {
			return []byte{val}
		}
		c := bytes.Clone(b)
		c[int(pos)%len(c)] ^= val | 1
		return c
	case 1:
		if len(b) == 0 {
			return b
		}
		return bytes.Clone(b[:int(pos)%len(b)])
	}
	return bytes.Clone(extra)
}

// The fields FuzzVerify alters. covered says whether every change of the
// field must make the evidence invalid: the logs are not covered (event
// data is not measured, entries past the quoted prefix are not read, a
// SHA-1 template digest is not in the SHA-256 bank), nor are PEM texts
// (white space), nor the EK.
var fuzzFields = []struct {
	name    string
	covered bool
	apply   func(ev *Evidence, f func([]byte) []byte)
}{
	{"version", true, func(ev *Evidence, f func([]byte) []byte) { ev.Version = string(f([]byte(ev.Version))) }},
	{"enclave", true, func(ev *Evidence, f func([]byte) []byte) { ev.Enclave = string(f([]byte(ev.Enclave))) }},
	{"nonce", true, func(ev *Evidence, f func([]byte) []byte) {
		n, _ := hex.DecodeString(ev.Nonce)
		ev.Nonce = hex.EncodeToString(f(n))
	}},
	{"report", true, func(ev *Evidence, f func([]byte) []byte) { ev.Report = f(ev.Report) }},
	{"report_signature", true, func(ev *Evidence, f func([]byte) []byte) { ev.ReportSignature = f(ev.ReportSignature) }},
	{"report_key.public", false, func(ev *Evidence, f func([]byte) []byte) {
		ev.ReportKey.Public = string(f([]byte(ev.ReportKey.Public)))
	}},
	{"report_key.tpm_public", true, func(ev *Evidence, f func([]byte) []byte) { ev.ReportKey.TPMPublic = f(ev.ReportKey.TPMPublic) }},
	{"report_key.certify_info", true, func(ev *Evidence, f func([]byte) []byte) { ev.ReportKey.CertifyInfo = f(ev.ReportKey.CertifyInfo) }},
	{"report_key.certify_signature", true, func(ev *Evidence, f func([]byte) []byte) {
		ev.ReportKey.CertifySignature = f(ev.ReportKey.CertifySignature)
	}},
	{"quote.attest", true, func(ev *Evidence, f func([]byte) []byte) {
		if ev.Quote != nil {
			ev.Quote.Attest = f(ev.Quote.Attest)
		}
	}},
	{"quote.signature", true, func(ev *Evidence, f func([]byte) []byte) {
		if ev.Quote != nil {
			ev.Quote.Signature = f(ev.Quote.Signature)
		}
	}},
	{"quote.pcr_selection", true, func(ev *Evidence, f func([]byte) []byte) {
		if ev.Quote != nil {
			var b []byte
			for _, i := range ev.Quote.PCRSelection["sha256"] {
				b = append(b, byte(i))
			}
			b = f(b)
			s := []int{}
			for _, c := range b {
				s = append(s, int(c))
			}
			ev.Quote.PCRSelection["sha256"] = s
		}
	}},
	{"quote.pcrs", true, func(ev *Evidence, f func([]byte) []byte) {
		if ev.Quote != nil {
			v, _ := hex.DecodeString(ev.Quote.PCRs["sha256"]["7"])
			ev.Quote.PCRs["sha256"]["7"] = hex.EncodeToString(f(v))
		}
	}},
	{"ak.public", true, func(ev *Evidence, f func([]byte) []byte) {
		if ev.AK != nil {
			ev.AK.Public = f(ev.AK.Public)
		}
	}},
	{"ak.pem", false, func(ev *Evidence, f func([]byte) []byte) {
		if ev.AK != nil {
			ev.AK.PEM = string(f([]byte(ev.AK.PEM)))
		}
	}},
	{"event_log", false, func(ev *Evidence, f func([]byte) []byte) {
		if ev.EventLog != nil {
			ev.EventLog.Data = f(ev.EventLog.Data)
		}
	}},
	{"ima_log", false, func(ev *Evidence, f func([]byte) []byte) {
		if ev.IMALog != nil {
			ev.IMALog.Data = f(ev.IMALog.Data)
		}
	}},
	{"ima_log.offset", true, func(ev *Evidence, f func([]byte) []byte) {
		if ev.IMALog != nil {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(ev.IMALog.Offset))
			c := f(b[:])
			// Bytes beyond the eight of an int64 change nothing.
			ev.IMALog.Offset = int64(binary.BigEndian.Uint64(append(c, make([]byte, 8)...)[:8]))
		}
	}},
}

// FuzzVerify alters one field of valid evidence (a byte, a truncation or
// a replacement): Verify never panics, and a change to a field the
// signatures cover is never valid.
func FuzzVerify(f *testing.F) {
	seeds(f)
	for field := range fuzzFields {
		for kind := uint8(0); kind < 4; kind++ {
			f.Add(kind, uint8(field), uint16(field*7), uint8(0x80), uint8(0), []byte{})
		}
		f.Add(uint8(1), uint8(field), uint16(3), uint8(1), uint8(1), []byte{})
		f.Add(uint8(2), uint8(field), uint16(0), uint8(1), uint8(2), []byte("\x00\x01"))
	}
	f.Fuzz(func(t *testing.T, kind, field uint8, pos uint16, val, mode uint8, extra []byte) {
		fx := seeds(t)[int(kind)%4]
		fl := fuzzFields[int(field)%len(fuzzFields)]
		ev := copyEvidence(fx.ev)
		before, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		fl.apply(ev, func(b []byte) []byte { return mutateBytes(b, mode, pos, val, extra) })
		after, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		changed := !bytes.Equal(before, after)
		r := Verify(context.Background(), ev, fx.opts)
		if r.Valid != (len(r.Reasons) == 0) {
			t.Fatalf("Valid=%v with reasons %v", r.Valid, r.Reasons)
		}
		if fl.covered && changed && r.Valid {
			t.Fatalf("%s changed (mode %d, pos %d, val %#x, extra %x) and still valid", fl.name, mode%3, pos, val, extra)
		}
	})
}

// FuzzTPMStructures feeds bytes to the TPMS_ATTEST, TPMT_SIGNATURE and
// TPMT_PUBLIC decoders: they never panic, and whatever they accept
// go-tpm decodes exactly (re-encoding to the same bytes) to the same
// values.
func FuzzTPMStructures(f *testing.F) {
	for _, b := range tpmCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkTPMBytes(t, b)
	})
}
