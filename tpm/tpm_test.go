package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

var ctx = context.Background()

// bootPCRs is the selection the agent quotes by default.
var bootPCRs = map[string][]int{"sha256": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}

func open(tb testing.TB, uri string, o tpm.Options) *tpm.Enclave {
	tb.Helper()
	e, err := tpm.Open(ctx, uri, o)
	if err != nil {
		tb.Fatalf("Open(%s, %+v): %v", uri, o, err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

func nonce(tb testing.TB) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// The keys are created once, persisted, and found again by a new Open,
// over either transport, and after a TPM reset.
func TestKeysPersistAcrossOpens(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		sw := testtpm.StartWith(t, testtpm.Options{TCP: tcp})
		e1, err := tpm.Open(ctx, sw.URI, tpm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ak1, akKey := e1.AKPublic()
		rk1 := e1.ReportKeyPublic()
		if _, ok := akKey.(*ecdsa.PublicKey); !ok {
			t.Fatalf("default AK is %T, want ECDSA", akKey)
		}
		if _, ok := e1.ReportPublic().(*ecdsa.PublicKey); !ok {
			t.Fatalf("default report key is %T, want ECDSA", e1.ReportPublic())
		}
		if e1.Kind() != enclave.TPM {
			t.Fatalf("Kind = %s", e1.Kind())
		}
		// swtpm serves one TCP connection at a time: close before reopening.
		if err := e1.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := e1.Quote(ctx, bootPCRs, nil); !errors.Is(err, tpm.ErrClosed) {
			t.Fatalf("Quote after Close: %v, want ErrClosed", err)
		}

		e2 := open(t, sw.URI, tpm.Options{})
		ak2, _ := e2.AKPublic()
		if !bytes.Equal(ak1, ak2) || !bytes.Equal(rk1, e2.ReportKeyPublic()) {
			t.Fatalf("reopen (tcp=%v) gave other keys", tcp)
		}
		e2.Close()

		sw.Restart()
		e3 := open(t, sw.URI, tpm.Options{})
		ak3, _ := e3.AKPublic()
		if !bytes.Equal(ak1, ak3) || !bytes.Equal(rk1, e3.ReportKeyPublic()) {
			t.Fatalf("after a TPM reset (tcp=%v): other keys", tcp)
		}
		// The keys still work after the reset (first quote may RETRY).
		if _, err := e3.Quote(ctx, bootPCRs, nonce(t)); err != nil {
			t.Fatal(err)
		}
		e3.Close()
	}
}

func TestKeyTemplates(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{})
	ak, _ := e.AKPublic()
	for _, k := range []struct {
		name       string
		public     []byte
		restricted bool
	}{{"AK", ak, true}, {"report key", e.ReportKeyPublic(), false}} {
		p, err := tpm.ParsePublic(k.public)
		if err != nil {
			t.Fatal(err)
		}
		a := p.ObjectAttributes
		if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.UserWithAuth || !a.SignEncrypt || a.Decrypt || a.Restricted != k.restricted {
			t.Errorf("%s attributes %+v", k.name, a)
		}
	}
	akName, err := tpm.Name(ak)
	if err != nil || !bytes.Equal(akName, e.AKName()) {
		t.Fatalf("Name(AK) = %x, %v; the TPM says %x", akName, err, e.AKName())
	}
	rkName, _ := tpm.Name(e.ReportKeyPublic())
	if !bytes.Equal(rkName, e.ReportKeyName()) {
		t.Fatalf("Name(report key) = %x; the TPM says %x", rkName, e.ReportKeyName())
	}
	akH, rkH := e.Handles()
	if akH != tpm.DefaultAKHandle || rkH != tpm.DefaultReportKeyHandle {
		t.Fatalf("handles %#x %#x", akH, rkH)
	}
}

func TestRecreate(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{})
	ak1, _ := e.AKPublic()
	rk1 := e.ReportKeyPublic()
	e.Close()

	// Another AK type than the persisted one: refused, not replaced.
	if _, err := tpm.Open(ctx, sw.URI, tpm.Options{AK: tpm.RSASSA2048}); !errors.Is(err, tpm.ErrKeyMismatch) {
		t.Fatalf("Open with another AK type: %v, want ErrKeyMismatch", err)
	}
	// A handle holding a key of someone else: refused, even with Recreate
	// when it is not a signing key. An SRK persisted at 0x81000001 by
	// tpm2-tools stands for it.
	srk := filepath.Join(t.TempDir(), "srk.ctx")
	for _, args := range [][]string{
		{"tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", srk, "-Q"},
		{"tpm2_evictcontrol", "-C", "o", "-c", srk, "0x81000001", "-Q"},
		{"tpm2_flushcontext", "-t"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+sw.TCTI)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	for _, recreate := range []bool{false, true} {
		if _, err := tpm.Open(ctx, sw.URI, tpm.Options{AKHandle: 0x81000001, Recreate: recreate}); !errors.Is(err, tpm.ErrKeyMismatch) {
			t.Fatalf("Open with the AK handle on an SRK (Recreate %v): %v, want ErrKeyMismatch", recreate, err)
		}
	}
	// The refusals changed nothing.
	e = open(t, sw.URI, tpm.Options{})
	if ak, _ := e.AKPublic(); !bytes.Equal(ak, ak1) {
		t.Fatal("a refused Open changed the AK")
	}
	e.Close()

	// Recreate replaces both keys with new ones.
	e = open(t, sw.URI, tpm.Options{AK: tpm.RSASSA2048, Recreate: true})
	ak2, key2 := e.AKPublic()
	if _, ok := key2.(*rsa.PublicKey); !ok {
		t.Fatalf("recreated AK is %T", key2)
	}
	if bytes.Equal(e.ReportKeyPublic(), rk1) {
		t.Fatal("Recreate kept the report key")
	}
	e.Close()
	e = open(t, sw.URI, tpm.Options{AK: tpm.RSASSA2048})
	if ak, _ := e.AKPublic(); !bytes.Equal(ak, ak2) {
		t.Fatal("the recreated AK did not persist")
	}
	e.Close()
}

func TestOptionsInvalid(t *testing.T) {
	for _, o := range []tpm.Options{
		{EK: "dsa"},
		{AK: "ed25519"},
		{ReportKey: tpm.RSAPSS2048},
		{AKHandle: 0x01C00002},
		{AKHandle: 0x81800000},
		{AKHandle: 0x81010001}, // the RSA EK's
		{AKHandle: 0x81000010, ReportKeyHandle: 0x81000010},
	} {
		if _, err := tpm.Open(ctx, "unix:///nonexistent", o); !errors.Is(err, tpm.ErrOptions) {
			t.Errorf("Open(%+v): %v, want ErrOptions", o, err)
		}
	}
	for _, uri := range []string{"", "tpm0", "http://x", "unix://relative", "tcp://127.0.0.1", "tcp://127.0.0.1:70000"} {
		if _, err := tpm.Open(ctx, uri, tpm.Options{}); !errors.Is(err, tpm.ErrURI) {
			t.Errorf("Open(%q): %v, want ErrURI", uri, err)
		}
	}
	if _, err := tpm.Open(ctx, "/nonexistent/tpmrm0", tpm.Options{}); err == nil {
		t.Error("Open of a missing device succeeded")
	}
}

func TestEK(t *testing.T) {
	sw := testtpm.Start(t)
	for _, c := range []struct {
		typ      tpm.EKType
		wantCert bool
		want     crypto.PublicKey
	}{
		// swtpm_setup creates RSA-2048 and ECC P-384 EKs with certificates.
		{tpm.EKRSA2048, true, &rsa.PublicKey{}},
		{tpm.EKECCP384, true, &ecdsa.PublicKey{}},
		{tpm.EKECCP256, false, &ecdsa.PublicKey{}},
		// No P-256 certificate: the RSA EK.
		{tpm.EKAuto, true, &rsa.PublicKey{}},
	} {
		name := string(c.typ)
		if name == "" {
			name = "auto"
		}
		t.Run(name, func(t *testing.T) {
			e := open(t, sw.URI, tpm.Options{EK: c.typ})
			public, pub, der, err := e.EK(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := typeName(pub), typeName(c.want); got != want {
				t.Fatalf("EK key %s, want %s", got, want)
			}
			if k, _ := tpm.PublicKey(public); k == nil || !k.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatal("EK TPMT_PUBLIC and public key disagree")
			}
			p, _ := tpm.ParsePublic(public)
			if !p.ObjectAttributes.Restricted || !p.ObjectAttributes.Decrypt {
				t.Fatalf("EK attributes %+v", p.ObjectAttributes)
			}
			if (der != nil) != c.wantCert {
				t.Fatalf("certificate present = %v, want %v", der != nil, c.wantCert)
			}
			if der == nil {
				return
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := tpm.VerifyEKCertificate(cert, pub, sw.Roots, sw.Intermediates...); err != nil {
				t.Fatalf("VerifyEKCertificate: %v", err)
			}
			// A second call answers from the cache, the same.
			public2, _, der2, _ := e.EK(ctx)
			if !bytes.Equal(public, public2) || !bytes.Equal(der, der2) {
				t.Fatal("EK changed between calls")
			}
		})
	}
}

func typeName(k crypto.PublicKey) string {
	switch k.(type) {
	case *rsa.PublicKey:
		return "rsa"
	case *ecdsa.PublicKey:
		return "ecdsa"
	}
	return "other"
}

func TestEKCertificateRejected(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{EK: tpm.EKRSA2048})
	_, pub, der, err := e.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	e384 := open(t, sw.URI, tpm.Options{EK: tpm.EKECCP384})
	_, pub384, _, err := e384.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := selfSigned(t)

	cases := []struct {
		name  string
		cert  *x509.Certificate
		ek    crypto.PublicKey
		roots []*x509.Certificate
		inter []*x509.Certificate
		want  error
	}{
		{"wrong root", cert, pub, []*x509.Certificate{other}, sw.Intermediates, tpm.ErrEKCertificate},
		{"intermediate as root, root missing", cert, pub, nil, sw.Intermediates, tpm.ErrEKCertificate},
		{"no intermediate", cert, pub, sw.Roots, nil, tpm.ErrEKCertificate},
		{"another EK", cert, pub384, sw.Roots, sw.Intermediates, tpm.ErrEKMismatch},
		{"no EK", cert, nil, sw.Roots, sw.Intermediates, tpm.ErrEKMismatch},
		{"no certificate", nil, pub, sw.Roots, sw.Intermediates, tpm.ErrEKCertificate},
	}
	for _, c := range cases {
		if err := tpm.VerifyEKCertificate(c.cert, c.ek, c.roots, c.inter...); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}

	// A flipped bit in the signature.
	bad := slices.Clone(der)
	bad[len(bad)-5] ^= 1
	if c, err := x509.ParseCertificate(bad); err == nil {
		if err := tpm.VerifyEKCertificate(c, pub, sw.Roots, sw.Intermediates...); !errors.Is(err, tpm.ErrEKCertificate) {
			t.Errorf("altered signature: %v", err)
		}
	}
	// An unknown critical extension is not tolerated, the TCG ones are.
	unknown := *cert
	unknown.UnhandledCriticalExtensions = append(slices.Clone(cert.UnhandledCriticalExtensions), asn1.ObjectIdentifier{1, 2, 3, 4})
	if err := tpm.VerifyEKCertificate(&unknown, pub, sw.Roots, sw.Intermediates...); !errors.Is(err, tpm.ErrEKCertificate) {
		t.Errorf("unknown critical extension: %v", err)
	}
	if len(cert.UnhandledCriticalExtensions) == 0 {
		t.Error("swtpm's EK certificate was expected to carry the TCG's critical subjectAltName")
	}
	// An EKU without tcg-kp-EKCertificate.
	serverAuth := *cert
	serverAuth.ExtKeyUsage, serverAuth.UnknownExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil
	if err := tpm.VerifyEKCertificate(&serverAuth, pub, sw.Roots, sw.Intermediates...); !errors.Is(err, tpm.ErrEKCertificate) {
		t.Errorf("EKU without tcg-kp-EKCertificate: %v", err)
	}
}

func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	tmpl.Subject.CommonName = "swtpm-localca"
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// akTypes are the AK types, each with a swtpm of its own.
var akTypes = []tpm.KeyType{tpm.ECDSAP256, tpm.RSASSA2048, tpm.RSAPSS2048}

func TestQuote(t *testing.T) {
	for _, typ := range akTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			sw := testtpm.Start(t)
			e := open(t, sw.URI, tpm.Options{AK: typ})
			// Give PCR 16 (debug) and PCR 23 a value.
			for _, p := range []int{16, 23} {
				d := sha256.Sum256([]byte{byte(p)})
				if err := e.PCRExtend(ctx, "sha256", p, d[:]); err != nil {
					t.Fatal(err)
				}
			}
			sel := map[string][]int{"sha256": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 23}}
			n := nonce(t)
			q, err := e.Quote(ctx, sel, n)
			if err != nil {
				t.Fatal(err)
			}
			_, akKey := e.AKPublic()
			checkQuote(t, akKey, q, sel, n)
			if err := tpm.VerifySignature(akKey, q.Attest, q.Signature); err != nil {
				t.Fatalf("VerifySignature: %v", err)
			}
			for i := range q.Attest {
				bad := slices.Clone(q.Attest)
				bad[i] ^= 0x10
				if tpm.VerifySignature(akKey, bad, q.Signature) == nil {
					t.Fatalf("flipped attest byte %d verifies", i)
				}
			}
			bad := slices.Clone(q.Signature)
			bad[len(bad)-1] ^= 1
			if err := tpm.VerifySignature(akKey, q.Attest, bad); !errors.Is(err, tpm.ErrSignature) {
				t.Fatalf("flipped signature: %v", err)
			}
			if q.PCRs["sha256"][16] == nil || bytes.Equal(q.PCRs["sha256"][16], make([]byte, 32)) {
				t.Fatal("PCR 16 not read or not extended")
			}
			// The quote is bound to the nonce: another nonce, another quote.
			q2, err := e.Quote(ctx, sel, nonce(t))
			if err != nil || bytes.Equal(q.Attest, q2.Attest) {
				t.Fatalf("second quote: %v", err)
			}
		})
	}
}

// checkQuote verifies a quote with go-tpm structures and crypto only.
func checkQuote(t *testing.T, akKey crypto.PublicKey, q *enclave.Quote, sel map[string][]int, n []byte) {
	t.Helper()
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil {
		t.Fatal(err)
	}
	if a.Magic != tpm2.TPMGeneratedValue || a.Type != tpm2.TPMSTAttestQuote {
		t.Fatalf("magic %#x type %#x", a.Magic, a.Type)
	}
	if !bytes.Equal(a.ExtraData.Buffer, n) {
		t.Fatalf("extraData %x, want %x", a.ExtraData.Buffer, n)
	}
	info, err := a.Attested.Quote()
	if err != nil {
		t.Fatal(err)
	}
	if len(info.PCRSelect.PCRSelections) != 1 || info.PCRSelect.PCRSelections[0].Hash != tpm2.TPMAlgSHA256 {
		t.Fatalf("selection %+v", info.PCRSelect)
	}
	h := sha256.New()
	for _, i := range sel["sha256"] {
		v := q.PCRs["sha256"][i]
		if len(v) != 32 {
			t.Fatalf("PCR %d: %x", i, v)
		}
		h.Write(v)
	}
	if len(q.PCRs["sha256"]) != len(sel["sha256"]) {
		t.Fatalf("%d PCR values for %d PCRs", len(q.PCRs["sha256"]), len(sel["sha256"]))
	}
	if !bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
		t.Fatal("PCR digest does not match the PCR values")
	}
	checkSignature(t, akKey, q.Attest, q.Signature)
}

// checkSignature checks a TPMT_SIGNATURE with crypto directly.
func checkSignature(t *testing.T, key crypto.PublicKey, msg, sigBytes []byte) {
	t.Helper()
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](sigBytes)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(msg)
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		s, _ := sig.Signature.ECDSA()
		if s.Hash != tpm2.TPMAlgSHA256 || !ecdsa.Verify(key.(*ecdsa.PublicKey), d[:], new(big.Int).SetBytes(s.SignatureR.Buffer), new(big.Int).SetBytes(s.SignatureS.Buffer)) {
			t.Fatal("ECDSA signature does not verify")
		}
	case tpm2.TPMAlgRSASSA:
		s, _ := sig.Signature.RSASSA()
		if err := rsa.VerifyPKCS1v15(key.(*rsa.PublicKey), crypto.SHA256, d[:], s.Sig.Buffer); err != nil {
			t.Fatal(err)
		}
	case tpm2.TPMAlgRSAPSS:
		s, _ := sig.Signature.RSAPSS()
		if err := rsa.VerifyPSS(key.(*rsa.PublicKey), crypto.SHA256, d[:], s.Sig.Buffer, nil); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("signature algorithm %#x", sig.SigAlg)
	}
}

func TestCertify(t *testing.T) {
	for _, typ := range akTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			sw := testtpm.Start(t)
			rkType := tpm.ECDSAP256
			if typ == tpm.RSASSA2048 {
				rkType = tpm.RSASSA2048 // an RSA report key too
			}
			e := open(t, sw.URI, tpm.Options{AK: typ, ReportKey: rkType})
			n := nonce(t)
			c, err := e.Certify(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			a, err := tpm2.Unmarshal[tpm2.TPMSAttest](c.Attest)
			if err != nil {
				t.Fatal(err)
			}
			if a.Magic != tpm2.TPMGeneratedValue || a.Type != tpm2.TPMSTAttestCertify || !bytes.Equal(a.ExtraData.Buffer, n) {
				t.Fatalf("attest %+v", a)
			}
			info, err := a.Attested.Certify()
			if err != nil {
				t.Fatal(err)
			}
			name, err := tpm.Name(e.ReportKeyPublic())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(info.Name.Buffer, name) {
				t.Fatalf("certified name %x, want Name(report key) %x", info.Name.Buffer, name)
			}
			_, akKey := e.AKPublic()
			checkSignature(t, akKey, c.Attest, c.Signature)
			if err := tpm.VerifySignature(akKey, c.Attest, c.Signature); err != nil {
				t.Fatal(err)
			}
			// The report key's public key is the one certified.
			rk, err := tpm.PublicKey(e.ReportKeyPublic())
			if err != nil || !rk.(interface{ Equal(crypto.PublicKey) bool }).Equal(e.ReportPublic()) {
				t.Fatalf("ReportKeyPublic and ReportPublic disagree: %v", err)
			}

			// SignReport with the certified key.
			d := sha256.Sum256([]byte("runtime report"))
			sig, err := e.SignReport(ctx, d[:])
			if err != nil {
				t.Fatal(err)
			}
			switch k := e.ReportPublic().(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(k, d[:], sig) {
					t.Fatal("report signature does not verify")
				}
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.SignReport(ctx, d[:20]); !errors.Is(err, tpm.ErrDigest) {
				t.Fatalf("20-byte digest: %v", err)
			}
		})
	}
}

// The AK refuses to sign anything but TPM-generated structures, the
// report key is the one that signs: check the AK is restricted in the TPM.
func TestQualifyingDataAndSelectionErrors(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{})
	long := make([]byte, tpm.MaxQualifyingData+1)
	if _, err := e.Quote(ctx, bootPCRs, long); !errors.Is(err, tpm.ErrQualifyingData) {
		t.Errorf("long qualifying data: %v", err)
	}
	if _, err := e.Certify(ctx, long); !errors.Is(err, tpm.ErrQualifyingData) {
		t.Errorf("long qualifying data: %v", err)
	}
	for _, sel := range []map[string][]int{nil, {"sha256": nil}, {"md5": {0}}, {"sha256": {24}}, {"sha256": {-1}}} {
		if _, err := e.Quote(ctx, sel, nil); !errors.Is(err, tpm.ErrPCRSelection) {
			t.Errorf("selection %v: %v", sel, err)
		}
	}
	// swtpm has only the SHA-256 bank active.
	if _, err := e.Quote(ctx, map[string][]int{"sha1": {0}}, nil); err == nil {
		t.Error("quote of an unallocated bank succeeded")
	}
	if err := e.PCRExtend(ctx, "sha256", 16, make([]byte, 20)); !errors.Is(err, tpm.ErrDigest) {
		t.Errorf("extend with a short digest: %v", err)
	}
	// Maximal qualifying data works.
	if _, err := e.Quote(ctx, bootPCRs, long[:tpm.MaxQualifyingData]); err != nil {
		t.Errorf("64-byte qualifying data: %v", err)
	}
}

func TestPCRReadExtend(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{})
	all := make([]int, 24)
	for i := range all {
		all[i] = i
	}
	before, err := e.PCRRead(ctx, "sha256", all)
	if err != nil || len(before) != 24 {
		t.Fatalf("PCRRead: %d values, %v", len(before), err)
	}
	d := sha256.Sum256([]byte("event"))
	if err := e.PCRExtend(ctx, "sha256", 12, d[:]); err != nil {
		t.Fatal(err)
	}
	after, err := e.PCRRead(ctx, "sha256", []int{12})
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(slices.Clone(before[12]), d[:]...))
	if !bytes.Equal(after[12], want[:]) {
		t.Fatalf("PCR 12 = %x, want %x", after[12], want)
	}
}

func TestConcurrentUse(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{})
	_, akKey := e.AKPublic()
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := 0; i < 10; i++ {
		wg.Add(3)
		go func() {
			defer wg.Done()
			d := sha256.Sum256([]byte{byte(i)})
			_, err := e.SignReport(ctx, d[:])
			errs <- err
		}()
		go func() {
			defer wg.Done()
			q, err := e.Quote(ctx, bootPCRs, []byte{byte(i)})
			if err == nil {
				err = tpm.VerifySignature(akKey, q.Attest, q.Signature)
			}
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := e.Certify(ctx, []byte{byte(i)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{})
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Quote(c, bootPCRs, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Quote: %v", err)
	}
	if _, err := tpm.Open(c, sw.URI, tpm.Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Open: %v", err)
	}
}
