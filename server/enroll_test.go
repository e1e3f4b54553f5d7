package server

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"testing"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/enclave/simtpm"
	"github.com/vigil-attest/vigil/tpm"
)

// FuzzEnrollTPM: the TPM enrollment checks take any bytes as EK, AK and
// EK certificate without panicking, answer every refusal with an
// enrollment problem, and accept only keys a credential can be made for.
func FuzzEnrollTPM(f *testing.F) {
	for i, o := range []simtpm.Options{{}, {EK: tpm.EKRSA2048, AK: tpm.RSASSA2048}} {
		o.Rand = mrand.NewChaCha8([32]byte{byte(i)})
		sim, err := simtpm.New(o)
		if err != nil {
			f.Fatal(err)
		}
		ek, _, _, _ := sim.EK(context.Background())
		ak, _ := sim.AKPublic()
		f.Add(ek, ak, []byte(nil))
		f.Add(ak, ek, []byte{0x30, 0x03, 0x02, 0x01, 0x01})
		f.Add(ek, sim.ReportKeyPublic(), []byte(nil))
	}
	s := &Server{activationKey: make([]byte, 32)}
	f.Fuzz(func(t *testing.T, ek, ak, cert []byte) {
		a, err := s.tpmAgent(&api.EnrollRequest{AgentID: "fuzz", Enclave: "tpm", EKPublic: ek, AKPublic: ak, EKCert: cert})
		if err != nil {
			var p *problemError
			if !errors.As(err, &p) || p.code != api.CodeInvalidEnrollment {
				t.Fatalf("refusal %v is not invalid-enrollment", err)
			}
			return
		}
		name, err := tpm.Name(a.AKPublic)
		if err != nil {
			t.Fatalf("accepted an AK without a name: %v", err)
		}
		if _, _, err := tpm.MakeCredential(a.EKPublic, name, s.activationSecret(a)); err != nil {
			t.Fatalf("accepted an EK no credential can be made for: %v", err)
		}
	})
}
