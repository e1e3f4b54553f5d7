package simtpm_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/simtpm"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/tpm"
)

var ctx = context.Background()

// rsaTPM is made once: RSA-2048 key generation is slow.
var rsaTPM = sync.OnceValues(func() (*simtpm.TPM, error) { return simtpm.New(simtpm.Options{EK: tpm.EKRSA2048}) })

func newTPM(tb testing.TB, ek tpm.EKType) *simtpm.TPM {
	tb.Helper()
	var t *simtpm.TPM
	var err error
	if ek == tpm.EKRSA2048 {
		t, err = rsaTPM()
	} else {
		t, err = simtpm.New(simtpm.Options{EK: ek})
	}
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func flipLast(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)-1] ^= 1
	return c
}

func TestActivateCredential(t *testing.T) {
	other := newTPM(t, tpm.EKECCP256)
	otherEK, _, _, err := other.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []tpm.EKType{tpm.EKECCP256, tpm.EKRSA2048} {
		t.Run(string(typ), func(t *testing.T) {
			s := newTPM(t, typ)
			ekPub, _, cert, err := s.EK(ctx)
			if err != nil || cert != nil {
				t.Fatalf("EK: cert %x, %v", cert, err)
			}
			// The EK is the TCG template's, with the key in unique.
			tmpl, _ := tpm.EKTemplate(typ)
			p, err := tpm.ParsePublic(ekPub)
			if err != nil {
				t.Fatal(err)
			}
			p.Unique = tmpl.Unique
			if !bytes.Equal(tpm2.Marshal(*p), tpm2.Marshal(tmpl)) {
				t.Fatal("the EK is not an instance of the TCG template")
			}
			akPub, _ := s.AKPublic()
			akName, err := tpm.Name(akPub)
			if err != nil || !bytes.Equal(akName, s.AKName()) {
				t.Fatalf("AK name %x, want %x (%v)", s.AKName(), akName, err)
			}
			for _, n := range []int{1, 16, tpm.MaxCredential} {
				secret := bytes.Repeat([]byte{byte(n)}, n)
				blob, enc, err := tpm.MakeCredential(ekPub, akName, secret)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.ActivateCredential(ctx, blob, enc)
				if err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("%d bytes: activated %x, %v; want %x", n, got, err, secret)
				}
			}
			secret := []byte("0123456789abcdef0123456789abcdef")
			otherName := other.AKName()
			blob, enc, _ := tpm.MakeCredential(ekPub, otherName, secret)
			forEK, forEKEnc, _ := tpm.MakeCredential(otherEK, akName, secret)
			good, goodEnc, _ := tpm.MakeCredential(ekPub, akName, secret)
			for _, c := range []struct {
				name      string
				blob, enc []byte
			}{
				{"another AK's name", blob, enc},
				{"another EK", forEK, forEKEnc},
				{"blob altered", flipLast(good), goodEnc},
				{"blob HMAC altered", append([]byte{good[0], good[1], good[2] ^ 1}, good[3:]...), goodEnc},
				{"secret altered", good, flipLast(goodEnc)},
				{"blob truncated", good[:len(good)-1], goodEnc},
				{"blob empty", nil, goodEnc},
				{"secret truncated", good, goodEnc[:len(goodEnc)-1]},
				{"secret empty", good, nil},
			} {
				got, err := s.ActivateCredential(ctx, c.blob, c.enc)
				if err == nil {
					t.Fatalf("%s: activated %x", c.name, got)
				}
				if c.name != "another EK" || typ == tpm.EKECCP256 {
					if !errors.Is(err, tpm.ErrActivation) {
						t.Fatalf("%s: %v, want tpm.ErrActivation", c.name, err)
					}
				}
			}
			if got, err := s.ActivateCredential(ctx, good, goodEnc); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("after the failures: %x, %v", got, err)
			}
		})
	}
}

func TestEvidenceVerifies(t *testing.T) {
	for _, c := range []struct {
		name string
		o    simtpm.Options
	}{
		{"ecdsa", simtpm.Options{}},
		{"rsassa-ak", simtpm.Options{AK: tpm.RSASSA2048}},
		{"rsapss-ak-rsa-report-key", simtpm.Options{AK: tpm.RSAPSS2048, ReportKey: tpm.RSASSA2048}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := simtpm.New(c.o)
			if err != nil {
				t.Fatal(err)
			}
			d := sha256.Sum256([]byte("boot"))
			if err := s.Extend("sha256", 4, d[:]); err != nil {
				t.Fatal(err)
			}
			nonce := []byte("a fresh nonce 16")
			report := testReport(t)
			ev, err := evidence.Build(ctx, s, evidence.BuildOptions{Nonce: nonce, Report: report, WithEK: true})
			if err != nil {
				t.Fatal(err)
			}
			akPub, ak := s.AKPublic()
			o := evidence.Options{Nonce: nonce, AK: ak, AKPublic: akPub}
			r := evidence.Verify(ctx, ev, o)
			if !r.Valid || r.Enclave != enclave.TPM {
				t.Fatalf("valid %v, enclave %s, reasons %v (%v)", r.Valid, r.Enclave, r.Reasons, r.Messages)
			}
			want := sha256.Sum256(append(make([]byte, 32), d[:]...))
			if got := r.PCRs["sha256"][4]; got != hex.EncodeToString(want[:]) {
				t.Fatalf("PCR 4 = %s, want %x", got, want)
			}
			if ev.EK == nil || ev.EKCert != nil {
				t.Fatal("the EK is missing, or a certificate the simulator does not have is present")
			}

			tampered := func(mod func(*evidence.Evidence)) *evidence.Result {
				b, _ := ev.Encode()
				c, err := evidence.Decode(b)
				if err != nil {
					t.Fatal(err)
				}
				mod(c)
				return evidence.Verify(ctx, c, o)
			}
			for _, tc := range []struct {
				name string
				mod  func(*evidence.Evidence)
				want evidence.Reason
			}{
				{"quote signature", func(e *evidence.Evidence) { e.Quote.Signature = flipLast(e.Quote.Signature) }, evidence.BadQuoteSignature},
				{"certify signature", func(e *evidence.Evidence) {
					e.ReportKey.CertifySignature = flipLast(e.ReportKey.CertifySignature)
				}, evidence.BadCertifySignature},
				{"PCR value", func(e *evidence.Evidence) { e.Quote.PCRs["sha256"]["4"] = hex.EncodeToString(make([]byte, 32)) }, evidence.PCRDigestMismatch},
				{"nonce", func(e *evidence.Evidence) { e.Nonce = hex.EncodeToString([]byte("another nonce 16")) }, evidence.NonceMismatch},
			} {
				r := tampered(tc.mod)
				if r.Valid || !slices.Contains(r.Reasons, tc.want) {
					t.Errorf("%s: valid %v, reasons %v; want %s", tc.name, r.Valid, r.Reasons, tc.want)
				}
			}
			// Another simulated TPM's AK is not this one.
			other := newTPM(t, tpm.EKECCP256)
			_, otherAK := other.AKPublic()
			if r := evidence.Verify(ctx, ev, evidence.Options{Nonce: nonce, AK: otherAK}); r.Valid || !slices.Contains(r.Reasons, evidence.AKMismatch) {
				t.Errorf("another AK: %v", r.Reasons)
			}
		})
	}
}

// testReport is a small canonical runtime report.
func testReport(tb testing.TB) []byte {
	tb.Helper()
	r := measure.NewReport()
	r.Inputs["/proc/sys/kernel/osrelease"] = "00ff"
	r.Kernel.Status = measure.StatusOK
	r.Kernel.Release = "6.1.0-56-amd64"
	r.Kernel.Hostname = "sim"
	r.IMA.Status = measure.StatusUnavailable
	b, err := r.Canonical()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestPCRs(t *testing.T) {
	s := newTPM(t, tpm.EKECCP256)
	d1 := sha1.Sum([]byte("x"))
	if err := s.Extend("sha1", 0, d1[:]); err != nil {
		t.Fatal(err)
	}
	got, _ := s.PCR("sha1", 0)
	want := sha1.Sum(append(make([]byte, 20), d1[:]...))
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("sha1 PCR 0 = %x, want %x", got, want)
	}
	if v, _ := s.PCR("sha256", 17); !bytes.Equal(v, bytes.Repeat([]byte{0xff}, 32)) {
		t.Fatalf("PCR 17 starts %x", v)
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"sha1 digest into sha256", s.Extend("sha256", 0, d1[:])},
		{"PCR 24", s.Extend("sha1", 24, d1[:])},
		{"PCR -1", s.SetPCR("sha1", -1, d1[:])},
		{"bank not allocated", s.SetPCR("sha384", 0, make([]byte, 48))},
		{"unknown bank", s.SetPCR("md5", 0, make([]byte, 16))},
	} {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if _, err := s.Quote(ctx, map[string][]int{"sha384": {0}}, nil); !errors.Is(err, tpm.ErrPCRSelection) {
		t.Fatalf("quote of an unallocated bank: %v", err)
	}
	if err := s.SetPCR("sha256", 10, bytes.Repeat([]byte{7}, 32)); err != nil {
		t.Fatal(err)
	}
	q, err := s.Quote(ctx, map[string][]int{"sha256": {10, 0}, "sha1": {0}}, []byte("q"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(q.PCRs["sha256"][10], bytes.Repeat([]byte{7}, 32)) || !bytes.Equal(q.PCRs["sha1"][0], want[:]) {
		t.Fatalf("quoted %x", q.PCRs)
	}
	a, err := tpm.ParseAttest(q.Attest)
	if err != nil {
		t.Fatal(err)
	}
	if a.Magic != tpm2.TPMGeneratedValue || a.Type != tpm2.TPMSTAttestQuote || !bytes.Equal(a.QualifiedSigner.Buffer, s.AKName()) ||
		!bytes.Equal(a.ExtraData.Buffer, []byte("q")) || !a.ClockInfo.Safe {
		t.Fatalf("attest %+v", a)
	}
	if _, err := s.Quote(ctx, map[string][]int{"sha256": {0}}, make([]byte, tpm.MaxQualifyingData+1)); !errors.Is(err, tpm.ErrQualifyingData) {
		t.Fatalf("long qualifying data: %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []simtpm.Options{
		{EK: tpm.EKECCP384},
		{AK: "dsa"},
		{ReportKey: tpm.RSAPSS2048},
		{Banks: []string{"md5"}},
		{Keys: simtpm.Keys{EK: "not a key"}},
	} {
		if _, err := simtpm.New(o); !errors.Is(err, simtpm.ErrOptions) {
			t.Errorf("%+v: %v, want ErrOptions", o, err)
		}
	}
	s := newTPM(t, tpm.EKECCP256)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Quote(ctx, evidence.DefaultPCRs, nil); !errors.Is(err, simtpm.ErrClosed) {
		t.Fatalf("quote after Close: %v", err)
	}
}

func FuzzActivateCredential(f *testing.F) {
	s, err := simtpm.New(simtpm.Options{})
	if err != nil {
		f.Fatal(err)
	}
	ekPub, _, _, _ := s.EK(ctx)
	secret := []byte("0123456789abcdef")
	blob, enc, err := tpm.MakeCredential(ekPub, s.AKName(), secret)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob, enc)
	f.Add(blob[:2], enc[:4])
	f.Fuzz(func(t *testing.T, blob, enc []byte) {
		got, err := s.ActivateCredential(ctx, blob, enc)
		if err == nil && !bytes.Equal(got, secret) {
			t.Fatalf("activated %x from made-up bytes", got)
		}
		if err != nil && !errors.Is(err, tpm.ErrActivation) {
			t.Fatalf("error %v does not wrap ErrActivation", err)
		}
	})
}
