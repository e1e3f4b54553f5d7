package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/measure"
)

func verify(tb testing.TB, ev *Evidence, o Options) *Result {
	tb.Helper()
	r := Verify(context.Background(), ev, o)
	if r.Valid != (len(r.Reasons) == 0) {
		tb.Fatalf("Valid=%v with reasons %v", r.Valid, r.Reasons)
	}
	// What the CLI prints must encode.
	if _, err := json.Marshal(r); err != nil {
		tb.Fatal(err)
	}
	return r
}

func wantValid(tb testing.TB, r *Result) {
	tb.Helper()
	if !r.Valid {
		tb.Fatalf("invalid: %v\n%s", r.Reasons, strings.Join(r.Messages, "\n"))
	}
}

func wantReasons(tb testing.TB, r *Result, want ...Reason) {
	tb.Helper()
	slices.Sort(want)
	if r.Valid || !slices.Equal(r.Reasons, want) {
		tb.Fatalf("reasons = %v, want %v\n%s", r.Reasons, want, strings.Join(r.Messages, "\n"))
	}
	if r.Report != nil || r.ReportKey != nil || r.PCRs != nil || r.Clock != nil || r.IMAState != nil || r.EventLogVerified || r.IMAVerified {
		tb.Fatalf("an invalid result carries verified data: %+v", r)
	}
}

func TestVerifySoftware(t *testing.T) {
	fx := newFixture(t, fixtureOptions{software: true})
	r := verify(t, fx.ev, fx.opts)
	wantValid(t, r)
	if r.Enclave != enclave.Software || r.Report == nil || r.Report.Kernel.Hostname != "agent-a" || r.ReportKey == nil {
		t.Fatalf("result = %+v", r)
	}
	if r.PCRs != nil || r.Clock != nil || r.EventLogVerified || r.IMAVerified {
		t.Fatalf("software evidence proves no platform state: %+v", r)
	}
	// Logs in software evidence are carried but not verified.
	fx = newFixture(t, fixtureOptions{software: true, logs: true})
	r = verify(t, fx.ev, fx.opts)
	wantValid(t, r)
	if r.EventLogVerified || r.IMAVerified {
		t.Fatal("software evidence verified logs")
	}
	// An enrolled AK does not turn software evidence into TPM evidence.
	fx.opts.AK = newFakeTPM(t, "agent-a", akECDSA).ak.Public()
	r = verify(t, fx.ev, fx.opts)
	wantValid(t, r)
	if r.Enclave != enclave.Software {
		t.Fatal(r.Enclave)
	}
}

func TestVerifyTPM(t *testing.T) {
	for _, alg := range []akAlg{akECDSA, akRSASSA, akRSAPSS} {
		t.Run(alg.String(), func(t *testing.T) {
			fx := newFixture(t, fixtureOptions{alg: alg, logs: true})
			fx.opts.AKPublic = fx.tpm.akPub
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			fx.opts.Now = now
			r := verify(t, fx.ev, fx.opts)
			wantValid(t, r)
			if r.Enclave != enclave.TPM || !r.EventLogVerified || !r.IMAVerified || r.Report == nil || !r.Time.Equal(now) {
				t.Fatalf("result = %+v", r)
			}
			if !r.ReportKey.(*ecdsa.PublicKey).Equal(&fx.tpm.rk.PublicKey) {
				t.Fatal("report key")
			}
			want := Clock{Clock: 123456789, ResetCount: 3, RestartCount: 1, Safe: true, FirmwareVersion: 0x2000100000000}
			if r.Clock == nil || *r.Clock != want {
				t.Fatalf("clock = %+v", r.Clock)
			}
			if len(r.PCRs) != 1 || len(r.PCRs["sha256"]) != 12 || r.PCRs["sha256"][10] != hex.EncodeToString(fx.tpm.pcr("sha256", 10)) {
				t.Fatalf("pcrs = %v", r.PCRs)
			}
			full, err := ima.Parse(bytes.NewReader(fx.list), ima.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r.IMAState == nil || r.IMAState.Offset != int64(len(fx.list)) || r.IMAState.SHA256 != full.SHA256 || r.IMAState.Entries != 50 {
				t.Fatalf("IMA state = %+v", r.IMAState)
			}
			// Without logs.
			fx = newFixture(t, fixtureOptions{alg: alg, id: "agent-b"})
			r = verify(t, fx.ev, fx.opts)
			wantValid(t, r)
			if r.EventLogVerified || r.IMAVerified {
				t.Fatal("no logs, yet verified")
			}
		})
	}
}

// TestVerifyRSAPSSHashSalt: a TPM may use a salt of the hash's size.
func TestVerifyRSAPSSHashSalt(t *testing.T) {
	fx := newFixture(t, fixtureOptions{alg: akRSAPSS})
	d := digest(crypto.SHA256, fx.ev.Quote.Attest)
	s, err := fx.tpm.ak.Sign(rand.Reader, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	fx.ev.Quote.Signature = tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSAPSS, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSAPSS,
		&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: s}})})
	wantValid(t, verify(t, fx.ev, fx.opts))
}

// TestVerifyMeasuredReport verifies evidence around a report measured
// from a host tree, the form the agent sends.
func TestVerifyMeasuredReport(t *testing.T) {
	h := measureTestHost(t)
	b, err := h.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, fixtureOptions{report: b})
	r := verify(t, fx.ev, fx.opts)
	wantValid(t, r)
	if r.Report.Kernel.Hostname != "web-01" {
		t.Fatal(r.Report.Kernel)
	}
}

// mutation alters valid evidence (a clone) and says which reasons the
// verifier must give.
type mutation struct {
	name   string
	mutate func(t *testing.T, fx *fixture, ev *Evidence)
	want   []Reason
}

func attestOffset(t *testing.T, attest, part []byte) int {
	i := bytes.Index(attest, part)
	if i < 0 {
		t.Fatal("part not found in TPMS_ATTEST")
	}
	return i
}

// fieldMutations alters every field of TPM evidence in turn.
func fieldMutations() []mutation {
	other := func(t *testing.T) *fakeTPM { return newFakeTPM(t, "agent-z", akECDSA) }
	return []mutation{
		{"version", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Version = "vigil.evidence.v2" }, []Reason{UnsupportedVersion}},
		{"version empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Version = "" }, []Reason{UnsupportedVersion}},
		{"enclave unknown", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Enclave = "sgx" }, []Reason{EnclaveMismatch}},
		{"enclave software with a quote", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Enclave = "software" }, []Reason{EnclaveMismatch}},
		{"nonce other", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.Nonce = hex.EncodeToString([]byte("another nonce!!!"))
		},
			[]Reason{NonceMismatch, BadReportSignature, QuoteBindingMismatch, CertifyBindingMismatch}},
		{"nonce not hex", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Nonce = "xyz" }, []Reason{Malformed}},
		{"nonce empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Nonce = "" }, []Reason{Malformed}},
		{"report claim changed", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.Report = bytes.Replace(ev.Report, []byte(`"agent-a"`), []byte(`"agent-x"`), 1)
		}, []Reason{BadReportSignature, QuoteBindingMismatch, CertifyBindingMismatch}},
		{"report byte", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Report = flip(ev.Report, 0) },
			[]Reason{ReportMalformed, BadReportSignature, QuoteBindingMismatch, CertifyBindingMismatch}},
		{"report empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Report = nil },
			[]Reason{ReportMalformed, BadReportSignature, QuoteBindingMismatch, CertifyBindingMismatch}},
		{"report_signature byte", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.ReportSignature = flip(ev.ReportSignature, -1) },
			[]Reason{BadReportSignature}},
		{"report_signature empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.ReportSignature = nil }, []Reason{BadReportSignature}},
		{"report_key.public other key", func(t *testing.T, _ *fixture, ev *Evidence) { ev.ReportKey.Public = pemOf(t, &other(t).rk.PublicKey) },
			[]Reason{BadReportSignature, ReportKeyMismatch}},
		{"report_key.public garbage", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.Public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
		},
			[]Reason{Malformed}},
		{"report_key.tpm_public other key", func(t *testing.T, _ *fixture, ev *Evidence) { ev.ReportKey.TPMPublic = other(t).rkPub },
			[]Reason{CertifyNameMismatch, ReportKeyMismatch}},
		{"report_key.tpm_public point off the curve", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.TPMPublic = flip(ev.ReportKey.TPMPublic, -1)
		},
			[]Reason{Malformed}},
		{"report_key.tpm_public trailing byte", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.TPMPublic = append(bytes.Clone(ev.ReportKey.TPMPublic), 0)
		}, []Reason{Malformed}},
		{"report_key.tpm_public exportable", func(_ *testing.T, fx *fixture, ev *Evidence) {
			ev.ReportKey.TPMPublic = tpmPublic(&fx.tpm.rk.PublicKey, tpm2.TPMAlgECDSA, false, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false })
		}, []Reason{CertifyNameMismatch, ReportKeyAttributes}},
		{"report_key.tpm_public empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.ReportKey.TPMPublic = nil }, []Reason{EnclaveMismatch}},
		{"certify_info magic", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.CertifyInfo = flip(ev.ReportKey.CertifyInfo, 0)
		},
			[]Reason{BadMagic, BadCertifySignature}},
		{"certify_info type", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.CertifyInfo = flip(ev.ReportKey.CertifyInfo, 5)
		},
			[]Reason{BadAttestType, BadCertifySignature}},
		{"certify_info extraData", func(t *testing.T, fx *fixture, ev *Evidence) {
			ev.ReportKey.CertifyInfo = flip(ev.ReportKey.CertifyInfo, attestOffset(t, ev.ReportKey.CertifyInfo, Binding(fx.nonce, ev.Report)))
		}, []Reason{CertifyBindingMismatch, BadCertifySignature}},
		{"certify_info name", func(t *testing.T, fx *fixture, ev *Evidence) {
			name, _ := ObjectName(fx.tpm.rkPub)
			ev.ReportKey.CertifyInfo = flip(ev.ReportKey.CertifyInfo, attestOffset(t, ev.ReportKey.CertifyInfo, name)+5)
		}, []Reason{CertifyNameMismatch, BadCertifySignature}},
		{"certify_info clock", func(t *testing.T, fx *fixture, ev *Evidence) {
			ev.ReportKey.CertifyInfo = flip(ev.ReportKey.CertifyInfo, attestOffset(t, ev.ReportKey.CertifyInfo, Binding(fx.nonce, ev.Report))+32+7)
		}, []Reason{BadCertifySignature}},
		{"certify_info truncated", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.CertifyInfo = ev.ReportKey.CertifyInfo[:len(ev.ReportKey.CertifyInfo)-1]
		}, []Reason{Malformed, BadCertifySignature}},
		{"certify_info is the quote", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = ev.Quote.Attest, ev.Quote.Signature
		}, []Reason{BadAttestType}},
		{"certify_signature byte", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.CertifySignature = flip(ev.ReportKey.CertifySignature, -1)
		}, []Reason{BadCertifySignature}},
		{"certify_signature truncated", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.ReportKey.CertifySignature = ev.ReportKey.CertifySignature[:10]
		}, []Reason{Malformed}},
		{"quote.attest magic", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.Attest = flip(ev.Quote.Attest, 3) },
			[]Reason{BadMagic, BadQuoteSignature}},
		{"quote.attest type", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.Attest = flip(ev.Quote.Attest, 4) },
			[]Reason{BadAttestType, BadQuoteSignature}},
		{"quote.attest extraData", func(t *testing.T, fx *fixture, ev *Evidence) {
			ev.Quote.Attest = flip(ev.Quote.Attest, attestOffset(t, ev.Quote.Attest, Binding(fx.nonce, ev.Report))+31)
		}, []Reason{QuoteBindingMismatch, BadQuoteSignature}},
		{"quote.attest PCR digest", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.Attest = flip(ev.Quote.Attest, -1) },
			[]Reason{BadQuoteSignature}},
		{"quote.attest trailing byte", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.Quote.Attest = append(bytes.Clone(ev.Quote.Attest), 0)
		},
			[]Reason{Malformed, BadQuoteSignature}},
		{"quote.attest is the certification", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.Quote.Attest, ev.Quote.Signature = ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature
		}, []Reason{BadAttestType}},
		{"quote.signature byte", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.Signature = flip(ev.Quote.Signature, -2) },
			[]Reason{BadQuoteSignature}},
		{"quote.signature scheme", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.Signature = flip(ev.Quote.Signature, 0) },
			[]Reason{Malformed}},
		{"quote.signature empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.Signature = nil }, []Reason{Malformed}},
		{"quote missing", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote = nil }, []Reason{EnclaveMismatch}},
		{"pcr_selection index removed", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.Quote.PCRSelection["sha256"] = ev.Quote.PCRSelection["sha256"][1:]
		}, []Reason{PCRSelectionMismatch}},
		{"pcr_selection bank added", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.PCRSelection["sha1"] = []int{0} },
			[]Reason{PCRSelectionMismatch}},
		{"pcr_selection reordered", func(_ *testing.T, _ *fixture, ev *Evidence) {
			s := ev.Quote.PCRSelection["sha256"]
			s[0], s[1] = s[1], s[0]
		}, []Reason{PCRSelectionMismatch}},
		{"pcrs value changed", func(_ *testing.T, _ *fixture, ev *Evidence) {
			v, _ := hex.DecodeString(ev.Quote.PCRs["sha256"]["7"])
			ev.Quote.PCRs["sha256"]["7"] = hex.EncodeToString(flip(v, 0))
		}, []Reason{PCRDigestMismatch}},
		{"pcrs value not hex", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.PCRs["sha256"]["7"] = "zz" }, []Reason{Malformed}},
		{"pcrs value short", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.PCRs["sha256"]["7"] = "00" }, []Reason{Malformed}},
		{"pcrs value missing", func(_ *testing.T, _ *fixture, ev *Evidence) { delete(ev.Quote.PCRs["sha256"], "7") }, []Reason{PCRSelectionMismatch}},
		{"pcrs value extra", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.Quote.PCRs["sha256"]["16"] = strings.Repeat("00", 32) },
			[]Reason{PCRSelectionMismatch}},
		{"pcrs index spelled 07", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.Quote.PCRs["sha256"]["07"] = ev.Quote.PCRs["sha256"]["7"]
			delete(ev.Quote.PCRs["sha256"], "7")
		}, []Reason{PCRSelectionMismatch}},
		{"ak.public other AK", func(t *testing.T, _ *fixture, ev *Evidence) { ev.AK.Public = other(t).akPub }, []Reason{AKMismatch}},
		{"ak.public type byte", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.AK.Public = flip(ev.AK.Public, 0) }, []Reason{Malformed, AKMismatch}},
		{"ak.public not restricted", func(_ *testing.T, fx *fixture, ev *Evidence) {
			ev.AK.Public = tpmPublic(fx.tpm.ak.Public(), schemeOf(fx.tpm.alg), false, nil)
		}, []Reason{AKAttributes, AKMismatch}},
		{"ak.pem other AK", func(t *testing.T, _ *fixture, ev *Evidence) { ev.AK.PEM = pemOf(t, other(t).ak.Public()) }, []Reason{AKMismatch}},
		{"ak.pem garbage", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.AK.PEM = "AK" }, []Reason{Malformed}},
		{"ak missing", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.AK = nil }, []Reason{EnclaveMismatch}},
		{"event_log digest byte", func(t *testing.T, _ *fixture, ev *Evidence) {
			ev.EventLog.Data = bytes.Clone(ev.EventLog.Data)
			l, err := eventlog.Parse(ev.EventLog.Data)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(l.Events); i++ {
				if e := &l.Events[i]; e.PCR <= 7 && e.Type != eventlog.EvNoAction {
					e.Digest(eventlog.AlgSHA256)[0] ^= 1 // the digest aliases the data
					return
				}
			}
		}, []Reason{EventLogMismatch}},
		{"event_log size byte", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.EventLog.Data = flip(ev.EventLog.Data, 30) },
			[]Reason{EventLogMalformed}},
		{"event_log offset", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.EventLog.Offset = 1 }, []Reason{EventLogMalformed}},
		{"event_log empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.EventLog.Data = nil }, []Reason{EventLogMalformed}},
		{"ima_log byte", func(t *testing.T, fx *fixture, ev *Evidence) {
			i := bytes.Index(ev.IMALog.Data, []byte("/usr/sbin/"))
			ev.IMALog.Data = flip(ev.IMALog.Data, i+6)
		}, []Reason{IMAMismatch}},
		{"ima_log length byte", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.IMALog.Data = flip(ev.IMALog.Data, 26) },
			[]Reason{IMAMalformed}},
		{"ima_log offset", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.IMALog.Offset = 100 }, []Reason{IMAOffsetMismatch}},
		{"ima_log empty", func(_ *testing.T, _ *fixture, ev *Evidence) { ev.IMALog.Data = nil }, []Reason{IMAMismatch}},
		{"ek in TPM evidence is not checked here", func(_ *testing.T, _ *fixture, ev *Evidence) {
			ev.EK = &EK{Public: []byte{1}, PEM: "x"}
		}, nil},
	}
}

func TestVerifyFieldMutations(t *testing.T) {
	for _, alg := range []akAlg{akECDSA, akRSASSA, akRSAPSS} {
		fx := newFixture(t, fixtureOptions{alg: alg, logs: true})
		fx.opts.AKPublic = fx.tpm.akPub
		for _, m := range fieldMutations() {
			t.Run(alg.String()+"/"+m.name, func(t *testing.T) {
				ev := clone(t, fx.ev)
				m.mutate(t, fx, ev)
				r := verify(t, ev, fx.opts)
				if m.want == nil {
					wantValid(t, r)
					return
				}
				wantReasons(t, r, m.want...)
			})
		}
	}
}

func TestVerifyAdversarial(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, fixtureOptions{logs: true, imaN: 200})
	// Agent B: another TPM, its own keys and report, the same nonce.
	fxB := newFixture(t, fixtureOptions{id: "agent-b", logs: true, imaN: 200})

	t.Run("reused nonce", func(t *testing.T) {
		o := fx.opts
		o.Nonce = []byte("a fresh nonce 02")
		wantReasons(t, verify(t, fx.ev, o), NonceMismatch)
	})
	t.Run("verifier without a nonce", func(t *testing.T) {
		o := fx.opts
		o.Nonce = nil
		wantReasons(t, verify(t, fx.ev, o), NonceMismatch)
		o.Nonce = []byte("short")
		wantReasons(t, verify(t, fx.ev, o), NonceMismatch)
	})
	t.Run("no enrolled AK", func(t *testing.T) {
		o := fx.opts
		o.AK = nil
		wantReasons(t, verify(t, fx.ev, o), AKUnknown)
		o.AK = (*ecdsa.PublicKey)(nil)
		wantReasons(t, verify(t, fx.ev, o), AKUnknown)
		o.AK = &ecdsa.PublicKey{}
		r := verify(t, fx.ev, o)
		if r.Valid || !slices.Contains(r.Reasons, AKMismatch) {
			t.Fatal(r.Reasons)
		}
	})
	t.Run("enrolled AK of another type", func(t *testing.T) {
		o := fx.opts
		o.AK = "not a key"
		wantReasons(t, verify(t, fx.ev, o), AKMismatch)
	})
	t.Run("quote from another AK", func(t *testing.T) {
		// Agent B's TPM quotes the same PCRs for this nonce and report.
		b := newFakeTPM(t, "agent-b", akECDSA)
		b.pcrs = fx.tpm.pcrs
		q, err := b.Quote(ctx, fx.ev.Quote.PCRSelection, Binding(fx.nonce, fx.ev.Report))
		if err != nil {
			t.Fatal(err)
		}
		ev := clone(t, fx.ev)
		ev.Quote.Attest, ev.Quote.Signature = q.Attest, q.Signature
		wantReasons(t, verify(t, ev, fx.opts), BadQuoteSignature)
		// ... and presents that AK as its own.
		ev.AK = clone(t, fxB.ev).AK
		wantReasons(t, verify(t, ev, fx.opts), AKMismatch, BadQuoteSignature)
		// Both quote and certification by the other AK, which is not enrolled.
		c, err := b.Certify(ctx, Binding(fx.nonce, fx.ev.Report))
		if err != nil {
			t.Fatal(err)
		}
		ev.ReportKey = fxB.ev.ReportKey
		ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = c.Attest, c.Signature
		ev.ReportSignature = fxB.ev.ReportSignature
		r := verify(t, ev, fx.opts)
		if r.Valid {
			t.Fatal("valid")
		}
	})
	t.Run("report of agent B in A's evidence", func(t *testing.T) {
		ev := clone(t, fx.ev)
		ev.Report = fxB.ev.Report
		wantReasons(t, verify(t, ev, fx.opts), BadReportSignature, QuoteBindingMismatch, CertifyBindingMismatch)
		// With B's report signature and report key too.
		ev.ReportSignature, ev.ReportKey.Public = fxB.ev.ReportSignature, fxB.ev.ReportKey.Public
		wantReasons(t, verify(t, ev, fx.opts), ReportKeyMismatch, QuoteBindingMismatch, CertifyBindingMismatch)
		// With B's whole report key, certification included.
		ev.ReportKey = fxB.ev.ReportKey
		wantReasons(t, verify(t, ev, fx.opts), BadCertifySignature, QuoteBindingMismatch)
	})
	t.Run("evidence of agent B against A's AK", func(t *testing.T) {
		wantReasons(t, verify(t, fxB.ev, fx.opts), AKMismatch, BadQuoteSignature, BadCertifySignature)
	})
	t.Run("report key not certified by the AK", func(t *testing.T) {
		// The attacker signs the report with a key of its own.
		k := testKey(t, "attacker", false).(*ecdsa.PrivateKey)
		ev := clone(t, fx.ev)
		sig, err := ecdsa.SignASN1(rand.Reader, k, Binding(fx.nonce, ev.Report))
		if err != nil {
			t.Fatal(err)
		}
		ev.ReportSignature, ev.ReportKey.Public = sig, pemOf(t, &k.PublicKey)
		wantReasons(t, verify(t, ev, fx.opts), ReportKeyMismatch)
		// ... and describes it as a TPM key.
		ev.ReportKey.TPMPublic = tpmPublic(&k.PublicKey, tpm2.TPMAlgECDSA, false, nil)
		wantReasons(t, verify(t, ev, fx.opts), CertifyNameMismatch)
	})
	t.Run("report key certified by another AK", func(t *testing.T) {
		b := newFakeTPM(t, "agent-b", akECDSA)
		b.rk, b.rkPub = fx.tpm.rk, fx.tpm.rkPub
		c, err := b.Certify(ctx, Binding(fx.nonce, fx.ev.Report))
		if err != nil {
			t.Fatal(err)
		}
		ev := clone(t, fx.ev)
		ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = c.Attest, c.Signature
		wantReasons(t, verify(t, ev, fx.opts), BadCertifySignature)
	})
	t.Run("certification of another key by the AK", func(t *testing.T) {
		// The AK certified agent A's key; the evidence names another one.
		ev := clone(t, fx.ev)
		f := *fx.tpm
		f.rkPub = tpmPublic(&fx.tpm.rk.PublicKey, tpm2.TPMAlgECDSA, false, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.NoDA = true })
		c, err := f.Certify(ctx, Binding(fx.nonce, fx.ev.Report))
		if err != nil {
			t.Fatal(err)
		}
		ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = c.Attest, c.Signature
		wantReasons(t, verify(t, ev, fx.opts), CertifyNameMismatch)
	})
	t.Run("certified key with a SHA-1 name", func(t *testing.T) {
		f := *fx.tpm
		f.rkPub = tpmPublic(&fx.tpm.rk.PublicKey, tpm2.TPMAlgECDSA, false, func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 })
		c, err := f.Certify(ctx, Binding(fx.nonce, fx.ev.Report))
		if err != nil {
			t.Fatal(err)
		}
		ev := clone(t, fx.ev)
		ev.ReportKey.TPMPublic, ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = f.rkPub, c.Attest, c.Signature
		wantReasons(t, verify(t, ev, fx.opts), CertifyNameMismatch)
	})
	t.Run("certified restricted key", func(t *testing.T) {
		f := *fx.tpm
		f.rkPub = tpmPublic(&fx.tpm.rk.PublicKey, tpm2.TPMAlgECDSA, true, nil)
		c, err := f.Certify(ctx, Binding(fx.nonce, fx.ev.Report))
		if err != nil {
			t.Fatal(err)
		}
		ev := clone(t, fx.ev)
		ev.ReportKey.TPMPublic, ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = f.rkPub, c.Attest, c.Signature
		wantReasons(t, verify(t, ev, fx.opts), ReportKeyAttributes)
	})
	t.Run("software key claiming to be a TPM", func(t *testing.T) {
		sw := newFixture(t, fixtureOptions{software: true})
		ev := clone(t, sw.ev)
		ev.Enclave = "tpm"
		wantReasons(t, verify(t, ev, fx.opts), EnclaveMismatch)
		// ... with a quote and certification by a software "AK" it made up.
		fake := newFakeTPM(t, "made-up", akECDSA)
		fake.rk = newSoft(t, "agent-a").k
		fake.rkPub = tpmPublic(&fake.rk.PublicKey, tpm2.TPMAlgECDSA, false, nil)
		ev2, err := Build(ctx, fake, BuildOptions{Nonce: fx.nonce, Report: ev.Report})
		if err != nil {
			t.Fatal(err)
		}
		wantReasons(t, verify(t, ev2, fx.opts), AKMismatch, BadQuoteSignature, BadCertifySignature)
	})
	t.Run("TPM evidence stripped to software", func(t *testing.T) {
		ev := clone(t, fx.ev)
		ev.Enclave = "software"
		ev.Quote, ev.AK = nil, nil
		ev.ReportKey.TPMPublic, ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = nil, nil, nil
		// The report key's signature still holds: valid, and software,
		// so it never earns a hardware-rooted level.
		r := verify(t, ev, fx.opts)
		wantValid(t, r)
		if r.Enclave != enclave.Software || r.EventLogVerified || r.IMAVerified || r.PCRs != nil {
			t.Fatalf("stripped evidence: %+v", r)
		}
		o := fx.opts
		o.Enclave = enclave.TPM
		wantReasons(t, verify(t, ev, o), EnclaveMismatch)
	})
}

func TestVerifyEventLog(t *testing.T) {
	fx := newFixture(t, fixtureOptions{logs: true})
	l, err := eventlog.Parse(fx.log)
	if err != nil {
		t.Fatal(err)
	}
	ends := func(i int) (int, int) {
		end := len(fx.log)
		if i+1 < len(l.Events) {
			end = l.Events[i+1].Offset
		}
		return l.Events[i].Offset, end
	}
	withLog := func(b []byte) *Evidence {
		ev := clone(t, fx.ev)
		ev.EventLog.Data = b
		return ev
	}
	quoted := func(e *eventlog.Event) bool { return e.Type != eventlog.EvNoAction && e.PCR <= 10 }
	t.Run("truncated", func(t *testing.T) {
		// Every cut at an event boundary that drops an event of a quoted
		// PCR fails: a cut before all of a PCR's events leaves it at
		// zero, and the quote says otherwise. Events of PCRs the quote
		// does not cover (14: shim's MOK lists) are not proven.
		cuts := 0
		for i := 1; i < len(l.Events); i++ {
			r := verify(t, withLog(fx.log[:l.Events[i].Offset]), fx.opts)
			if slices.ContainsFunc(l.Events[i:], func(e eventlog.Event) bool { return quoted(&e) }) {
				wantReasons(t, r, EventLogMismatch)
				cuts++
			} else {
				wantValid(t, r)
			}
		}
		if cuts < 100 {
			t.Fatalf("%d cuts", cuts)
		}
	})
	t.Run("cut inside an event", func(t *testing.T) {
		wantReasons(t, verify(t, withLog(fx.log[:len(fx.log)-3]), fx.opts), EventLogMalformed)
	})
	t.Run("extended", func(t *testing.T) {
		// The last measured event of a quoted PCR again.
		last := len(l.Events) - 1
		for !quoted(&l.Events[last]) {
			last--
		}
		s, e := ends(last)
		wantReasons(t, verify(t, withLog(append(bytes.Clone(fx.log), fx.log[s:e]...)), fx.opts), EventLogMismatch)
	})
	t.Run("reordered", func(t *testing.T) {
		// Two consecutive measured events of one PCR swapped.
		for i := 1; i+1 < len(l.Events); i++ {
			a, b := &l.Events[i], &l.Events[i+1]
			if a.PCR != b.PCR || !quoted(a) || !quoted(b) ||
				bytes.Equal(a.Digest(eventlog.AlgSHA256), b.Digest(eventlog.AlgSHA256)) {
				continue
			}
			s1, e1 := ends(i)
			_, e2 := ends(i + 1)
			var buf []byte
			buf = append(buf, fx.log[:s1]...)
			buf = append(buf, fx.log[e1:e2]...)
			buf = append(buf, fx.log[s1:e1]...)
			buf = append(buf, fx.log[e2:]...)
			wantReasons(t, verify(t, withLog(buf), fx.opts), EventLogMismatch)
			return
		}
		t.Fatal("no two consecutive events of one PCR")
	})
	t.Run("log of another boot", func(t *testing.T) {
		wantReasons(t, verify(t, withLog(readEventLog(t, "ubuntu_2104_shielded_vm_no_secure_boot_eventlog")), fx.opts), EventLogMismatch)
	})
	t.Run("SHA-1 log against a SHA-256 quote", func(t *testing.T) {
		r := verify(t, withLog(readEventLog(t, "ebs_event_missing_eventlog")), fx.opts)
		wantValid(t, r)
		if r.EventLogVerified {
			t.Fatal("a log with no quoted bank verified")
		}
	})
	t.Run("quote over SHA-1 and SHA-256", func(t *testing.T) {
		f := newFakeTPM(t, "agent-a", akECDSA)
		f.setLogPCRs(t, fx.log, fx.list, len(fx.list))
		ev, err := Build(context.Background(), f, BuildOptions{Nonce: fx.nonce, Report: fx.ev.Report, EventLog: fx.log, IMALog: fx.list,
			PCRs: map[string][]int{"sha1": {0, 1, 2, 3, 4, 5, 6, 7}, "sha256": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14}}})
		if err != nil {
			t.Fatal(err)
		}
		r := verify(t, ev, fx.opts)
		wantValid(t, r)
		if !r.EventLogVerified || len(r.PCRs["sha1"]) != 8 {
			t.Fatalf("%+v", r)
		}
		// A SHA-1 PCR the log does not explain.
		f.pcrs["sha1"][3] = bytes.Repeat([]byte{1}, 20)
		ev, err = Build(context.Background(), f, BuildOptions{Nonce: fx.nonce, Report: fx.ev.Report, EventLog: fx.log,
			PCRs: map[string][]int{"sha1": {0, 1, 2, 3, 4, 5, 6, 7}, "sha256": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14}}})
		if err != nil {
			t.Fatal(err)
		}
		wantReasons(t, verify(t, ev, fx.opts), EventLogMismatch)
	})
}

// TestReplayBanks checks the one-bank replay against eventlog's.
func TestReplayBanks(t *testing.T) {
	for _, name := range []string{"coreos_36_shielded_vm_no_secure_boot_eventlog", "crypto_agile_eventlog", "ebs_event_missing_eventlog",
		"keylime_binary_bios_measurements", "option_rom_eventlog", "sb_cert_eventlog", "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"} {
		l, err := eventlog.Parse(readEventLog(t, name))
		if err != nil {
			t.Fatal(err)
		}
		want := l.Replay()
		for _, a := range l.Banks() {
			got := replayBanks(l, []eventlog.Alg{a})[a]
			if len(got) != len(want[a]) {
				t.Fatalf("%s %s: %d PCRs, want %d", name, a, len(got), len(want[a]))
			}
			for i, v := range want[a] {
				if !bytes.Equal(got[int(i)], v) {
					t.Fatalf("%s %s PCR %d differs", name, a, i)
				}
			}
		}
	}
	// A StartupLocality event (locality 3) sets PCR 0's initial value.
	l := &eventlog.Log{SpecID: &eventlog.SpecID{}, Events: []eventlog.Event{{}, {Type: eventlog.EvNoAction, Data: append([]byte("StartupLocality\x00"), 3)},
		{PCR: 0, Type: eventlog.EvSCRTMVersion, Digests: eventlog.Digests{{Alg: eventlog.AlgSHA256, Value: make([]byte, 32)}}}}}
	l.SpecID.Algorithms = []eventlog.AlgSize{{Alg: eventlog.AlgSHA256, Size: 32}}
	if got, want := replayBanks(l, []eventlog.Alg{eventlog.AlgSHA256})[eventlog.AlgSHA256][0], l.Replay()[eventlog.AlgSHA256][0]; !bytes.Equal(got, want) {
		t.Fatalf("locality: %x, want %x", got, want)
	}
}

func TestVerifyIMA(t *testing.T) {
	ctx := context.Background()
	list := imatest.List(300)
	entryEnds := func(b []byte) []int {
		var out []int
		p := ima.NewParser(bytes.NewReader(b), ima.Options{})
		for {
			e, err := p.Next()
			if err != nil {
				return out
			}
			out = append(out, int(e.Offset)+e.Size)
		}
	}
	ends := entryEnds(list)
	build := func(tb testing.TB, f *fakeTPM, data []byte, offset int64) *Evidence {
		ev, err := Build(ctx, f, BuildOptions{Nonce: testNonce, Report: testReport(tb, "agent-a"), IMALog: data, IMAOffset: offset})
		if err != nil {
			tb.Fatal(err)
		}
		return ev
	}
	f := newFakeTPM(t, "agent-a", akECDSA)
	o := Options{Nonce: testNonce, AK: f.ak.Public()}

	t.Run("grown after the quote", func(t *testing.T) {
		// The TPM quoted 200 entries; the list read afterwards has 300.
		f.setLogPCRs(t, nil, list, ends[199])
		r := verify(t, build(t, f, list, 0), o)
		wantValid(t, r)
		if !r.IMAVerified || r.IMAState.Entries != 200 || r.IMAState.Offset != int64(ends[199]) {
			t.Fatalf("state = %+v", r.IMAState)
		}
	})
	t.Run("entries removed", func(t *testing.T) {
		f.setLogPCRs(t, nil, list, len(list))
		cut := append(bytes.Clone(list[:ends[99]]), list[ends[100]:]...)
		wantReasons(t, verify(t, build(t, f, cut, 0), o), IMAMismatch)
		// The last entries: the list ends before the quoted PCR.
		wantReasons(t, verify(t, build(t, f, list[:ends[250]], 0), o), IMAMismatch)
		// The first.
		wantReasons(t, verify(t, build(t, f, list[ends[0]:], 0), o), IMAMismatch)
	})
	t.Run("entries reordered", func(t *testing.T) {
		f.setLogPCRs(t, nil, list, len(list))
		var sw []byte
		sw = append(sw, list[:ends[9]]...)
		sw = append(sw, list[ends[10]:ends[11]]...)
		sw = append(sw, list[ends[9]:ends[10]]...)
		sw = append(sw, list[ends[11]:]...)
		wantReasons(t, verify(t, build(t, f, sw, 0), o), IMAMismatch)
	})
	t.Run("incremental", func(t *testing.T) {
		// Round 1: 100 entries quoted and read.
		f.setLogPCRs(t, nil, list, ends[99])
		r1 := verify(t, build(t, f, list[:ends[99]], 0), o)
		wantValid(t, r1)
		// Round 2: the list has 300 entries; the agent sends those after
		// the saved state.
		f.setLogPCRs(t, nil, list, len(list))
		o2 := o
		o2.IMAState = r1.IMAState
		saved := r1.IMAState.Clone()
		r2 := verify(t, build(t, f, list[ends[99]:], int64(ends[99])), o2)
		wantValid(t, r2)
		if r2.IMAState.Entries != 300 || r2.IMAState.Offset != int64(len(list)) {
			t.Fatalf("state = %+v", r2.IMAState)
		}
		if r1.IMAState.Offset != saved.Offset || r1.IMAState.Entries != saved.Entries {
			t.Fatal("Verify changed Options.IMAState")
		}
		// The agent sends from another offset.
		wantReasons(t, verify(t, build(t, f, list[ends[98]:], int64(ends[98])), o2), IMAOffsetMismatch)
		// ... or the whole list again.
		wantReasons(t, verify(t, build(t, f, list, 0), o2), IMAOffsetMismatch)
		// Nothing new since the last round: the saved state matches.
		f.setLogPCRs(t, nil, list, ends[99])
		r3 := verify(t, build(t, f, []byte{}, int64(ends[99])), o2)
		wantValid(t, r3)
		if !r3.IMAVerified || r3.IMAState.Entries != 100 {
			t.Fatalf("%+v", r3.IMAState)
		}
		// A state no replay produces.
		bad := r1.IMAState.Clone()
		bad.Entries = 0
		o2.IMAState = &bad
		wantReasons(t, verify(t, build(t, f, list[ends[99]:], int64(ends[99])), o2), IMAOffsetMismatch)
	})
	t.Run("PCR 10 not quoted", func(t *testing.T) {
		f.setLogPCRs(t, nil, list, len(list))
		ev, err := Build(ctx, f, BuildOptions{Nonce: testNonce, Report: testReport(t, "agent-a"), IMALog: list, PCRs: map[string][]int{"sha256": {0, 7}}})
		if err != nil {
			t.Fatal(err)
		}
		// The verifier requires PCRs 0–9 and, with an IMA list, 10.
		wantReasons(t, verify(t, ev, o), PCRSelectionInsufficient)
		// Quoting only a PCR userspace can reset proves nothing either.
		for _, sel := range [][]int{{16}, {23}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16}} {
			ev, err := Build(ctx, f, BuildOptions{Nonce: testNonce, Report: testReport(t, "agent-a"), IMALog: list, PCRs: map[string][]int{"sha256": sel}})
			if err != nil {
				t.Fatal(err)
			}
			wantReasons(t, verify(t, ev, o), PCRSelectionInsufficient)
		}
		// A policy that requires less accepts the selection, and the
		// list still does not verify without PCR 10.
		lax := o
		lax.Quote = QuotePolicy{Boot: []int{0, 7}, IMA: []int{}}
		r := verify(t, ev, lax)
		wantValid(t, r)
		if r.IMAVerified || r.IMAState != nil || r.Attested.IMA != nil {
			t.Fatal("IMA verified without PCR 10")
		}
	})
	t.Run("canceled", func(t *testing.T) {
		f.setLogPCRs(t, nil, list, len(list))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		r := Verify(cctx, build(t, f, list, 0), o)
		wantReasons(t, r, Canceled)
	})
}

func TestDecode(t *testing.T) {
	fx := newFixture(t, fixtureOptions{logs: true})
	b, err := fx.ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	wantValid(t, verify(t, ev, fx.opts))
	wantValid(t, VerifyBytes(context.Background(), b, fx.opts))

	for name, c := range map[string]struct {
		doc  string
		want Reason
	}{
		"unknown field":   {strings.Replace(string(b), `"nonce":`, `"extra":1,"nonce":`, 1), Malformed},
		"trailing object": {string(b) + "{}", Malformed},
		"trailing junk":   {string(b) + "x", Malformed},
		"not an object":   {"[]", Malformed},
		"empty":           {"", Malformed},
		"null":            {"null", UnsupportedVersion},
		"bad base64":      {strings.Replace(string(b), `"report":"`, `"report":"!`, 1), Malformed},
		"version":         {strings.Replace(string(b), Version, "vigil.evidence.v0", 1), UnsupportedVersion},
		"too large":       {string(b) + strings.Repeat(" ", MaxSize), Malformed},
	} {
		t.Run(name, func(t *testing.T) {
			r := VerifyBytes(context.Background(), []byte(c.doc), fx.opts)
			wantReasons(t, r, c.want)
		})
	}
	// Trailing white space is fine.
	if _, err := Decode(append(bytes.Clone(b), '\n', ' ')); err != nil {
		t.Fatal(err)
	}
}

func TestAKFromPEM(t *testing.T) {
	f := newFakeTPM(t, "agent-a", akRSASSA)
	k, err := AKFromPEM([]byte(pemOf(t, f.ak.Public())))
	if err != nil || !sameKey(k, f.ak.Public()) {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "junk", pemOf(t, f.ak.Public()) + "x", strings.Replace(pemOf(t, f.ak.Public()), "PUBLIC KEY", "CERTIFICATE", 2)} {
		if _, err := AKFromPEM([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAllReasons(t *testing.T) {
	all := AllReasons()
	if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) || len(all) != 27 {
		t.Fatal(all)
	}
}

func TestVerifyNeverPanics(t *testing.T) {
	for _, ev := range []*Evidence{nil, {}, {Version: Version}, {Version: Version, Enclave: "tpm"},
		{Version: Version, Enclave: "tpm", Quote: &Quote{}, AK: &AK{}, ReportKey: ReportKey{TPMPublic: []byte{0}, CertifyInfo: []byte{0}, CertifySignature: []byte{0}}}} {
		r := Verify(context.Background(), ev, Options{Nonce: testNonce})
		if r.Valid {
			t.Fatalf("%+v valid", ev)
		}
	}
}

// measureTestHost measures a small host tree for a realistic report.
func measureTestHost(t *testing.T) *measure.Report {
	t.Helper()
	h := testhost.Base()
	dir := h.WriteDir(t)
	r, err := measure.New(measure.Options{}).Measure(context.Background(), h.Source(dir))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
