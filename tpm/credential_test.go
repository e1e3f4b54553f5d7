package tpm_test

import (
	"bytes"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

func TestCredentialActivation(t *testing.T) {
	sw := testtpm.Start(t)
	// Another TPM with its own seeds, hence its own EK, and its own AK.
	other := testtpm.StartWith(t, testtpm.Options{Fresh: true})
	eo := open(t, other.URI, tpm.Options{})
	otherEK, _, _, err := eo.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	otherAK, _ := eo.AKPublic()
	otherAKName, _ := tpm.Name(otherAK)

	for _, typ := range []tpm.EKType{tpm.EKRSA2048, tpm.EKECCP256, tpm.EKECCP384} {
		t.Run(string(typ), func(t *testing.T) {
			e := open(t, sw.URI, tpm.Options{EK: typ})
			ekPublic, _, _, err := e.EK(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ak, _ := e.AKPublic()
			akName, err := tpm.Name(ak)
			if err != nil {
				t.Fatal(err)
			}
			secret := nonce(t)

			blob, enc, err := tpm.MakeCredential(ekPublic, akName, secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.ActivateCredential(ctx, blob, enc)
			if err != nil {
				t.Fatalf("ActivateCredential: %v", err)
			}
			if !bytes.Equal(got, secret) {
				t.Fatalf("activated %x, want %x", got, secret)
			}

			// Made for another TPM's AK: this TPM refuses it.
			blob, enc, err = tpm.MakeCredential(ekPublic, otherAKName, secret)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := e.ActivateCredential(ctx, blob, enc); !errors.Is(err, tpm.ErrActivation) {
				t.Fatalf("credential for another AK: %x, %v; want ErrActivation", got, err)
			}
			// Made for this TPM's AK name, but another TPM's EK.
			if typ == tpm.EKRSA2048 {
				blob, enc, err = tpm.MakeCredential(otherEK, akName, secret)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.ActivateCredential(ctx, blob, enc); !errors.Is(err, tpm.ErrActivation) {
					t.Fatalf("credential for another EK: %v; want ErrActivation", err)
				}
			}
			// Altered.
			blob, enc, _ = tpm.MakeCredential(ekPublic, akName, secret)
			for _, alter := range [][2][]byte{{flipLast(blob), enc}, {blob, flipLast(enc)}, {blob[:len(blob)-1], enc}} {
				if _, err := e.ActivateCredential(ctx, alter[0], alter[1]); err == nil {
					t.Fatal("an altered credential activated")
				}
			}
			// The TPM is still fine afterwards, and nothing is left loaded.
			blob, enc, _ = tpm.MakeCredential(ekPublic, akName, secret)
			if got, err := e.ActivateCredential(ctx, blob, enc); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("activation after failures: %v", err)
			}
			noLeftovers(t, sw)
		})
	}
}

func flipLast(b []byte) []byte {
	b = slices.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

func TestMakeCredentialRejects(t *testing.T) {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{})
	ek, _, _, err := e.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ak, _ := e.AKPublic()
	name, _ := tpm.Name(ak)
	for what, c := range map[string][3][]byte{
		"AK as EK (a signing key)": {ak, name, []byte("secret")},
		"garbage EK":               {[]byte{1, 2, 3}, name, []byte("secret")},
		"EK with trailing bytes":   {append(slices.Clone(ek), 0), name, []byte("secret")},
		"short name":               {ek, name[:10], []byte("secret")},
		"name with unknown alg":    {ek, append([]byte{0x00, 0x99}, name[2:]...), []byte("secret")},
		"empty secret":             {ek, name, nil},
		"long secret":              {ek, name, make([]byte, tpm.MaxCredential+1)},
	} {
		if _, _, err := tpm.MakeCredential(c[0], c[1], c[2]); !errors.Is(err, tpm.ErrCredential) {
			t.Errorf("%s: %v, want ErrCredential", what, err)
		}
	}
}

// noLeftovers checks with tpm2_getcap that no transient object or session
// is left in the TPM.
func noLeftovers(t *testing.T, sw *testtpm.TPM) {
	t.Helper()
	for _, what := range []string{"handles-transient", "handles-loaded-session", "handles-saved-session"} {
		out, err := exec.Command("tpm2_getcap", "-T", sw.TCTI, what).CombinedOutput()
		if err != nil {
			t.Fatalf("tpm2_getcap %s: %v\n%s", what, err, out)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("%s left in the TPM:\n%s", what, s)
		}
	}
}
