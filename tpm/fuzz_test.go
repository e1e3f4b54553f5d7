package tpm_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/tpm"
)

// seeds are structures swtpm emitted (testdata/seeds): AK, report key and
// EK TPMT_PUBLICs, and quote and certify TPMS_ATTESTs with their
// TPMT_SIGNATUREs, for each AK type.
func seeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "seeds", "*"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no seeds: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// The recorded structures verify, offline, and altered ones do not.
func TestRecordedVectors(t *testing.T) {
	s := seeds(t)
	for _, typ := range []string{"ecdsa-p256", "rsassa-2048", "rsapss-2048"} {
		ak, err := tpm.PublicKey(s["ak-"+typ+".public"])
		if err != nil {
			t.Fatal(err)
		}
		for _, what := range []string{"quote", "certify"} {
			msg, sig := s[what+"-"+typ+".attest"], s[what+"-"+typ+".sig"]
			if err := tpm.VerifySignature(ak, msg, sig); err != nil {
				t.Errorf("%s %s: %v", what, typ, err)
			}
			a, err := tpm.ParseAttest(msg)
			if err != nil || string(a.ExtraData.Buffer) != "nonce" {
				t.Errorf("%s %s: %v", what, typ, err)
			}
			bad := append([]byte(nil), msg...)
			bad[len(bad)/2] ^= 4
			if err := tpm.VerifySignature(ak, bad, sig); !errors.Is(err, tpm.ErrSignature) {
				t.Errorf("%s %s altered: %v", what, typ, err)
			}
			// A trailing byte is refused by the strict decoders.
			if _, err := tpm.ParseAttest(append(msg, 0)); !errors.Is(err, tpm.ErrMalformed) {
				t.Errorf("trailing byte after the attest: %v", err)
			}
			if err := tpm.VerifySignature(ak, msg, append(sig, 0)); !errors.Is(err, tpm.ErrMalformed) {
				t.Errorf("trailing byte after the signature: %v", err)
			}
		}
	}
	for name, b := range s {
		if !strings.HasSuffix(name, ".public") {
			continue
		}
		if _, err := tpm.Name(b); err != nil {
			t.Errorf("Name(%s): %v", name, err)
		}
		if _, err := tpm.PublicKey(append(b, 0)); !errors.Is(err, tpm.ErrMalformed) {
			t.Errorf("PublicKey(%s + trailing byte): %v", name, err)
		}
	}
	// Keys the package does not accept.
	rsa1024 := append([]byte(nil), s["ak-rsassa-2048.public"]...)
	// TPMT_PUBLIC: type(2) nameAlg(2) attrs(4) policy(2+0) sym(2) scheme(2+2) keyBits(2)
	rsa1024[16], rsa1024[17] = 0x04, 0x00
	if _, err := tpm.PublicKey(rsa1024); err == nil {
		t.Error("a 1024-bit key with a 2048-bit modulus decoded")
	}
	offCurve := append([]byte(nil), s["ak-ecdsa-p256.public"]...)
	offCurve[len(offCurve)-1] ^= 1
	if _, err := tpm.PublicKey(offCurve); !errors.Is(err, tpm.ErrMalformed) {
		t.Errorf("a point off the curve: %v", err)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoders of TPMT_PUBLIC,
// TPMS_ATTEST and TPMT_SIGNATURE (they take evidence from the network):
// no panic, errors wrap the package's sentinels, and what decodes is
// consistent.
func FuzzDecode(f *testing.F) {
	s := seeds(f)
	for _, b := range s {
		f.Add(b)
	}
	ecKey, err := tpm.PublicKey(s["ak-ecdsa-p256.public"])
	if err != nil {
		f.Fatal(err)
	}
	rsaKey, err := tpm.PublicKey(s["ak-rsapss-2048.public"])
	if err != nil {
		f.Fatal(err)
	}
	sentinels := []error{tpm.ErrMalformed, tpm.ErrUnsupportedKey, tpm.ErrSignature, tpm.ErrCredential}
	wraps := func(err error) bool {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, perr := tpm.ParsePublic(b)
		name, nerr := tpm.Name(b)
		key, kerr := tpm.PublicKey(b)
		for _, err := range []error{perr, nerr, kerr} {
			if err != nil && !wraps(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
		}
		if perr != nil && (nerr == nil || kerr == nil) {
			t.Fatal("Name or PublicKey accepted what ParsePublic refused")
		}
		if nerr == nil && (len(name) < 2 || uint16(name[0])<<8|uint16(name[1]) != uint16(pub.NameAlg)) {
			t.Fatalf("name %x for nameAlg %#x", name, pub.NameAlg)
		}
		if kerr == nil {
			switch key.(type) {
			case *ecdsa.PublicKey, *rsa.PublicKey:
			default:
				t.Fatalf("PublicKey returned %T", key)
			}
		}
		if a, err := tpm.ParseAttest(b); err == nil {
			if a.Magic != 0xff544347 {
				t.Fatal("ParseAttest accepted a bad magic")
			}
		} else if !wraps(err) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if _, err := tpm.ParseSignature(b); err != nil && !wraps(err) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		for _, k := range []any{ecKey, rsaKey} {
			if err := tpm.VerifySignature(k, b, b); err == nil {
				t.Fatal("a fuzzed signature verified")
			} else if !wraps(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
		}
		if nerr == nil {
			if _, _, err := tpm.MakeCredential(b, name, []byte("secret")); err != nil && !wraps(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
		}
	})
}
